//! Publishing Events (events.k8s.io/v1). Every Event is a new object: the watcher only reports
//! news (a new IP, a new failure, a rejected configuration), so there is nothing to fold.
//!
//! kube's `Recorder` is not used because it folds every Event with the same reason about an
//! object into a series of the first one and keeps the first note: a Service moved from .0 to
//! .1 would show a second `IPAllocated` that still says .0.

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::events::{Event, EventType},
};

/// Longest note the API server accepts.
const NOTE_LIMIT: usize = 1024;

/// Publishes Events as one controller.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
}

impl EventPublisher {
    /// Events reported by `controller`, from `instance` (the pod name).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| controller.to_string());
        Self { client, controller: controller.to_string(), instance }
    }

    /// Creates `event` about `regarding`, in its namespace (or `default` for cluster objects).
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Timestamp::now();
        let object = K8sEvent {
            metadata: ObjectMeta {
                // Unique per object and instant, as the API server's own components name them.
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.as_ref().map(|note| note.chars().take(NOTE_LIMIT).collect()),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &object)
            .await?;
        Ok(())
    }
}
