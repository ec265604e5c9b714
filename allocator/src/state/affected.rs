//! What changes since the last publication touched, so that a publication recomputes only the
//! views those changes can alter: a Service change costs the nodes that announce (or will
//! announce) that Service, not every node of the cluster. Kept by the state itself at the
//! points where leases, Services, nodes and the configuration change, so no caller can forget
//! to say what it changed; anything not narrowed down here counts as everything.

use std::collections::BTreeSet;

use crate::service_spec::ServiceKey;

/// The part of the world a set of changes may have altered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affected {
    /// Every view may have changed (a new configuration, the first sync, layer 2 owners).
    pub everything: bool,
    /// Nodes whose own object changed (labels, exclusion, conditions).
    pub nodes: BTreeSet<String>,
    /// Services whose lease or specification changed.
    pub services: BTreeSet<ServiceKey>,
}

impl Affected {
    /// Every view.
    pub fn everything() -> Self {
        Self { everything: true, ..Self::default() }
    }

    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        !self.everything && self.nodes.is_empty() && self.services.is_empty()
    }

    /// Adds what `other` touched.
    pub fn merge(&mut self, other: Affected) {
        self.everything |= other.everything;
        if self.everything {
            // The sets no longer narrow anything.
            self.nodes.clear();
            self.services.clear();
        } else {
            self.nodes.extend(other.nodes);
            self.services.extend(other.services);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_absorbs_the_narrower_sets() {
        let mut affected = Affected::default();
        assert!(affected.is_empty());
        affected.merge(Affected { nodes: ["n1".to_string()].into(), ..Affected::default() });
        assert!(!affected.is_empty() && !affected.everything);
        affected.merge(Affected::everything());
        assert_eq!(affected, Affected::everything());
        affected.merge(Affected { nodes: ["n2".to_string()].into(), ..Affected::default() });
        assert_eq!(affected, Affected::everything());
    }
}
