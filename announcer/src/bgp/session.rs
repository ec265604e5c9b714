//! One BGP session over TCP: the driver that turns the FSM's actions into socket I/O and
//! timers, and socket I/O and timers into its events. It is handed the full set of routes to
//! advertise (a `watch` channel) and sends only the difference once Established.
//!
//! No peer can stall it: messages go to a queue that the loop writes as the socket accepts
//! them, beside reads, timers and stop, never awaiting a write inline. UPDATEs are generated
//! only while the queue is under `QUEUE_HIGH_WATER` (1 MiB), a bounded round at a time, so a peer that
//! reads slowly costs bounded memory; one that takes nothing for the hold time has the session
//! torn down (the send hold timer, RFC 9687). A closing NOTIFICATION is written only as far as
//! the socket takes it at once.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::bfd::BfdStatus;
use bytes::{Bytes, BytesMut};
use metallb_process::propagation;
use metallb_proto::pb;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{oneshot, watch},
    task::JoinHandle,
    time::Instant,
};

use super::{
    advertise::{PathContext, Routes, diff, updates},
    fsm::{Action, Event, Fsm, Negotiated, SessionConfig, State, Timer},
    md5,
    packet::{
        DecodeError, EXTENDED_MAX_LEN, MAX_LEN, Message, UpdateErrorAction, WireContext,
        attribute::{AsWidth, Attribute},
        iana::{afi, safi},
        notification::Notification,
        update::Update,
    },
    received::ReceivedPrefixes,
};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping session may take to send its Cease.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes queued for the peer beyond which no more UPDATEs are generated until it drains: with
/// one round of `PREFIXES_PER_ROUND`, the most a session holds for a slow peer.
const QUEUE_HIGH_WATER: usize = 1024 * 1024;
/// Prefixes announced or withdrawn per round of UPDATE generation.
const PREFIXES_PER_ROUND: usize = 65_536;
/// The send hold time when no hold time is negotiated (RFC 9687 suggests at least this much).
const DEFAULT_SEND_HOLD: Duration = Duration::from_secs(90);
/// NOTIFICATION Send Hold Timer Expired (RFC 9687).
const SEND_HOLD_TIMER_EXPIRED: u8 = 8;

/// Where and how to reach the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEndpoint {
    /// Address and port.
    pub address: SocketAddr,
    /// Local address to connect from.
    pub source: Option<IpAddr>,
    /// TCP MD5 password.
    pub password: Option<String>,
    /// IP TTL (hop limit) of our segments: 1 for a directly connected eBGP peer, 255 for
    /// multihop.
    pub ttl: Option<u32>,
}

/// What the session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// FSM state.
    pub state: State,
    /// When it last reached Established (unset while down).
    pub established_since: Option<SystemTime>,
    /// Prefixes advertised to the peer now.
    pub prefixes_sent: u64,
    /// Prefixes wanted but not advertisable (the session is down, their family was not
    /// negotiated, or it has no next hop of their family).
    pub prefixes_pending: u64,
    /// Why `prefixes_pending` are not advertised.
    pub pending_reason: Option<String>,
    /// Prefixes the peer advertises to us now.
    pub prefixes_received: u64,
    /// UPDATE messages sent since the process started.
    pub updates_sent: u64,
    /// Bytes queued for the peer, not yet taken by its socket.
    pub queued_bytes: u64,
    /// Failed connection attempts and sessions lost, since the process started.
    pub failures_total: u64,
    /// Sessions lost after reaching Established (flaps), since the process started.
    pub flaps_total: u64,
    /// The last error that took the session down.
    pub last_error: Option<String>,
    /// The peer's last OPEN exactly as it arrived, for diagnosing capability mismatches.
    pub peer_open: Option<Vec<u8>>,
    /// The state of the BFD session watching the path, when there is one.
    pub bfd: Option<String>,
}

impl Default for SessionStatus {
    fn default() -> Self {
        Self {
            state: State::Idle,
            established_since: None,
            prefixes_sent: 0,
            prefixes_pending: 0,
            pending_reason: None,
            prefixes_received: 0,
            updates_sent: 0,
            queued_bytes: 0,
            failures_total: 0,
            flaps_total: 0,
            last_error: None,
            peer_open: None,
            bfd: None,
        }
    }
}

/// What a session is asked to advertise, and why.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub routes: Arc<Routes>,
    /// The trace of the change that asked for these routes: the UPDATEs it causes are recorded
    /// in that trace, so one trace follows a Service from its event to the wire.
    pub cause: Option<pb::TraceContext>,
}

impl From<Arc<Routes>> for Desired {
    fn from(routes: Arc<Routes>) -> Self {
        Self { routes, cause: None }
    }
}

/// A running session.
pub struct Session {
    routes: watch::Sender<Desired>,
    status: watch::Receiver<SessionStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Session {
    /// Starts a session that keeps trying to reach `endpoint` and advertises `routes`.
    pub fn spawn(endpoint: PeerEndpoint, config: SessionConfig, desired: Desired) -> Self {
        Self::start(endpoint, config, desired, None)
    }

    /// Like `spawn`, and the session is torn down as soon as `bfd` goes down from Up.
    pub fn spawn_with_bfd(
        endpoint: PeerEndpoint,
        config: SessionConfig,
        desired: Desired,
        bfd: watch::Receiver<BfdStatus>,
    ) -> Self {
        Self::start(endpoint, config, desired, Some(bfd))
    }

    fn start(
        endpoint: PeerEndpoint,
        config: SessionConfig,
        desired: Desired,
        bfd: Option<watch::Receiver<BfdStatus>>,
    ) -> Self {
        let (routes_sender, routes_receiver) = watch::channel(desired);
        let (status_sender, status) = watch::channel(SessionStatus::default());
        let (stop, stopped) = oneshot::channel();
        let driver = Driver {
            fsm: Fsm::new(config.clone()),
            config,
            endpoint,
            connection: None,
            connecting: None,
            deadlines: HashMap::new(),
            desired: routes_receiver,
            advertised: Arc::new(Routes::new()),
            context: None,
            received: ReceivedPrefixes::default(),
            status: status_sender,
            report: SessionStatus::default(),
            more_to_send: false,
            end_of_rib_due: Vec::new(),
            send_hold: DEFAULT_SEND_HOLD,
            seen_failures: 0,
            failure_logged: false,
            families: Vec::new(),
            bfd,
            bfd_up: false,
        };
        let task = tokio::spawn(driver.run(stopped));
        Self { routes: routes_sender, status, stop: Some(stop), task }
    }

    /// Replaces the routes to advertise.
    pub fn set_routes(&self, desired: Desired) {
        self.routes.send_replace(desired);
    }

    /// The current status.
    pub fn status(&self) -> SessionStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<SessionStatus> {
        self.status.clone()
    }

    /// Sends a Cease if connected, closes, and waits (bounded) for the task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(STOP_TIMEOUT, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropped without `stop`: end the task; the socket closes with it.
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

struct Connection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buffer: BytesMut,
    local: SocketAddr,
    wire: WireContext,
    /// Encoded messages not yet written, oldest first; the first may be partly written.
    outgoing: VecDeque<Bytes>,
    /// Bytes of the first message already written.
    written: usize,
    /// Bytes in `outgoing` not yet written.
    queued: usize,
    /// When the peer last took bytes, or the queue last became non-empty.
    last_progress: Instant,
    /// The NOTIFICATION to write before closing.
    farewell: Option<Bytes>,
}

impl Connection {
    fn enqueue(&mut self, bytes: Bytes) {
        if self.queued == 0 {
            self.last_progress = Instant::now();
        }
        self.queued += bytes.len();
        self.outgoing.push_back(bytes);
    }

    /// `written` more bytes left.
    fn advance(&mut self, mut written: usize) {
        self.queued -= written;
        self.last_progress = Instant::now();
        while written > 0 {
            let head = self.outgoing.front().expect("written bytes were queued").len();
            let step = written.min(head - self.written);
            self.written += step;
            written -= step;
            if self.written == head {
                self.outgoing.pop_front();
                self.written = 0;
            }
        }
    }

    /// When the peer will have taken nothing for `send_hold`, while bytes wait.
    fn send_hold_deadline(&self, send_hold: Duration) -> Option<Instant> {
        (self.queued > 0).then(|| self.last_progress + send_hold)
    }

    /// Writes the NOTIFICATION (after the rest of a partly written message, so that it is read
    /// as one) as far as the socket takes it now; the UPDATEs still queued are dropped.
    fn say_farewell(&mut self) {
        let Some(farewell) = self.farewell.take() else { return };
        let mut bytes = BytesMut::new();
        if let Some(head) = self.outgoing.front()
            && self.written > 0
        {
            bytes.extend_from_slice(&head[self.written..]);
        }
        bytes.extend_from_slice(&farewell);
        let mut offset = 0;
        while offset < bytes.len() {
            match self.writer.try_write(&bytes[offset..]) {
                Ok(0) | Err(_) => break,
                Ok(written) => offset += written,
            }
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

struct Driver {
    fsm: Fsm,
    config: SessionConfig,
    endpoint: PeerEndpoint,
    connection: Option<Connection>,
    connecting: Option<Connecting>,
    deadlines: HashMap<Timer, Instant>,
    desired: watch::Receiver<Desired>,
    /// What the peer holds from us: the desired set itself when all of it is advertisable
    /// (shared, not copied), otherwise the advertisable part.
    advertised: Arc<Routes>,
    context: Option<PathContext>,
    received: ReceivedPrefixes,
    status: watch::Sender<SessionStatus>,
    report: SessionStatus,
    /// UPDATEs remain to be generated once the queue drains.
    more_to_send: bool,
    /// Families whose End-of-RIB follows the initial table.
    end_of_rib_due: Vec<(u16, u8)>,
    /// How long queued bytes may wait for the peer before the session is torn down.
    send_hold: Duration,
    /// The FSM's failure count when the status was last published.
    seen_failures: u32,
    /// The latest failure was logged already (as a session going down).
    failure_logged: bool,
    /// The families negotiated with the peer (RFC 4760): only those are advertised.
    families: Vec<(u16, u8)>,
    /// The BFD session watching the path, if any.
    bfd: Option<watch::Receiver<BfdStatus>>,
    /// It was Up when last seen.
    bfd_up: bool,
}

/// What woke the driver.
enum Wake {
    Connected(io::Result<TcpStream>),
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
    Timers,
    SendHoldExpired,
    RoutesChanged,
    BfdChanged,
    Stop,
}

/// Socket progress.
enum Io {
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
}

impl Driver {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut events = VecDeque::from([Event::Start]);
        let mut stopping = false;
        self.follow_bfd(&mut events);
        loop {
            while let Some(event) = events.pop_front() {
                for action in self.fsm.event(event) {
                    self.apply(action);
                }
            }
            self.publish_status();
            if stopping && self.fsm.state() == State::Idle {
                return;
            }
            let next_deadline = self.deadlines.values().min().copied();
            let send_hold_deadline =
                self.connection.as_ref().and_then(|c| c.send_hold_deadline(self.send_hold));
            let wake = tokio::select! {
                result = connect_progress(&mut self.connecting) => Wake::Connected(result),
                io = io_progress(&mut self.connection) => match io {
                    Io::Read(result) => Wake::Read(result),
                    Io::Wrote(result) => Wake::Wrote(result),
                },
                () = sleep_until(next_deadline) => Wake::Timers,
                () = sleep_until(send_hold_deadline) => Wake::SendHoldExpired,
                changed = self.desired.changed() => match changed {
                    Ok(()) => Wake::RoutesChanged,
                    // The owner is gone: nothing will ever stop us otherwise.
                    Err(_) => Wake::Stop,
                },
                () = bfd_changed(&mut self.bfd) => Wake::BfdChanged,
                _ = &mut stop, if !stopping => Wake::Stop,
            };
            match wake {
                Wake::Connected(result) => {
                    self.connecting = None;
                    match result.and_then(|stream| self.attach(stream)) {
                        Ok(()) => events.push_back(Event::TcpConnected),
                        Err(err) => events.push_back(Event::TcpConnectFailed(err.to_string())),
                    }
                }
                Wake::Read(Ok(0)) => {
                    events.push_back(Event::TcpClosed("the peer closed the connection".into()))
                }
                Wake::Read(Ok(_)) => self.decode_frames(&mut events),
                Wake::Read(Err(err)) => events.push_back(Event::TcpClosed(err.to_string())),
                Wake::Wrote(Ok(0)) => {
                    events.push_back(Event::TcpClosed("the peer takes no more data".into()))
                }
                Wake::Wrote(Ok(written)) => {
                    if let Some(connection) = self.connection.as_mut() {
                        connection.advance(written);
                    }
                    if self.more_to_send && self.queued() < QUEUE_HIGH_WATER / 2 {
                        self.send_difference();
                    }
                }
                Wake::Wrote(Err(err)) => {
                    events.push_back(Event::TcpClosed(format!("sending: {err}")))
                }
                Wake::SendHoldExpired => {
                    let reason = format!(
                        "send hold timer expired: the peer took no data for {}s",
                        self.send_hold.as_secs()
                    );
                    tracing::warn!(peer = %self.endpoint.address, reason, "tearing the session down");
                    let expired = Notification {
                        code: SEND_HOLD_TIMER_EXPIRED,
                        subcode: 0,
                        data: Vec::new(),
                    };
                    self.send(&Message::Notification(expired));
                    events.push_back(Event::TcpClosed(reason));
                }
                Wake::Timers => {
                    let now = Instant::now();
                    let expired: Vec<Timer> = self
                        .deadlines
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(timer, _)| *timer)
                        .collect();
                    for timer in expired {
                        self.deadlines.remove(&timer);
                        events.push_back(Event::TimerExpired(timer));
                    }
                }
                Wake::RoutesChanged => {
                    if self.fsm.state() == State::Established {
                        self.send_difference();
                    } else {
                        self.report.prefixes_pending = self.desired.borrow().routes.len() as u64;
                    }
                }
                Wake::BfdChanged => self.follow_bfd(&mut events),
                Wake::Stop => {
                    stopping = true;
                    events.push_back(Event::Stop);
                }
            }
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Connect => self.connecting = Some(Box::pin(connect(self.endpoint.clone()))),
            Action::Disconnect => {
                if let Some(mut connection) = self.connection.take() {
                    connection.say_farewell();
                }
                self.more_to_send = false;
                self.end_of_rib_due.clear();
                self.connecting = None;
                self.context = None;
                self.advertised = Arc::new(Routes::new());
                self.received.clear();
            }
            Action::Send(message) => self.send(&message),
            Action::StartTimer(timer, after) => {
                self.deadlines.insert(timer, Instant::now() + after);
            }
            Action::StopTimer(timer) => {
                self.deadlines.remove(&timer);
            }
            Action::Up(negotiated) => self.session_up(negotiated),
            Action::Down(reason) => {
                tracing::warn!(peer = %self.endpoint.address, reason, "BGP session down");
                if self.report.established_since.take().is_some() {
                    self.report.flaps_total += 1;
                }
                self.report.last_error = Some(reason);
                self.failure_logged = true;
            }
            Action::ResendTable(family) => {
                // As if the family had never been sent: the next rounds send it all again,
                // paced like any other change.
                let ipv6 = family.0 == afi::IPV6;
                let others: Routes = self
                    .advertised
                    .iter()
                    .filter(|(p, _)| p.is_ipv6() != ipv6)
                    .map(|(p, a)| (*p, a.clone()))
                    .collect();
                self.advertised = Arc::new(others);
                self.send_difference();
            }
            Action::Received(update) => self.received.apply(&update),
        }
    }

    /// Records the BFD session's state; its going down from Up takes this session down.
    fn follow_bfd(&mut self, events: &mut VecDeque<Event>) {
        let Some(bfd) = self.bfd.as_mut() else { return };
        let status = bfd.borrow_and_update().clone();
        let description = status.describe();
        if self.bfd_up && !status.is_up() {
            tracing::warn!(peer = %self.endpoint.address, bfd = description, "BFD session down");
            events.push_back(Event::BfdDown(description.clone()));
        }
        self.bfd_up = status.is_up();
        self.report.bfd = Some(description);
    }

    fn attach(&mut self, stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let (reader, writer) = stream.into_split();
        self.connection = Some(Connection {
            reader,
            writer,
            buffer: BytesMut::with_capacity(MAX_LEN),
            local,
            wire: WireContext::default(),
            outgoing: VecDeque::new(),
            written: 0,
            queued: 0,
            last_progress: Instant::now(),
            farewell: None,
        });
        self.send_hold = DEFAULT_SEND_HOLD;
        Ok(())
    }

    fn decode_frames(&mut self, events: &mut VecDeque<Event>) {
        let Some(connection) = self.connection.as_mut() else { return };
        if let Some(open) = whole_open(&connection.buffer) {
            self.report.peer_open = Some(open);
        }
        take_messages(&mut connection.buffer, connection.wire, events);
    }

    /// Queues `message`; a NOTIFICATION is kept to be written when the connection closes,
    /// which always follows it.
    fn send(&mut self, message: &Message) {
        let Some(connection) = self.connection.as_mut() else { return };
        let mut bytes = BytesMut::new();
        message.encode(connection.wire, &mut bytes);
        match message {
            Message::Notification(_) => connection.farewell = Some(bytes.freeze()),
            _ => connection.enqueue(bytes.freeze()),
        }
    }

    fn send_update(&mut self, update: Update) {
        self.report.updates_sent += 1;
        self.send(&Message::Update(update));
    }

    /// Why routes of `afi` cannot be advertised on this session, if they cannot.
    fn family_blocker(&self, afi: u16, has_next_hop: bool) -> Option<String> {
        let name = if afi == afi::IPV6 { "IPv6" } else { "IPv4" };
        if !self.families.contains(&(afi, safi::UNICAST)) {
            return Some(format!("{name} unicast not negotiated with the peer"));
        }
        (!has_next_hop).then(|| format!("no {name} next hop on this session"))
    }

    /// Bytes waiting for the peer.
    fn queued(&self) -> usize {
        self.connection.as_ref().map_or(0, |connection| connection.queued)
    }

    fn session_up(&mut self, negotiated: Negotiated) {
        let Some(connection) = self.connection.as_mut() else { return };
        connection.wire = WireContext {
            as_width: negotiated.as_width,
            max_len: if negotiated.extended_message { EXTENDED_MAX_LEN } else { MAX_LEN },
        };
        let local = connection.local.ip();
        self.context = Some(PathContext {
            local_asn: self.config.local_asn,
            internal: negotiated.internal,
            two_octet_peer: negotiated.as_width == AsWidth::Two,
            next_hop_v4: match (self.endpoint.source, local) {
                (Some(IpAddr::V4(source)), _) => Some(source),
                (_, IpAddr::V4(local)) => Some(local),
                _ => None,
            },
            next_hop_v6: match (self.endpoint.source, local) {
                (Some(source @ IpAddr::V6(_)), _) => Some(source),
                (_, local @ IpAddr::V6(_)) => Some(local),
                _ => None,
            },
            max_len: connection.wire.max_len,
        });
        self.report.established_since = Some(SystemTime::now());
        self.report.last_error = None;
        if negotiated.hold_time > 0 {
            self.send_hold = Duration::from_secs(u64::from(negotiated.hold_time));
        }
        tracing::info!(peer = %self.endpoint.address, ?negotiated, "BGP session established");
        // End-of-RIB for each negotiated family (RFC 4724) once the initial table is out.
        self.end_of_rib_due = negotiated.families.clone();
        self.families = negotiated.families.clone();
        self.send_difference();
    }

    /// End-of-RIB for each family due, now that the initial table is queued.
    fn send_end_of_rib(&mut self) {
        for family in std::mem::take(&mut self.end_of_rib_due) {
            let end_of_rib = if family.0 == afi::IPV6 {
                Update {
                    attributes: vec![Attribute::MpUnreach {
                        afi: afi::IPV6,
                        safi: safi::UNICAST,
                        withdrawn: Vec::new(),
                    }],
                    ..Update::default()
                }
            } else {
                Update::default()
            };
            self.send_update(end_of_rib);
        }
    }

    /// Sends what changed between what was advertised and what is desired, a round of at most
    /// `PREFIXES_PER_ROUND` prefixes at a time and only while the queue is under
    /// `QUEUE_HIGH_WATER`; the rest when the peer has taken what is queued.
    fn send_difference(&mut self) {
        let Some(context) = self.context.clone() else { return };
        if self.queued() >= QUEUE_HIGH_WATER {
            // Seen: the change is taken up when the queue drains, not by waking again now.
            self.desired.borrow_and_update();
            self.more_to_send = true;
            return;
        }
        let Desired { routes: desired, cause } = self.desired.borrow_and_update().clone();
        // A family is advertised only when negotiated (RFC 4760) and with a next hop of its
        // own on this session.
        let v4 = self.family_blocker(afi::IPV4, context.next_hop_v4.is_some());
        let v6 = self.family_blocker(afi::IPV6, context.next_hop_v6.is_some());
        let advertisable: Routes = desired
            .iter()
            .filter(|(prefix, _)| if prefix.is_ipv6() { v6.is_none() } else { v4.is_none() })
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        let blocked_families = [
            (v4, desired.keys().any(|prefix| prefix.is_ipv4())),
            (v6, desired.keys().any(|prefix| prefix.is_ipv6())),
        ];
        let reasons: Vec<String> = blocked_families
            .into_iter()
            .filter_map(|(blocker, wanted)| blocker.filter(|_| wanted))
            .collect();
        self.report.pending_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        let (mut announce, mut withdraw) = diff(&self.advertised, &advertisable);
        let complete = announce.len() + withdraw.len() <= PREFIXES_PER_ROUND;
        if !complete {
            // Withdrawals first: they free what the peer holds and matter most when late.
            withdraw.truncate(PREFIXES_PER_ROUND);
            let room = PREFIXES_PER_ROUND - withdraw.len();
            announce = announce.into_iter().take(room).collect();
        }
        if !announce.is_empty() || !withdraw.is_empty() {
            let span = tracing::info_span!(
                "send_update",
                peer = %self.endpoint.address,
                announced = announce.len(),
                withdrawn = withdraw.len(),
            );
            propagation::set_parent_from(&span, cause.as_ref());
            let _entered = span.enter();
            for update in updates(&announce, &withdraw, &context) {
                self.send_update(update);
            }
        }
        self.report.prefixes_pending = (desired.len() - advertisable.len()) as u64;
        if complete {
            self.advertised =
                if advertisable.len() == desired.len() { desired } else { Arc::new(advertisable) };
            self.more_to_send = false;
            self.send_end_of_rib();
        } else {
            let mut advertised = (*self.advertised).clone();
            for prefix in &withdraw {
                advertised.remove(prefix);
            }
            advertised.extend(announce);
            self.advertised = Arc::new(advertised);
            self.more_to_send = true;
        }
    }

    fn publish_status(&mut self) {
        self.report.state = self.fsm.state();
        // Failures that never reached Established (refused, no answer, a bad OPEN) have their
        // reason on record and in the log too, once per failure.
        let failures = self.fsm.failures();
        if failures > self.seen_failures {
            self.report.failures_total += u64::from(failures - self.seen_failures);
            self.report.last_error = self.fsm.last_error().map(String::from);
            if !self.failure_logged {
                tracing::warn!(
                    peer = %self.endpoint.address,
                    failures,
                    error = self.report.last_error.as_deref().unwrap_or_default(),
                    "BGP connection attempt failed; retrying with backoff"
                );
            }
        }
        self.seen_failures = failures;
        self.failure_logged = false;
        self.report.prefixes_sent = self.advertised.len() as u64;
        self.report.prefixes_received = self.received.count();
        self.report.queued_bytes = self.queued() as u64;
        if self.fsm.state() != State::Established {
            self.report.prefixes_pending = self.desired.borrow().routes.len() as u64;
            self.report.pending_reason = (self.report.prefixes_pending > 0)
                .then(|| format!("the session is {:?}, not Established", self.report.state));
        }
        self.status.send_if_modified(|status| {
            let changed = *status != self.report;
            if changed {
                *status = self.report.clone();
            }
            changed
        });
    }
}

/// Takes every whole message off the front of `buffer` as events for the FSM, leaving a partial
/// one for the next read. After a framing error nothing more can be read (the buffer is
/// cleared); after a treat-as-withdraw UPDATE (RFC 7606) the stream is in step (its header was
/// sound and the whole message was taken off) and what follows is read as usual.
pub fn take_messages(buffer: &mut BytesMut, wire: WireContext, events: &mut VecDeque<Event>) {
    loop {
        let before = buffer.len();
        match Message::decode_frame(buffer, wire) {
            Ok(Some(message)) => events.push_back(Event::Message(message)),
            Ok(None) => return,
            Err(error) if buffer.len() < before && treated_as_withdraw(&error) => {
                events.push_back(Event::DecodeError(error));
            }
            Err(error) => {
                buffer.clear();
                events.push_back(Event::DecodeError(error));
                return;
            }
        }
    }
}

/// Whether `error` leaves the session up (RFC 7606 treat-as-withdraw).
fn treated_as_withdraw(error: &DecodeError) -> bool {
    matches!(error, DecodeError::Update(error) if error.action() == UpdateErrorAction::TreatAsWithdraw)
}

/// The bytes of an OPEN at the front of `buffer`, if one has fully arrived.
fn whole_open(buffer: &[u8]) -> Option<Vec<u8>> {
    let header = buffer.get(..19)?;
    let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
    (header[18] == 1 && buffer.len() >= length).then(|| buffer[..length].to_vec())
}

async fn connect_progress(connecting: &mut Option<Connecting>) -> io::Result<TcpStream> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Reads into the buffer, or writes the queue's head, whichever the socket allows first (both
/// are cancel-safe: a lost race reads or writes nothing).
async fn io_progress(connection: &mut Option<Connection>) -> Io {
    let Some(Connection { reader, writer, buffer, outgoing, written, .. }) = connection else {
        return std::future::pending().await;
    };
    let head = outgoing.front().map(|head| head.slice(*written..));
    tokio::select! {
        result = reader.read_buf(buffer) => Io::Read(result),
        result = write_some(writer, head) => Io::Wrote(result),
    }
}

async fn write_some(writer: &mut OwnedWriteHalf, bytes: Option<Bytes>) -> io::Result<usize> {
    match bytes {
        Some(bytes) => writer.write(&bytes).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the BFD status changes; never without BFD, or once its session is gone.
async fn bfd_changed(bfd: &mut Option<watch::Receiver<BfdStatus>>) {
    let Some(receiver) = bfd else { return std::future::pending().await };
    if receiver.changed().await.is_err() {
        *bfd = None;
        std::future::pending().await
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Opens the TCP connection with the session's socket options set before connecting.
async fn connect(endpoint: PeerEndpoint) -> io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(endpoint.address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(password) = &endpoint.password {
        md5::set_md5_password(&socket, endpoint.address, password)?;
    }
    if let Some(ttl) = endpoint.ttl {
        match endpoint.address {
            SocketAddr::V4(_) => socket.set_ttl_v4(ttl)?,
            SocketAddr::V6(_) => socket.set_unicast_hops_v6(ttl)?,
        }
    }
    if let Some(source) = endpoint.source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(endpoint.address)).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from {} within {CONNECT_TIMEOUT:?}", endpoint.address),
        )
    })?
}
