//! The layer 2 speaker: an actor that is handed the full set of IPs this node answers for,
//! keeps an answering socket on every interface some owned IP belongs on (and none elsewhere),
//! rescans the interfaces every second so that one that comes up or gets its address later is
//! used, announces each IP as it starts answering for it, and, when asked to, re-announces
//! every IP periodically: switches forget a MAC that has been silent for their FDB aging time
//! and then flood the IP's traffic to every port (MetalLB issue #2910).
//!
//! The owned set lives in a watch channel that every receive task reads at each frame, so a
//! new set, an empty one above all (a fenced node), is in force for the next frame without
//! waiting for the actor.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
    time::{Instant, Interval, MissedTickBehavior},
};

use super::{
    announcements::{self, Bursts, Pair},
    answer, frames,
    interfaces::{self, Interface},
    packet_socket::{EtherType, solicited_node_mac},
    responder::Responder,
    retry::Retry,
};
use crate::metrics::L2Metrics;

/// IP -> interfaces it may be answered on (empty set: every interface whose addresses cover
/// the IP).
pub type OwnedIps = BTreeMap<IpAddr, BTreeSet<String>>;

/// How often the interfaces are listed again.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// How the speaker runs.
#[derive(Clone, Debug, Default)]
pub struct L2Options {
    /// Re-announce every owned IP at this interval (off by default): for segments whose
    /// switches age out a silent MAC sooner than hosts re-ask.
    pub refresh_interval: Option<Duration>,
}

/// The running speaker.
pub struct L2Speaker {
    owned: watch::Sender<Arc<OwnedIps>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl L2Speaker {
    /// Starts the speaker, answering for nothing yet. Must be called within a Tokio runtime.
    pub fn start(options: L2Options, metrics: L2Metrics) -> Self {
        let (owned, watched) = watch::channel(Arc::new(OwnedIps::new()));
        let (stop, stopped) = oneshot::channel();
        let actor = Actor {
            options,
            metrics,
            owned: watched,
            interfaces: Vec::new(),
            scan_retry: Retry::default(),
            responders: BTreeMap::new(),
            open_retries: BTreeMap::new(),
            answered: BTreeSet::new(),
            bursts: Bursts::default(),
        };
        let task = tokio::spawn(actor.run(stopped));
        Self { owned, stop, task }
    }

    /// What this node answers for from now on. An empty map means answer nothing (the node is
    /// fenced or owns nothing): this takes effect immediately, before any further frame is
    /// answered.
    pub fn set_owned(&self, owned: OwnedIps) {
        self.owned.send_if_modified(|current| {
            let changed = **current != owned;
            if changed {
                *current = Arc::new(owned);
            }
            changed
        });
    }

    /// Stops answering, closes every socket, and returns once they are closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The family's frames an IP is asked about in.
fn ether_type(ip: IpAddr) -> EtherType {
    match ip {
        IpAddr::V4(_) => EtherType::Arp,
        IpAddr::V6(_) => EtherType::Ipv6,
    }
}

struct Actor {
    options: L2Options,
    metrics: L2Metrics,
    owned: watch::Receiver<Arc<OwnedIps>>,
    /// The last successful scan.
    interfaces: Vec<Interface>,
    scan_retry: Retry,
    /// By interface index and the frames read.
    responders: BTreeMap<(u32, EtherType), Responder>,
    /// Sockets that failed to open, by the same key.
    open_retries: BTreeMap<(u32, EtherType), Retry>,
    /// The (IP, interface) pairs answered on an open socket.
    answered: BTreeSet<Pair>,
    bursts: Bursts,
}

impl Actor {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let mut scan = tokio::time::interval(SCAN_INTERVAL);
        scan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refresh = self.options.refresh_interval.map(|period| {
            let mut refresh = tokio::time::interval_at(Instant::now() + period, period);
            refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
            refresh
        });
        loop {
            let burst = self.bursts.next_deadline();
            tokio::select! {
                // A dropped speaker stops too.
                _ = &mut stopped => break,
                changed = self.owned.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.scan_and_reconcile().await;
                }
                _ = scan.tick() => self.scan_and_reconcile().await,
                _ = sleep_until(burst) => self.send_bursts().await,
                _ = tick(&mut refresh) => {
                    for pair in self.answered.clone() {
                        self.announce(pair).await;
                    }
                }
            }
        }
        for (_, responder) in std::mem::take(&mut self.responders) {
            responder.close().await;
        }
    }

    /// Lists the interfaces again (keeping the last list if that fails) and reconciles.
    async fn scan_and_reconcile(&mut self) {
        let now = Instant::now().into_std();
        if self.scan_retry.ready(now) {
            match tokio::task::spawn_blocking(interfaces::scan).await {
                Ok(Ok(interfaces)) => {
                    self.interfaces = interfaces;
                    self.scan_retry.succeeded();
                }
                Ok(Err(err)) => {
                    let delay = self.scan_retry.failed(now);
                    tracing::warn!(%err, ?delay, "cannot list the node's interfaces");
                }
                Err(err) => tracing::warn!(%err, "listing the node's interfaces failed"),
            }
        }
        self.reconcile(now);
    }

    /// Opens the sockets the owned IPs need and closes the others, joins the solicited-node
    /// groups, and starts and ends bursts as (IP, interface) pairs come and go.
    fn reconcile(&mut self, now: std::time::Instant) {
        let owned = self.owned.borrow().clone();
        let pairs = announcements::pairs(&owned, &self.interfaces);
        let by_index: BTreeMap<u32, &Interface> =
            self.interfaces.iter().map(|interface| (interface.index, interface)).collect();
        let wanted: BTreeMap<(u32, EtherType), &Interface> =
            pairs.iter().map(|(ip, index)| ((*index, ether_type(*ip)), by_index[index])).collect();
        self.responders.retain(|key, responder| {
            let keep = wanted.contains_key(key);
            if !keep {
                let name = responder.interface().name;
                tracing::info!(interface = name, frames = ?key.1, "stopped answering");
            }
            keep
        });
        self.open_retries.retain(|key, _| wanted.contains_key(key));
        for (key, interface) in &wanted {
            if let Some(responder) = self.responders.get(key) {
                responder.update(interface);
                continue;
            }
            let retry = self.open_retries.entry(*key).or_default();
            if !retry.ready(now) {
                continue;
            }
            match Responder::open(interface, key.1, self.owned.clone(), self.metrics.clone()) {
                Ok(responder) => {
                    tracing::info!(interface = interface.name, frames = ?key.1, "answering");
                    self.open_retries.remove(key);
                    self.responders.insert(*key, responder);
                }
                Err(err) => {
                    let delay = retry.failed(now);
                    tracing::warn!(%err, ?delay, "cannot answer on an interface");
                }
            }
        }
        for ((index, frames), responder) in &mut self.responders {
            if *frames == EtherType::Ipv6 {
                let groups = pairs
                    .iter()
                    .filter(|(_, at)| at == index)
                    .filter_map(|(ip, _)| match ip {
                        IpAddr::V6(ip) => Some(solicited_node_mac(*ip)),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                responder.set_groups(groups, now);
            }
        }
        let answered: BTreeSet<Pair> = pairs
            .into_iter()
            .filter(|(ip, index)| self.responders.contains_key(&(*index, ether_type(*ip))))
            .collect();
        self.bursts.update(&self.answered, &answered, now);
        self.answered = answered;
    }

    async fn send_bursts(&mut self) {
        for pair in self.bursts.due(Instant::now().into_std()) {
            self.announce(pair).await;
        }
    }

    /// Sends one gratuitous ARP or unsolicited neighbor advertisement for `ip` out of
    /// interface `index`, if the IP is still answered there.
    async fn announce(&self, (ip, index): Pair) {
        let Some(responder) = self.responders.get(&(index, ether_type(ip))) else { return };
        let interface = responder.interface();
        // The owned set as it is now, not as the last reconcile saw it.
        if !answer::owns(&self.owned.borrow(), &interface, ip) {
            return;
        }
        let Some(mac) = interface.mac else { return };
        let frame = match ip {
            IpAddr::V4(ip) => frames::gratuitous_arp(mac, ip),
            IpAddr::V6(ip) => frames::neighbor_advertisement(mac, ip, None),
        };
        match responder.send(&frame).await {
            Ok(()) => {
                self.metrics.gratuitous_sent(ip);
                tracing::debug!(%ip, interface = interface.name, "announced");
            }
            Err(err) => tracing::warn!(%err, %ip, "announcement not sent"),
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The next tick of `interval`, or never without one.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
