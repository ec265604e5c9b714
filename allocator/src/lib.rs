//! The allocator: holds the IP leases and the validated configuration, decides every
//! assignment, and streams per-node assignments to the announcers. Its only inputs are gRPC
//! messages; it knows nothing of Kubernetes client libraries.

pub mod address;
pub mod address_range;
pub mod allocate;
pub mod api;
pub mod args;
pub mod auth;
pub mod call_metrics;
pub mod config;
pub mod core;
pub mod error;
pub mod held_runs;
pub mod instance;
pub mod l2;
pub mod leases;
pub mod limits;
pub mod metrics;
pub mod nodes;
pub mod replica_role;
pub mod routes;
pub mod selector;
pub mod server;
pub mod service_spec;
pub mod sharing;
pub mod state;
pub mod streams;
pub mod tls;
pub mod views;

pub use error::{Error, Result};
