//! Kubernetes label selectors as both formats write them, into the contract's.

use std::collections::HashMap;

use metallb_proto::pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `metav1.LabelSelector` in camelCase (the resources).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact label values.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub match_labels: HashMap<String, String>,
    /// Requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// `metav1.LabelSelector` in kebab-case (the ConfigMap's node-selectors).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KebabLabelSelector {
    /// Exact label values.
    #[serde(default)]
    pub match_labels: HashMap<String, String>,
    /// Requirements.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

/// One requirement.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// In, NotIn, Exists, DoesNotExist.
    pub operator: String,
    /// Values for In and NotIn.
    #[serde(default)]
    pub values: Vec<String>,
}

fn to_pb(
    match_labels: &HashMap<String, String>,
    match_expressions: &[Requirement],
) -> pb::LabelSelector {
    pb::LabelSelector {
        match_labels: match_labels.clone(),
        match_expressions: match_expressions
            .iter()
            .map(|r| pb::LabelSelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: r.values.clone(),
            })
            .collect(),
    }
}

impl From<&LabelSelector> for pb::LabelSelector {
    fn from(selector: &LabelSelector) -> Self {
        to_pb(&selector.match_labels, &selector.match_expressions)
    }
}

impl From<&KebabLabelSelector> for pb::LabelSelector {
    fn from(selector: &KebabLabelSelector) -> Self {
        to_pb(&selector.match_labels, &selector.match_expressions)
    }
}
