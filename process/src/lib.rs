//! Process plumbing the allocator, the announcer and the watcher share, so that each binary's
//! `main` says only what is particular to it.

pub mod admin;
pub mod allocator_client;
pub mod backoff;
pub mod cli;
pub mod issuer_args;
pub mod issuer_keys;
pub mod lifecycle;
pub mod process_metrics;
pub mod propagation;
pub mod secure_metrics;
pub mod service_account_token;
pub mod shutdown;
pub mod tls_listener;
pub mod tracing_setup;

pub use admin::{AdminServer, Readiness};
pub use allocator_client::{AllocatorClientArgs, AllocatorConnector};
pub use backoff::Backoff;
pub use cli::{CommonArgs, LogFormat, parse_args_or_exit, usage_error};
pub use lifecycle::{ShutdownSignal, run_main, run_until_shutdown};
pub use tracing_setup::{TelemetryGuard, init};
