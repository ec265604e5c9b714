//! Command-line flags of the allocator (each also read from an environment variable).

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use metallb_process::{CommonArgs, issuer_args::IssuerArgs};

use crate::limits::{DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_STREAMS_PER_CALLER};

/// The metallb-rs allocator: holds IP leases and configuration, decides every assignment,
/// streams per-node assignments to announcers. Every call is over TLS with a ServiceAccount
/// token; inspect it with
/// `grpcurl -cacert ca.crt -H "authorization: Bearer $(kubectl create token ...)" HOST:PORT list`.
#[derive(Parser, Debug, Clone)]
#[command(name = "metallb-allocator", version)]
pub struct Args {
    /// Address the gRPC API (metallb.v1.Allocator, grpc.health.v1.Health, server reflection)
    /// listens on.
    #[arg(long, env = "METALLB_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    /// PEM certificate (chain) the gRPC port serves; reloaded when the file changes.
    #[arg(long, env = "METALLB_TLS_CERT_FILE", default_value = "/etc/metallb/tls/tls.crt")]
    pub tls_cert_file: PathBuf,

    /// PEM private key of --tls-cert-file; reloaded with it.
    #[arg(long, env = "METALLB_TLS_KEY_FILE", default_value = "/etc/metallb/tls/tls.key")]
    pub tls_key_file: PathBuf,

    /// Audience (`aud`) the tokens must be issued for.
    #[arg(long, env = "METALLB_TOKEN_AUDIENCE", default_value = "metallb-allocator")]
    pub token_audience: String,

    #[command(flatten)]
    pub issuer: IssuerArgs,

    /// ServiceAccounts (namespace/name, comma-separated) with the writer role: every
    /// mutating RPC and the reads.
    #[arg(
        long,
        env = "METALLB_WRITER_SERVICE_ACCOUNTS",
        value_delimiter = ',',
        default_value = "metallb-system/metallb-watcher"
    )]
    pub writer_service_accounts: Vec<String>,

    /// ServiceAccounts with the announcer role: their pod-bound tokens may watch and report
    /// for the pod's node only.
    #[arg(
        long,
        env = "METALLB_ANNOUNCER_SERVICE_ACCOUNTS",
        value_delimiter = ',',
        default_value = "metallb-system/metallb-announcer"
    )]
    pub announcer_service_accounts: Vec<String>,

    /// ServiceAccounts with the reader role: the read RPCs, BGP passwords redacted.
    #[arg(long, env = "METALLB_READER_SERVICE_ACCOUNTS", value_delimiter = ',')]
    pub reader_service_accounts: Vec<String>,

    /// Largest request accepted, in bytes.
    #[arg(long, env = "METALLB_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Assignment streams one caller (one announcer's identity) may hold open at once.
    #[arg(long, env = "METALLB_MAX_STREAMS_PER_CALLER", default_value_t = DEFAULT_MAX_STREAMS_PER_CALLER)]
    pub max_streams_per_caller: usize,

    /// Layer 2 fencing interval: an announcer answers ARP/NDP only this long after the
    /// allocator's latest heartbeat, and a node's layer 2 IPs go to another node only after
    /// it has had no stream for this long plus 250 ms (docs/design.md, "Layer 2 fencing").
    /// Shorter: faster failover; longer: an allocator outage stops layer 2 answers later.
    #[arg(
        long,
        env = "METALLB_L2_FENCING_INTERVAL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    pub l2_fencing_interval_ms: u64,

    /// HTTP/2 ping interval on every connection, so a vanished announcer is noticed.
    #[arg(
        long,
        env = "METALLB_KEEPALIVE_INTERVAL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(100..=300_000)
    )]
    pub keepalive_interval_ms: u64,

    /// How long a ping may go unanswered before the connection (and its streams) is closed.
    #[arg(
        long,
        env = "METALLB_KEEPALIVE_TIMEOUT_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(100..=300_000)
    )]
    pub keepalive_timeout_ms: u64,

    /// Local debugging only: plaintext, and every caller may call everything. Logs a warning.
    #[arg(long, env = "METALLB_INSECURE")]
    pub insecure: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}
