//! The allocator's TLS, bootstrapped and rotated by the watcher (the one component with
//! Kubernetes access), with no person involved:
//!
//! - Secret `metallb-allocator-ca`: the CA's certificate and key (only the watcher reads it),
//!   and the previous CA's certificate while it is still valid;
//! - Secret `metallb-allocator-tls` (type kubernetes.io/tls): the allocator's serving
//!   certificate, mounted by the allocator, which reloads it when the kubelet updates the file;
//! - ConfigMap `metallb-allocator-ca`: `ca.crt`, the bundle every client trusts (the current
//!   CA, and the previous one until it expires), mounted by the watcher and the announcers.
//!
//! The serving certificate is renewed when a third of its life is left; the CA a year before
//! it expires. After a CA change the serving certificate is re-signed only once the new bundle
//! has had time to reach every client (`BUNDLE_PROPAGATION`), so no client ever meets a
//! certificate it cannot verify. Connections already open are not affected by any of this.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Secret},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams},
};
use metallb_process::Backoff;
use time::OffsetDateTime;

use crate::pki::{self, PemPair};

/// The Secret holding the CA.
pub const CA_SECRET: &str = "metallb-allocator-ca";
/// The Secret holding the allocator's serving certificate.
pub const TLS_SECRET: &str = "metallb-allocator-tls";
/// The ConfigMap holding the CA bundle clients trust.
pub const BUNDLE_CONFIG_MAP: &str = "metallb-allocator-ca";
/// Annotation: when the certificate in the object expires (Unix seconds).
pub const NOT_AFTER_ANNOTATION: &str = "metallb.io/not-after";
/// Annotation on the serving Secret: the notAfter of the CA that signed it, which names that CA.
const SIGNED_BY_ANNOTATION: &str = "metallb.io/signed-by-ca-not-after";
/// Annotation on the bundle: when its content last changed (Unix seconds).
const BUNDLE_CHANGED_ANNOTATION: &str = "metallb.io/bundle-changed-at";
const FIELD_MANAGER: &str = "metallb-watcher";

/// How long a CA is valid, and how long before its end it is replaced.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const CA_RENEW_BEFORE: Duration = Duration::from_secs(365 * 86_400);
/// The kubelet refreshes mounted ConfigMaps within its sync period plus cache TTL (about a
/// minute each by default); ten minutes covers slow nodes.
pub const BUNDLE_PROPAGATION: Duration = Duration::from_secs(600);

/// How soon a check that changed something is followed by another.
const RECHECK_AFTER_CHANGE: Duration = Duration::from_secs(5);

/// What the rotation needs to know.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// Namespace of the Secrets and the ConfigMap (the allocator's).
    pub namespace: String,
    /// The allocator's Service name; the certificate covers its DNS names.
    pub service: String,
    /// How long a serving certificate is valid; renewed when a third is left.
    pub serving_validity: Duration,
}

impl TlsSettings {
    /// The names clients may use for the allocator's Service.
    pub fn dns_names(&self) -> Vec<String> {
        let (service, namespace) = (&self.service, &self.namespace);
        vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.clone(),
        ]
    }
}

/// What a check did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// A new CA was made.
    pub new_authority: bool,
    /// The bundle ConfigMap was written.
    pub bundle_written: bool,
    /// A new serving certificate was issued.
    pub serving_issued: bool,
}

/// Checks the CA, the bundle and the serving certificate every `interval`, forever. A check
/// that fails is retried sooner, backing off up to `interval`: until the first one succeeds
/// the allocator has no certificate to serve, so waiting a whole interval (an hour by default)
/// after, say, a RoleBinding that was not in place yet would leave the cluster without a
/// working control plane for that long.
pub async fn keep_current(client: Client, settings: TlsSettings, interval: Duration) {
    let mut retry = Backoff::new(Duration::from_secs(1), interval);
    loop {
        let wait = match ensure(&client, &settings, OffsetDateTime::now_utc()).await {
            Ok(rotation) => {
                retry.reset();
                if rotation != Rotation::default() {
                    tracing::info!(?rotation, "allocator TLS material updated");
                    // Every watcher replica runs this check, and two that bootstrap at once
                    // each write their own objects, the last write of each winning: look
                    // again soon, so the objects agree within seconds rather than an interval.
                    RECHECK_AFTER_CHANGE.min(interval)
                } else {
                    tracing::debug!("allocator TLS material current");
                    interval
                }
            }
            Err(err) => {
                let wait = retry.next_delay();
                tracing::warn!(
                    error = format!("{err:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "cannot check the allocator's TLS material; trying again later"
                );
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Makes sure the CA, the bundle and the serving certificate exist and are not near expiry.
pub async fn ensure(
    client: &Client,
    settings: &TlsSettings,
    now: OffsetDateTime,
) -> anyhow::Result<Rotation> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
    let mut rotation = Rotation::default();
    let now_s = now.unix_timestamp();

    // 1. The CA, and the previous one while it is valid.
    let stored_ca = secrets.get_opt(CA_SECRET).await?;
    let (authority, previous) = match stored_ca.as_ref().and_then(read_authority) {
        Some((authority, previous))
            if authority.not_after - now_s > CA_RENEW_BEFORE.as_secs() as i64 =>
        {
            (authority, previous.filter(|(_, not_after)| *not_after > now_s))
        }
        stored => {
            let authority = pki::new_authority("metallb-allocator-ca", now, CA_VALIDITY)?;
            let previous = stored
                .map(|(old, _)| (old.cert, old.not_after))
                .filter(|(_, not_after)| *not_after > now_s);
            write_authority(&secrets, &authority, previous.as_ref()).await?;
            rotation.new_authority = true;
            (authority, previous)
        }
    };

    // 2. The bundle every client trusts.
    let mut bundle = authority.cert.clone();
    if let Some((previous_cert, _)) = &previous {
        bundle.push_str(previous_cert);
    }
    let stored_bundle = config_maps.get_opt(BUNDLE_CONFIG_MAP).await?;
    let bundle_changed_at = match &stored_bundle {
        Some(map) if bundle_of(map) == Some(bundle.as_str()) => {
            annotation(&map.metadata, BUNDLE_CHANGED_ANNOTATION).unwrap_or(0)
        }
        _ => {
            write_bundle(&config_maps, &bundle, now_s).await?;
            rotation.bundle_written = true;
            now_s
        }
    };

    // 3. The serving certificate.
    let stored_tls = secrets.get_opt(TLS_SECRET).await?;
    let serving_not_after =
        stored_tls.as_ref().and_then(|secret| annotation(&secret.metadata, NOT_AFTER_ANNOTATION));
    let signed_by =
        stored_tls.as_ref().and_then(|secret| annotation(&secret.metadata, SIGNED_BY_ANNOTATION));
    let renew_before = settings.serving_validity.as_secs() as i64 / 3;
    let expiring = serving_not_after.is_none_or(|not_after| not_after - now_s < renew_before);
    let other_ca = signed_by != Some(authority.not_after);
    // A certificate no client trusting the bundle accepts (signed by a CA that is not in it,
    // as when two watchers bootstrap at once and each stores some of its own objects) is of
    // no use to anyone: it is replaced at once, whatever the bundle's age.
    let accepted = stored_tls
        .as_ref()
        .and_then(|secret| secret_text(secret, "tls.crt"))
        .is_some_and(|cert| pki::bundle_accepts(&bundle, &cert, &settings.dns_names()[0], now));
    let bundle_settled = now_s - bundle_changed_at >= BUNDLE_PROPAGATION.as_secs() as i64;
    // Usable: it outlives the time the bundle needs to reach every client.
    let usable = accepted
        && serving_not_after
            .is_some_and(|not_after| not_after - now_s > BUNDLE_PROPAGATION.as_secs() as i64);
    // A certificate that is due (expiring, or from the previous CA) is replaced once every
    // client trusts the CA that signs the new one; one that is missing, unacceptable or about
    // to lapse is replaced at once, since nothing better can be served meanwhile.
    if !usable || ((expiring || other_ca) && bundle_settled) {
        let serving = pki::issue_serving(
            &authority,
            &settings.dns_names(),
            &[],
            now,
            settings.serving_validity,
        )?;
        write_serving(&secrets, &serving, authority.not_after).await?;
        rotation.serving_issued = true;
    }
    Ok(rotation)
}

/// The CA in `secret`, and the previous one with its notAfter when there is one.
pub fn read_authority(secret: &Secret) -> Option<(PemPair, Option<(String, i64)>)> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| data.get(key).and_then(|value| String::from_utf8(value.0.clone()).ok());
    let authority = PemPair {
        cert: text("ca.crt")?,
        key: text("ca.key")?,
        not_after: annotation(&secret.metadata, NOT_AFTER_ANNOTATION)?,
    };
    let previous =
        text("previous.crt").zip(annotation(&secret.metadata, "metallb.io/previous-not-after"));
    Some((authority, previous))
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(key)?;
    String::from_utf8(value.0.clone()).ok()
}

fn bundle_of(map: &ConfigMap) -> Option<&str> {
    map.data.as_ref()?.get("ca.crt").map(String::as_str)
}

fn annotation(meta: &ObjectMeta, key: &str) -> Option<i64> {
    meta.annotations.as_ref()?.get(key)?.parse().ok()
}

fn meta(name: &str, annotations: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        annotations: Some(annotations),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        )])),
        ..Default::default()
    }
}

async fn write_authority(
    secrets: &Api<Secret>,
    authority: &PemPair,
    previous: Option<&(String, i64)>,
) -> anyhow::Result<()> {
    let mut annotations =
        BTreeMap::from([(NOT_AFTER_ANNOTATION.to_string(), authority.not_after.to_string())]);
    let mut data = BTreeMap::from([
        ("ca.crt".to_string(), ByteString(authority.cert.clone().into_bytes())),
        ("ca.key".to_string(), ByteString(authority.key.clone().into_bytes())),
    ]);
    if let Some((cert, not_after)) = previous {
        annotations.insert("metallb.io/previous-not-after".into(), not_after.to_string());
        data.insert("previous.crt".into(), ByteString(cert.clone().into_bytes()));
    }
    let secret = Secret {
        metadata: meta(CA_SECRET, annotations),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    };
    apply(secrets, CA_SECRET, &secret).await
}

async fn write_bundle(config_maps: &Api<ConfigMap>, bundle: &str, now: i64) -> anyhow::Result<()> {
    let annotations = BTreeMap::from([(BUNDLE_CHANGED_ANNOTATION.to_string(), now.to_string())]);
    let map = ConfigMap {
        metadata: meta(BUNDLE_CONFIG_MAP, annotations),
        data: Some(BTreeMap::from([("ca.crt".to_string(), bundle.to_string())])),
        ..Default::default()
    };
    apply(config_maps, BUNDLE_CONFIG_MAP, &map).await
}

async fn write_serving(
    secrets: &Api<Secret>,
    serving: &PemPair,
    ca_not_after: i64,
) -> anyhow::Result<()> {
    let annotations = BTreeMap::from([
        (NOT_AFTER_ANNOTATION.to_string(), serving.not_after.to_string()),
        (SIGNED_BY_ANNOTATION.to_string(), ca_not_after.to_string()),
    ]);
    let secret = Secret {
        metadata: meta(TLS_SECRET, annotations),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(serving.cert.clone().into_bytes())),
            ("tls.key".to_string(), ByteString(serving.key.clone().into_bytes())),
        ])),
        ..Default::default()
    };
    apply(secrets, TLS_SECRET, &secret).await
}

async fn apply<K>(api: &Api<K>, name: &str, object: &K) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = ()> + serde::Serialize + Clone + std::fmt::Debug,
    K: serde::de::DeserializeOwned,
{
    let mut value = serde_json::to_value(object)?;
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(value))
        .await
        .map_err(|err| anyhow::anyhow!("writing {} {name}: {err}", K::kind(&())))?;
    Ok(())
}
