//! `metallb-l2-announce`: runs the announcer's layer 2 speaker for a static set of IPs, without
//! an allocator. For operators checking what a segment sees (`arping`, `ndisc6` from another
//! host), and for the layer 2 tests.
//!
//! It answers ARP requests and neighbor solicitations for the IPs on the interfaces whose
//! subnets hold them, and announces them once it does. SIGUSR1 stops answering at once, as a
//! fenced node does; SIGINT or SIGTERM stops, printing the layer 2 metrics on the way out.

use std::{collections::BTreeSet, io::IsTerminal, net::IpAddr, process::ExitCode, time::Duration};

use clap::Parser;
use metallb_announcer::{
    l2::{L2Options, L2Speaker, OwnedIps},
    metrics::L2Metrics,
};
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};

/// Answers ARP and neighbor discovery for static IPs.
#[derive(Parser, Debug)]
#[command(name = "metallb-l2-announce", version)]
struct Args {
    /// An IP to answer for; repeat for more.
    #[arg(long = "ip", value_name = "IP", required = true)]
    ips: Vec<IpAddr>,
    /// Answer only on this interface (still only where the IP is in one of its subnets);
    /// repeat for more. Without it, every interface whose subnets hold the IP.
    #[arg(long = "interface", value_name = "NAME")]
    interfaces: Vec<String>,
    /// Announce every IP again at this interval, in milliseconds, for switches that forget a
    /// silent MAC (off without it).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..))]
    refresh_interval_ms: Option<u64>,
    /// Which events to log, as a tracing filter ("info", "debug" for every answer).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_filter: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Args = metallb_process::parse_args_or_exit();
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_filter) {
        Ok(filter) => filter,
        Err(err) => metallb_process::usage_error(&format!("invalid --log-filter: {err}")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut fence)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::user_defined1()),
    ) else {
        eprintln!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let mut registry = Registry::default();
    let metrics = L2Metrics::register(&mut registry);
    let options =
        L2Options { refresh_interval: args.refresh_interval_ms.map(Duration::from_millis) };
    let speaker = L2Speaker::start(options, metrics);
    let names: BTreeSet<String> = args.interfaces.iter().cloned().collect();
    let owned: OwnedIps = args.ips.iter().map(|ip| (*ip, names.clone())).collect();
    speaker.set_owned(owned);
    tracing::info!(ips = ?args.ips, interfaces = ?args.interfaces, "started");
    loop {
        tokio::select! {
            _ = fence.recv() => {
                speaker.set_owned(OwnedIps::new());
                tracing::info!("fenced: answering for nothing");
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    speaker.shutdown().await;
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_ok() {
        print!("{text}");
    }
    ExitCode::SUCCESS
}
