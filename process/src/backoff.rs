//! Jittered exponential backoff, the one the whole workspace uses: the announcer's and the
//! watcher's connections to the allocator, the watcher's retries of an allocator replica, and
//! the BGP sessions' reconnects. Built on `backon` (already in the tree through kube-runtime,
//! whose watches back off with it), wrapped for loops that retry forever and reset on success.
//! Jitter keeps a fleet of announcers from reconnecting in lockstep after an allocator restart.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays whose ceiling doubles from `min` up to `max`, each drawn uniformly from
/// [ceiling/2, ceiling).
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and capped at `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        // backon's jitter adds up to the delay itself: from half the ceiling, that spans
        // [ceiling/2, ceiling).
        let builder = ExponentialBuilder::new()
            .with_min_delay(min / 2)
            .with_max_delay(max / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self { delays: builder.build(), builder, max }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on attempts the iterator never ends; the cap is the fallback anyway.
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// Call after a successful attempt: the next failure waits about `min` again.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_up_to_the_cap_and_reset() {
        for _ in 0..100 {
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
            let ceilings = [100, 200, 400, 700, 700];
            for ceiling in ceilings {
                let delay = backoff.next_delay();
                let ceiling = Duration::from_millis(ceiling);
                assert!(
                    delay <= ceiling && delay >= ceiling / 2,
                    "{delay:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
            backoff.reset();
            assert!(backoff.next_delay() <= Duration::from_millis(100));
        }
    }
}
