//! Writing results back to Services: `status.loadBalancer.ingress` (only when it changes), the
//! `metallb.io/ip-allocated-from-pool` annotation, and Events. Patches touch only what we own:
//! merge patches of exactly those fields, no finalizers.

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use metallb_config_formats::resources::{ConfigurationState, ConfigurationStateStatus};
use metallb_proto::pb;
use serde_json::json;

use crate::{
    announcement_status::{Announcement, Announcements, StatusKind},
    events::EventPublisher,
    translate::ingress_ips,
};

/// The annotation naming the pool a Service's IPs come from.
pub const POOL_ANNOTATION: &str = "metallb.io/ip-allocated-from-pool";
/// The name Events and patches are reported under.
pub const FIELD_MANAGER: &str = "metallb-watcher";

/// Writes to the Kubernetes API.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    events: EventPublisher,
}

impl Writer {
    /// A writer reporting as `metallb-watcher`.
    pub fn new(client: Client) -> Self {
        let events =
            EventPublisher::new(client.clone(), FIELD_MANAGER, std::env::var("HOSTNAME").ok());
        Self { events, client }
    }

    /// Makes `service`'s status show `outcome`'s IPs (none for a failure). This is what users
    /// wait for, so it is written before anything else.
    pub async fn write_status(
        &self,
        service: &Service,
        outcome: &pb::ServiceOutcome,
    ) -> anyhow::Result<()> {
        match &outcome.outcome {
            Some(pb::service_outcome::Outcome::Lease(lease)) => {
                self.set_ingress(service, &lease.ips).await
            }
            Some(pb::service_outcome::Outcome::Failure(_)) => self.set_ingress(service, &[]).await,
            None => Ok(()),
        }
    }

    /// The rest of `outcome`: the pool annotation, and an Event when the outcome is new
    /// (`announce`).
    pub async fn write_details(
        &self,
        service: &Service,
        outcome: &pb::ServiceOutcome,
        announce: bool,
    ) -> anyhow::Result<()> {
        let (pool, event) = match &outcome.outcome {
            Some(pb::service_outcome::Outcome::Lease(lease)) => (
                Some(lease.pool.clone()),
                Event {
                    type_: EventType::Normal,
                    reason: "IPAllocated".into(),
                    note: Some(format!("Assigned IP {:?} from pool {}", lease.ips, lease.pool)),
                    action: "Allocate".into(),
                    secondary: None,
                },
            ),
            Some(pb::service_outcome::Outcome::Failure(failure)) => (
                None,
                Event {
                    type_: EventType::Warning,
                    reason: "AllocationFailed".into(),
                    note: Some(failure.message.clone()),
                    action: "Allocate".into(),
                    secondary: None,
                },
            ),
            None => return Ok(()),
        };
        self.set_pool_annotation(service, pool.as_deref()).await?;
        if announce {
            self.events.publish(&event, &service.object_ref(&())).await?;
        }
        Ok(())
    }

    /// Sets status.loadBalancer.ingress to `ips` unless it already says exactly that.
    pub async fn set_ingress(&self, service: &Service, ips: &[String]) -> anyhow::Result<()> {
        if ingress_ips(service) == ips {
            return Ok(());
        }
        let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        self.api(service)
            .patch_status(&name(service), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// Sets or removes the pool annotation.
    pub async fn set_pool_annotation(
        &self,
        service: &Service,
        pool: Option<&str>,
    ) -> anyhow::Result<()> {
        let current = service
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POOL_ANNOTATION))
            .map(String::as_str);
        if current == pool {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {POOL_ANNOTATION: pool}}});
        self.api(service)
            .patch(&name(service), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// An Event about the configuration, on the object it came from.
    pub async fn config_event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        accepted: bool,
        note: String,
    ) -> anyhow::Result<()> {
        let event = Event {
            type_: if accepted { EventType::Normal } else { EventType::Warning },
            reason: if accepted { "ConfigLoaded" } else { "InvalidConfig" }.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "ApplyConfig".into(),
            secondary: None,
        };
        self.events.publish(&event, reference).await?;
        Ok(())
    }

    /// Reports in the ConfigurationState `metallb-watcher` of `namespace` whether the
    /// configuration is in force. A cluster without that CRD (a ConfigMap-only setup) gets the
    /// Events alone.
    pub async fn set_configuration_state(
        &self,
        namespace: &str,
        valid: bool,
        summary: &str,
    ) -> anyhow::Result<()> {
        let api: Api<ConfigurationState> = Api::namespaced(self.client.clone(), namespace);
        let object = json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "ConfigurationState",
            "metadata": {"name": FIELD_MANAGER},
            "spec": {},
        });
        let params = PatchParams::apply(FIELD_MANAGER);
        match api.patch(FIELD_MANAGER, &params, &Patch::Apply(&object)).await {
            Err(kube::Error::Api(status)) if status.code == 404 => {
                tracing::debug!("no ConfigurationState CRD; reporting through Events only");
                return Ok(());
            }
            result => {
                result?;
            }
        }
        let status = ConfigurationStateStatus {
            result: if valid { "Valid" } else { "Invalid" }.into(),
            error_summary: summary.to_string(),
        };
        api.patch_status(
            FIELD_MANAGER,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
        Ok(())
    }

    /// Writes the status of the IPAddressPool `name` of `namespace`.
    pub async fn set_pool_status(
        &self,
        namespace: &str,
        name: &str,
        status: &metallb_config_formats::resources::IpAddressPoolStatus,
    ) -> anyhow::Result<()> {
        let api: Api<metallb_config_formats::resources::IPAddressPool> =
            Api::namespaced(self.client.clone(), namespace);
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
            .await?;
        Ok(())
    }

    /// The status objects of `kind` this watcher made earlier (by their labels), each listing
    /// nothing: compared with what should be, every one is rewritten or deleted. `None` when
    /// the kind is not served (no such CRD).
    pub async fn existing_statuses(
        &self,
        kind: StatusKind,
        namespace: &str,
    ) -> anyhow::Result<Option<Announcements>> {
        let api = status_api(&self.client, kind, namespace);
        let params = kube::api::ListParams::default().labels(STATUS_SELECTOR);
        let listed = match api.list(&params).await {
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            listed => listed?,
        };
        let label = |object: &DynamicObject, key: &str| {
            object.metadata.labels.as_ref().and_then(|labels| labels.get(key)).cloned()
        };
        Ok(Some(
            listed
                .items
                .iter()
                .filter_map(|object| {
                    Some(Announcement {
                        namespace: label(object, "metallb.io/service-namespace")?,
                        service: label(object, "metallb.io/service-name")?,
                        node: label(object, "metallb.io/node")?,
                    })
                })
                .map(|announcement| (announcement, Default::default()))
                .collect(),
        ))
    }

    /// Makes the status objects of `kind` say `desired`, given that they said `previous`.
    pub async fn sync_statuses(
        &self,
        kind: StatusKind,
        namespace: &str,
        desired: &Announcements,
        previous: &Announcements,
    ) -> anyhow::Result<()> {
        let api = status_api(&self.client, kind, namespace);
        for (announcement, listed) in desired {
            if previous.get(announcement) == Some(listed) {
                continue;
            }
            let name = announcement.object_name();
            let object = json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": kind.kind(),
                "metadata": {
                    "name": name,
                    "labels": {
                        "app.kubernetes.io/managed-by": FIELD_MANAGER,
                        "metallb.io/node": announcement.node,
                        "metallb.io/service-name": announcement.service,
                        "metallb.io/service-namespace": announcement.namespace,
                    },
                },
                "spec": {},
            });
            api.patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&object)).await?;
            let status = kind.status(announcement, listed);
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await?;
        }
        for announcement in previous.keys().filter(|key| !desired.contains_key(*key)) {
            match api.delete(&announcement.object_name(), &Default::default()).await {
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                result => {
                    result?;
                }
            }
        }
        Ok(())
    }

    /// Tells `service`'s watchers that its layer 2 IPs are answered from `node` now, with
    /// MetalLB's reason and wording.
    pub async fn node_assigned(&self, service: &Service, node: &str) -> anyhow::Result<()> {
        let event = Event {
            type_: EventType::Normal,
            reason: "nodeAssigned".into(),
            note: Some(format!("announcing from node \"{node}\" with protocol \"layer2\"")),
            action: "Announce".into(),
            secondary: None,
        };
        self.events.publish(&event, &service.object_ref(&())).await?;
        Ok(())
    }

    fn api(&self, service: &Service) -> Api<Service> {
        Api::namespaced(
            self.client.clone(),
            service.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }
}

fn name(service: &Service) -> String {
    service.metadata.name.clone().unwrap_or_default()
}

/// The label selector of the status objects the watcher makes.
const STATUS_SELECTOR: &str = "app.kubernetes.io/managed-by=metallb-watcher";

/// The API of the status objects of `kind` in `namespace`.
fn status_api(client: &Client, kind: StatusKind, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "metallb.io".into(),
        version: "v1beta1".into(),
        api_version: "metallb.io/v1beta1".into(),
        kind: kind.kind().into(),
        plural: kind.plural().into(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}
