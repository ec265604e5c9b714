//! Command-line flags of the announcer (each also read from an environment variable).

use clap::Parser;
use metallb_process::{AllocatorClientArgs, CommonArgs, secure_metrics::SecureMetricsArgs};

/// The metallb-rs announcer: runs on every node, subscribes to the allocator for the node's
/// assignments and announces them to the BGP peers.
#[derive(Parser, Debug, Clone)]
#[command(name = "metallb-announcer", version)]
pub struct Args {
    /// Name of the Kubernetes node this announcer runs on (in a DaemonSet, from the downward
    /// API's spec.nodeName).
    #[arg(long, env = "METALLB_NODE_NAME", value_parser = non_empty)]
    pub node_name: String,

    #[command(flatten)]
    pub allocator: AllocatorClientArgs,

    /// This node's IP address (in a DaemonSet, from the downward API's status.hostIP): the BGP
    /// router ID of sessions whose peer sets none and has no IPv4 source address.
    #[arg(long, env = "METALLB_NODE_ADDRESS")]
    pub node_address: Option<std::net::IpAddr>,

    /// Seconds between session reports to the allocator.
    #[arg(long, env = "METALLB_REPORT_INTERVAL_SECONDS", default_value_t = 5)]
    pub report_interval_seconds: u64,

    /// Layer 2 mode: milliseconds between repeated gratuitous ARP / unsolicited neighbor
    /// advertisements for every IP this node answers for, so switches whose forwarding table
    /// ages out before the hosts' ARP caches keep the IP's port. Off (0) by default: they are
    /// sent only on taking an IP.
    #[arg(
        long,
        env = "METALLB_L2_REFRESH_INTERVAL_MS",
        default_value_t = 0,
        value_parser = refresh_interval
    )]
    pub l2_refresh_interval_ms: u64,

    #[command(flatten)]
    pub metrics: SecureMetricsArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

fn refresh_interval(value: &str) -> Result<u64, String> {
    let ms: u64 = value.parse().map_err(|err| format!("{value:?}: {err}"))?;
    match ms {
        0 | 100..=3_600_000 => Ok(ms),
        _ => Err("must be 0 (off) or between 100 and 3600000".into()),
    }
}

fn non_empty(value: &str) -> Result<String, String> {
    if value.trim().is_empty() { Err("must not be empty".into()) } else { Ok(value.to_string()) }
}
