//! Which watcher replica leads: a `coordination.k8s.io` Lease, held and renewed through
//! kube-lease-manager. Only the leader feeds the allocators and writes back.
//!
//! The crate says when this replica becomes or stops being the holder, but it learns that it
//! lost the Lease only from the API server: a leader cut off from the API server would go on
//! believing it leads after the Lease expired and another replica took it. So leading also
//! requires having seen, within the Lease's duration, the Lease renewed by this replica: a
//! leader that cannot read its renewals stops by the time the Lease expires, which is the
//! earliest another replica may take it.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::{sync::watch, task::JoinHandle};

/// How the election runs.
#[derive(Clone, Debug)]
pub struct ElectionSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds the Lease is valid after a renewal: a killed leader is replaced within this.
    pub lease_seconds: u64,
    /// Seconds before expiry the leader renews.
    pub renew_before_seconds: u64,
}

/// How often the leader reads its Lease back.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// A running election.
pub struct Election {
    leading: watch::Receiver<bool>,
    fence: JoinHandle<()>,
    manager: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Election {
    /// Joins the election for `settings.lease_name`, creating the Lease if needed.
    pub async fn join(client: Client, settings: ElectionSettings) -> anyhow::Result<Self> {
        let params = LeaseParams::new(
            settings.identity.clone(),
            settings.lease_seconds,
            settings.renew_before_seconds,
        );
        let manager = LeaseManagerBuilder::new(client.clone(), settings.lease_name.clone())
            .with_namespace(settings.namespace.clone())
            .with_parameters(params)
            .build()
            .await?;
        let (holder, manager) = manager.watch().await;
        let (sender, leading) = watch::channel(false);
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let fence = tokio::spawn(fence(api, settings, holder, sender));
        Ok(Self { leading, fence, manager })
    }

    /// Whether this replica leads, as it changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Gives the Lease up, so that another replica takes over at once rather than when it
    /// expires. Bounded: a replica that cannot reach the API server leaves it to expire.
    pub async fn resign(self) {
        // Dropping the crate's channel (held by the fence task) makes it release the Lease.
        self.fence.abort();
        match tokio::time::timeout(Duration::from_secs(2), self.manager).await {
            Ok(Ok(Ok(_))) => tracing::info!("leadership released"),
            outcome => tracing::warn!(?outcome, "leadership not released; it will expire"),
        }
    }
}

/// Publishes "leading" = the crate says this replica holds the Lease, and the Lease read back
/// was renewed by this replica recently enough to be unexpired now.
async fn fence(
    api: Api<Lease>,
    settings: ElectionSettings,
    mut holder: watch::Receiver<bool>,
    leading: watch::Sender<bool>,
) {
    let mut valid_until: Option<SystemTime> = None;
    loop {
        let holds = *holder.borrow_and_update();
        if holds {
            match tokio::time::timeout(CHECK_EVERY, api.get(&settings.lease_name)).await {
                Ok(Ok(lease)) => valid_until = expiry_if_held(&lease, &settings.identity),
                Ok(Err(err)) => tracing::debug!(error = %err, "cannot read the Lease back"),
                Err(_) => tracing::debug!("reading the Lease back timed out"),
            }
        } else {
            valid_until = None;
        }
        let now_leading = holds && valid_until.is_some_and(|until| SystemTime::now() < until);
        leading.send_if_modified(|was| {
            let changed = *was != now_leading;
            if changed {
                tracing::info!(leading = now_leading, "leadership changed");
            }
            *was = now_leading;
            changed
        });
        tokio::select! {
            changed = holder.changed() => if changed.is_err() {
                leading.send_replace(false);
                return;
            },
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// When `lease` expires, if `identity` holds it.
fn expiry_if_held(lease: &Lease, identity: &str) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    let renewed = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(renewed.as_second()).ok()?)
        + Duration::from_nanos(u64::try_from(renewed.subsec_nanosecond()).ok()?);
    Some(renewed + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lease(holder: &str, renewed: &str, seconds: i32) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "metallb-watcher"},
            "spec": {"holderIdentity": holder, "renewTime": renewed,
                     "leaseDurationSeconds": seconds},
        }))
        .unwrap()
    }

    #[test]
    fn a_lease_expires_its_duration_after_its_renewal_and_only_for_its_holder() {
        let held = lease("w-1", "2026-11-29T10:00:00.500000Z", 3);
        let expiry = expiry_if_held(&held, "w-1").unwrap();
        let expected = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_946_403_500);
        assert_eq!(expiry, expected);
        assert_eq!(expiry_if_held(&held, "w-2"), None, "held by another");
        let mut unrenewed = held.clone();
        unrenewed.spec.as_mut().unwrap().renew_time = None;
        assert_eq!(expiry_if_held(&unrenewed, "w-1"), None);
    }
}
