//! One allocator replica as the watcher feeds it: its connection, and what it has been told
//! since its last full sync. The reconciler feeds the primary first and writes its answers
//! back; every other replica (a standby) is then told exactly what the primary was told, with
//! the primary's IPs as each Service's current IPs, which a standby adopts. So a standby holds
//! the primary's leases and can serve announcers, or take over, at any moment.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use metallb_process::{AllocatorConnector, Backoff, allocator_client::Client};
use metallb_proto::{PRIMARY_LEASE, REPLICA_ROLE_HEADER, pb};
use tracing::{Instrument, Span};

use crate::write_queue::Key;

/// How long connecting to a replica may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How an allocator that failed is retried: a restarted one is back in well under a second,
/// and trying one that is down costs a refused connection, so the pace stays quick (at most
/// `RETRY_AT_MOST` apart) rather than backing off towards minutes.
pub fn retry_pace() -> Backoff {
    Backoff::new(Duration::from_millis(100), RETRY_AT_MOST)
}

/// The longest pause between two tries of an allocator that failed.
const RETRY_AT_MOST: Duration = Duration::from_secs(2);

/// Changes sent in one `UpdateServices` call: a burst of thousands goes in a few calls, each
/// well under the allocator's message size limit.
const CHANGES_PER_CALL: usize = 500;

/// What a replica has been told since its last full sync.
#[derive(Default)]
pub struct Told {
    /// The configuration last sent.
    pub config: Option<pb::Config>,
    /// The nodes last sent.
    pub nodes: BTreeMap<String, pb::Node>,
    /// Every Service as last sent, with the current IPs the replica holds for it; shared with
    /// the desired translations and the other replicas' records wherever they agree.
    pub services: BTreeMap<Key, Arc<pb::Service>>,
}

/// One allocator replica.
pub struct Replica {
    connector: AllocatorConnector,
    client: Option<Client>,
    /// What it has been told; meaningful only while `synced`.
    pub told: Told,
    /// Whether it had a full sync since it was last forgotten.
    synced: bool,
    /// The instance that answered its last full sync.
    instance: Option<String>,
    /// Services to compare with what it was told, at its next turn.
    pub dirty: BTreeSet<Key>,
    /// Services whose lease differed from the expected one at the last comparison.
    pub suspected: BTreeSet<Key>,
    /// Retry pacing after failures (standbys only: the primary is paced by the loop).
    backoff: Backoff,
    retry_at: Option<Instant>,
    /// Calls that changed its state (configuration, nodes, Services) since it was made: what
    /// derives from that state (pool usage, announcements) needs reading again only after one.
    pub changes: u64,
    /// What it is told it is with every call (`REPLICA_ROLE_HEADER`).
    role: Role,
    /// When a call last went to it (that may have renewed its word as primary).
    last_sent: Option<Instant>,
}

/// A replica's role, as the allocator reads it from every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only replica.
    Sole,
    /// The one the watcher feeds first and whose answers it writes back.
    Primary,
    /// Any other.
    Standby,
}

impl Role {
    fn header_value(self) -> &'static str {
        match self {
            Self::Sole => "sole",
            Self::Primary => "primary",
            Self::Standby => "standby",
        }
    }
}

impl Replica {
    /// A replica reached through `connector` (one endpoint).
    pub fn new(connector: AllocatorConnector) -> Self {
        Self {
            connector,
            client: None,
            told: Told::default(),
            synced: false,
            instance: None,
            dirty: BTreeSet::new(),
            suspected: BTreeSet::new(),
            backoff: retry_pace(),
            retry_at: None,
            changes: 0,
            role: Role::Sole,
            last_sent: None,
        }
    }

    /// Tells it `role` from its next call on.
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
    }

    /// When a primary's word, as this replica may have last been given it, has certainly run
    /// out: a standby may be promoted only then.
    pub fn word_runs_out(&self) -> Option<Instant> {
        self.last_sent.map(|sent| sent + PRIMARY_LEASE)
    }

    /// Whether no call has gone to it for `interval`.
    pub fn quiet_for(&self, interval: Duration) -> bool {
        self.last_sent.is_none_or(|sent| sent.elapsed() >= interval)
    }

    /// `message` as a call that states its role.
    fn request<T>(&mut self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let role = tonic::metadata::MetadataValue::from_static(self.role.header_value());
        request.metadata_mut().insert(REPLICA_ROLE_HEADER, role);
        self.last_sent = Some(Instant::now());
        request
    }

    /// Its endpoint, for logs.
    pub fn endpoint(&self) -> &str {
        self.connector.preferred()
    }

    /// Whether it had a full sync and has not been forgotten since.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// It may have restarted or missed calls: it gets everything again, from a full sync.
    pub fn forget(&mut self) {
        self.client = None;
        self.told = Told::default();
        self.synced = false;
        self.instance = None;
        self.dirty.clear();
        self.suspected.clear();
    }

    /// A standby failed: forgotten, and left alone for a growing while.
    pub fn failed(&mut self) {
        self.forget();
        self.retry_at = Some(Instant::now() + self.backoff.next_delay());
    }

    /// A standby worked: its next failure is retried soon.
    pub fn worked(&mut self) {
        self.backoff.reset();
        self.retry_at = None;
    }

    /// Whether a failed standby's pause is over.
    pub fn due(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    /// When this replica, not synced, is to be tried again; `None` when synced.
    pub fn next_try(&self) -> Option<Instant> {
        if self.synced {
            return None;
        }
        Some(self.retry_at.unwrap_or_else(Instant::now))
    }

    /// The connection, opened if needed.
    pub async fn client(&mut self) -> anyhow::Result<&mut Client> {
        if self.client.is_none() {
            self.client = Some(self.connector.connect(CONNECT_TIMEOUT).await?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Whether it answers as the instance that had its last full sync; an error saying why
    /// not otherwise.
    pub async fn check_instance(&mut self) -> anyhow::Result<()> {
        // The cheapest read the writer may make: sessions of a node that cannot exist.
        let request = self.request(pb::ListSessionsRequest { node_name: "-".into() });
        let response = self.client().await?.list_sessions(request).await?;
        let answered = instance_of(response.metadata());
        if answered != self.instance {
            anyhow::bail!(
                "allocator {} answered as instance {}, its last full sync went to {}",
                self.endpoint(),
                answered.as_deref().unwrap_or("<none>"),
                self.instance.as_deref().unwrap_or("<none>")
            );
        }
        Ok(())
    }

    /// Its leases, as IP sets by Service.
    pub async fn leases(&mut self) -> anyhow::Result<BTreeMap<Key, BTreeSet<String>>> {
        let request = self.request(pb::ListLeasesRequest::default());
        let leases = self.client().await?.list_leases(request).await?;
        Ok(leases
            .into_inner()
            .leases
            .into_iter()
            .filter_map(|lease| {
                let key = lease.service?;
                Some(((key.namespace, key.name), lease.ips.into_iter().collect()))
            })
            .collect())
    }

    /// Sends `config` unless it was the last one sent; its answer when sent.
    pub async fn apply_config(
        &mut self,
        config: &pb::Config,
        source: &str,
    ) -> anyhow::Result<Option<pb::ApplyConfigResponse>> {
        if self.told.config.as_ref() == Some(config) {
            return Ok(None);
        }
        let request = self.request(pb::ApplyConfigRequest {
            config: Some(config.clone()),
            source: source.to_string(),
            trace: None,
        });
        let response = self.client().await?.apply_config(request).await?.into_inner();
        self.changes += 1;
        self.told.config = Some(config.clone());
        Ok(Some(response))
    }

    /// Sends the nodes that differ from what was sent, and forgets the ones that are gone.
    pub async fn update_nodes(&mut self, nodes: &BTreeMap<String, pb::Node>) -> anyhow::Result<()> {
        for (name, node) in nodes {
            if self.told.nodes.get(name) != Some(node) {
                let request =
                    self.request(pb::UpdateNodeRequest { node: Some(node.clone()), trace: None });
                self.client().await?.update_node(request).await?;
                self.changes += 1;
                self.told.nodes.insert(name.clone(), node.clone());
            }
        }
        let gone: Vec<String> =
            self.told.nodes.keys().filter(|name| !nodes.contains_key(*name)).cloned().collect();
        for name in gone {
            let request = self.request(pb::DeleteNodeRequest { name: name.clone(), trace: None });
            self.client().await?.delete_node(request).await?;
            self.changes += 1;
            self.told.nodes.remove(&name);
        }
        Ok(())
    }

    /// Whether it was told `service` as `key` already; if so, its record shares `service`, so
    /// that equal translations are kept once.
    pub fn told_already(&mut self, key: &Key, service: &Arc<pb::Service>) -> bool {
        match self.told.services.get_mut(key) {
            Some(told) if told == service => {
                *told = Arc::clone(service);
                true
            }
            _ => false,
        }
    }

    /// A full sync of `services`; afterwards the replica is synced.
    pub async fn sync_services(
        &mut self,
        services: BTreeMap<Key, Arc<pb::Service>>,
        span: Span,
    ) -> anyhow::Result<pb::SyncServicesResponse> {
        let request = self.request(pb::SyncServicesRequest {
            services: services.values().map(|service| pb::Service::clone(service)).collect(),
            trace: Some(metallb_process::propagation::trace_context_of(&span)),
        });
        let response = self.client().await?.sync_services(request).instrument(span).await?;
        self.changes += 1;
        self.instance = instance_of(response.metadata());
        self.told.services = services;
        self.synced = true;
        self.dirty.clear();
        Ok(response.into_inner())
    }

    /// Sends changes in batches: the deletes of `gone` first, then `changed` (each Service
    /// with the span of its change) in order. The answers, in the same order.
    pub async fn update_services(
        &mut self,
        gone: Vec<Key>,
        changed: Vec<(Key, Arc<pb::Service>, Span)>,
    ) -> anyhow::Result<pb::UpdateServicesResponse> {
        let mut answers = pb::UpdateServicesResponse::default();
        for keys in gone.chunks(CHANGES_PER_CALL) {
            let deletes = keys
                .iter()
                .map(|key| pb::DeleteServiceRequest {
                    service: Some(pb::ServiceKey { namespace: key.0.clone(), name: key.1.clone() }),
                    trace: None,
                })
                .collect();
            let request = self.request(pb::UpdateServicesRequest { deletes, upserts: Vec::new() });
            let response = self.client().await?.update_services(request).await?.into_inner();
            self.changes += 1;
            for key in keys {
                self.told.services.remove(key);
            }
            answers.deletes.extend(response.deletes);
        }
        let mut changed = changed.into_iter().peekable();
        while changed.peek().is_some() {
            let batch: Vec<(Key, Arc<pb::Service>, Span)> =
                changed.by_ref().take(CHANGES_PER_CALL).collect();
            let upserts = batch
                .iter()
                .map(|(_, service, span)| pb::UpsertServiceRequest {
                    service: Some(pb::Service::clone(service)),
                    trace: Some(metallb_process::propagation::trace_context_of(span)),
                })
                .collect();
            let request = self.request(pb::UpdateServicesRequest { deletes: Vec::new(), upserts });
            let response = self.client().await?.update_services(request).await?.into_inner();
            self.changes += 1;
            for (key, service, _) in batch {
                self.told.services.insert(key, service);
            }
            answers.upserts.extend(response.upserts);
        }
        Ok(answers)
    }

    /// Brings this standby up to what `primary` was told: a full sync when it has none, else
    /// the configuration, the nodes and the Services marked dirty.
    pub async fn mirror(&mut self, primary: &Told) -> anyhow::Result<()> {
        if let Some(config) = &primary.config {
            self.apply_config(config, "mirrored from the primary allocator").await?;
        }
        self.update_nodes(&primary.nodes).await?;
        if !self.synced {
            let span = tracing::debug_span!("watcher.mirror", services = primary.services.len());
            self.sync_services(primary.services.clone(), span).await?;
            return Ok(());
        }
        let dirty = std::mem::take(&mut self.dirty);
        let (gone, present): (Vec<Key>, Vec<Key>) =
            dirty.into_iter().partition(|key| !primary.services.contains_key(key));
        let gone: Vec<Key> =
            gone.into_iter().filter(|key| self.told.services.contains_key(key)).collect();
        let changed: Vec<(Key, Arc<pb::Service>, Span)> = present
            .into_iter()
            .filter(|key| !self.told_already(key, &primary.services[key]))
            .map(|key| {
                let service = Arc::clone(&primary.services[&key]);
                (key, service, Span::none())
            })
            .collect();
        self.update_services(gone, changed).await?;
        Ok(())
    }
}

/// The allocator instance a response names.
fn instance_of(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = metadata.get(metallb_proto::ALLOCATOR_INSTANCE_HEADER)?;
    value.to_str().ok().map(String::from)
}
