//! When to try again something that failed (opening a socket, joining a multicast group,
//! listing interfaces): after a jittered delay that doubles with every failure, so that a
//! persistent error is logged a few times a minute at most, never in a busy loop.

use std::time::{Duration, Instant};

use metallb_process::Backoff;

/// The first delay after a failure.
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest delay.
const LONGEST_DELAY: Duration = Duration::from_secs(30);

/// The retry state of one thing that may fail.
#[derive(Debug)]
pub struct Retry {
    backoff: Backoff,
    not_before: Option<Instant>,
}

impl Default for Retry {
    fn default() -> Self {
        Self { backoff: Backoff::new(FIRST_DELAY, LONGEST_DELAY), not_before: None }
    }
}

impl Retry {
    /// Whether it may be tried at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|not_before| now >= not_before)
    }

    /// Records a failure at `now`; returns how long until the next try.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.backoff.next_delay();
        self.not_before = Some(now + delay);
        delay
    }

    /// Records a success: the next failure waits the shortest delay again.
    pub fn succeeded(&mut self) {
        self.backoff.reset();
        self.not_before = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_wait_longer_each_time_until_a_success() {
        let now = Instant::now();
        let mut retry = Retry::default();
        assert!(retry.ready(now));
        let first = retry.failed(now);
        assert!(first >= FIRST_DELAY / 2 && first <= FIRST_DELAY, "{first:?}");
        assert!(!retry.ready(now + first - Duration::from_millis(1)));
        assert!(retry.ready(now + first));
        let second = retry.failed(now);
        assert!(second >= FIRST_DELAY, "the ceiling doubled: {second:?}");
        retry.succeeded();
        assert!(retry.ready(now));
        assert!(retry.failed(now) <= FIRST_DELAY);
    }
}
