//! The task that runs one BFD session over UDP: it hands the session the packets routed to it
//! and its timers, sends what the session asks, and publishes the status on every change. It
//! never waits on the network: a packet the socket cannot take at once is dropped, as BFD
//! expects of a lossy path.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
};

use super::{
    packet::{ControlPacket, Diagnostic, State},
    session::{BfdSession, Output},
    socket::{self, Hops},
};

/// What a BFD session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdStatus {
    /// The session's state.
    pub state: State,
    /// Why it last went down.
    pub diagnostic: Diagnostic,
    /// Why packets cannot be sent or received, if they cannot.
    pub problem: Option<String>,
    /// Control packets accepted from the peer.
    pub packets_received: u64,
    /// Control packets discarded for a TTL below what the session requires.
    pub packets_discarded: u64,
    /// Control packets sent.
    pub packets_sent: u64,
    /// Times the session came up.
    pub up_events: u64,
    /// Times it went down from Up.
    pub down_events: u64,
}

impl Default for BfdStatus {
    fn default() -> Self {
        Self {
            state: State::Down,
            diagnostic: Diagnostic::None,
            problem: None,
            packets_received: 0,
            packets_discarded: 0,
            packets_sent: 0,
            up_events: 0,
            down_events: 0,
        }
    }
}

impl BfdStatus {
    /// Whether the session is Up.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// "up", or "down: control detection time expired", for people.
    pub fn describe(&self) -> String {
        let state = match self.state {
            State::AdminDown => "admin down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        };
        let mut text = state.to_string();
        if self.state != State::Up && self.diagnostic != Diagnostic::None {
            text.push_str(": ");
            text.push_str(self.diagnostic.describe());
        }
        if let Some(problem) = &self.problem {
            text.push_str(" (");
            text.push_str(problem);
            text.push(')');
        }
        text
    }
}

/// A packet for this session, with the TTL it arrived with.
#[derive(Debug)]
pub struct Arrival {
    pub packet: ControlPacket,
    pub ttl: u8,
}

/// Where and how one session talks.
pub struct PeerLink {
    /// The peer's address and BFD port.
    pub peer: SocketAddr,
    /// Our address, when configured.
    pub source: Option<IpAddr>,
    /// Single hop or multihop.
    pub hops: Hops,
    /// The lowest TTL accepted (255 for single hop).
    pub minimum_ttl: u8,
    /// Why packets for this session cannot be received (the listening port could not be
    /// opened), which no send clears.
    pub receive_problem: Option<String>,
}

/// Runs `session` until `stop` (or until its inbox closes), then says AdminDown to the peer.
pub async fn run(
    mut session: BfdSession,
    link: PeerLink,
    mut inbox: mpsc::Receiver<Arrival>,
    status: watch::Sender<BfdStatus>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut driver = Driver { link, socket: None, status };
    loop {
        let deadline = session.next_deadline().map(tokio::time::Instant::from_std);
        let outputs = tokio::select! {
            arrival = inbox.recv() => match arrival {
                Some(arrival) if arrival.ttl >= driver.link.minimum_ttl => {
                    driver.count(|s| s.packets_received += 1);
                    session.receive(&arrival.packet, Instant::now())
                }
                Some(_) => {
                    driver.count(|s| s.packets_discarded += 1);
                    continue;
                }
                // The registry let go of the session (its inbox with it): as good as a stop.
                None => break,
            },
            () = sleep_until(deadline) => session.on_timer(Instant::now()),
            _ = &mut stop => break,
        };
        driver.handle(outputs);
    }
    // The peer hears that we stopped on purpose, and does not read it as a failure.
    let farewell = session.admin_down(Instant::now());
    driver.handle(farewell);
}

struct Driver {
    link: PeerLink,
    socket: Option<UdpSocket>,
    status: watch::Sender<BfdStatus>,
}

impl Driver {
    fn handle(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send(packet) => self.send(&packet),
                Output::Changed(state, diagnostic) => {
                    tracing::info!(
                        peer = %self.link.peer.ip(),
                        ?state,
                        diagnostic = diagnostic.describe(),
                        "BFD session changed"
                    );
                    self.status.send_modify(|status| {
                        if state == State::Up {
                            status.up_events += 1;
                        } else if status.state == State::Up {
                            status.down_events += 1;
                        }
                        status.state = state;
                        status.diagnostic = diagnostic;
                    });
                }
            }
        }
    }

    fn send(&mut self, packet: &ControlPacket) {
        if self.socket.is_none() {
            match socket::sender(self.link.peer, self.link.source) {
                Ok(socket) => self.socket = Some(socket),
                Err(err) => {
                    self.set_problem(Some(format!("cannot send to {}: {err}", self.link.peer)));
                    return;
                }
            }
        }
        let Some(socket) = &self.socket else { return };
        match socket.try_send(&packet.encode()) {
            Ok(_) => {
                self.count(|s| s.packets_sent += 1);
                self.set_problem(None);
            }
            // A full buffer or an unreachable peer (link down) loses this packet only; the
            // peer's detection timer says what that means.
            Err(err) => tracing::debug!(peer = %self.link.peer, %err, "BFD packet not sent"),
        }
    }

    /// Advances a counter without waking the watchers: they care about state changes, and
    /// read the counters when they report.
    fn count(&self, advance: impl FnOnce(&mut BfdStatus)) {
        self.status.send_if_modified(|status| {
            advance(status);
            false
        });
    }

    /// Records why sending fails (`None`: it works); a receiving problem always shows first.
    fn set_problem(&self, send_problem: Option<String>) {
        let problem = self.link.receive_problem.clone().or(send_problem);
        self.status.send_if_modified(|status| {
            let changed = status.problem != problem;
            status.problem = problem;
            changed
        });
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
