//! The two intervals of layer 2 fencing, derived from one so they cannot be set inconsistently.
//!
//! An announcer answers ARP/NDP only for `fence_after` after the allocator sent its latest
//! heartbeat; the allocator gives a node's IPs to another node only once the node has had no
//! stream for `reassign_after`, which is longer by `MARGIN`. The margin covers what separates
//! the two clocks: the smallest one-way delay of a heartbeat (the announcer dates a heartbeat by
//! the fastest one it saw) and the drift of two clocks over a few seconds (parts per million).

use std::time::Duration;

/// How much longer the allocator waits than an announcer answers on its last word.
const MARGIN: Duration = Duration::from_millis(250);

/// Heartbeats sent per fencing interval: a few lost or late ones do not fence a live node.
const HEARTBEATS_PER_INTERVAL: u32 = 4;

/// The default fencing interval.
pub const DEFAULT_FENCE_AFTER: Duration = Duration::from_secs(1);

/// Layer 2 fencing intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Fencing {
    fence_after: Duration,
}

impl Default for L2Fencing {
    fn default() -> Self {
        Self { fence_after: DEFAULT_FENCE_AFTER }
    }
}

impl L2Fencing {
    /// Fencing after `fence_after` without the allocator's word.
    pub fn new(fence_after: Duration) -> Self {
        Self { fence_after }
    }

    /// How long an announcer answers after the allocator's latest heartbeat.
    pub fn fence_after(&self) -> Duration {
        self.fence_after
    }

    /// How long a node must have been without a stream before its IPs go to another node, and
    /// how long an IP taken from a node that may still answer stays with nobody.
    pub fn reassign_after(&self) -> Duration {
        self.fence_after + MARGIN
    }

    /// How often each stream carries a heartbeat.
    pub fn heartbeat_every(&self) -> Duration {
        self.fence_after / HEARTBEATS_PER_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_always_waits_longer_than_an_announcer_answers() {
        for ms in [100, 1000, 30_000] {
            let fencing = L2Fencing::new(Duration::from_millis(ms));
            assert!(fencing.reassign_after() > fencing.fence_after());
            assert!(fencing.heartbeat_every() * 2 < fencing.fence_after());
        }
    }
}
