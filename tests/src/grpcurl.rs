//! grpcurl, run exactly as a user would against a plaintext gRPC server.

use std::{net::SocketAddr, process::Command};

use crate::tools::cached_tool;

/// What one grpcurl invocation printed and how it exited.
#[derive(Debug)]
pub struct GrpcurlOutput {
    /// Exit code (grpcurl exits with 64 + the gRPC status code when the RPC fails).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `grpcurl -plaintext [-d data] ADDR args...`.
pub fn grpcurl(
    addr: SocketAddr,
    data: Option<&str>,
    args: &[&str],
) -> anyhow::Result<GrpcurlOutput> {
    grpcurl_with(addr, &[], data, args)
}

/// Runs `grpcurl -plaintext FLAGS... [-d data] ADDR args...`, with flags such as `-H header`.
pub fn grpcurl_with(
    addr: SocketAddr,
    flags: &[&str],
    data: Option<&str>,
    args: &[&str],
) -> anyhow::Result<GrpcurlOutput> {
    run(Command::new(cached_tool("grpcurl")), addr, flags, data, args)
}

/// Runs grpcurl inside network namespace `namespace`, against an address there.
pub fn grpcurl_in(
    namespace: &str,
    addr: SocketAddr,
    data: Option<&str>,
    args: &[&str],
) -> anyhow::Result<GrpcurlOutput> {
    run(crate::lab::in_namespace(namespace, &cached_tool("grpcurl")), addr, &[], data, args)
}

fn run(
    mut command: Command,
    addr: SocketAddr,
    flags: &[&str],
    data: Option<&str>,
    args: &[&str],
) -> anyhow::Result<GrpcurlOutput> {
    command.arg("-plaintext").arg("-max-time").arg("10").args(flags);
    if let Some(data) = data {
        command.arg("-d").arg(data);
    }
    command.arg(addr.to_string()).args(args);
    let output = command.output()?;
    Ok(GrpcurlOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
