//! The local demo (the README's main command): starts the stack on loopback with embedded
//! defaults, drives it the way the watcher will, prints what to look at and how, and tears
//! everything down on Ctrl-C.

use std::time::Duration;

use metallb_tests::{daemons::Allocator, grpcurl::grpcurl, tools::cached_tool};

/// The demo's configuration: one pool of documentation addresses, one peer, one advertisement.
const CONFIG: &str = r#"{"source": "demo defaults", "config": {
  "pools": [{"name": "demo", "addresses": ["192.0.2.0/24", "2001:db8:d::/64"], "auto_assign": true}],
  "peers": [{"name": "router", "my_asn": 64512, "peer_asn": 64500, "peer_address": "198.51.100.1"}],
  "advertisements": [{"name": "demo", "local_pref": 100, "communities": ["64512:1"]}]}}"#;

const NODE: &str =
    r#"{"node": {"name": "demo-node", "labels": {"kubernetes.io/hostname": "demo-node"}}}"#;

const SERVICE: &str = r#"{"service": {"key": {"namespace": "default", "name": "web"},
  "ip_families": ["IP_FAMILY_IPV4", "IP_FAMILY_IPV6"], "ip_family_policy": "IP_FAMILY_POLICY_PREFER_DUAL_STACK",
  "ports": [{"port": 80, "protocol": "PROTOCOL_TCP"}], "ready_endpoint_nodes": ["demo-node"]}}"#;

fn step(
    allocator: &Allocator,
    title: &str,
    method: &str,
    data: Option<&str>,
) -> anyhow::Result<()> {
    println!(
        "\n== {title}\n$ grpcurl -plaintext {}{} {method}",
        data.map(|_| "-d '...' ").unwrap_or(""),
        allocator.grpc_addr()
    );
    let out = grpcurl(allocator.grpc_addr(), data, &[method])?;
    print!("{}{}", out.stdout, out.stderr);
    anyhow::ensure!(out.code == 0, "{method} failed");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workdir = tempfile::Builder::new().prefix("metallb-demo-").tempdir()?;
    let logs = workdir.path();

    println!("Starting the allocator...");
    let mut allocator = Allocator::start(&[], logs).await?;
    let addr = allocator.grpc_addr();

    step(&allocator, "The API, listed through server reflection", "list", None)?;
    step(
        &allocator,
        "Configuration (embedded defaults)",
        "metallb.v1.Allocator/ApplyConfig",
        Some(CONFIG),
    )?;
    step(
        &allocator,
        "The first full sync (no services yet)",
        "metallb.v1.Allocator/SyncServices",
        Some("{}"),
    )?;
    step(&allocator, "A node", "metallb.v1.Allocator/UpdateNode", Some(NODE))?;
    step(
        &allocator,
        "A dual-stack Service asks for IPs",
        "metallb.v1.Allocator/UpsertService",
        Some(SERVICE),
    )?;
    step(&allocator, "Pool usage", "metallb.v1.Allocator/ListPools", Some("{}"))?;
    step(
        &allocator,
        "What demo-node announces, to whom",
        "metallb.v1.Allocator/GetNodeAssignments",
        Some(r#"{"node_name": "demo-node"}"#),
    )?;

    let grpcurl_path = cached_tool("grpcurl");
    println!(
        "\nExplore it yourself:\n  \
         {g} -plaintext {addr} describe metallb.v1.Allocator\n  \
         {g} -plaintext {addr} describe metallb.v1.Service\n  \
         {g} -plaintext {addr} metallb.v1.Allocator/ListLeases\n  \
         {g} -plaintext -d '{{\"service\": \"metallb.v1.Allocator\"}}' {addr} grpc.health.v1.Health/Check\n\n\
         Admin endpoint: http://{admin}/metrics  /healthz  /readyz\n\
         Logs: {logs}\n\nPress Ctrl-C to stop and clean up.",
        g = grpcurl_path.display(),
        admin = allocator.daemon.admin_addr(),
        logs = logs.display(),
    );

    tokio::signal::ctrl_c().await?;
    println!("\nStopping...");
    allocator.daemon.terminate(Duration::from_secs(15))?;
    Ok(())
}
