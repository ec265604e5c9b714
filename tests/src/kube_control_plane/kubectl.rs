//! kubectl as the admin: how tests apply manifests (CRDs, RBAC, deploy/) the way a user would.

use std::{ffi::OsStr, path::Path, process::Stdio, time::Duration};

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;

use crate::tools::cached_tool;

/// Bound on one kubectl invocation.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// The field manager manifests are applied with.
const FIELD_MANAGER: &str = "metallb-tests";

/// Arguments that apply `file` (`-` for standard input) server-side.
pub(super) fn apply_args(file: &OsStr) -> Vec<&OsStr> {
    let mut args =
        ["apply", "--server-side", "--field-manager", FIELD_MANAGER, "-f"].map(OsStr::new).to_vec();
    args.push(file);
    args
}

/// Runs kubectl with `kubeconfig` and `args`, feeding it `stdin`; returns its standard output or
/// fails with its standard error.
pub(super) async fn run(
    kubeconfig: &Path,
    cache_dir: &Path,
    args: &[&OsStr],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let mut command = tokio::process::Command::new(cached_tool("kubectl"));
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        // Its discovery cache would otherwise go to ~/.kube, shared between tests whose
        // servers have the same address at different times.
        .arg("--cache-dir")
        .arg(cache_dir)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let described = args.iter().fold(String::from("kubectl"), |mut text, arg| {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
        text
    });
    let mut child = command.spawn().with_context(|| format!("starting {described}"))?;
    let input = child.stdin.take();
    // Fed while the output is read, so a chatty kubectl cannot block on a full pipe.
    let feed = async {
        if let (Some(mut pipe), Some(text)) = (input, stdin) {
            pipe.write_all(text.as_bytes()).await?;
        }
        std::io::Result::Ok(())
    };
    let run = async { tokio::join!(feed, child.wait_with_output()) };
    let (fed, output) = tokio::time::timeout(KUBECTL_TIMEOUT, run)
        .await
        .with_context(|| format!("{described} did not finish within {KUBECTL_TIMEOUT:?}"))?;
    let output = output.with_context(|| format!("running {described}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        anyhow::bail!("{described} failed with {}: {stderr}", output.status);
    }
    fed.with_context(|| format!("writing the input of {described}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
