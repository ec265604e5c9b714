//! The BGP session state machine (RFC 4271 section 8), sans-IO: events in, actions out. The
//! driver that owns the socket and the timers turns actions into I/O and I/O into events, so
//! every transition is unit-testable without a network or a clock.
//!
//! The speaker always initiates (as MetalLB's does): after a failure it returns to Idle and
//! restarts by itself with exponential backoff, and a NOTIFICATION names every error.

use std::{net::Ipv4Addr, time::Duration};

use metallb_process::Backoff;

use super::packet::{
    DecodeError, Message, OpenError, UpdateErrorAction,
    attribute::AsWidth,
    capability::{Capability, Family},
    iana::notification as code,
    notification::Notification,
    open::{AS_TRANS, Open},
    update::Update,
};

/// RFC 4271 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No connection; maybe waiting to restart.
    Idle,
    /// Connecting.
    Connect,
    /// The connection attempt failed; waiting to try again.
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Up.
    Established,
}

/// Which AS the peer may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAs {
    /// Exactly this one.
    Fixed(u32),
    /// Ours (iBGP), whichever it is (MetalLB's dynamicASN: internal).
    Internal,
    /// Any other than ours (MetalLB's dynamicASN: external).
    External,
}

impl From<u32> for PeerAs {
    fn from(asn: u32) -> Self {
        Self::Fixed(asn)
    }
}

/// What the session is configured with.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Our AS.
    pub local_asn: u32,
    /// The AS the peer must have.
    pub peer_asn: PeerAs,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Proposed hold time (0 or at least 3).
    pub hold_time: u16,
    /// Keepalive interval; `None` for a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    /// First delay between connection attempts; doubles on each failure up to `max_retry`.
    pub connect_retry: Duration,
    /// Longest delay between attempts.
    pub max_retry: Duration,
    /// Families to negotiate.
    pub families: Vec<Family>,
    /// Graceful restart time to advertise; `None` to not advertise it.
    pub graceful_restart: Option<u16>,
    /// Whether we restarted recently (the R bit of the graceful restart capability).
    pub restarting: bool,
}

/// What the OPENs settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// AS_PATH width to use.
    pub as_width: AsWidth,
    /// Hold time in force (0: no hold timer, no keepalives).
    pub hold_time: u16,
    /// Keepalive interval.
    pub keepalive: u16,
    /// Families both sides support.
    pub families: Vec<Family>,
    /// The peer supports ROUTE-REFRESH.
    pub route_refresh: bool,
    /// Both support messages up to 65535 bytes.
    pub extended_message: bool,
    /// The peer's graceful restart capability, if any.
    pub peer_graceful_restart: Option<u16>,
    /// The peer's identifier.
    pub peer_router_id: Ipv4Addr,
    /// iBGP (same AS).
    pub internal: bool,
}

/// Timers the driver keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Connect retry (also the restart backoff).
    ConnectRetry,
    /// Hold.
    Hold,
    /// Keepalive.
    Keepalive,
}

/// Inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Start the session (ManualStart).
    Start,
    /// Stop it for good (ManualStop).
    Stop,
    /// The connection is up.
    TcpConnected,
    /// Connecting failed.
    TcpConnectFailed(String),
    /// The connection closed.
    TcpClosed(String),
    /// A whole message arrived.
    Message(Message),
    /// Bytes arrived that are not a valid message.
    DecodeError(DecodeError),
    /// A timer fired.
    TimerExpired(Timer),
    /// The BFD session watching the path went down from Up, for this reason.
    BfdDown(String),
}

/// Outputs, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open a connection.
    Connect,
    /// Close the connection (after sending what precedes this action).
    Disconnect,
    /// Send a message.
    Send(Message),
    /// (Re)start a timer.
    StartTimer(Timer, Duration),
    /// Stop a timer.
    StopTimer(Timer),
    /// The session is up: send the table.
    Up(Negotiated),
    /// The session went down, with the reason.
    Down(String),
    /// The peer asked for our routes again (RFC 2918).
    ResendTable(Family),
    /// The peer sent an UPDATE.
    Received(Update),
}

/// Hold timer while waiting for the peer's OPEN (RFC 4271 section 8.2.2 suggests 4 minutes).
const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// How long one connection attempt may stay in Connect before it counts as failed: longer
/// than the driver's own connect timeout, which fails it first with its reason.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(15);

/// One session's state machine.
#[derive(Debug)]
pub struct Fsm {
    config: SessionConfig,
    state: State,
    negotiated: Option<Negotiated>,
    /// Failures since the session was last Established.
    failures: u32,
    /// Delays between attempts: jittered, doubling from `connect_retry` up to `max_retry`.
    retry: Backoff,
    last_error: Option<String>,
}

impl Fsm {
    /// A session in Idle, not started.
    pub fn new(config: SessionConfig) -> Self {
        let retry = Backoff::new(config.connect_retry, config.max_retry);
        Self { config, state: State::Idle, negotiated: None, failures: 0, retry, last_error: None }
    }

    /// Failures since the session was last Established.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What the OPENs settled, while OpenConfirm or Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The last error that took the session down.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The OPEN we send.
    pub fn open(&self) -> Open {
        let mut capabilities: Vec<Capability> =
            self.config.families.iter().map(|family| Capability::Multiprotocol(*family)).collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::ExtendedMessage);
        if let Some(restart_time) = self.config.graceful_restart {
            capabilities.push(Capability::GracefulRestart {
                restarting: self.config.restarting,
                restart_time,
                // We keep no forwarding state of our own to preserve: the flag stays clear.
                families: self.config.families.iter().map(|family| (*family, false)).collect(),
            });
        }
        capabilities.push(Capability::FourOctetAs(self.config.local_asn));
        Open {
            version: 4,
            my_as: u16::try_from(self.config.local_asn).unwrap_or(AS_TRANS),
            hold_time: self.config.hold_time,
            identifier: self.config.router_id,
            capabilities,
        }
    }

    /// Handles one event.
    pub fn event(&mut self, event: Event) -> Vec<Action> {
        use State::*;
        match (self.state, event) {
            (Idle, Event::Start) | (Idle | Active, Event::TimerExpired(Timer::ConnectRetry)) => {
                self.state = Connect;
                vec![Action::StartTimer(Timer::ConnectRetry, CONNECT_ATTEMPT), Action::Connect]
            }
            (_, Event::Start) => Vec::new(),
            (Idle, Event::Stop) => vec![Action::StopTimer(Timer::ConnectRetry)],
            (Connect | Active, Event::Stop) => self.go_idle_for_good(Vec::new(), "stopped"),
            (_, Event::Stop) => {
                let cease = Notification {
                    code: code::CEASE,
                    subcode: code::cease::ADMINISTRATIVE_SHUTDOWN,
                    data: Vec::new(),
                };
                self.go_idle_for_good(vec![Action::Send(Message::Notification(cease))], "stopped")
            }
            (Connect, Event::TimerExpired(Timer::ConnectRetry)) => {
                // The attempt got no answer at all (SYNs lost): a failure like any other, retried
                // after the backoff, with the reason on record.
                self.state = Active;
                self.failures += 1;
                self.last_error =
                    Some(format!("connect: no answer within {}s", CONNECT_ATTEMPT.as_secs()));
                vec![
                    Action::Disconnect,
                    Action::StartTimer(Timer::ConnectRetry, self.retry_delay()),
                ]
            }
            (Connect, Event::TcpConnected) => {
                self.state = OpenSent;
                vec![
                    Action::StopTimer(Timer::ConnectRetry),
                    Action::Send(Message::Open(self.open())),
                    Action::StartTimer(Timer::Hold, OPEN_HOLD_TIME),
                ]
            }
            (Connect, Event::TcpConnectFailed(reason)) => {
                self.state = Active;
                self.failures += 1;
                self.last_error = Some(format!("connect: {reason}"));
                vec![Action::StartTimer(Timer::ConnectRetry, self.retry_delay())]
            }
            (OpenSent, Event::Message(Message::Open(open))) => self.receive_open(open),
            (OpenConfirm, Event::Message(Message::Keepalive)) => {
                self.state = Established;
                self.failures = 0;
                self.retry.reset();
                self.last_error = None;
                let negotiated = self.negotiated.clone().expect("negotiated in OpenSent");
                let mut actions = self.restart_hold_timer();
                actions.push(Action::Up(negotiated));
                actions
            }
            (OpenConfirm | Established, Event::TimerExpired(Timer::Keepalive)) => {
                let mut actions = vec![Action::Send(Message::Keepalive)];
                actions.extend(self.restart_keepalive_timer());
                actions
            }
            (Established, Event::Message(Message::Keepalive)) => self.restart_hold_timer(),
            (Established, Event::Message(Message::Update(update))) => {
                let mut actions = self.restart_hold_timer();
                actions.push(Action::Received(update));
                actions
            }
            (Established, Event::Message(Message::RouteRefresh { afi, safi })) => {
                let mut actions = self.restart_hold_timer();
                let negotiated =
                    self.negotiated.as_ref().is_some_and(|n| n.families.contains(&(afi, safi)));
                if negotiated {
                    actions.push(Action::ResendTable((afi, safi)));
                }
                actions
            }
            (OpenSent | OpenConfirm | Established, Event::TimerExpired(Timer::Hold)) => {
                let expired =
                    Notification { code: code::HOLD_TIMER_EXPIRED, subcode: 0, data: Vec::new() };
                self.fail(
                    vec![Action::Send(Message::Notification(expired))],
                    "hold timer expired".into(),
                )
            }
            (_, Event::Message(Message::Notification(notification))) => {
                self.fail(Vec::new(), format!("received NOTIFICATION: {notification}"))
            }
            (Established, Event::DecodeError(DecodeError::Update(error)))
                if error.action() == UpdateErrorAction::TreatAsWithdraw =>
            {
                // RFC 7606: the UPDATE's routes count as withdrawn; the session stays up.
                tracing::warn!(%error, "malformed UPDATE treated as withdraw");
                self.restart_hold_timer()
            }
            (_, Event::DecodeError(error)) => {
                let reply = error.notification().map(|n| Action::Send(Message::Notification(n)));
                self.fail(
                    reply.into_iter().collect(),
                    format!("malformed message from the peer: {error}"),
                )
            }
            (Connect | Active | Idle, Event::TcpClosed(_) | Event::BfdDown(_)) => Vec::new(),
            (_, Event::BfdDown(reason)) => {
                // The path is gone: drop the session now rather than at hold-time expiry, and
                // say why (RFC 9384), should the peer still be reachable.
                let cease = Notification {
                    code: code::CEASE,
                    subcode: code::cease::BFD_DOWN,
                    data: vec![],
                };
                self.fail(
                    vec![Action::Send(Message::Notification(cease))],
                    format!("BFD session down: {reason}"),
                )
            }
            (_, Event::TcpClosed(reason)) => {
                self.fail(Vec::new(), format!("connection closed: {reason}"))
            }
            (OpenSent | OpenConfirm | Established, Event::Message(message)) => {
                // RFC 6608: FSM error subcodes name the state the unexpected message arrived in.
                let subcode = match self.state {
                    OpenSent => 1,
                    OpenConfirm => 2,
                    _ => 3,
                };
                let error = Notification { code: code::FSM_ERROR, subcode, data: Vec::new() };
                self.fail(
                    vec![Action::Send(Message::Notification(error))],
                    format!("unexpected {} in {:?}", message_name(&message), self.state),
                )
            }
            // Stale events (a timer that fired as it was stopped, a late connect result).
            _ => Vec::new(),
        }
    }

    fn receive_open(&mut self, open: Open) -> Vec<Action> {
        match self.negotiate(&open) {
            Ok(negotiated) => {
                self.state = State::OpenConfirm;
                self.negotiated = Some(negotiated);
                let mut actions = vec![Action::Send(Message::Keepalive)];
                actions.extend(self.restart_hold_timer());
                actions.extend(self.restart_keepalive_timer());
                actions
            }
            Err(error) => {
                let reason = format!("OPEN rejected: {error}");
                let reply = DecodeError::Open(error)
                    .notification()
                    .map(|n| Action::Send(Message::Notification(n)));
                self.fail(reply.into_iter().collect(), reason)
            }
        }
    }

    fn negotiate(&self, open: &Open) -> Result<Negotiated, OpenError> {
        let acceptable = match self.config.peer_asn {
            PeerAs::Fixed(asn) => open.asn() == asn,
            PeerAs::Internal => open.asn() == self.config.local_asn,
            PeerAs::External => open.asn() != self.config.local_asn,
        };
        if !acceptable {
            return Err(OpenError::BadPeerAs(open.asn()));
        }
        let internal = open.asn() == self.config.local_asn;
        // RFC 6286 section 2.1: on an iBGP session the identifiers must differ.
        if internal && open.identifier == self.config.router_id {
            return Err(OpenError::BadBgpIdentifier(open.identifier));
        }
        let peer_families: Vec<Family> = open
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(family) => Some(*family),
                _ => None,
            })
            .collect();
        // A peer that advertises no multiprotocol capability speaks IPv4 unicast only (RFC 4760).
        let peer_families = if peer_families.is_empty() { vec![(1, 1)] } else { peer_families };
        let families: Vec<Family> = self
            .config
            .families
            .iter()
            .filter(|family| peer_families.contains(family))
            .copied()
            .collect();
        let four_octet = open.capabilities.iter().any(|c| matches!(c, Capability::FourOctetAs(_)));
        let hold_time = self.config.hold_time.min(open.hold_time);
        let keepalive = match self.config.keepalive {
            Some(keepalive) if hold_time > 0 => keepalive.min(hold_time / 3).max(1),
            _ => hold_time / 3,
        };
        Ok(Negotiated {
            as_width: if four_octet { AsWidth::Four } else { AsWidth::Two },
            hold_time,
            keepalive,
            families,
            route_refresh: open.capabilities.contains(&Capability::RouteRefresh),
            extended_message: open.capabilities.contains(&Capability::ExtendedMessage),
            peer_graceful_restart: open.capabilities.iter().find_map(|c| match c {
                Capability::GracefulRestart { restart_time, .. } => Some(*restart_time),
                _ => None,
            }),
            peer_router_id: open.identifier,
            internal,
        })
    }

    fn restart_hold_timer(&self) -> Vec<Action> {
        match self.negotiated.as_ref().map(|n| n.hold_time) {
            Some(0) | None => vec![Action::StopTimer(Timer::Hold)],
            Some(hold) => {
                vec![Action::StartTimer(Timer::Hold, Duration::from_secs(u64::from(hold)))]
            }
        }
    }

    fn restart_keepalive_timer(&self) -> Vec<Action> {
        match self.negotiated.as_ref().map(|n| n.keepalive) {
            Some(0) | None => vec![Action::StopTimer(Timer::Keepalive)],
            Some(interval) => {
                vec![Action::StartTimer(Timer::Keepalive, Duration::from_secs(u64::from(interval)))]
            }
        }
    }

    /// The pause before the next attempt, after a failure.
    fn retry_delay(&mut self) -> Duration {
        self.retry.next_delay()
    }

    /// An error: send what `before` holds, close, go Idle, restart after the backoff.
    fn fail(&mut self, mut before: Vec<Action>, reason: String) -> Vec<Action> {
        self.state = State::Idle;
        self.negotiated = None;
        self.failures += 1;
        self.last_error = Some(reason.clone());
        before.extend([
            Action::Disconnect,
            Action::StopTimer(Timer::Hold),
            Action::StopTimer(Timer::Keepalive),
            Action::StartTimer(Timer::ConnectRetry, self.retry_delay()),
        ]);
        before.push(Action::Down(reason));
        before
    }

    fn go_idle_for_good(&mut self, mut before: Vec<Action>, reason: &str) -> Vec<Action> {
        self.state = State::Idle;
        self.negotiated = None;
        before.extend([
            Action::Disconnect,
            Action::StopTimer(Timer::ConnectRetry),
            Action::StopTimer(Timer::Hold),
            Action::StopTimer(Timer::Keepalive),
            Action::Down(reason.to_string()),
        ]);
        before
    }
}

fn message_name(message: &Message) -> &'static str {
    match message {
        Message::Open(_) => "OPEN",
        Message::Update(_) => "UPDATE",
        Message::Notification(_) => "NOTIFICATION",
        Message::Keepalive => "KEEPALIVE",
        Message::RouteRefresh { .. } => "ROUTE-REFRESH",
    }
}

#[cfg(test)]
mod tests;
