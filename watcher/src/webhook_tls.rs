//! The admission webhook's TLS when no certificate files are given: a serving certificate
//! signed, in memory, by the CA the watcher keeps for the allocator (`allocator_tls`), never
//! written anywhere; and the caBundle of the ValidatingWebhookConfiguration kept equal to that
//! CA's bundle, so that the API server trusts the webhook with no person involved. The
//! certificate is re-issued every day (it lasts a week) and whenever the CA changes; open
//! connections keep theirs.

use std::{
    net::IpAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::ConfigMap},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use metallb_process::Backoff;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use time::OffsetDateTime;
use tokio_rustls::rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use crate::{
    allocator_tls::{BUNDLE_CONFIG_MAP, CA_SECRET, read_authority},
    pki,
};

/// How long an issued certificate is valid, and how often it is re-issued.
const VALIDITY: Duration = Duration::from_secs(7 * 86_400);
const REISSUE_EVERY: Duration = Duration::from_secs(86_400);
/// How often the CA is looked at for a change.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// Where the certificate comes from and what it covers.
#[derive(Clone, Debug)]
pub struct WebhookTlsSettings {
    /// Namespace of the CA Secret and bundle ConfigMap.
    pub namespace: String,
    /// DNS names the API server may call the webhook by.
    pub dns_names: Vec<String>,
    /// Addresses it may call it at (the listening address, when specific).
    pub ips: Vec<IpAddr>,
    /// The ValidatingWebhookConfiguration whose caBundle is kept current.
    pub configuration: String,
}

/// The certificate in force, swapped as a whole; `None` until the CA could be read.
#[derive(Debug, Default)]
pub struct CurrentCertificate(RwLock<Option<Arc<CertifiedKey>>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().expect("certificate lock").clone()
    }
}

impl CurrentCertificate {
    /// Serves this certificate chain and key (PEM) from now on.
    pub fn install(&self, cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<()> {
        let certs = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)?;
        let provider = tokio_rustls::rustls::crypto::ring::default_provider();
        let signing_key = provider.key_provider.load_private_key(key)?;
        *self.0.write().expect("certificate lock") =
            Some(Arc::new(CertifiedKey::new(certs, signing_key)));
        Ok(())
    }
}

/// Keeps `current` signed by the CA and the webhook configuration's caBundle equal to the CA
/// bundle, for as long as the process runs; failures are retried with backoff.
pub async fn keep_current(
    client: Client,
    settings: WebhookTlsSettings,
    current: Arc<CurrentCertificate>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut issued: Option<(String, OffsetDateTime)> = None;
    loop {
        match refresh(&client, &settings, &current, &mut issued).await {
            Ok(()) => {
                backoff.reset();
                tokio::time::sleep(CHECK_EVERY).await;
            }
            Err(err) => {
                let pause = backoff.next_delay();
                tracing::warn!(error = %err, retry_in = ?pause, "cannot keep the webhook's TLS current");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// One round: re-issue when the CA changed or a day passed; bring the caBundle in line.
async fn refresh(
    client: &Client,
    settings: &WebhookTlsSettings,
    current: &CurrentCertificate,
    issued: &mut Option<(String, OffsetDateTime)>,
) -> anyhow::Result<()> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &settings.namespace);
    let secret = secrets
        .get_opt(CA_SECRET)
        .await?
        .ok_or_else(|| anyhow::anyhow!("Secret {CA_SECRET} does not exist yet"))?;
    let (authority, _) =
        read_authority(&secret).ok_or_else(|| anyhow::anyhow!("Secret {CA_SECRET} holds no CA"))?;
    let now = OffsetDateTime::now_utc();
    let stale = issued.as_ref().is_none_or(|(ca, at)| {
        *ca != authority.cert
            || now - *at >= time::Duration::try_from(REISSUE_EVERY).unwrap_or_default()
    });
    if stale {
        let serving =
            pki::issue_serving(&authority, &settings.dns_names, &settings.ips, now, VALIDITY)?;
        current.install(serving.cert.as_bytes(), serving.key.as_bytes())?;
        *issued = Some((authority.cert.clone(), now));
        tracing::info!(dns_names = ?settings.dns_names, "webhook certificate issued");
    }
    let bundles: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
    let bundle = bundles
        .get_opt(BUNDLE_CONFIG_MAP)
        .await?
        .and_then(|map| map.data?.get("ca.crt").cloned())
        .unwrap_or(authority.cert);
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let Some(configuration) = configurations.get_opt(&settings.configuration).await? else {
        // Nothing to keep current: a cluster that registers no webhook for us.
        return Ok(());
    };
    let webhooks = configuration.webhooks.unwrap_or_default();
    let wanted = ByteString(bundle.into_bytes());
    if webhooks.iter().all(|webhook| webhook.client_config.ca_bundle.as_ref() == Some(&wanted)) {
        return Ok(());
    }
    // Webhooks merge by name (strategic merge): only each one's caBundle changes.
    let patch = serde_json::json!({
        "webhooks": webhooks
            .iter()
            .map(|webhook| serde_json::json!({"name": webhook.name, "clientConfig": {"caBundle": wanted}}))
            .collect::<Vec<_>>(),
    });
    configurations
        .patch(&settings.configuration, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    tracing::info!(configuration = settings.configuration, "webhook caBundle brought up to date");
    Ok(())
}
