//! The node's BFD sessions: one per peer address and hop kind, shared by every BGP session to
//! that address (BFD watches the path, not a BGP session), started on the first `watch` and
//! stopped with an AdminDown when the last watcher goes. One listening socket per family and
//! port receives every session's packets; a packet is routed by the discriminator it names, or
//! while the peer does not know ours yet, by its source address (RFC 5880 section 6.3).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, Weak},
    time::Instant,
};

use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::{
    packet::ControlPacket,
    peer::{self, Arrival, BfdStatus, PeerLink},
    session::{BfdConfig, BfdSession},
    socket::{self, Hops, Ports},
};

/// Packets waiting for one session beyond which more are dropped (a few seconds' worth at the
/// fastest rates a profile allows).
const INBOX: usize = 64;
/// How long stopping sessions may take to say AdminDown.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A peer to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdPeer {
    /// Its address.
    pub address: IpAddr,
    /// Our address towards it, when configured.
    pub source: Option<IpAddr>,
    /// Directly connected or multihop.
    pub hops: Hops,
    /// Intervals, multiplier and mode.
    pub config: BfdConfig,
    /// Lowest TTL accepted on a multihop session (single hop always requires 255).
    pub minimum_ttl: u8,
}

/// The node's BFD sessions.
#[derive(Clone)]
pub struct BfdRegistry {
    inner: Arc<Mutex<Inner>>,
}

type Key = (IpAddr, Hops);

struct Inner {
    single_hop: Ports,
    multihop: Ports,
    peers: HashMap<Key, Entry>,
    by_discriminator: HashMap<u32, Key>,
    /// Listening sockets by (IPv6, hops), or why one cannot be opened.
    listeners: HashMap<(bool, Hops), Result<(), String>>,
    /// Tasks of sessions told to stop, still saying AdminDown.
    stopping: Vec<JoinHandle<()>>,
}

struct Entry {
    discriminator: u32,
    watchers: usize,
    inbox: mpsc::Sender<Arrival>,
    status: watch::Receiver<BfdStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// One watcher's view of a session; dropping the last one stops the session.
pub struct BfdWatch {
    registry: Weak<Mutex<Inner>>,
    key: Key,
    status: watch::Receiver<BfdStatus>,
}

impl BfdWatch {
    /// A receiver that wakes on every state change (counters change without waking it).
    pub fn status(&self) -> watch::Receiver<BfdStatus> {
        self.status.clone()
    }

    /// The status now, counters included.
    pub fn current(&self) -> BfdStatus {
        self.status.borrow().clone()
    }
}

impl Drop for BfdWatch {
    fn drop(&mut self) {
        let Some(inner) = self.registry.upgrade() else { return };
        let mut inner = inner.lock().expect("BFD registry lock poisoned");
        let Some(entry) = inner.peers.get_mut(&self.key) else { return };
        entry.watchers -= 1;
        if entry.watchers == 0 {
            let entry = inner.peers.remove(&self.key).expect("present above");
            inner.by_discriminator.remove(&entry.discriminator);
            if let Some(stop) = entry.stop {
                let _ = stop.send(());
            }
            inner.stopping.retain(|task| !task.is_finished());
            inner.stopping.push(entry.task);
        }
    }
}

impl Default for BfdRegistry {
    fn default() -> Self {
        Self::with_ports(Hops::Single.standard_ports(), Hops::Multi.standard_ports())
    }
}

impl BfdRegistry {
    /// A registry on ports other than the standard ones (two registries on one host, in
    /// tests).
    pub fn with_ports(single_hop: Ports, multihop: Ports) -> Self {
        let inner = Inner {
            single_hop,
            multihop,
            peers: HashMap::new(),
            by_discriminator: HashMap::new(),
            listeners: HashMap::new(),
            stopping: Vec::new(),
        };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    /// Watches `peer`, starting its session unless another watcher has already. A session
    /// shared with an earlier watcher keeps that watcher's settings.
    pub fn watch(&self, peer: &BfdPeer) -> BfdWatch {
        let mut inner = self.inner.lock().expect("BFD registry lock poisoned");
        let key = (canonical(peer.address), peer.hops);
        let listening = self.ensure_listener(&mut inner, peer.address.is_ipv6(), peer.hops);
        if let Some(entry) = inner.peers.get_mut(&key) {
            entry.watchers += 1;
            return BfdWatch {
                registry: Arc::downgrade(&self.inner),
                key,
                status: entry.status.clone(),
            };
        }
        let discriminator = loop {
            let candidate: u32 = rand::random();
            if candidate != 0 && !inner.by_discriminator.contains_key(&candidate) {
                break candidate;
            }
        };
        let receive_problem = listening.err();
        let initial = BfdStatus { problem: receive_problem.clone(), ..BfdStatus::default() };
        let (status_sender, status) = watch::channel(initial);
        let (inbox, arrivals) = mpsc::channel(INBOX);
        let (stop, stopped) = oneshot::channel();
        let ports = match peer.hops {
            Hops::Single => inner.single_hop,
            Hops::Multi => inner.multihop,
        };
        let link = PeerLink {
            peer: SocketAddr::new(peer.address, ports.peer),
            source: peer.source,
            hops: peer.hops,
            minimum_ttl: match peer.hops {
                Hops::Single => socket::SENT_TTL as u8,
                Hops::Multi => peer.minimum_ttl,
            },
            receive_problem,
        };
        let session = BfdSession::new(peer.config.clone(), discriminator, Instant::now());
        let task = tokio::spawn(peer::run(session, link, arrivals, status_sender, stopped));
        inner.by_discriminator.insert(discriminator, key);
        let entry = Entry {
            discriminator,
            watchers: 1,
            inbox,
            status: status.clone(),
            stop: Some(stop),
            task,
        };
        inner.peers.insert(key, entry);
        BfdWatch { registry: Arc::downgrade(&self.inner), key, status }
    }

    /// Waits (at most `STOP_TIMEOUT`) until the sessions whose watchers are gone have told
    /// their peers: before a process exits, so that peers read a stop, not a failure.
    pub async fn stopped(&self) {
        let stopping =
            std::mem::take(&mut self.inner.lock().expect("BFD registry lock poisoned").stopping);
        let all = join_all(stopping);
        let _ = tokio::time::timeout(STOP_TIMEOUT, all).await;
    }

    /// Opens the listening socket for a family and hop kind unless it is open.
    fn ensure_listener(&self, inner: &mut Inner, ipv6: bool, hops: Hops) -> Result<(), String> {
        if let Some(Ok(())) = inner.listeners.get(&(ipv6, hops)) {
            return Ok(());
        }
        let port = match hops {
            Hops::Single => inner.single_hop.listen,
            Hops::Multi => inner.multihop.listen,
        };
        let opened = socket::listen(ipv6, port)
            .map(|socket| {
                tokio::spawn(route_arrivals(socket, hops, Arc::downgrade(&self.inner)));
            })
            .map_err(|err| format!("cannot listen for BFD on UDP port {port}: {err}"));
        if let Err(problem) = &opened {
            tracing::warn!(problem, "BFD sessions cannot receive");
        }
        inner.listeners.insert((ipv6, hops), opened.clone());
        opened
    }
}

/// Reads `socket` and hands each valid packet to its session, until the registry is gone.
async fn route_arrivals(socket: UdpSocket, hops: Hops, registry: Weak<Mutex<Inner>>) {
    let mut buffer = [0u8; 512];
    loop {
        let datagram = match socket::receive(&socket, &mut buffer).await {
            Ok(datagram) => datagram,
            Err(err) => {
                tracing::debug!(%err, "BFD receive error");
                continue;
            }
        };
        let Some(inner) = registry.upgrade() else { return };
        let packet = match ControlPacket::decode(&buffer[..datagram.len]) {
            Ok(packet) => packet,
            Err(err) => {
                tracing::debug!(from = %datagram.from, %err, "BFD packet discarded");
                continue;
            }
        };
        let inner = inner.lock().expect("BFD registry lock poisoned");
        let from = (canonical(datagram.from.ip()), hops);
        // A discriminator is honoured only from the session's own peer and port kind.
        let key = match packet.your_discriminator {
            0 => Some(from),
            ours => inner.by_discriminator.get(&ours).copied().filter(|key| *key == from),
        };
        let Some(entry) = key.and_then(|key| inner.peers.get(&key)) else { continue };
        // A full inbox drops the packet: the session is behind, and BFD tolerates loss.
        let _ = entry.inbox.try_send(Arrival { packet, ttl: datagram.ttl.unwrap_or(0) });
    }
}

/// Waits for every task in turn.
async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// An IPv4 address however it arrived (an IPv4-mapped IPv6 address is the IPv4 address).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
