//! Kubernetes label selectors (metav1.LabelSelector), validated once and then matched cheaply.

use std::collections::HashMap;

use metallb_proto::pb;

/// A validated label selector. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Validates a selector from the contract.
    pub fn from_pb(selector: &pb::LabelSelector) -> Result<Self, String> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .map(|(key, value)| Requirement::Equals(key.clone(), value.clone()))
            .collect();
        for expression in &selector.match_expressions {
            let key = expression.key.clone();
            if key.is_empty() {
                return Err("a match expression has an empty key".into());
            }
            let values = expression.values.clone();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "operator {} on {key:?} needs at least one value",
                        expression.operator
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "operator {} on {key:?} takes no values",
                        expression.operator
                    ));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(format!(
                        "unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                    ));
                }
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        self.requirements.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

/// True when `selectors` is empty or any of them matches: the "any one suffices, none means
/// all" rule MetalLB applies to node, namespace and service selectors.
pub fn any_matches(selectors: &[Selector], labels: &HashMap<String, String>) -> bool {
    selectors.is_empty() || selectors.iter().any(|selector| selector.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> pb::LabelSelectorRequirement {
        pb::LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn match_labels_and_expressions_all_apply() {
        let selector = Selector::from_pb(&pb::LabelSelector {
            match_labels: [("zone".to_string(), "a".to_string())].into(),
            match_expressions: vec![
                expr("tier", "In", &["web", "api"]),
                expr("canary", "DoesNotExist", &[]),
                expr("env", "NotIn", &["dev"]),
            ],
        })
        .unwrap();
        assert!(selector.matches(&labels(&[("zone", "a"), ("tier", "web")])));
        assert!(!selector.matches(&labels(&[("zone", "b"), ("tier", "web")])));
        assert!(!selector.matches(&labels(&[("zone", "a"), ("tier", "db")])));
        assert!(!selector.matches(&labels(&[("zone", "a"), ("tier", "web"), ("canary", "")])));
        assert!(!selector.matches(&labels(&[("zone", "a"), ("tier", "web"), ("env", "dev")])));
        assert!(Selector::default().matches(&labels(&[])));
    }

    #[test]
    fn invalid_selectors_are_rejected_with_the_reason() {
        let bad = |e| {
            Selector::from_pb(&pb::LabelSelector {
                match_expressions: vec![e],
                ..Default::default()
            })
        };
        assert!(bad(expr("k", "Equals", &["v"])).unwrap_err().contains("unknown operator"));
        assert!(bad(expr("k", "In", &[])).unwrap_err().contains("at least one value"));
        assert!(bad(expr("k", "Exists", &["v"])).unwrap_err().contains("takes no values"));
        assert!(bad(expr("", "Exists", &[])).unwrap_err().contains("empty key"));
    }

    #[test]
    fn no_selectors_means_everything() {
        assert!(any_matches(&[], &labels(&[])));
        let zone_a = Selector::from_pb(&pb::LabelSelector {
            match_labels: [("zone".to_string(), "a".to_string())].into(),
            ..Default::default()
        })
        .unwrap();
        assert!(!any_matches(std::slice::from_ref(&zone_a), &labels(&[])));
    }
}
