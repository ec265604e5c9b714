//! The Service annotations MetalLB defines, in their current `metallb.io/` form and the older
//! `metallb.universe.tf/` form (the newer one wins when both are present).

use std::collections::BTreeMap;

const PREFIXES: [&str; 2] = ["metallb.io/", "metallb.universe.tf/"];

/// What a Service's annotations ask of the allocator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAnnotations {
    /// `address-pool`: the pool to allocate from.
    pub pool: String,
    /// `allow-shared-ip`: the sharing key.
    pub sharing_key: String,
    /// `loadBalancerIPs`: the IPs asked for, split on commas.
    pub load_balancer_ips: Vec<String>,
}

/// Reads the annotations of one Service.
pub fn read(annotations: &BTreeMap<String, String>) -> ServiceAnnotations {
    let get = |name: &str| {
        PREFIXES
            .iter()
            .find_map(|prefix| annotations.get(&format!("{prefix}{name}")))
            .map(|value| value.trim().to_string())
            .unwrap_or_default()
    };
    ServiceAnnotations {
        pool: get("address-pool"),
        sharing_key: get("allow-shared-ip"),
        load_balancer_ips: get("loadBalancerIPs")
            .split(',')
            .map(str::trim)
            .filter(|ip| !ip.is_empty())
            .map(String::from)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn current_and_older_prefixes_are_read_and_the_current_one_wins() {
        let old = read(&annotations(&[
            ("metallb.universe.tf/address-pool", "legacy"),
            ("metallb.universe.tf/allow-shared-ip", "key"),
            ("metallb.universe.tf/loadBalancerIPs", "192.0.2.1, 2001:db8::1"),
        ]));
        assert_eq!(old.pool, "legacy");
        assert_eq!(old.sharing_key, "key");
        assert_eq!(old.load_balancer_ips, ["192.0.2.1", "2001:db8::1"]);

        let both = read(&annotations(&[
            ("metallb.universe.tf/address-pool", "legacy"),
            ("metallb.io/address-pool", "current"),
        ]));
        assert_eq!(both.pool, "current");
        assert_eq!(read(&BTreeMap::new()), ServiceAnnotations::default());
    }
}
