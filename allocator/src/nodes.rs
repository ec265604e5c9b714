//! Nodes as announcement sees them: their labels, and whether they may announce at all.

use std::collections::HashMap;

use metallb_proto::pb;

/// The label that keeps a node out of external load-balancing (a Kubernetes well-known label).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A node, reduced to what decides its announcements.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Labels, for peers' and advertisements' node selectors.
    pub labels: HashMap<String, String>,
    /// Whether the node must announce nothing: excluded by label or with NetworkUnavailable.
    pub excluded: bool,
    /// Whether the kubelet is posting Ready (a node that reports no Ready condition, as in
    /// clusters without kubelets, counts as ready). Layer 2 needs it: a NotReady or Unknown
    /// node may be gone, and a layer 2 IP must be answered by a node that is there.
    pub ready: bool,
}

impl NodeInfo {
    /// From the contract; the name is required.
    pub fn from_pb(node: &pb::Node) -> Result<Self, String> {
        if node.name.trim().is_empty() {
            return Err("the node name is empty".into());
        }
        crate::limits::name_length("node name", &node.name, crate::limits::MAX_OBJECT_NAME)?;
        let network_unavailable = node.conditions.iter().any(|condition| {
            condition.r#type == "NetworkUnavailable" && condition.status == "True"
        });
        let not_ready = node.conditions.iter().any(|condition| {
            condition.r#type == "Ready" && matches!(condition.status.as_str(), "False" | "Unknown")
        });
        Ok(Self {
            ready: !not_ready,
            name: node.name.clone(),
            labels: node.labels.clone(),
            excluded: network_unavailable || node.labels.contains_key(EXCLUDE_LABEL),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: &[(&str, &str)], conditions: &[(&str, &str)]) -> pb::Node {
        pb::Node {
            name: "n1".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            conditions: conditions
                .iter()
                .map(|(t, s)| pb::NodeCondition {
                    r#type: t.to_string(),
                    status: s.to_string(),
                    reason: String::new(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn exclusion_by_label_or_network_unavailable() {
        assert!(!NodeInfo::from_pb(&node(&[], &[("Ready", "True")])).unwrap().excluded);
        assert!(NodeInfo::from_pb(&node(&[(EXCLUDE_LABEL, "")], &[])).unwrap().excluded);
        assert!(NodeInfo::from_pb(&node(&[], &[("NetworkUnavailable", "True")])).unwrap().excluded);
        assert!(
            !NodeInfo::from_pb(&node(&[], &[("NetworkUnavailable", "False")])).unwrap().excluded
        );
        assert!(NodeInfo::from_pb(&pb::Node::default()).is_err());
    }

    #[test]
    fn ready_unless_the_kubelet_says_otherwise() {
        assert!(NodeInfo::from_pb(&node(&[], &[])).unwrap().ready);
        assert!(NodeInfo::from_pb(&node(&[], &[("Ready", "True")])).unwrap().ready);
        assert!(!NodeInfo::from_pb(&node(&[], &[("Ready", "False")])).unwrap().ready);
        assert!(!NodeInfo::from_pb(&node(&[], &[("Ready", "Unknown")])).unwrap().ready);
    }
}
