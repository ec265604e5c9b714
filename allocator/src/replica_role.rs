//! This replica's role as the watcher last stated it, and whether that lets it decide layer 2
//! owners now. With several replicas, every one holds the same leases, but layer 2 ownership
//! also depends on which announcers stream to which replica: two replicas deciding would give
//! one IP to two nodes. So only one decides: the primary, and only while the watcher's word
//! lasts (`PRIMARY_LEASE`), since a primary cut off from the watcher, or frozen, may already
//! have been replaced. A standby refuses announcers' streams, so they all reach the primary.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use metallb_proto::PRIMARY_LEASE;

/// A role the watcher gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaRole {
    /// The only replica: it decides, however long the watcher is silent.
    Sole,
    /// The primary of several: it decides while the watcher's word lasts.
    Primary,
    /// A standby: it decides nothing and serves no announcer.
    Standby,
}

impl ReplicaRole {
    /// From the header's value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "sole" => Some(Self::Sole),
            "primary" => Some(Self::Primary),
            "standby" => Some(Self::Standby),
            _ => None,
        }
    }

    /// The header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sole => "sole",
            Self::Primary => "primary",
            Self::Standby => "standby",
        }
    }
}

/// What a newly stated role calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing.
    None,
    /// Became a standby: end every announcer stream.
    Demoted,
    /// Became the deciding replica: start layer 2 ownership afresh.
    Promoted,
}

#[derive(Debug, Default)]
struct Stated {
    role: Option<ReplicaRole>,
    at: Option<Instant>,
}

/// The role and when it was last stated.
#[derive(Debug)]
pub struct RoleLease {
    stated: Mutex<Stated>,
    lease: Duration,
}

impl Default for RoleLease {
    fn default() -> Self {
        Self::new(PRIMARY_LEASE)
    }
}

impl RoleLease {
    /// No role stated yet; a primary's word lasts `lease`.
    pub fn new(lease: Duration) -> Self {
        Self { stated: Mutex::default(), lease }
    }

    /// The watcher stated `role` at `now`.
    pub fn state(&self, role: ReplicaRole, now: Instant) -> Transition {
        let mut stated = self.stated.lock().expect("role lock poisoned");
        let before = stated.role;
        stated.role = Some(role);
        stated.at = Some(now);
        match (before, role) {
            (Some(ReplicaRole::Standby), ReplicaRole::Standby) => Transition::None,
            (_, ReplicaRole::Standby) => Transition::Demoted,
            (Some(ReplicaRole::Standby), _) => Transition::Promoted,
            _ => Transition::None,
        }
    }

    /// Whether announcers may stream from this replica.
    pub fn serves_announcers(&self) -> bool {
        self.stated.lock().expect("role lock poisoned").role != Some(ReplicaRole::Standby)
    }

    /// Whether this replica's layer 2 decisions hold at `now`: it is the sole replica (or was
    /// never told otherwise, as with one replica and an older watcher), or the primary with a
    /// word younger than the lease.
    pub fn decides(&self, now: Instant) -> bool {
        let stated = self.stated.lock().expect("role lock poisoned");
        match stated.role {
            None | Some(ReplicaRole::Sole) => true,
            Some(ReplicaRole::Primary) => stated.at.is_some_and(|at| now < at + self.lease),
            Some(ReplicaRole::Standby) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sole_or_recently_confirmed_primary_decides() {
        let lease = RoleLease::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(lease.decides(t0), "one replica and a watcher that says nothing");
        assert_eq!(lease.state(ReplicaRole::Primary, t0), Transition::None);
        assert!(lease.decides(t0 + Duration::from_millis(4999)));
        assert!(!lease.decides(t0 + Duration::from_secs(5)), "the word ran out");
        assert_eq!(lease.state(ReplicaRole::Standby, t0), Transition::Demoted);
        assert!(!lease.decides(t0) && !lease.serves_announcers());
        assert_eq!(lease.state(ReplicaRole::Standby, t0), Transition::None);
        assert_eq!(lease.state(ReplicaRole::Sole, t0), Transition::Promoted);
        assert!(lease.decides(t0 + Duration::from_secs(3600)) && lease.serves_announcers());
        assert_eq!(ReplicaRole::parse("primary"), Some(ReplicaRole::Primary));
        assert_eq!(ReplicaRole::parse("leader"), None);
    }
}
