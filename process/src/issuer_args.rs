//! Flags naming the token issuer a process trusts and where its public keys are: the allocator
//! checks its callers with them, the announcer its metrics scrapers.

use std::{path::PathBuf, sync::Arc, time::Duration};

use clap::Args;

use crate::{
    issuer_keys::{IssuerKeys, KeySource},
    service_account_token::TokenVerifier,
};

/// The issuer of ServiceAccount tokens and its keys.
#[derive(Args, Clone, Debug)]
pub struct IssuerArgs {
    /// Issuer (`iss`) of the ServiceAccount tokens callers present: the API server's
    /// --service-account-issuer.
    #[arg(
        long,
        env = "METALLB_TOKEN_ISSUER",
        default_value = "https://kubernetes.default.svc.cluster.local"
    )]
    pub token_issuer: String,

    /// Where the issuer publishes its public keys (JWKS).
    #[arg(
        long,
        env = "METALLB_JWKS_URL",
        default_value = "https://kubernetes.default.svc/openid/v1/jwks"
    )]
    pub jwks_url: String,

    /// CA bundle to trust for --jwks-url.
    #[arg(
        long,
        env = "METALLB_JWKS_CA_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub jwks_ca_file: PathBuf,

    /// Token presented to --jwks-url (Kubernetes lets any ServiceAccount read the keys).
    /// Empty: none.
    #[arg(
        long,
        env = "METALLB_JWKS_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub jwks_token_file: PathBuf,

    /// Read the issuer's keys from this JWKS file instead of --jwks-url.
    #[arg(long, env = "METALLB_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// Seconds between refreshes of the issuer's keys (a token naming an unknown key also
    /// triggers one, at most every 10 s).
    #[arg(long, env = "METALLB_JWKS_REFRESH_SECONDS", default_value_t = 300)]
    pub jwks_refresh_seconds: u64,
}

impl IssuerArgs {
    /// A verifier of tokens for `audience` from this issuer, its keys refreshed in the
    /// background (call within a Tokio runtime).
    pub fn verifier(&self, audience: &str) -> anyhow::Result<TokenVerifier> {
        let source = match &self.jwks_file {
            Some(path) => KeySource::File(path.clone()),
            None => KeySource::Url {
                url: self.jwks_url.clone(),
                ca_file: Some(self.jwks_ca_file.clone()),
                token_file: (!self.jwks_token_file.as_os_str().is_empty())
                    .then(|| self.jwks_token_file.clone()),
            },
        };
        let keys: Arc<IssuerKeys> = IssuerKeys::new(source)?;
        keys.spawn_refresh(Duration::from_secs(self.jwks_refresh_seconds.max(1)));
        Ok(TokenVerifier::new(self.token_issuer.clone(), audience.to_string(), keys))
    }
}
