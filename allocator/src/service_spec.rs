//! A service as allocation sees it: the contract's `Service` checked and parsed once, so the
//! rules below work on types, not strings.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
    time::SystemTime,
};

use metallb_proto::pb;

use crate::address::Family;

/// Namespace and name of a service. Shared strings: a key is cloned into every index that
/// refers to its service, and at 100k services the copies would cost more than the leases.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl ServiceKey {
    /// From the contract; both parts are required.
    pub fn from_pb(key: Option<&pb::ServiceKey>) -> Result<Self, String> {
        let key = key.ok_or("the service key (namespace and name) is missing")?;
        if key.namespace.is_empty() || key.name.is_empty() {
            return Err(format!(
                "the service key needs a namespace and a name, got {:?}/{:?}",
                key.namespace, key.name
            ));
        }
        use crate::limits::{MAX_LABEL_NAME, name_length};
        name_length("namespace", &key.namespace, MAX_LABEL_NAME)?;
        name_length("name", &key.name, MAX_LABEL_NAME)?;
        Ok(Self { namespace: key.namespace.as_str().into(), name: key.name.as_str().into() })
    }

    /// To the contract.
    pub fn to_pb(&self) -> pb::ServiceKey {
        pb::ServiceKey { namespace: self.namespace.to_string(), name: self.name.to_string() }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// spec.ipFamilyPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyPolicy {
    /// One IP.
    SingleStack,
    /// Both families when possible.
    PreferDualStack,
    /// Both families or nothing.
    RequireDualStack,
}

/// A port and its protocol; two services sharing an IP may not use the same one.
pub type Port = (i32, u32);

/// A validated service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    /// Namespace and name.
    pub key: ServiceKey,
    /// IPs the service asks for (spec.loadBalancerIP or the loadBalancerIPs annotation).
    pub requested_ips: Vec<IpAddr>,
    /// The pool it asks for.
    pub pool: Option<String>,
    /// Its sharing key.
    pub sharing_key: Option<String>,
    /// (protocol, port) pairs, sorted, without duplicates.
    pub ports: Vec<Port>,
    /// Families in order of preference; the first is the primary.
    pub families: Vec<Family>,
    /// How many families it wants.
    pub family_policy: FamilyPolicy,
    /// externalTrafficPolicy Local.
    pub local_traffic: bool,
    /// Nodes with a ready endpoint.
    pub ready_endpoint_nodes: BTreeSet<String>,
    /// Any ready endpoint at all.
    pub has_ready_endpoints: bool,
    /// The service's labels.
    pub labels: HashMap<String, String>,
    /// Its namespace's labels.
    pub namespace_labels: HashMap<String, String>,
    /// IPs in its status, to adopt.
    pub current_ips: Vec<IpAddr>,
    /// spec.selector, compared when sharing with externalTrafficPolicy Local.
    pub selector: BTreeMap<String, String>,
    /// metadata.creationTimestamp: the older of two Services claiming one IP keeps it.
    pub created_at: Option<SystemTime>,
}

/// Why a service cannot even be considered: the request contradicts itself.
#[derive(Debug, PartialEq)]
pub struct InvalidService {
    /// The service, when its key was readable.
    pub key: Option<ServiceKey>,
    /// What is wrong.
    pub message: String,
}

impl ServiceSpec {
    /// Checks and parses a service from the contract.
    pub fn from_pb(service: &pb::Service) -> Result<Self, InvalidService> {
        let key = ServiceKey::from_pb(service.key.as_ref())
            .map_err(|message| InvalidService { key: None, message })?;
        let invalid = |message: String| InvalidService { key: Some(key.clone()), message };

        if !service.load_balancer_ip.is_empty() && !service.load_balancer_ips.is_empty() {
            return Err(invalid(
                "spec.loadBalancerIP and the metallb.io/loadBalancerIPs annotation are both set; use only the annotation".into(),
            ));
        }
        let requested_texts: Vec<&str> = if service.load_balancer_ip.is_empty() {
            service
                .load_balancer_ips
                .iter()
                .map(|ip| ip.trim())
                .filter(|ip| !ip.is_empty())
                .collect()
        } else {
            vec![service.load_balancer_ip.trim()]
        };
        let requested_ips = parse_ips(&requested_texts).map_err(invalid)?;
        let current_texts: Vec<&str> = service.current_ips.iter().map(|ip| ip.trim()).collect();
        let current_ips =
            parse_ips(&current_texts).map_err(|message| invalid(format!("status: {message}")))?;

        let mut families: Vec<Family> = Vec::new();
        for family in &service.ip_families {
            let family = match pb::IpFamily::try_from(*family) {
                Ok(pb::IpFamily::Ipv4) => Family::V4,
                Ok(pb::IpFamily::Ipv6) => Family::V6,
                _ => continue,
            };
            if !families.contains(&family) {
                families.push(family);
            }
        }
        if families.is_empty() {
            // Kubernetes always fills spec.ipFamilies; a requested IP tells the family otherwise.
            families.push(requested_ips.first().map(|ip| Family::of(*ip)).unwrap_or(Family::V4));
        }
        let family_policy = match pb::IpFamilyPolicy::try_from(service.ip_family_policy) {
            Ok(pb::IpFamilyPolicy::PreferDualStack) => FamilyPolicy::PreferDualStack,
            Ok(pb::IpFamilyPolicy::RequireDualStack) => FamilyPolicy::RequireDualStack,
            _ => FamilyPolicy::SingleStack,
        };
        if family_policy == FamilyPolicy::SingleStack && families.len() > 1 {
            // Kubernetes refuses this too; narrowing it silently would hide the mistake.
            return Err(invalid(
                "ipFamilyPolicy SingleStack allows one family, but ipFamilies lists two".into(),
            ));
        }
        check_requested_families(&requested_ips, family_policy).map_err(invalid)?;

        let mut ports: Vec<Port> = Vec::with_capacity(service.ports.len());
        for (index, port) in service.ports.iter().enumerate() {
            let protocol = match pb::Protocol::try_from(port.protocol) {
                // Kubernetes' default.
                Ok(pb::Protocol::Unspecified) => pb::Protocol::Tcp as i32,
                Ok(protocol) => protocol as i32,
                Err(_) => {
                    return Err(invalid(format!(
                        "ports[{index}]: protocol {} is not TCP, UDP or SCTP",
                        port.protocol
                    )));
                }
            };
            if !(1..=65535).contains(&port.port) {
                return Err(invalid(format!(
                    "ports[{index}]: port {} is outside 1..65535",
                    port.port
                )));
            }
            ports.push((protocol, port.port));
        }
        ports.sort_unstable();
        ports.dedup();

        Ok(Self {
            key,
            requested_ips,
            pool: non_empty(&service.pool),
            sharing_key: non_empty(&service.sharing_key),
            ports,
            families,
            family_policy,
            local_traffic: service.external_traffic_policy == pb::TrafficPolicy::Local as i32,
            ready_endpoint_nodes: service.ready_endpoint_nodes.iter().cloned().collect(),
            has_ready_endpoints: service.has_ready_endpoints
                || !service.ready_endpoint_nodes.is_empty(),
            labels: service.labels.clone(),
            namespace_labels: service.namespace_labels.clone(),
            current_ips,
            selector: service.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            // An unreadable timestamp (out of range) counts as unset rather than failing a
            // Service that is otherwise fine.
            created_at: service
                .created_at
                .and_then(|timestamp| SystemTime::try_from(timestamp).ok()),
        })
    }

    /// The families a fresh allocation must and may give, primary first:
    /// (required, optional).
    pub fn wanted_families(&self) -> (Vec<Family>, Option<Family>) {
        let primary = self.families[0];
        match self.family_policy {
            FamilyPolicy::SingleStack => (vec![primary], None),
            FamilyPolicy::PreferDualStack => (vec![primary], Some(primary.other())),
            FamilyPolicy::RequireDualStack => (vec![primary, primary.other()], None),
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn parse_ips(texts: &[&str]) -> Result<Vec<IpAddr>, String> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for text in texts {
        let ip: IpAddr = text.parse().map_err(|_| format!("{text:?} is not an IP address"))?;
        if ips.iter().any(|other| Family::of(*other) == Family::of(ip)) {
            return Err(format!("more than one {} address requested ({text})", Family::of(ip)));
        }
        ips.push(ip);
    }
    Ok(ips)
}

fn check_requested_families(requested: &[IpAddr], policy: FamilyPolicy) -> Result<(), String> {
    match (policy, requested.len()) {
        (FamilyPolicy::SingleStack, 2) => {
            Err("two IPs requested but ipFamilyPolicy is SingleStack; use PreferDualStack or RequireDualStack".into())
        }
        (FamilyPolicy::RequireDualStack, 1) => {
            Err("ipFamilyPolicy RequireDualStack needs one IPv4 and one IPv6 address, one was requested".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> pb::Service {
        pb::Service {
            key: Some(pb::ServiceKey { namespace: "default".into(), name: "web".into() }),
            ip_families: vec![pb::IpFamily::Ipv4 as i32],
            ..Default::default()
        }
    }

    fn refusal(service: pb::Service) -> String {
        ServiceSpec::from_pb(&service).expect_err("refused").message
    }

    #[test]
    fn contradictions_are_refused_not_narrowed() {
        let two_families = pb::Service {
            ip_families: vec![pb::IpFamily::Ipv4 as i32, pb::IpFamily::Ipv6 as i32],
            ip_family_policy: pb::IpFamilyPolicy::SingleStack as i32,
            ..service()
        };
        assert!(refusal(two_families).contains("SingleStack allows one family"));
        let port = |port: u32, protocol: i32| pb::Service {
            ports: vec![pb::ServicePort { port, protocol }],
            ..service()
        };
        assert!(refusal(port(0, pb::Protocol::Tcp as i32)).contains("ports[0]: port 0"));
        assert!(refusal(port(70000, pb::Protocol::Udp as i32)).contains("outside 1..65535"));
        assert!(refusal(port(80, 42)).contains("protocol 42 is not TCP, UDP or SCTP"));
        let fine = ServiceSpec::from_pb(&port(80, pb::Protocol::Unspecified as i32)).unwrap();
        assert_eq!(fine.ports, [(pb::Protocol::Tcp as i32, 80)], "TCP by default");
    }
}
