//! Bounds on every input, so that no request, however large or numerous, can stall the
//! allocator or grow it without end. Each has a precise error; the defaults are documented in
//! `docs/security.md`.
//!
//! The counts are far above what a real configuration holds (MetalLB users have tens of pools
//! and peers) and far below what makes validation, which compares pools pairwise, slow.

use metallb_proto::pb;

use crate::Error;

/// Pools in one configuration.
pub const MAX_POOLS: usize = 1_000;
/// Address ranges in one pool.
pub const MAX_ADDRESSES_PER_POOL: usize = 1_000;
/// Peers in one configuration.
pub const MAX_PEERS: usize = 1_000;
/// Advertisements in one configuration.
pub const MAX_ADVERTISEMENTS: usize = 1_000;
/// Community aliases in one configuration.
pub const MAX_COMMUNITIES: usize = 1_000;
/// BFD profiles in one configuration.
pub const MAX_BFD_PROFILES: usize = 1_000;
/// Services in one full sync.
pub const MAX_SERVICES_PER_SYNC: usize = 200_000;
/// Sessions in one node's report.
pub const MAX_SESSIONS_PER_REPORT: usize = 10_000;
/// A Service name (a DNS-1035 label) and a namespace (a DNS-1123 label), as Kubernetes limits them.
pub const MAX_LABEL_NAME: usize = 63;
/// Any other object name (nodes, pools, peers: DNS-1123 subdomains), as Kubernetes limits them.
pub const MAX_OBJECT_NAME: usize = 253;
/// Default largest request, in bytes (`--max-message-bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default assignment streams one caller may hold open (`--max-streams-per-caller`).
pub const DEFAULT_MAX_STREAMS_PER_CALLER: usize = 4;

/// Refuses a configuration with more entries than the limits allow, before any validation.
pub fn check_config(config: &pb::Config) -> Result<(), Error> {
    let counts = [
        ("pools", config.pools.len(), MAX_POOLS),
        ("peers", config.peers.len(), MAX_PEERS),
        ("advertisements", config.advertisements.len(), MAX_ADVERTISEMENTS),
        ("communities", config.communities.len(), MAX_COMMUNITIES),
        ("bfd_profiles", config.bfd_profiles.len(), MAX_BFD_PROFILES),
    ];
    for (field, count, max) in counts {
        at_most(&format!("config.{field}"), count, max)?;
    }
    for pool in &config.pools {
        at_most(
            &format!("pool {:?} addresses", pool.name),
            pool.addresses.len(),
            MAX_ADDRESSES_PER_POOL,
        )?;
    }
    Ok(())
}

/// Refuses `count` entries of `what` above `max`.
pub fn at_most(what: &str, count: usize, max: usize) -> Result<(), Error> {
    if count > max {
        return Err(Error::TooLarge(format!(
            "{what}: {count} entries, at most {max} are accepted"
        )));
    }
    Ok(())
}

/// Refuses a name longer than `max` bytes, quoting only its start.
pub fn name_length(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        let start: String = value.chars().take(20).collect();
        return Err(format!(
            "{field} {start:?}... is {} bytes long, at most {max} are accepted",
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_over_a_count_is_refused_naming_it() {
        let mut config =
            pb::Config { peers: vec![pb::BgpPeer::default(); MAX_PEERS + 1], ..Default::default() };
        let err = check_config(&config).unwrap_err().to_string();
        assert!(err.contains("config.peers") && err.contains("1001"), "{err}");
        config.peers.truncate(MAX_PEERS);
        assert!(check_config(&config).is_ok());
    }

    #[test]
    fn a_long_name_is_refused_without_being_quoted_whole() {
        let long = "x".repeat(1_000_000);
        let err = name_length("name", &long, MAX_LABEL_NAME).unwrap_err();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains("1000000"), "{err}");
    }
}
