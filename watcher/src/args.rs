//! Command-line flags of the watcher (each also read from an environment variable).

use std::path::PathBuf;

use clap::Parser;
use metallb_process::CommonArgs;

/// The metallb-rs watcher: the only component that talks to Kubernetes. Forwards services,
/// endpoints, nodes and configuration to the allocator; writes status, annotations and events
/// back.
#[derive(Parser, Debug, Clone)]
#[command(name = "metallb-watcher", version)]
pub struct Args {
    /// Kubeconfig file to reach the Kubernetes API with. Unset: the in-cluster service account,
    /// then ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// The allocator's gRPC endpoint, as a URL.
    #[arg(
        long,
        env = "METALLB_ALLOCATOR_ENDPOINT",
        default_value = "http://metallb-allocator.metallb-system.svc:50051"
    )]
    pub allocator_endpoint: String,

    /// Namespace holding the configuration (the v0.1 ConfigMap `config` and the metallb.io
    /// resources).
    #[arg(long, env = "METALLB_NAMESPACE", default_value = "metallb-system")]
    pub config_namespace: String,

    /// Handle only Services whose spec.loadBalancerClass is this. Unset: only Services without
    /// a loadBalancerClass.
    #[arg(long, env = "METALLB_LOAD_BALANCER_CLASS")]
    pub load_balancer_class: Option<String>,

    #[command(flatten)]
    pub common: CommonArgs,
}
