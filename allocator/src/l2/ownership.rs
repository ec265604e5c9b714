//! The owner of every layer 2 IP, kept over time. The rules, in the order they apply:
//!
//! - an IP keeps its owner while the owner stays a candidate (see `eligibility`) and alive: it
//!   has a stream, or lost it less than `reassign_after` ago (a reconnecting announcer keeps
//!   its IPs; every move breaks clients' ARP caches, so moves happen only when they must);
//! - an IP taken from an owner that may still be answering (it is alive but no longer a
//!   candidate, or the IP left layer 2) stays with nobody for `reassign_after`: by then the
//!   former owner has either read the withdrawal or been fenced by the lack of heartbeats;
//! - an IP whose owner has been without a stream for `reassign_after` is answered by nobody
//!   already (the owner fenced itself), so it goes to another node at once;
//! - a new owner is a candidate with a stream, picked by rendezvous hashing;
//! - for `reassign_after` after the allocator starts, nobody owns anything: announcers may still
//!   answer on a previous instance's word until then.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use metallb_proto::pb;

use super::{Candidates, fencing::L2Fencing, rendezvous};
use crate::service_spec::ServiceKey;

/// The node answering for one IP.
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    /// Node name.
    pub node: String,
    /// Interfaces to answer on (empty: every interface whose addresses cover the IP).
    pub interfaces: BTreeSet<String>,
    /// Services holding the IP.
    pub services: BTreeSet<ServiceKey>,
}

/// A node's assignment streams as liveness sees them.
#[derive(Clone, Debug, Default)]
struct Link {
    open_streams: usize,
    /// When its last stream closed; `None` while one is open.
    lost_at: Option<Instant>,
}

/// Owners, quarantined IPs and node liveness.
#[derive(Debug)]
pub struct L2Owners {
    reassign_after: Duration,
    started: Instant,
    owners: BTreeMap<IpAddr, Owner>,
    /// IPs taken from a node that may still answer, with when another node may have them.
    quarantined: BTreeMap<IpAddr, Instant>,
    links: BTreeMap<String, Link>,
}

impl Default for L2Owners {
    fn default() -> Self {
        Self::new(L2Fencing::default(), Instant::now())
    }
}

impl L2Owners {
    /// No owners, started at `now`.
    pub fn new(fencing: L2Fencing, now: Instant) -> Self {
        Self {
            reassign_after: fencing.reassign_after(),
            started: now,
            owners: BTreeMap::new(),
            quarantined: BTreeMap::new(),
            links: BTreeMap::new(),
        }
    }

    /// Afresh as of `now`: no owners, the start-up wait again, the streams still counted.
    pub fn restarted(&self, now: Instant) -> Self {
        Self {
            reassign_after: self.reassign_after,
            started: now,
            owners: BTreeMap::new(),
            quarantined: BTreeMap::new(),
            links: self.links.clone(),
        }
    }

    /// A stream of `node` opened.
    pub fn stream_opened(&mut self, node: &str) {
        let link = self.links.entry(node.to_string()).or_default();
        link.open_streams += 1;
        link.lost_at = None;
    }

    /// A stream of `node` closed at `now`.
    pub fn stream_closed(&mut self, node: &str, now: Instant) {
        let Some(link) = self.links.get_mut(node) else { return };
        link.open_streams = link.open_streams.saturating_sub(1);
        if link.open_streams == 0 {
            link.lost_at = Some(now);
        }
    }

    /// Recomputes the owners from `eligible` at `now`; returns whether any owner changed.
    pub fn refresh(&mut self, eligible: &BTreeMap<IpAddr, Candidates>, now: Instant) -> bool {
        self.quarantined.retain(|_, until| *until > now);
        let mut owners = BTreeMap::new();
        let previous = std::mem::take(&mut self.owners);
        for (ip, owner) in &previous {
            let stays = eligible.get(ip).and_then(|candidates| {
                let interfaces = candidates.nodes.get(&owner.node)?;
                self.alive(&owner.node, now).then(|| Owner {
                    node: owner.node.clone(),
                    interfaces: interfaces.clone(),
                    services: candidates.services.clone(),
                })
            });
            match stays {
                Some(kept) => {
                    owners.insert(*ip, kept);
                }
                None if !self.fenced(&owner.node, now) => {
                    self.quarantined.insert(*ip, now + self.reassign_after);
                }
                None => {}
            }
        }
        if now >= self.started + self.reassign_after {
            for (ip, candidates) in eligible {
                if owners.contains_key(ip) || self.quarantined.contains_key(ip) {
                    continue;
                }
                let connected =
                    candidates.nodes.keys().map(String::as_str).filter(|node| {
                        self.links.get(*node).is_some_and(|link| link.open_streams > 0)
                    });
                if let Some(node) = rendezvous::pick(*ip, connected) {
                    let owner = Owner {
                        node: node.to_string(),
                        interfaces: candidates.nodes[node].clone(),
                        services: candidates.services.clone(),
                    };
                    owners.insert(*ip, owner);
                }
            }
        }
        // Nodes gone for good and owning nothing need no memory.
        self.links.retain(|node, link| {
            link.open_streams > 0
                || link.lost_at.is_some_and(|lost| now < lost + self.reassign_after)
                || owners.values().any(|owner| &owner.node == node)
        });
        let changed = owners != previous;
        self.owners = owners;
        changed
    }

    /// The next moment `refresh` may decide differently with nothing else changing.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let settled = self.started + self.reassign_after;
        let lost_owners = self.owners.values().filter_map(|owner| {
            self.links.get(&owner.node)?.lost_at.map(|lost| lost + self.reassign_after)
        });
        let startup = (now < settled).then_some(settled);
        self.quarantined.values().copied().chain(lost_owners).chain(startup).min()
    }

    /// What `node` answers for.
    pub fn announcements_of(&self, node: &str) -> Vec<pb::L2Announcement> {
        self.owners
            .iter()
            .filter(|(_, owner)| owner.node == node)
            .map(|(ip, owner)| pb::L2Announcement {
                ip: ip.to_string(),
                interfaces: owner.interfaces.iter().cloned().collect(),
                services: owner.services.iter().map(ServiceKey::to_pb).collect(),
            })
            .collect()
    }

    /// Every owner.
    pub fn owners(&self) -> &BTreeMap<IpAddr, Owner> {
        &self.owners
    }

    /// Whether `node` counts as alive: a stream is open, or it closed less than
    /// `reassign_after` ago.
    fn alive(&self, node: &str, now: Instant) -> bool {
        self.links.get(node).is_some_and(|link| match link.lost_at {
            None => link.open_streams > 0,
            Some(lost) => now < lost + self.reassign_after,
        })
    }

    /// Whether `node` has certainly stopped answering: no stream for `reassign_after`, or
    /// never one since this allocator started (and the start-up wait is over).
    fn fenced(&self, node: &str, now: Instant) -> bool {
        match self.links.get(node) {
            None => now >= self.started + self.reassign_after,
            Some(link) => {
                link.open_streams == 0
                    && link.lost_at.is_some_and(|lost| now >= lost + self.reassign_after)
            }
        }
    }
}

#[cfg(test)]
mod tests;
