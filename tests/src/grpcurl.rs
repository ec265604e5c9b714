//! grpcurl, run exactly as a user would: trusting the allocator's CA, presenting a token.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{tools::cached_tool, trust::SERVER_NAME};

/// A server to call and how.
#[derive(Clone, Debug)]
pub struct GrpcTarget {
    /// Address.
    pub addr: SocketAddr,
    /// CA bundle to verify its certificate with (as SERVER_NAME); `None`: plaintext.
    pub ca_file: Option<PathBuf>,
    /// Token to present as `authorization: Bearer`.
    pub token: Option<String>,
}

impl GrpcTarget {
    /// Over TLS verified with `ca_file`, presenting `token` if given.
    pub fn secure(addr: SocketAddr, ca_file: &Path, token: Option<&str>) -> Self {
        Self { addr, ca_file: Some(ca_file.to_path_buf()), token: token.map(String::from) }
    }

    /// Plaintext and no token: what an attacker or a misconfigured client would try.
    pub fn plaintext(addr: SocketAddr) -> Self {
        Self { addr, ca_file: None, token: None }
    }

    /// The same server called with `token` instead (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self { token: token.map(String::from), ..self.clone() }
    }
}

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

/// Runs `grpcurl [-d data] ADDR args...` against `target`.
pub fn grpcurl(
    target: &GrpcTarget,
    data: Option<&str>,
    args: &[&str],
) -> anyhow::Result<GrpcurlOutput> {
    grpcurl_with(target, &[], data, args)
}

/// Runs `grpcurl FLAGS... [-d data] ADDR args...`, with flags such as `-H header`.
pub fn grpcurl_with(
    target: &GrpcTarget,
    flags: &[&str],
    data: Option<&str>,
    args: &[&str],
) -> anyhow::Result<GrpcurlOutput> {
    run(Command::new(cached_tool("grpcurl")), target, flags, data, args)
}

/// Runs grpcurl inside network namespace `namespace`, against an address there.
pub fn grpcurl_in(
    namespace: &str,
    target: &GrpcTarget,
    data: Option<&str>,
    args: &[&str],
) -> anyhow::Result<GrpcurlOutput> {
    run(crate::lab::in_namespace(namespace, &cached_tool("grpcurl")), target, &[], data, args)
}

fn run(
    mut command: Command,
    target: &GrpcTarget,
    flags: &[&str],
    data: Option<&str>,
    args: &[&str],
) -> anyhow::Result<GrpcurlOutput> {
    command.arg("-max-time").arg("10");
    match &target.ca_file {
        Some(ca_file) => command.arg("-cacert").arg(ca_file).arg("-authority").arg(SERVER_NAME),
        None => command.arg("-plaintext"),
    };
    if let Some(token) = &target.token {
        command.arg("-H").arg(format!("authorization: Bearer {token}"));
    }
    command.args(flags);
    if let Some(data) = data {
        command.arg("-d").arg(data);
    }
    command.arg(target.addr.to_string()).args(args);
    let output = command.output()?;
    Ok(GrpcurlOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
