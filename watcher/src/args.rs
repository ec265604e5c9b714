//! Command-line flags of the watcher (each also read from an environment variable).

use std::path::PathBuf;

use clap::Parser;
use metallb_process::{AllocatorClientArgs, CommonArgs};

use crate::webhook_tls::WebhookTlsSettings;

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

    #[command(flatten)]
    pub allocator: AllocatorClientArgs,

    /// Namespace holding the configuration (the v0.1 ConfigMap `config` and the metallb.io
    /// resources).
    #[arg(long, env = "METALLB_NAMESPACE", default_value = "metallb-system")]
    pub config_namespace: String,

    /// Handle only Services whose spec.loadBalancerClass is this. Unset: only Services without
    /// a loadBalancerClass.
    #[arg(long, env = "METALLB_LOAD_BALANCER_CLASS")]
    pub load_balancer_class: Option<String>,

    /// Issue the allocator's serving certificate and CA bundle (Secret metallb-allocator-tls,
    /// ConfigMap metallb-allocator-ca in --config-namespace) and rotate them. Turn off when
    /// cert-manager issues them (deploy/components/cert-manager).
    #[arg(long, env = "METALLB_MANAGE_ALLOCATOR_TLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_allocator_tls: bool,

    /// Name of the allocator's Service; its serving certificate covers the Service's DNS names.
    #[arg(long, env = "METALLB_ALLOCATOR_SERVICE", default_value = "metallb-allocator")]
    pub allocator_service: String,

    /// Hours an issued serving certificate is valid; it is renewed when a third is left.
    #[arg(long, env = "METALLB_ALLOCATOR_CERT_VALIDITY_HOURS", default_value_t = 2160)]
    pub allocator_cert_validity_hours: u64,

    /// Seconds between checks of the allocator's certificate and CA.
    #[arg(long, env = "METALLB_ALLOCATOR_TLS_CHECK_SECONDS", default_value_t = 3600)]
    pub allocator_tls_check_seconds: u64,

    /// Run passes only while holding the Lease --leader-lease-name, so that several watcher
    /// replicas can run and one feeds the allocators. Off: this watcher always leads (one
    /// replica only).
    #[arg(long, env = "METALLB_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease (in --config-namespace) the watcher replicas elect a leader with.
    #[arg(long, env = "METALLB_LEADER_LEASE_NAME", default_value = "metallb-watcher")]
    pub leader_lease_name: String,

    /// This replica's identity in the election. Unset: the host name (the pod's name) and the
    /// process ID.
    #[arg(long, env = "METALLB_LEADER_IDENTITY")]
    pub leader_identity: Option<String>,

    /// Seconds the Lease holds after a renewal: how long a killed leader goes unreplaced.
    #[arg(long, env = "METALLB_LEADER_LEASE_SECONDS", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(2..=300))]
    pub leader_lease_seconds: u64,

    /// Seconds before the Lease would expire that the leader renews it; less than
    /// --leader-lease-seconds.
    #[arg(long, env = "METALLB_LEADER_RENEW_BEFORE_SECONDS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=299))]
    pub leader_renew_before_seconds: u64,

    /// Serve the validating admission webhook (`POST /validate`, HTTPS) here. Unset: no
    /// webhook.
    #[arg(long, env = "METALLB_WEBHOOK_ADDR")]
    pub webhook_addr: Option<std::net::SocketAddr>,

    /// The webhook's serving certificate (PEM) and its key. Unset: the watcher signs one itself
    /// with the CA it keeps for the allocator, and keeps the webhook configuration's caBundle
    /// equal to that CA's bundle.
    #[arg(long, env = "METALLB_WEBHOOK_CERT_FILE", requires = "webhook_key_file")]
    pub webhook_cert_file: Option<PathBuf>,

    /// The webhook's private key (PEM), with --webhook-cert-file.
    #[arg(long, env = "METALLB_WEBHOOK_KEY_FILE", requires = "webhook_cert_file")]
    pub webhook_key_file: Option<PathBuf>,

    /// The Service the API server calls the webhook through (its DNS names go in the
    /// certificate the watcher signs).
    #[arg(long, env = "METALLB_WEBHOOK_SERVICE", default_value = "metallb-watcher-webhook")]
    pub webhook_service: String,

    /// The ValidatingWebhookConfiguration whose caBundle the watcher keeps current.
    #[arg(long, env = "METALLB_WEBHOOK_CONFIGURATION", default_value = "metallb-rs-webhook")]
    pub webhook_configuration: String,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl Args {
    /// Checks the flags together, for `main`.
    pub fn validate(&self) -> Result<(), String> {
        self.allocator.validate()?;
        if self.leader_renew_before_seconds >= self.leader_lease_seconds {
            return Err(format!(
                "--leader-renew-before-seconds {} must be less than --leader-lease-seconds {}",
                self.leader_renew_before_seconds, self.leader_lease_seconds
            ));
        }
        if self.webhook_addr.is_some()
            && self.webhook_cert_file.is_none()
            && !self.manage_allocator_tls
        {
            return Err(
                "--webhook-addr without --webhook-cert-file needs --manage-allocator-tls (its CA signs the webhook's certificate)"
                    .into(),
            );
        }
        Ok(())
    }

    /// How the webhook is served, when it is.
    pub fn webhook(&self) -> anyhow::Result<Option<WebhookPlan>> {
        let Some(addr) = self.webhook_addr else { return Ok(None) };
        let tls = match (&self.webhook_cert_file, &self.webhook_key_file) {
            (Some(cert), Some(key)) => {
                let read = |path: &PathBuf| {
                    std::fs::read(path).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))
                };
                WebhookTls::Files { cert: read(cert)?, key: read(key)? }
            }
            _ => {
                let (service, namespace) = (&self.webhook_service, &self.config_namespace);
                WebhookTls::FromCa(WebhookTlsSettings {
                    namespace: namespace.clone(),
                    dns_names: vec![
                        service.clone(),
                        format!("{service}.{namespace}"),
                        format!("{service}.{namespace}.svc"),
                        format!("{service}.{namespace}.svc.cluster.local"),
                    ],
                    ips: (!addr.ip().is_unspecified()).then_some(addr.ip()).into_iter().collect(),
                    configuration: self.webhook_configuration.clone(),
                })
            }
        };
        Ok(Some(WebhookPlan { addr, tls }))
    }

    /// This replica's identity in the election.
    pub fn identity(&self) -> String {
        self.leader_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_string())
                .unwrap_or_else(|_| "watcher".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Where the webhook listens and where its certificate comes from.
#[derive(Clone, Debug)]
pub struct WebhookPlan {
    /// The listening address.
    pub addr: std::net::SocketAddr,
    /// The certificate.
    pub tls: WebhookTls,
}

/// The webhook's certificate source.
#[derive(Clone, Debug)]
pub enum WebhookTls {
    /// Given as PEM files (read at start).
    Files {
        /// The certificate chain.
        cert: Vec<u8>,
        /// Its key.
        key: Vec<u8>,
    },
    /// Signed by the watcher with the allocator's CA, and kept current.
    FromCa(WebhookTlsSettings),
}
