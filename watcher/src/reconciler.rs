//! The watcher's one loop, level-based: each pass reads the stores, sends the primary allocator
//! what differs from what it last sent (configuration, then nodes, then services; a full sync of
//! services first and after every reconnect), writes its outcomes back, then tells every
//! standby replica the same (see `replica`). Bursts of events coalesce into one pass; nothing is
//! sent twice. When the primary stops answering, a standby that holds its leases takes over.
//! Only the leader among watcher replicas runs passes (see `leadership`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Service;
use kube::Resource;
use metallb_process::{AllocatorConnector, Readiness};
use metallb_proto::pb;
use tokio::sync::{Notify, mpsc, watch};

use crate::{
    announcement_status::{StatusKind, StatusObjects, new_announcers},
    desired::{DesiredServices, Makings},
    metrics::WatcherMetrics,
    replica::Replica,
    replica::Role,
    sources::{ConfigObjects, Sources},
    translate,
    write_queue::{Key, Write, WriteQueue},
    writeback::Writer,
};

/// How soon failed write-backs are tried again.
const RETRY_WRITES_AFTER: Duration = Duration::from_secs(1);

/// How long a burst of events may run on before a pass starts anyway. Only work that comes
/// within this long of the last pass waits so (it is likely part of a burst, the pass's own
/// write-backs included); a change that comes after a quiet spell is most likely alone, and
/// goes at once: waiting would only add to its latency.
const COALESCE: Duration = Duration::from_millis(10);

/// How often, when nothing happens, the watcher asks each allocator replica which instance it
/// is: a restarted allocator has no leases and waits for a full sync, which nothing else would
/// send while Kubernetes is quiet.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Every this many idle probes, the allocator's leases are compared with the Services' status.
const COMPARE_EVERY_PROBES: u32 = 10;

/// What the reconciler needs to know.
pub struct Settings {
    /// How to reach the allocator replicas (one endpoint each; the first starts as primary).
    pub allocator: AllocatorConnector,
    /// Namespace of the configuration.
    pub config_namespace: String,
    /// Our loadBalancerClass, or `None` for Services without one.
    pub load_balancer_class: Option<String>,
    /// Where passes, write-backs and the configuration's fate are counted.
    pub metrics: WatcherMetrics,
}

/// The loop's memory of what the allocator has been told and what was written back.
pub struct Reconciler {
    settings: Settings,
    sources: Sources,
    writer: Writer,
    writes: WriteQueue,
    failed_writes: mpsc::UnboundedReceiver<Key>,
    /// The allocator replicas; the first is the primary, whose answers are written back.
    replicas: Vec<Replica>,
    /// What the allocator should be told about Services.
    desired: DesiredServices,
    /// The nodes as the allocator should know them, read again only when a Node changed.
    desired_nodes: BTreeMap<String, pb::Node>,
    /// The configuration objects and what they read as, read again only when one changed.
    config: Option<ReadConfig>,
    /// The IPs the primary gave each Service (empty: none, for a reason it gave). Sent as the
    /// Service's current IPs, so that every replica, and a standby taking over, holds them.
    decided: BTreeMap<Key, Vec<String>>,
    /// What was last handed to the write queue for each Service, as `outcome_digest` says it:
    /// an Event is written only for news. A digest, not the outcome: one per Service adds up.
    written: HashMap<Key, u64>,
    /// Services whose outcome could not be written: asked again next pass if still ours
    /// (the allocator keeps the lease, so that costs nothing), cleaned up if no longer ours.
    rewrite: BTreeSet<Key>,
    /// What the ConfigurationState says: (valid, error summary).
    reported_state: Option<(bool, String)>,
    /// What the allocator made of the configuration sent last (valid, error summary): the
    /// state to report again when the configuration comes back to it after an unreadable spell.
    sent_config_state: Option<(bool, String)>,
    /// The IPAddressPool statuses last written, by pool.
    pool_statuses: BTreeMap<String, metallb_config_formats::resources::IpAddressPoolStatus>,
    /// The primary (endpoint, changes told) the statuses were last derived from.
    statuses_derived_from: Option<(String, u64)>,
    /// The ServiceBGPStatus objects.
    bgp_statuses: StatusObjects,
    /// The ServiceL2Status objects.
    l2_statuses: StatusObjects,
    /// Idle probes since the last comparison of leases with status.
    probes_since_compare: u32,
}

impl Reconciler {
    /// A reconciler over `sources` writing with `writer`.
    pub fn new(settings: Settings, sources: Sources, writer: Writer) -> Self {
        let (failed, failed_writes) = mpsc::unbounded_channel();
        let mut reconciler = Self {
            sources,
            writes: WriteQueue::spawn(writer.clone(), failed, settings.metrics.clone()),
            failed_writes,
            writer,
            replicas: settings.allocator.replicas().into_iter().map(Replica::new).collect(),
            settings,
            desired: DesiredServices::default(),
            desired_nodes: BTreeMap::new(),
            config: None,
            decided: BTreeMap::new(),
            written: HashMap::new(),
            rewrite: Default::default(),
            reported_state: None,
            sent_config_state: None,
            pool_statuses: BTreeMap::new(),
            statuses_derived_from: None,
            bgp_statuses: StatusObjects::new(StatusKind::Bgp),
            l2_statuses: StatusObjects::new(StatusKind::L2),
            probes_since_compare: 0,
        };
        reconciler.assign_roles();
        reconciler
    }

    /// Runs passes whenever `changed` fires, while `leading` says this watcher is the leader;
    /// ready once a full pass succeeded (or while standing by).
    pub async fn run(
        mut self,
        changed: Arc<Notify>,
        mut leading: watch::Receiver<bool>,
        readiness: Readiness,
    ) {
        let mut backoff = crate::replica::retry_pace();
        loop {
            if !*leading.borrow_and_update() {
                self.stand_by(&mut leading, &readiness).await;
                continue;
            }
            match self.pass().await {
                Ok(()) => {
                    readiness.set_ready();
                    backoff.reset();
                    let passed = Instant::now();
                    tokio::select! {
                        outcome = self.wait_for_work(&changed) => if let Err(err) = outcome {
                            tracing::warn!(
                                error = format!("{err:#}"),
                                "the primary allocator changed; syncing everything again"
                            );
                            self.replicas[0].forget();
                        },
                        _ = leading.changed() => continue,
                    }
                    if passed.elapsed() < COALESCE {
                        tokio::time::sleep(COALESCE).await;
                    }
                }
                Err(err) => {
                    self.settings.metrics.update_error();
                    let failed_over = self.fail_over().await;
                    if failed_over {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            primary = self.replicas[0].endpoint(),
                            "the primary allocator does not answer; a standby takes over"
                        );
                    }
                    // A standby that took over holds the leases already: no reason to wait.
                    let holds_leases = failed_over && self.replicas[0].synced();
                    // Either way the primary gets a full sync next.
                    self.replicas[0].forget();
                    if holds_leases {
                        continue;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = format!("{err:#}"),
                        retry_in_ms = delay.as_millis() as u64,
                        "pass failed; the allocator gets everything again"
                    );
                    readiness.set_not_ready(format!("last pass failed: {err:#}"));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// While another watcher leads: nothing is sent, and what this one knew of the allocators
    /// and of its writes goes stale, so it is forgotten; leading again starts from full syncs.
    async fn stand_by(&mut self, leading: &mut watch::Receiver<bool>, readiness: &Readiness) {
        tracing::info!("not the leader; standing by");
        readiness.set_ready();
        self.settings.metrics.standing_by();
        for replica in &mut self.replicas {
            replica.forget();
        }
        self.decided.clear();
        self.written.clear();
        self.rewrite.clear();
        self.reported_state = None;
        self.sent_config_state = None;
        self.pool_statuses.clear();
        self.bgp_statuses.forget();
        self.l2_statuses.forget();
        self.statuses_derived_from = None;
        while !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                // The election ended (shutdown): wait to be stopped.
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("leading: feeding the allocators");
    }

    /// After a failed pass: when the primary does not answer as the instance it was (down,
    /// frozen, restarted) and there is another replica, that one becomes the primary and the
    /// old one a standby to be synced again. Whether that happened.
    async fn fail_over(&mut self) -> bool {
        if self.replicas.len() < 2 {
            return false;
        }
        let answer =
            tokio::time::timeout(Duration::from_secs(2), self.replicas[0].check_instance()).await;
        if matches!(answer, Ok(Ok(()))) {
            return false;
        }
        // The next synced standby, or simply the next one.
        let next = (1..self.replicas.len()).find(|i| self.replicas[*i].synced()).unwrap_or(1);
        // The old primary may be alive and deciding layer 2 owners for the announcers that
        // still reach it: its word as primary must run out before another replica decides.
        if let Some(runs_out) = self.replicas[0].word_runs_out() {
            tracing::info!(
                wait_ms = runs_out.saturating_duration_since(Instant::now()).as_millis() as u64,
                "failing over: waiting for the old primary's word to run out"
            );
            tokio::time::sleep_until(runs_out.into()).await;
        }
        let mut old = self.replicas.remove(0);
        old.failed();
        self.replicas.swap(0, next - 1);
        self.replicas.push(old);
        self.assign_roles();
        true
    }

    /// Tells every replica what it is: the first the primary, the others standbys, or the one
    /// replica the sole one.
    fn assign_roles(&mut self) {
        let sole = self.replicas.len() == 1;
        for (index, replica) in self.replicas.iter_mut().enumerate() {
            replica.set_role(match (sole, index) {
                (true, _) => Role::Sole,
                (false, 0) => Role::Primary,
                (false, _) => Role::Standby,
            });
        }
    }

    /// Waits until there is work: a change, a failed write to retry, a standby to sync, or
    /// (found by probing while idle) a primary that is not the instance the last full sync
    /// went to (an error).
    async fn wait_for_work(&mut self, changed: &Notify) -> anyhow::Result<()> {
        loop {
            // A standby waiting to be synced again is tried as soon as its pause is over, not
            // at the next probe: a restarted replica is then ready within its pause.
            let standby_due = self.replicas.iter().skip(1).filter_map(Replica::next_try).min();
            let standby_due = async {
                match standby_due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = standby_due => return Ok(()),
                () = changed.notified() => return Ok(()),
                Some(key) = self.failed_writes.recv() => {
                    self.retry_write(key);
                    tokio::time::sleep(RETRY_WRITES_AFTER).await;
                    return Ok(());
                }
                () = tokio::time::sleep(PROBE_INTERVAL) => {
                    if self.probe().await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Asks every replica which instance it is: an error if the primary is not the one that
    /// had the last full sync (or cannot be reached). A standby that is not is forgotten, to be
    /// synced again. Every `COMPARE_EVERY_PROBES` probes, compares leases too. Whether a pass
    /// is needed for the standbys.
    async fn probe(&mut self) -> anyhow::Result<bool> {
        self.replicas[0].check_instance().await?;
        let mut standbys_need_a_pass = false;
        for standby in self.replicas.iter_mut().skip(1) {
            if standby.synced()
                && let Err(err) = standby.check_instance().await
            {
                tracing::warn!(error = format!("{err:#}"), "standby allocator to be synced again");
                standby.failed();
            }
            standbys_need_a_pass |= !standby.synced() && standby.due();
        }
        if self.layer_2_in_use() {
            self.report_announcement_statuses().await?;
        }
        self.probes_since_compare += 1;
        if self.probes_since_compare >= COMPARE_EVERY_PROBES {
            self.probes_since_compare = 0;
            self.compare_leases_with_status().await?;
            standbys_need_a_pass |= self.compare_standbys_with_primary().await;
        }
        Ok(standbys_need_a_pass)
    }

    /// Compares the primary's leases with the IPs the Services show in their status; an
    /// error when they differ for the same Service twice in a row (a lost call, a bug, a hand-
    /// made call), so that a full sync repairs it.
    async fn compare_leases_with_status(&mut self) -> anyhow::Result<()> {
        let leases = self.replicas[0].leases().await?;
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
        let primary = &mut self.replicas[0];
        let confirmed: Vec<Key> = differing.intersection(&primary.suspected).cloned().collect();
        primary.suspected = differing;
        if !confirmed.is_empty() {
            primary.suspected.clear();
            anyhow::bail!("the allocator's leases differ from the status of {confirmed:?}");
        }
        Ok(())
    }

    /// Compares each synced standby's leases with the primary's (as told to the standby); a
    /// standby that differs for the same Service twice in a row is synced again. Whether one
    /// was.
    async fn compare_standbys_with_primary(&mut self) -> bool {
        let (primary, standbys) = self.replicas.split_at_mut(1);
        let expected: BTreeMap<Key, BTreeSet<String>> = primary[0]
            .told
            .services
            .iter()
            .filter(|(_, service)| !service.current_ips.is_empty())
            .map(|(key, service)| (key.clone(), service.current_ips.iter().cloned().collect()))
            .collect();
        let mut resync = false;
        for standby in standbys.iter_mut().filter(|standby| standby.synced()) {
            let leases = match standby.leases().await {
                Ok(leases) => leases,
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "standby allocator unreachable");
                    standby.failed();
                    continue;
                }
            };
            let differing: BTreeSet<Key> = expected
                .keys()
                .chain(leases.keys())
                .filter(|key| expected.get(*key) != leases.get(*key))
                .cloned()
                .collect();
            let confirmed: Vec<Key> = differing.intersection(&standby.suspected).cloned().collect();
            standby.suspected = differing;
            if !confirmed.is_empty() {
                tracing::warn!(
                    standby = standby.endpoint(),
                    services = ?confirmed,
                    "a standby allocator's leases differ from the primary's; syncing it again"
                );
                standby.forget();
                resync = true;
            }
        }
        resync
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
        let class = self.settings.load_balancer_class.as_deref();
        let sources = &self.sources;
        // Taken before the stores are read: what changes from now on is in the next pass's.
        let changes = sources.changes.take();
        let makings = Makings {
            services: &sources.services,
            slices: &sources.endpoint_slices,
            slice_index: &sources.slice_index,
            namespaces: &sources.namespaces,
        };
        let changed = self.desired.refresh(&changes, &makings, class);
        for replica in &mut self.replicas {
            replica.dirty.extend(changed.iter().cloned());
        }
        if changes.nodes {
            self.desired_nodes = sources
                .nodes
                .state()
                .iter()
                .map(|node| translate::node(node))
                .map(|node| (node.name.clone(), node))
                .collect();
        }
        if changes.config || self.config.is_none() {
            self.config = Some(ReadConfig::new(
                self.sources.config_objects(&self.settings.config_namespace),
                &self.settings.config_namespace,
            ));
        }
        self.send_config().await?;
        self.send_nodes().await?;
        self.send_services().await?;
        self.feed_standbys().await;
        // Pool usage and announcements change only with what the primary is told: read them
        // again only then, not on every pass.
        // The primary's word must not run out while work keeps the watcher from probing.
        if self.replicas[0].quiet_for(PROBE_INTERVAL) {
            self.replicas[0].check_instance().await?;
        }
        let primary = (self.replicas[0].endpoint().to_string(), self.replicas[0].changes);
        if self.statuses_derived_from.as_ref() != Some(&primary) {
            self.report_pool_statuses().await?;
            self.report_announcement_statuses().await?;
            self.statuses_derived_from = Some(primary);
        }
        Ok(())
    }

    /// Brings the ServiceBGPStatus and ServiceL2Status objects in line with what the allocator
    /// tells each node, and tells a Service whose layer 2 IPs moved to another node so. One
    /// call per node: the scale work (incremental views) is to make this a delta.
    async fn report_announcement_statuses(&mut self) -> anyhow::Result<()> {
        if !self.replicas[0].synced() || !(self.bgp_statuses.served() || self.l2_statuses.served())
        {
            return Ok(());
        }
        let namespace = self.settings.config_namespace.clone();
        let nodes: Vec<String> = self
            .sources
            .nodes
            .state()
            .iter()
            .filter_map(|node| node.metadata.name.clone())
            .collect();
        let client = self.replicas[0].client().await?;
        let mut per_node = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let request = pb::GetNodeAssignmentsRequest { node_name: node.clone() };
            match client.get_node_assignments(request).await {
                Ok(assignments) => per_node.push((node.as_str(), assignments.into_inner())),
                // A node that appeared after this pass told the allocator its nodes: the next
                // pass tells it, and reads its assignments then.
                Err(status) if status.code() == tonic::Code::NotFound => {}
                Err(status) => return Err(status.into()),
            }
        }
        let views = || per_node.iter().map(|(node, assignments)| (*node, assignments));
        let bgp = crate::announcement_status::bgp_announcements(views());
        self.bgp_statuses.sync(&self.writer, &namespace, bgp).await?;
        let l2 = crate::announcement_status::l2_announcements(views());
        if let Some(before) = self.l2_statuses.sync(&self.writer, &namespace, l2).await? {
            let after = self.l2_statuses.written().cloned().unwrap_or_default();
            for ((service_namespace, name), nodes) in new_announcers(&before, &after) {
                let key = (service_namespace, name);
                let Some(service) = self.find_service(&key) else { continue };
                for node in nodes {
                    // An Event is news, not state: one that cannot be written is logged, and
                    // does not hold up the pass.
                    if let Err(err) = self.writer.node_assigned(&service, &node).await {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            node,
                            "nodeAssigned Event not written"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the configuration in force announces anything over layer 2: then owners can
    /// move with no change the watcher sees (a node's announcer dies), so the statuses are
    /// read again at every probe.
    fn layer_2_in_use(&self) -> bool {
        self.replicas[0]
            .told
            .config
            .as_ref()
            .is_some_and(|config| !config.l2_advertisements.is_empty())
    }

    /// Writes each IPAddressPool's usage to its status when it changed. Pools of the ConfigMap
    /// have no object to write to.
    async fn report_pool_statuses(&mut self) -> anyhow::Result<()> {
        let pools: Vec<String> = self
            .sources
            .resources
            .iter()
            .filter(|(kind, _)| kind == "IPAddressPool")
            .flat_map(|(_, store)| store.state())
            .filter_map(|pool| pool.metadata.name.clone())
            .collect();
        if pools.is_empty() || !self.replicas[0].synced() {
            return Ok(());
        }
        let usage = self.replicas[0].client().await?.list_pools(pb::ListPoolsRequest {}).await?;
        for pool in usage.into_inner().pools.iter().filter(|usage| pools.contains(&usage.name)) {
            let status = crate::pool_status::status_of(pool);
            if self.pool_statuses.get(&pool.name) == Some(&status) {
                continue;
            }
            let namespace = &self.settings.config_namespace;
            self.writer.set_pool_status(namespace, &pool.name, &status).await?;
            self.pool_statuses.insert(pool.name.clone(), status);
        }
        Ok(())
    }

    /// Tells every standby what the primary was told. A standby that fails is synced again
    /// later; it never holds up the primary's work.
    async fn feed_standbys(&mut self) {
        let (primary, standbys) = self.replicas.split_at_mut(1);
        if !primary[0].synced() {
            return;
        }
        for standby in standbys.iter_mut().filter(|standby| standby.due()) {
            match standby.mirror(&primary[0].told).await {
                Ok(()) => standby.worked(),
                Err(err) => {
                    tracing::warn!(
                        standby = standby.endpoint(),
                        error = format!("{err:#}"),
                        "standby allocator not updated; it will be synced again"
                    );
                    standby.failed();
                }
            }
        }
    }

    async fn send_config(&mut self) -> anyhow::Result<()> {
        let Some(read) = self.config.take() else { return Ok(()) };
        let outcome = self.apply_config(&read).await;
        self.config = Some(read);
        outcome
    }

    /// Sends the configuration `read` holds, and reports what became of it.
    async fn apply_config(&mut self, read: &ReadConfig) -> anyhow::Result<()> {
        let (source, reference) = (&read.source, &read.reference);
        let resources = &read.objects.resources;
        let config = match &read.config {
            Ok(config) => config,
            Err(errors) => {
                let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                if self.replicas[0].told.config.is_some() || reference.is_some() {
                    tracing::warn!(source, errors = ?reasons, "configuration unreadable; the previous one stays in force");
                }
                if let Some(reference) = &reference {
                    self.writer.config_event(reference, false, reasons.join("; ")).await?;
                }
                return self.report_state(false, reasons.join("\n")).await;
            }
        };
        let Some(response) = self.replicas[0].apply_config(config, source).await? else {
            // Nothing to send, but the state may still say what an unreadable version in
            // between said: report again what the allocator made of this one.
            return match self.sent_config_state.clone() {
                Some((valid, summary)) => self.report_state(valid, summary).await,
                None => Ok(()),
            };
        };
        if response.accepted {
            tracing::info!(source, "configuration accepted");
            self.report_sent_config_state(true, String::new()).await?;
        } else {
            let reasons = translate::config_error_lines(&response.errors);
            tracing::warn!(source, errors = ?reasons, "configuration rejected; the previous one stays in force");
            // Each error's Event goes to the resource it is about; errors about no resource of
            // ours (a ConfigMap's pool, a community alias) to the configuration's own object.
            let mut targets: Vec<(k8s_openapi::api::core::v1::ObjectReference, Vec<String>)> =
                Vec::new();
            for (error, reason) in response.errors.iter().zip(&reasons) {
                let Some(target) =
                    object_named(&error.object, resources).or_else(|| reference.clone())
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
        self.settings.metrics.config_outcome(valid);
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
        self.replicas[0].update_nodes(&self.desired_nodes).await
    }

    /// A Service as the allocators are told it: with the IPs the primary gave it as its current
    /// IPs (the status may not show them yet), else the status's.
    /// Shares the desired translation when the IPs agree, which they do once the status shows
    /// them.
    fn to_tell(&self, key: &Key) -> Option<Arc<pb::Service>> {
        let desired = self.desired.get(key)?;
        match self.decided.get(key) {
            Some(ips) if *ips != desired.current_ips => {
                let mut service = pb::Service::clone(desired);
                service.current_ips.clone_from(ips);
                Some(Arc::new(service))
            }
            _ => Some(Arc::clone(desired)),
        }
    }

    async fn send_services(&mut self) -> anyhow::Result<()> {
        if !self.replicas[0].synced() {
            let services: BTreeMap<Key, Arc<pb::Service>> = self
                .desired
                .all()
                .keys()
                .filter_map(|key| Some((key.clone(), self.to_tell(key)?)))
                .collect();
            let span = tracing::info_span!("watcher.sync", services = services.len());
            let primary = &mut self.replicas[0];
            let response = primary.sync_services(services, span).await?;
            tracing::info!(
                allocator = primary.endpoint(),
                services = primary.told.services.len(),
                released = response.released.len(),
                "full sync done"
            );
            for lease in &response.released {
                if let Some(key) = &lease.service {
                    self.decided.remove(&(key.namespace.clone(), key.name.clone()));
                }
            }
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
                self.replicas[0].told.services.remove(&key);
                self.replicas[0].dirty.insert(key);
            } else if let Some(service) = self.find_service(&key) {
                // No longer ours and the clean-up failed: clean up again.
                self.writes.push(key, service, Write::Clear);
            }
        }
        // Only what changed since the last pass can differ from what the allocator was told:
        // after an error everything is told again, through a full sync.
        let dirty = std::mem::take(&mut self.replicas[0].dirty);
        let mut pending: Vec<pb::ServiceOutcome> = Vec::new();
        // One batch for the whole pass (a few for a large burst), deletes first: a deleted
        // Service's route must be withdrawn fast, and the IPs it frees may be what a new
        // Service in the same pass asks for.
        let gone: Vec<Key> = dirty
            .iter()
            .filter(|key| {
                self.replicas[0].told.services.contains_key(*key) && self.desired.get(key).is_none()
            })
            .cloned()
            .collect();
        let mut changed = Vec::new();
        for key in &dirty {
            let Some(service) = self.to_tell(key) else { continue };
            if self.replicas[0].told_already(key, &service) {
                continue;
            }
            let span =
                tracing::info_span!("watcher.service", service = %format!("{}/{}", key.0, key.1));
            let trace_id = metallb_process::propagation::trace_id_of(&span);
            tracing::info!(parent: &span, trace_id, "service changed; asking the allocator");
            changed.push((key.clone(), service, span));
        }
        if gone.is_empty() && changed.is_empty() {
            return Ok(());
        }
        let response = self.replicas[0].update_services(gone.clone(), changed).await?;
        for (key, response) in gone.into_iter().zip(response.deletes) {
            self.decided.remove(&key);
            self.written.remove(&key);
            self.mark_for_standbys(&key);
            // Still there but no longer a LoadBalancer of ours: take back what we wrote.
            if let Some(service) = self.find_service(&key) {
                self.writes.push(key.clone(), service, Write::Clear);
            }
            pending.extend(response.others_changed);
            if let Some(deferred) = response.deferred_config {
                tracing::info!(source = deferred.source, "the waiting configuration took effect");
                self.report_sent_config_state(true, String::new()).await?;
                pending.extend(deferred.changed);
            }
        }
        for response in response.upserts {
            pending.extend(response.outcome);
            pending.extend(response.others_changed);
            if let Some(deferred) = response.deferred_config {
                tracing::info!(source = deferred.source, "the waiting configuration took effect");
                self.report_sent_config_state(true, String::new()).await?;
                pending.extend(deferred.changed);
            }
        }
        self.write_outcomes(&pending);
        Ok(())
    }

    /// Records what the primary decided: the IPs each Service now holds become what every
    /// replica is told as its current IPs, the primary's record of what it was told included
    /// (it holds them), and the standbys are to be told.
    fn record(&mut self, outcomes: &[pb::ServiceOutcome]) {
        use pb::service_outcome::Outcome;
        for outcome in outcomes {
            let Some(key) = outcome.service.as_ref().map(|k| (k.namespace.clone(), k.name.clone()))
            else {
                continue;
            };
            let ips = match &outcome.outcome {
                Some(Outcome::Lease(lease)) => lease.ips.clone(),
                _ => Vec::new(),
            };
            if let Some(told) = self.replicas[0].told.services.get_mut(&key)
                && told.current_ips != ips
            {
                Arc::make_mut(told).current_ips.clone_from(&ips);
            }
            self.decided.insert(key.clone(), ips);
            self.mark_for_standbys(&key);
        }
    }

    fn mark_for_standbys(&mut self, key: &Key) {
        for standby in self.replicas.iter_mut().skip(1) {
            standby.dirty.insert(key.clone());
        }
    }

    fn find_service(&self, key: &Key) -> Option<Arc<Service>> {
        self.sources.services.get(&kube::runtime::reflector::ObjectRef::new(&key.1).within(&key.0))
    }

    /// Records outcomes and hands them to the write queue, which writes them while the next
    /// passes run.
    fn write_outcomes(&mut self, outcomes: &[pb::ServiceOutcome]) {
        self.record(outcomes);
        for outcome in outcomes {
            let Some(key) = outcome.service.as_ref().map(|k| (k.namespace.clone(), k.name.clone()))
            else {
                continue;
            };
            let Some(service) = self.find_service(&key) else { continue };
            // An Event only for news: not for what was already written, nor for what the
            // Service already shows (a restart re-adopting its IPs).
            let digest = outcome_digest(outcome);
            let announce = (digest.is_none() || self.written.get(&key) != digest.as_ref())
                && !already_shown(&service, outcome);
            match digest {
                Some(digest) => self.written.insert(key.clone(), digest),
                None => self.written.remove(&key),
            };
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
/// The metallb.io resource an allocator error names ("IPAddressPool/pool-a"), if it is one of
/// `resources`.
fn object_named(
    object: &str,
    resources: &[kube::api::DynamicObject],
) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    let (kind, name) = object.split_once('/')?;
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

/// What an outcome says, hashed: two outcomes say the same when their digests are equal (the
/// lease's time does not count). `None` for an outcome that says nothing, which is never the
/// same as another.
fn outcome_digest(outcome: &pb::ServiceOutcome) -> Option<u64> {
    use pb::service_outcome::Outcome;
    let mut hasher = DefaultHasher::new();
    match outcome.outcome.as_ref()? {
        Outcome::Lease(lease) => (0u8, &lease.ips, &lease.pool).hash(&mut hasher),
        Outcome::Failure(failure) => (1u8, &failure.message).hash(&mut hasher),
    }
    Some(hasher.finish())
}

/// The configuration as the stores last held it, and what it reads as.
struct ReadConfig {
    objects: ConfigObjects,
    config: Result<pb::Config, Vec<metallb_config_formats::FormatError>>,
    /// Where it comes from, for the allocator's messages.
    source: String,
    /// The object Events about it as a whole go to.
    reference: Option<k8s_openapi::api::core::v1::ObjectReference>,
}

impl ReadConfig {
    fn new(objects: ConfigObjects, namespace: &str) -> Self {
        let (config_map, resources) = (&objects.config_map, &objects.resources);
        let source = translate::config_source(namespace, config_map.is_some(), resources.len());
        let reference = config_map
            .as_ref()
            .map(|cm| cm.object_ref(&()))
            .or_else(|| resources.first().map(dynamic_object_ref));
        let config = objects.read(namespace);
        Self { objects, config, source, reference }
    }
}
