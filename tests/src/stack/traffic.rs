//! Real traffic to a service IP: a TCP server on a node that answers with the node's name (the
//! service IP on the node's loopback, as kube-proxy's IPVS mode or a host-network pod would
//! have it), and a client that connects from another namespace through the router.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    child::ChildProcess,
    lab::{in_namespace, ip_in},
    tools::our_binary,
};

/// The helper binary (tests/src/bin/metallb-test-echo.rs).
const ECHO: &str = "metallb-test-echo";

/// How long the server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Puts `addr`'s IP on the loopback of `namespace` and serves `name` on `addr` there; the
/// server stops when the handle drops.
pub fn serve(
    namespace: &str,
    addr: SocketAddr,
    name: &str,
    log_dir: &Path,
) -> anyhow::Result<ChildProcess> {
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    ip_in(namespace, &["addr", "add", &format!("{}/{prefix}", addr.ip()), "dev", "lo"])?;
    let mut command = in_namespace(namespace, &our_binary(ECHO));
    command.args(["serve", &addr.to_string(), name]);
    let mut server = ChildProcess::spawn(&format!("echo-{namespace}"), command, log_dir)?;
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    while !server.log().contains("listening on") {
        server.ensure_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "{ECHO} in {namespace} not listening on {addr} within {LISTEN_TIMEOUT:?}: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// Connects from `namespace` to `addr` and returns the answer (the serving node's name).
pub fn connect(namespace: &str, addr: SocketAddr) -> anyhow::Result<String> {
    let output =
        in_namespace(namespace, &our_binary(ECHO)).args(["connect", &addr.to_string()]).output()?;
    anyhow::ensure!(
        output.status.success(),
        "connecting from {namespace} to {addr}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// From `namespace`, connects to `addr` again and again until a server other than `name`
/// answers; returns that server's name. Each try is cut off after 100 ms.
pub fn until_not(
    namespace: &str,
    addr: SocketAddr,
    name: &str,
    limit: Duration,
) -> anyhow::Result<String> {
    let output = in_namespace(namespace, &our_binary(ECHO))
        .args(["until-not", &addr.to_string(), name, &limit.as_millis().to_string()])
        .output()?;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr).trim());
    let answer = String::from_utf8_lossy(&output.stdout);
    Ok(answer.split_whitespace().next().unwrap_or_default().to_string())
}
