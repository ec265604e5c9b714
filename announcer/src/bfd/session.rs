//! One BFD session in asynchronous mode (RFC 5880), as a state machine without I/O: it is given
//! received packets and the time, and says what to send and when its state changes. The driver
//! that owns the UDP socket (RFC 5881: port 3784, TTL 255) calls `receive` and `on_timer`, and
//! sleeps until `next_deadline`.

use std::time::{Duration, Instant};

use super::packet::{ControlPacket, Diagnostic, State};

/// A session's parameters (MetalLB's BFDProfile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdConfig {
    /// Desired minimum interval between the packets we send, once Up.
    pub desired_min_tx: Duration,
    /// Required minimum interval between the packets we receive.
    pub required_min_rx: Duration,
    /// Packets the peer may lose before we declare the session down.
    pub detect_mult: u8,
    /// Wait for the peer to speak first.
    pub passive: bool,
}

impl Default for BfdConfig {
    /// MetalLB's BFDProfile defaults: 300 ms both ways, multiplier 3, active.
    fn default() -> Self {
        Self {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
        }
    }
}

/// What the session asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this packet to the peer.
    Send(ControlPacket),
    /// The session's state changed, for this reason.
    Changed(State, Diagnostic),
}

/// While not Up, packets go at most once a second (RFC 5880 section 6.8.3).
const SLOW_TX: Duration = Duration::from_secs(1);

/// One session.
#[derive(Debug)]
pub struct BfdSession {
    config: BfdConfig,
    state: State,
    diagnostic: Diagnostic,
    local_discriminator: u32,
    remote_discriminator: u32,
    remote_state: State,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_detect_mult: u8,
    /// A Poll sequence is under way: our packets carry P until a Final arrives.
    polling: bool,
    /// The next packet answers a Poll with F.
    final_due: bool,
    /// Something was received from the peer (a passive session speaks only after that).
    heard: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    /// State of the jitter's pseudo-random sequence.
    jitter_state: u32,
}

impl BfdSession {
    /// A session in Down with `local_discriminator` (non-zero, unique on this system).
    pub fn new(config: BfdConfig, local_discriminator: u32, now: Instant) -> Self {
        assert_ne!(local_discriminator, 0, "a discriminator is never 0");
        let passive = config.passive;
        Self {
            config,
            state: State::Down,
            diagnostic: Diagnostic::None,
            local_discriminator,
            remote_discriminator: 0,
            remote_state: State::Down,
            // RFC 5880 section 6.8.1: 1 microsecond until the peer says otherwise.
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_detect_mult: 0,
            polling: false,
            final_due: false,
            heard: false,
            next_tx: (!passive).then_some(now),
            detect_at: None,
            jitter_state: local_discriminator | 1,
        }
    }

    /// The session's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Why it last went down.
    pub fn diagnostic(&self) -> Diagnostic {
        self.diagnostic
    }

    /// When `on_timer` must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The time without a packet after which the session is declared down: the peer's
    /// multiplier times the slower of what we accept and what it sends (section 6.8.4).
    pub fn detection_time(&self) -> Duration {
        let interval = self.config.required_min_rx.max(self.remote_desired_tx);
        interval * u32::from(self.remote_detect_mult)
    }

    /// Handles a received packet (already checked by `ControlPacket::decode`).
    pub fn receive(&mut self, packet: &ControlPacket, now: Instant) -> Vec<Output> {
        // Section 6.8.6: a packet for another session, or one that does not know us while
        // claiming to be past Down, is discarded.
        if packet.your_discriminator == 0 && !matches!(packet.state, State::Down | State::AdminDown)
        {
            return Vec::new();
        }
        if packet.your_discriminator != 0 && packet.your_discriminator != self.local_discriminator {
            return Vec::new();
        }
        self.heard = true;
        self.remote_discriminator = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_desired_tx = packet.desired_min_tx;
        self.remote_min_rx = packet.required_min_rx;
        self.remote_detect_mult = packet.detect_mult;
        if packet.final_ {
            self.polling = false;
        }
        let mut outputs = Vec::new();
        if self.state == State::AdminDown {
            return outputs;
        }
        let next = match (self.state, packet.state) {
            (State::Up | State::Init, State::AdminDown) | (State::Up, State::Down) => {
                Some((State::Down, Diagnostic::NeighborSignaledDown))
            }
            (State::Down, State::Down) => Some((State::Init, Diagnostic::None)),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                Some((State::Up, Diagnostic::None))
            }
            _ => None,
        };
        if let Some((state, diagnostic)) = next {
            self.change(state, diagnostic, now, &mut outputs);
        }
        self.detect_at =
            matches!(self.state, State::Init | State::Up).then(|| now + self.detection_time());
        if packet.poll {
            // Section 6.8.7: answered at once, whatever the transmit timer says.
            self.final_due = true;
            outputs.push(Output::Send(self.packet()));
        } else if self.next_tx.is_none() && self.may_send_periodically() {
            self.next_tx = Some(now);
        }
        outputs
    }

    /// Handles the timers due at `now`: detection expiry, then transmission.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Output> {
        let mut outputs = Vec::new();
        if self.detect_at.is_some_and(|at| at <= now) {
            self.detect_at = None;
            self.remote_discriminator = 0;
            self.change(State::Down, Diagnostic::DetectionTimeExpired, now, &mut outputs);
        }
        if self.next_tx.is_some_and(|at| at <= now) {
            if self.may_send_periodically() {
                outputs.push(Output::Send(self.packet()));
                self.next_tx = Some(now + self.jittered(self.transmit_interval()));
            } else {
                self.next_tx = None;
            }
        }
        outputs
    }

    /// Takes the session administratively down, telling the peer.
    pub fn admin_down(&mut self, now: Instant) -> Vec<Output> {
        let mut outputs = Vec::new();
        self.change(State::AdminDown, Diagnostic::AdministrativelyDown, now, &mut outputs);
        self.detect_at = None;
        outputs.push(Output::Send(self.packet()));
        outputs
    }

    fn change(
        &mut self,
        state: State,
        diagnostic: Diagnostic,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if state == self.state {
            return;
        }
        let was_up = self.state == State::Up;
        self.state = state;
        if diagnostic != Diagnostic::None || state == State::Up {
            self.diagnostic = diagnostic;
        }
        // The transmit interval in effect changes on entering or leaving Up (the 1 s floor):
        // a Poll sequence tells the peer (section 6.8.3).
        if was_up != (state == State::Up) {
            self.polling = true;
        }
        // The peer learns of the change with the next packet, sent now.
        if self.may_send_periodically() || state != State::Up {
            self.next_tx = Some(now);
        }
        out.push(Output::Changed(state, self.diagnostic));
    }

    /// Whether periodic packets go out: not before a passive session heard from its peer, and
    /// not to a peer that asked for none (section 6.8.7).
    fn may_send_periodically(&self) -> bool {
        (!self.config.passive || self.heard) && !self.remote_min_rx.is_zero()
    }

    /// The desired transmit interval in effect: at least a second while not Up.
    fn desired_min_tx(&self) -> Duration {
        if self.state == State::Up {
            self.config.desired_min_tx
        } else {
            self.config.desired_min_tx.max(SLOW_TX)
        }
    }

    /// Section 6.8.7: the slower of what we want to send and what the peer accepts.
    fn transmit_interval(&self) -> Duration {
        self.desired_min_tx().max(self.remote_min_rx)
    }

    /// 75% to 100% of `interval` (75% to 90% with a multiplier of 1), section 6.8.7.
    fn jittered(&mut self, interval: Duration) -> Duration {
        // xorshift32: cheap, and deterministic per session for the tests.
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.jitter_state = x;
        let spread = if self.config.detect_mult == 1 { 0.15 } else { 0.25 };
        let fraction = f64::from(x) / f64::from(u32::MAX);
        interval.mul_f64(1.0 - spread * fraction)
    }

    fn packet(&mut self) -> ControlPacket {
        let final_ = std::mem::take(&mut self.final_due);
        ControlPacket {
            diagnostic: self.diagnostic,
            state: self.state,
            // Never Poll and Final in one packet (section 6.5).
            poll: self.polling && !final_,
            final_,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.local_discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx: self.desired_min_tx(),
            required_min_rx: self.config.required_min_rx,
            required_min_echo_rx: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests;
