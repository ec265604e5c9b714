//! Layer 2 fencing on the announcer's side: how long the allocator's word lets this node answer
//! ARP/NDP. Each heartbeat says when the allocator sent it, as its stream's age by the
//! allocator's clock; the node dates it on its own clock by the fastest heartbeat of the stream
//! (the smallest gap between arrival and age), so a heartbeat that arrives late, say held in a
//! socket buffer during a partition, is dated when it was sent and extends nothing. The node
//! answers until `fence_after` past that date, and not at all without a stream.
//! docs/design.md ("Layer 2 fencing") has the argument.

use std::time::{Duration, Instant};

/// The allocator's word on one stream.
#[derive(Debug)]
pub struct Fence {
    opened: Instant,
    /// Smallest (arrival - age) seen, in ms since `opened`.
    fastest: Option<i128>,
    until: Option<Instant>,
}

impl Fence {
    /// A stream opened at `opened`: no word yet.
    pub fn new(opened: Instant) -> Self {
        Self { opened, fastest: None, until: None }
    }

    /// A heartbeat arrived at `now`; returns until when the node may answer.
    pub fn heartbeat(&mut self, stream_age_ms: u64, fence_after_ms: u32, now: Instant) -> Instant {
        let arrival = now.saturating_duration_since(self.opened).as_millis() as i128;
        let gap = arrival - i128::from(stream_age_ms);
        let fastest = self.fastest.map_or(gap, |fastest| fastest.min(gap));
        self.fastest = Some(fastest);
        // When the allocator sent it, on this node's clock (never later than its arrival).
        let sent_ms = i128::from(stream_age_ms) + fastest;
        let sent = match u64::try_from(sent_ms) {
            Ok(ms) => self.opened + Duration::from_millis(ms),
            Err(_) => self
                .opened
                .checked_sub(Duration::from_millis(sent_ms.unsigned_abs() as u64))
                .unwrap_or(self.opened),
        };
        let until = sent + Duration::from_millis(u64::from(fence_after_ms));
        self.until = Some(self.until.map_or(until, |before| before.max(until)));
        self.until.expect("just set")
    }

    /// Until when the node may answer, if at all.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_heartbeat_lets_the_node_answer_for_the_interval_after_it_was_sent() {
        let opened = Instant::now();
        let mut fence = Fence::new(opened);
        assert_eq!(fence.until(), None);
        // Sent at the allocator's 5 ms, arriving at our 7 ms: the fastest so far.
        let until = fence.heartbeat(5, 1000, opened + 7 * MS);
        assert_eq!(until, opened + 1007 * MS);
        let until = fence.heartbeat(255, 1000, opened + 257 * MS);
        assert_eq!(until, opened + 1257 * MS);
    }

    #[test]
    fn a_late_heartbeat_is_dated_when_it_was_sent() {
        let opened = Instant::now();
        let mut fence = Fence::new(opened);
        fence.heartbeat(5, 1000, opened + 7 * MS);
        // Sent at 255 ms but held for 3 s: it counts from 257 ms, as if it had come at once.
        let until = fence.heartbeat(255, 1000, opened + 3255 * MS);
        assert_eq!(until, opened + 1257 * MS);
        assert!(until < opened + 3255 * MS, "the node is already fenced when it arrives");
    }

    #[test]
    fn the_word_never_shrinks_and_clocks_need_not_agree() {
        let opened = Instant::now() + Duration::from_secs(10);
        let mut fence = Fence::new(opened);
        // The allocator's stream is older than ours by far: its ages are large.
        let first = fence.heartbeat(60_000, 1000, opened + 2 * MS);
        assert_eq!(first, opened + 1002 * MS);
        let second = fence.heartbeat(60_250, 1000, opened + 252 * MS);
        assert_eq!(second, opened + 1252 * MS);
    }
}
