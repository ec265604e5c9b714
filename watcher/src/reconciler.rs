//! The watcher's one loop, level-based: each pass reads the stores, sends the allocator what
//! differs from what it last sent (configuration, then nodes, then services; a full sync of
//! services first and after every reconnect), and writes outcomes back. Bursts of events
//! coalesce into one pass; nothing is sent twice.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Resource;
use metallb_process::{AllocatorConnector, Backoff, Readiness, propagation};
use metallb_proto::pb;
use tokio::sync::{Notify, mpsc};
use tracing::Instrument;

use crate::{
    desired::DesiredServices,
    sources::Sources,
    translate::{self, CONFIG_MAP_NAME},
    write_queue::{Key, Write, WriteQueue},
    writeback::Writer,
};

use metallb_process::allocator_client::Client;

/// How soon failed write-backs are tried again.
const RETRY_WRITES_AFTER: Duration = Duration::from_secs(1);

/// How long a burst of events may run on before a pass starts anyway.
const COALESCE: Duration = Duration::from_millis(10);

/// How often, when nothing happens, the watcher asks the allocator which instance it is: a
/// restarted allocator has no leases and waits for a full sync, which nothing else would send
/// while Kubernetes is quiet.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Deletes sent to the allocator at once.
const DELETES_IN_FLIGHT: usize = 32;

/// Every this many idle probes, the allocator's leases are compared with the Services' status.
const COMPARE_EVERY_PROBES: u32 = 10;

/// What the reconciler needs to know.
pub struct Settings {
    /// How to reach the allocator.
    pub allocator: AllocatorConnector,
    /// Namespace of the configuration.
    pub config_namespace: String,
    /// Our loadBalancerClass, or `None` for Services without one.
    pub load_balancer_class: Option<String>,
}

/// The loop's memory of what the allocator has been told and what was written back.
pub struct Reconciler {
    settings: Settings,
    sources: Sources,
    writer: Writer,
    writes: WriteQueue,
    failed_writes: mpsc::UnboundedReceiver<Key>,
    client: Option<Client>,
    sent_config: Option<pb::Config>,
    sent_nodes: BTreeMap<String, pb::Node>,
    sent_services: BTreeMap<Key, pb::Service>,
    /// What the allocator should be told about Services.
    desired: DesiredServices,
    written: BTreeMap<Key, pb::ServiceOutcome>,
    synced: bool,
    /// Services whose outcome could not be written: asked again next pass if still ours
    /// (the allocator keeps the lease, so that costs nothing), cleaned up if no longer ours.
    rewrite: BTreeSet<Key>,
    /// What the ConfigurationState says: (valid, error summary).
    reported_state: Option<(bool, String)>,
    /// The allocator instance that answered the last full sync.
    synced_instance: Option<String>,
    /// What the allocator made of `sent_config` (valid, error summary): the state to report
    /// again when the configuration comes back to it after an unreadable spell.
    sent_config_state: Option<(bool, String)>,
    /// Idle probes since the last comparison of leases with status.
    probes_since_compare: u32,
    /// Services whose lease and status differed at the last comparison: a difference seen
    /// twice in a row is not a write on its way, and a full sync repairs it.
    suspected: BTreeSet<Key>,
}

impl Reconciler {
    /// A reconciler over `sources` writing with `writer`.
    pub fn new(settings: Settings, sources: Sources, writer: Writer) -> Self {
        let (failed, failed_writes) = mpsc::unbounded_channel();
        Self {
            settings,
            sources,
            writes: WriteQueue::spawn(writer.clone(), failed),
            failed_writes,
            writer,
            client: None,
            sent_config: None,
            sent_nodes: BTreeMap::new(),
            sent_services: BTreeMap::new(),
            desired: DesiredServices::default(),
            written: BTreeMap::new(),
            synced: false,
            rewrite: Default::default(),
            reported_state: None,
            synced_instance: None,
            sent_config_state: None,
            probes_since_compare: 0,
            suspected: Default::default(),
        }
    }

    /// Runs passes whenever `changed` fires; ready once a full pass succeeded.
    pub async fn run(mut self, changed: Arc<Notify>, readiness: Readiness) {
        let mut backoff = Backoff::default();
        loop {
            match self.pass().await {
                Ok(()) => {
                    readiness.set_ready();
                    backoff.reset();
                    if let Err(err) = self.wait_for_work(&changed).await {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            "the allocator changed; syncing everything again"
                        );
                        self.forget_allocator();
                    }
                    tokio::time::sleep(COALESCE).await;
                }
                Err(err) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = format!("{err:#}"),
                        retry_in_ms = delay.as_millis() as u64,
                        "pass failed; the allocator gets everything again"
                    );
                    readiness.set_not_ready(format!("last pass failed: {err:#}"));
                    self.forget_allocator();
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The allocator may have restarted: tell it everything again, starting with a full sync,
    /// so it adopts before it allocates.
    fn forget_allocator(&mut self) {
        self.client = None;
        self.sent_config = None;
        self.sent_config_state = None;
        self.sent_nodes.clear();
        self.sent_services.clear();
        self.synced = false;
        self.synced_instance = None;
    }

    /// Waits until there is work: a change, a failed write to retry, or (found by probing while
    /// idle) an allocator that is not the one the last full sync went to.
    async fn wait_for_work(&mut self, changed: &Notify) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                () = changed.notified() => return Ok(()),
                Some(key) = self.failed_writes.recv() => {
                    self.retry_write(key);
                    tokio::time::sleep(RETRY_WRITES_AFTER).await;
                    return Ok(());
                }
                () = tokio::time::sleep(PROBE_INTERVAL) => self.probe().await?,
            }
        }
    }

    /// Asks the allocator which instance it is; an error if it is not the one that had the
    /// last full sync (or cannot be reached).
    async fn probe(&mut self) -> anyhow::Result<()> {
        // The cheapest read the writer may make: sessions of a node that cannot exist.
        let request = pb::ListSessionsRequest { node_name: "-".into() };
        let response = self.client().list_sessions(request).await?;
        let answered = instance_of(response.metadata());
        if answered != self.synced_instance {
            anyhow::bail!(
                "allocator instance {} answered, the last full sync went to {}",
                answered.as_deref().unwrap_or("<none>"),
                self.synced_instance.as_deref().unwrap_or("<none>")
            );
        }
        self.probes_since_compare += 1;
        if self.probes_since_compare >= COMPARE_EVERY_PROBES {
            self.probes_since_compare = 0;
            self.compare_leases_with_status().await?;
        }
        Ok(())
    }

    /// Compares the allocator's leases with the IPs the Services show in their status; an
    /// error when they differ for the same Service twice in a row (a lost call, a bug, a hand-
    /// made call), so that a full sync repairs it.
    async fn compare_leases_with_status(&mut self) -> anyhow::Result<()> {
        let leases = self.client().list_leases(pb::ListLeasesRequest::default()).await?;
        let leases: BTreeMap<Key, BTreeSet<String>> = leases
            .into_inner()
            .leases
            .into_iter()
            .filter_map(|lease| {
                let key = lease.service?;
                Some(((key.namespace, key.name), lease.ips.into_iter().collect()))
            })
            .collect();
        let mut differing = BTreeSet::new();
        for (key, service) in self.desired.all() {
            let status: BTreeSet<String> = service.current_ips.iter().cloned().collect();
            // A Service without status yet may hold a lease whose write is on its way.
            if !status.is_empty() && leases.get(key) != Some(&status) {
                differing.insert(key.clone());
            }
        }
        differing
            .extend(leases.keys().filter(|key| !self.desired.all().contains_key(*key)).cloned());
        let confirmed: Vec<Key> = differing.intersection(&self.suspected).cloned().collect();
        self.suspected = differing;
        if !confirmed.is_empty() {
            self.suspected.clear();
            anyhow::bail!("the allocator's leases differ from the status of {confirmed:?}");
        }
        Ok(())
    }

    /// A write-back failed (a conflict, a throttled Event): the next pass decides again from
    /// the current state. The allocator's state is not in question, so nothing is re-sent to it
    /// unless the Service is still ours.
    fn retry_write(&mut self, key: Key) {
        self.written.remove(&key);
        self.rewrite.insert(key);
    }

    async fn pass(&mut self) -> anyhow::Result<()> {
        while let Ok(key) = self.failed_writes.try_recv() {
            self.retry_write(key);
        }
        if self.client.is_none() {
            self.client = Some(self.settings.allocator.connect(Duration::from_secs(5)).await?);
        }
        self.send_config().await?;
        self.send_nodes().await?;
        self.send_services().await
    }

    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("connected at the start of the pass")
    }

    async fn send_config(&mut self) -> anyhow::Result<()> {
        let namespace = self.settings.config_namespace.clone();
        let config_map = self
            .sources
            .config_maps
            .get(&kube::runtime::reflector::ObjectRef::new(CONFIG_MAP_NAME).within(&namespace));
        let resources: Vec<_> = self
            .sources
            .resources
            .iter()
            .flat_map(|(_, store)| store.state())
            .map(|o| (*o).clone())
            .collect();
        let secrets = self.sources.secrets.state();
        let secret_refs: Vec<_> = secrets.iter().map(|s| s.as_ref()).collect();
        let source = translate::config_source(&namespace, config_map.is_some(), resources.len());
        let reference = config_map
            .as_ref()
            .map(|cm| cm.object_ref(&()))
            .or_else(|| resources.first().map(dynamic_object_ref));
        let config = match translate::config(
            &namespace,
            config_map.as_deref(),
            &resources,
            &secret_refs,
        ) {
            Ok(config) => config,
            Err(errors) => {
                let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                if self.sent_config.is_some() || reference.is_some() {
                    tracing::warn!(source, errors = ?reasons, "configuration unreadable; the previous one stays in force");
                }
                if let Some(reference) = &reference {
                    self.writer.config_event(reference, false, reasons.join("; ")).await?;
                }
                return self.report_state(false, reasons.join("\n")).await;
            }
        };
        if self.sent_config.as_ref() == Some(&config) {
            // Nothing to send, but the state may still say what an unreadable version in
            // between said: report again what the allocator made of this one.
            return match self.sent_config_state.clone() {
                Some((valid, summary)) => self.report_state(valid, summary).await,
                None => Ok(()),
            };
        }
        let request = pb::ApplyConfigRequest {
            config: Some(config.clone()),
            source: source.clone(),
            trace: None,
        };
        let response = self.client().apply_config(request).await?.into_inner();
        self.sent_config = Some(config);
        if response.accepted {
            tracing::info!(source, "configuration accepted");
            self.report_sent_config_state(true, String::new()).await?;
        } else {
            let reasons: Vec<String> = response
                .errors
                .iter()
                .map(|e| format!("{} {}: {}", e.object, e.field, e.message))
                .collect();
            tracing::warn!(source, errors = ?reasons, "configuration rejected; the previous one stays in force");
            // Each error's Event goes to the resource it is about; errors about no resource of
            // ours (a ConfigMap's pool, a community alias) to the configuration's own object.
            let mut targets: Vec<(k8s_openapi::api::core::v1::ObjectReference, Vec<String>)> =
                Vec::new();
            for (error, reason) in response.errors.iter().zip(&reasons) {
                let Some(target) =
                    object_named(&error.object, &resources).or_else(|| reference.clone())
                else {
                    continue;
                };
                match targets.iter_mut().find(|(known, _)| *known == target) {
                    Some((_, about_it)) => about_it.push(reason.clone()),
                    None => targets.push((target, vec![reason.clone()])),
                }
            }
            for (target, about_it) in &targets {
                self.writer.config_event(target, false, about_it.join("; ")).await?;
            }
            self.report_sent_config_state(false, reasons.join("\n")).await?;
        }
        self.write_outcomes(&response.changed);
        Ok(())
    }

    /// Reports what the allocator made of the configuration sent last, and remembers it.
    async fn report_sent_config_state(
        &mut self,
        valid: bool,
        summary: String,
    ) -> anyhow::Result<()> {
        self.sent_config_state = Some((valid, summary.clone()));
        self.report_state(valid, summary).await
    }

    async fn report_state(&mut self, valid: bool, summary: String) -> anyhow::Result<()> {
        let state = (valid, summary);
        if self.reported_state.as_ref() == Some(&state) {
            return Ok(());
        }
        self.writer
            .set_configuration_state(&self.settings.config_namespace, state.0, &state.1)
            .await?;
        self.reported_state = Some(state);
        Ok(())
    }

    async fn send_nodes(&mut self) -> anyhow::Result<()> {
        let desired: BTreeMap<String, pb::Node> = self
            .sources
            .nodes
            .state()
            .iter()
            .map(|n| translate::node(n))
            .map(|n| (n.name.clone(), n))
            .collect();
        for (name, node) in &desired {
            if self.sent_nodes.get(name) != Some(node) {
                let request = pb::UpdateNodeRequest { node: Some(node.clone()), trace: None };
                self.client().update_node(request).await?;
                self.sent_nodes.insert(name.clone(), node.clone());
            }
        }
        let gone: Vec<String> =
            self.sent_nodes.keys().filter(|n| !desired.contains_key(*n)).cloned().collect();
        for name in gone {
            self.client()
                .delete_node(pb::DeleteNodeRequest { name: name.clone(), trace: None })
                .await?;
            self.sent_nodes.remove(&name);
        }
        Ok(())
    }

    async fn send_services(&mut self) -> anyhow::Result<()> {
        let class = self.settings.load_balancer_class.as_deref();
        let sources = &self.sources;
        let mut changed = self.desired.refresh(
            &sources.services,
            &sources.endpoint_slices,
            &sources.namespaces,
            class,
        );
        if !self.synced {
            let desired = self.desired.all().clone();
            let span = tracing::info_span!("watcher.sync", services = desired.len());
            let request = pb::SyncServicesRequest {
                services: desired.values().cloned().collect(),
                trace: Some(propagation::trace_context_of(&span)),
            };
            let response = self.client().sync_services(request).instrument(span).await?;
            self.synced_instance = instance_of(response.metadata());
            let response = response.into_inner();
            self.sent_services = desired;
            self.synced = true;
            tracing::info!(
                services = self.sent_services.len(),
                released = response.released.len(),
                "full sync done"
            );
            self.write_outcomes(&response.outcomes);
            if let Some(deferred) = response.deferred_config {
                tracing::info!(source = deferred.source, "the waiting configuration took effect");
                self.report_sent_config_state(true, String::new()).await?;
                self.write_outcomes(&deferred.changed);
            }
            return Ok(());
        }
        for key in std::mem::take(&mut self.rewrite) {
            if self.desired.get(&key).is_some() {
                self.sent_services.remove(&key);
                changed.insert(key);
            } else if let Some(service) = self.find_service(&key) {
                // No longer ours and the clean-up failed: clean up again.
                self.writes.push(key, service, Write::Clear);
            }
        }
        let mut pending: Vec<pb::ServiceOutcome> = Vec::new();
        // Deletes first, and many at once: a deleted Service's route must be withdrawn fast,
        // and the IPs it frees may be what a new Service in the same pass asks for.
        let gone: Vec<Key> = changed
            .iter()
            .filter(|key| self.sent_services.contains_key(*key) && self.desired.get(key).is_none())
            .cloned()
            .collect();
        let client = self.client().clone();
        let mut deletes = futures::stream::iter(gone.into_iter().map(|key| {
            let mut client = client.clone();
            async move {
                let request = pb::DeleteServiceRequest {
                    service: Some(pb::ServiceKey { namespace: key.0.clone(), name: key.1.clone() }),
                    trace: None,
                };
                let response = client.delete_service(request).await;
                (key, response)
            }
        }))
        .buffer_unordered(DELETES_IN_FLIGHT);
        while let Some((key, response)) = deletes.next().await {
            let response = response?.into_inner();
            self.sent_services.remove(&key);
            self.written.remove(&key);
            // Still there but no longer a LoadBalancer of ours: take back what we wrote.
            if let Some(service) = self.find_service(&key) {
                self.writes.push(key.clone(), service, Write::Clear);
            }
            pending.extend(response.others_changed);
        }
        // Only what changed since the last pass can differ from what the allocator was told:
        // after an error everything is told again, through a full sync.
        for key in &changed {
            let Some(service) = self.desired.get(key).cloned() else { continue };
            if self.sent_services.get(key) == Some(&service) {
                continue;
            }
            let span =
                tracing::info_span!("watcher.service", service = %format!("{}/{}", key.0, key.1));
            let trace_id = propagation::trace_id_of(&span);
            tracing::info!(parent: &span, trace_id, "service changed; asking the allocator");
            let request = pb::UpsertServiceRequest {
                service: Some(service.clone()),
                trace: Some(propagation::trace_context_of(&span)),
            };
            let response =
                self.client().upsert_service(request).instrument(span).await?.into_inner();
            self.sent_services.insert(key.clone(), service.clone());
            let mut outcomes: Vec<pb::ServiceOutcome> = response.outcome.into_iter().collect();
            outcomes.extend(response.others_changed);
            if let Some(deferred) = response.deferred_config {
                tracing::info!(source = deferred.source, "the waiting configuration took effect");
                self.report_sent_config_state(true, String::new()).await?;
                outcomes.extend(deferred.changed);
            }
            pending.extend(outcomes);
        }
        self.write_outcomes(&pending);
        Ok(())
    }

    fn find_service(&self, key: &Key) -> Option<Arc<Service>> {
        self.sources.services.get(&kube::runtime::reflector::ObjectRef::new(&key.1).within(&key.0))
    }

    /// Hands outcomes to the write queue, which writes them while the next passes run.
    fn write_outcomes(&mut self, outcomes: &[pb::ServiceOutcome]) {
        for outcome in outcomes {
            let Some(key) = outcome.service.as_ref().map(|k| (k.namespace.clone(), k.name.clone()))
            else {
                continue;
            };
            let Some(service) = self.find_service(&key) else { continue };
            // An Event only for news: not for what was already written, nor for what the
            // Service already shows (a restart re-adopting its IPs).
            let announce =
                !same_outcome(self.written.get(&key), outcome) && !already_shown(&service, outcome);
            self.written.insert(key.clone(), outcome.clone());
            self.writes.push(key, service, Write::Outcome { outcome: outcome.clone(), announce });
        }
    }
}

/// Whether `service` already shows `outcome`'s IPs and pool.
fn already_shown(service: &Service, outcome: &pb::ServiceOutcome) -> bool {
    let Some(pb::service_outcome::Outcome::Lease(lease)) = &outcome.outcome else { return false };
    let pool = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::writeback::POOL_ANNOTATION));
    translate::ingress_ips(service) == lease.ips && pool == Some(&lease.pool)
}

/// A reference to a metallb.io resource, for Events about the configuration it is part of.
/// The metallb.io resource an allocator error names ("AddressPool/pool-a" is the IPAddressPool
/// pool-a), if it is one of `resources`.
fn object_named(
    object: &str,
    resources: &[kube::api::DynamicObject],
) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    let (kind, name) = object.split_once('/')?;
    let kind = if kind == "AddressPool" { "IPAddressPool" } else { kind };
    resources
        .iter()
        .find(|resource| {
            resource.types.as_ref().is_some_and(|types| types.kind == kind)
                && resource.metadata.name.as_deref() == Some(name)
        })
        .map(dynamic_object_ref)
}

fn dynamic_object_ref(
    object: &kube::api::DynamicObject,
) -> k8s_openapi::api::core::v1::ObjectReference {
    let types = object.types.clone().unwrap_or_default();
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(types.api_version),
        kind: Some(types.kind),
        name: object.metadata.name.clone(),
        namespace: object.metadata.namespace.clone(),
        uid: object.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Whether two outcomes say the same (the lease's time does not count).
fn same_outcome(before: Option<&pb::ServiceOutcome>, after: &pb::ServiceOutcome) -> bool {
    use pb::service_outcome::Outcome;
    match (before.and_then(|b| b.outcome.as_ref()), after.outcome.as_ref()) {
        (Some(Outcome::Lease(a)), Some(Outcome::Lease(b))) => a.ips == b.ips && a.pool == b.pool,
        (Some(Outcome::Failure(a)), Some(Outcome::Failure(b))) => a.message == b.message,
        _ => false,
    }
}

/// The allocator instance a response names.
fn instance_of(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = metadata.get(metallb_proto::ALLOCATOR_INSTANCE_HEADER)?;
    value.to_str().ok().map(String::from)
}
