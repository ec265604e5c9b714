//! Command-line flags of the allocator (each also read from an environment variable).

use std::net::SocketAddr;

use clap::Parser;
use metallb_process::CommonArgs;

/// The metallb-rs allocator: holds IP leases and configuration, decides every assignment,
/// streams per-node assignments to announcers. Inspect it with
/// `grpcurl -plaintext HOST:PORT list`.
#[derive(Parser, Debug, Clone)]
#[command(name = "metallb-allocator", version)]
pub struct Args {
    /// Address the gRPC API (metallb.v1.Allocator, grpc.health.v1.Health, server reflection)
    /// listens on.
    #[arg(long, env = "METALLB_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    #[command(flatten)]
    pub common: CommonArgs,
}
