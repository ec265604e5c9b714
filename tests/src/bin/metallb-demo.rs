//! The local demo (the README's main command): starts the stack on loopback with embedded
//! defaults, prints what to look at and how, and tears everything down on Ctrl-C.

use std::time::Duration;

use metallb_tests::{daemons::Allocator, grpcurl::grpcurl, tools::cached_tool};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workdir = tempfile::Builder::new().prefix("metallb-demo-").tempdir()?;
    let logs = workdir.path();

    println!("Starting the allocator...");
    let allocator = Allocator::start(&[], logs).await?;
    let addr = allocator.grpc_addr();

    println!("\nThe allocator's API, listed through server reflection:");
    print!("{}", grpcurl(addr, None, &["list"])?.stdout);
    println!("\nIts health:");
    print!("{}", grpcurl(addr, None, &["grpc.health.v1.Health/Check"])?.stdout);

    let grpcurl_path = cached_tool("grpcurl");
    println!(
        "\nExplore it yourself:\n  \
         {g} -plaintext {addr} list\n  \
         {g} -plaintext {addr} describe metallb.v1.Allocator\n  \
         {g} -plaintext {addr} describe metallb.v1.Service\n  \
         {g} -plaintext {addr} grpc.health.v1.Health/Check\n\n\
         Admin endpoint: http://{admin}/metrics  /healthz  /readyz\n\
         Logs: {logs}\n\nPress Ctrl-C to stop and clean up.",
        g = grpcurl_path.display(),
        admin = allocator.daemon.admin_addr(),
        logs = logs.display(),
    );

    tokio::signal::ctrl_c().await?;
    println!("\nStopping...");
    let mut allocator = allocator;
    allocator.daemon.terminate(Duration::from_secs(15))?;
    Ok(())
}
