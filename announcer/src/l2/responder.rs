//! One interface's answering for one family: a packet socket for ARP or for IPv6, the task that
//! reads it and answers what asks for an owned IP, and the solicited-node groups it has joined.
//! The task reads the owned set and the interface at each frame, from watch channels, so a
//! change is in force for the very next frame.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use metallb_process::Backoff;
use tokio::{sync::watch, task::JoinHandle};

use super::{
    OwnedIps, answer,
    frames::Mac,
    interfaces::Interface,
    packet_socket::{self, EtherType, PacketSocket},
    retry::Retry,
};
use crate::metrics::L2Metrics;

/// Room for a whole standard Ethernet frame and one byte more: a read that fills the buffer
/// was cut, and so was larger than any request (ARP and solicitations are under 100 bytes).
const RECEIVE_BUFFER: usize = 14 + 1500 + 1;
/// How long one frame may wait for room in the socket's send queue before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_millis(250);
/// Delays after failed reads, which repeat while an interface is going away.
const RECEIVE_RETRY_FIRST: Duration = Duration::from_millis(100);
const RECEIVE_RETRY_LONGEST: Duration = Duration::from_secs(5);

/// An open socket on one interface and the task answering on it; dropping it stops the task
/// and (once the task has let go) closes the socket.
pub struct Responder {
    socket: Arc<PacketSocket>,
    interface: watch::Sender<Interface>,
    groups: BTreeSet<Mac>,
    group_retry: Retry,
    task: JoinHandle<()>,
}

impl Responder {
    /// Opens the socket for `ether_type` on `interface` and starts answering.
    pub fn open(
        interface: &Interface,
        ether_type: EtherType,
        owned: watch::Receiver<Arc<OwnedIps>>,
        metrics: L2Metrics,
    ) -> Result<Self, packet_socket::Error> {
        let socket = Arc::new(PacketSocket::open(&interface.name, interface.index, ether_type)?);
        let (sender, receiver) = watch::channel(interface.clone());
        let task = tokio::spawn(answer_requests(socket.clone(), receiver, owned, metrics));
        Ok(Self {
            socket,
            interface: sender,
            groups: BTreeSet::new(),
            group_retry: Retry::default(),
            task,
        })
    }

    /// The interface as last scanned.
    pub fn interface(&self) -> Interface {
        self.interface.borrow().clone()
    }

    /// Records a new scan of the interface (addresses, MAC, state).
    pub fn update(&self, interface: &Interface) {
        self.interface.send_if_modified(|current| {
            let changed = current != interface;
            if changed {
                *current = interface.clone();
            }
            changed
        });
    }

    /// Sends `frame`, waiting at most `SEND_TIMEOUT` for room.
    pub async fn send(&self, frame: &[u8]) -> Result<(), packet_socket::Error> {
        send(&self.socket, frame).await
    }

    /// Joins exactly the multicast `groups` (IPv6: the solicited-node groups of the IPs
    /// answered here), retrying failed joins with backoff.
    pub fn set_groups(&mut self, groups: BTreeSet<Mac>, now: Instant) {
        for group in self.groups.difference(&groups) {
            if let Err(err) = self.socket.leave_multicast(*group) {
                tracing::debug!(%err, "leaving a solicited-node group failed");
            }
        }
        self.groups.retain(|group| groups.contains(group));
        if !self.group_retry.ready(now) {
            return;
        }
        let missing: Vec<Mac> = groups.difference(&self.groups).copied().collect();
        for group in missing {
            match self.socket.join_multicast(group) {
                Ok(()) => {
                    self.groups.insert(group);
                }
                Err(err) => {
                    let delay = self.group_retry.failed(now);
                    tracing::warn!(
                        %err,
                        ?delay,
                        "cannot join a solicited-node group: on NICs that filter multicast, \
                         neighbor solicitations may not reach this node"
                    );
                    return;
                }
            }
        }
        self.group_retry.succeeded();
    }

    /// Stops the task and waits until it has let go of the socket.
    pub async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads frames and answers those that ask for an owned IP, until aborted.
async fn answer_requests(
    socket: Arc<PacketSocket>,
    interface: watch::Receiver<Interface>,
    owned: watch::Receiver<Arc<OwnedIps>>,
    metrics: L2Metrics,
) {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut backoff = Backoff::new(RECEIVE_RETRY_FIRST, RECEIVE_RETRY_LONGEST);
    loop {
        let length = match socket.recv(&mut buffer).await {
            Ok(length) => {
                backoff.reset();
                length
            }
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(%err, ?delay, "layer 2 receive failed");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        if length == buffer.len() {
            continue;
        }
        // Both borrows end before the await below: a change waits for no frame to be sent.
        let answer = {
            let interface = interface.borrow();
            let owned = owned.borrow();
            answer::answer(&buffer[..length], &interface, &owned)
        };
        let Some(answer) = answer else { continue };
        metrics.request_received(answer.ip);
        match send(&socket, &answer.frame).await {
            Ok(()) => {
                metrics.response_sent(answer.ip);
                tracing::debug!(ip = %answer.ip, interface = socket.interface(), "answered");
            }
            Err(err) => tracing::warn!(%err, ip = %answer.ip, "layer 2 answer not sent"),
        }
    }
}

/// Sends `frame` on `socket`, waiting at most `SEND_TIMEOUT` for room in its queue.
async fn send(socket: &PacketSocket, frame: &[u8]) -> Result<(), packet_socket::Error> {
    tokio::time::timeout(SEND_TIMEOUT, socket.send(frame)).await.unwrap_or_else(|_| {
        Err(packet_socket::Error {
            interface: socket.interface().to_string(),
            call: "send",
            source: std::io::ErrorKind::TimedOut.into(),
        })
    })
}
