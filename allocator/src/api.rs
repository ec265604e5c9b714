//! The `metallb.v1.Allocator` gRPC service: checks each request, runs it against the core in
//! a span joined to the caller's trace, and answers in the contract's terms.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use metallb_process::propagation::{set_parent_from, trace_context_or};
use metallb_proto::{
    REPLICA_ROLE_HEADER, STANDBY_REFUSAL,
    pb::{self, allocator_server::Allocator},
};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use tracing::Span;

use crate::{
    Error,
    auth::{Access, Authenticator, Caller, Role},
    config::validate,
    core::Core,
    limits::{self, MAX_OBJECT_NAME},
    nodes::NodeInfo,
    replica_role::ReplicaRole,
    service_spec::{ServiceKey, ServiceSpec},
    state::{ChangeResult, SyncResult, outcome_to_pb},
};

/// The allocator's API implementation.
#[derive(Clone)]
pub struct AllocatorApi {
    core: Arc<Core>,
    authenticator: Arc<Authenticator>,
    streams_open: Arc<StreamQuota>,
}

impl AllocatorApi {
    /// The API over `core`, checking node-scoped calls against the callers `authenticator`
    /// admitted, and holding each caller to `max_streams_per_caller` assignment streams.
    pub fn new(
        core: Arc<Core>,
        authenticator: Arc<Authenticator>,
        max_streams_per_caller: usize,
    ) -> Self {
        let streams_open =
            Arc::new(StreamQuota { max: max_streams_per_caller, open: Mutex::default() });
        Self { core, authenticator, streams_open }
    }

    /// Refuses a call about `node` from a caller who may not act for it (another node's
    /// announcer). The role itself was checked by the auth layer.
    fn authorize_node<T>(
        &self,
        request: &Request<T>,
        node: &str,
        access: Access,
        method: &str,
    ) -> Result<Caller, Error> {
        let caller = request.extensions().get::<Caller>().cloned().ok_or_else(|| {
            Error::PermissionDenied(format!("{method}: the caller was not authenticated"))
        })?;
        if caller.may_act_for(node, access) {
            return Ok(caller);
        }
        self.authenticator.count_denial(method, "wrong_node");
        tracing::info!(caller = caller.subject, node = ?caller.node, asked = node, method, "call for another node denied");
        Err(Error::PermissionDenied(match &caller.node {
            Some(own) => format!("{} may act for node {own} only, not {node}", caller.subject),
            None => format!("{} is not bound to node {node}", caller.subject),
        }))
    }

    /// Takes the role the watcher states in its calls (`REPLICA_ROLE_HEADER`). Only from the
    /// writer (or with authentication off): a reader must not be able to demote the primary.
    fn note_role<T>(&self, request: &Request<T>) {
        let Some(value) = request.metadata().get(REPLICA_ROLE_HEADER) else { return };
        let caller = request.extensions().get::<Caller>();
        if !caller.is_none_or(|caller| matches!(caller.role, None | Some(Role::Writer))) {
            return;
        }
        if let Some(role) = value.to_str().ok().and_then(ReplicaRole::parse) {
            self.core.note_role(role);
        }
    }

    /// Applies one upsert whose key was checked, within its own span.
    fn upsert(&self, request: pb::UpsertServiceRequest) -> pb::UpsertServiceResponse {
        let span = operation_span("UpsertService", request.trace.as_ref());
        let service = request.service.unwrap_or_default();
        let key = service_key(service.key.as_ref()).expect("checked by the caller");
        span.in_scope(|| {
            let trace = trace_context_or(&span, request.trace.as_ref());
            let ChangeResult { result: outcome, deferred: deferred_config, others_changed } =
                match ServiceSpec::from_pb(&service) {
                    Ok(spec) => {
                        self.core.change(&trace, |state| state.upsert(spec, SystemTime::now()))
                    }
                    Err(invalid) => {
                        let outcome = self
                            .core
                            .change(&trace, |state| state.reject(&invalid))
                            .expect("key checked above");
                        ChangeResult { result: outcome, deferred: None, others_changed: Vec::new() }
                    }
                };
            match &outcome {
                Ok(lease) => {
                    tracing::info!(service = %key, ips = ?lease.ips, pool = lease.pool, "service assigned")
                }
                Err(failure) => {
                    tracing::warn!(service = %key, reason = ?failure.reason, failure.message, "allocation failed")
                }
            }
            pb::UpsertServiceResponse {
                outcome: Some(outcome_to_pb(&key, &outcome)),
                deferred_config,
                others_changed,
            }
        })
    }

    /// Applies one delete whose key was checked, within its own span.
    fn delete(&self, request: pb::DeleteServiceRequest) -> pb::DeleteServiceResponse {
        let span = operation_span("DeleteService", request.trace.as_ref());
        let key = service_key(request.service.as_ref()).expect("checked by the caller");
        span.in_scope(|| {
            let ChangeResult { result: released, deferred: deferred_config, others_changed } =
                self.core.change(&trace_context_or(&span, request.trace.as_ref()), |state| {
                    state.delete(&key, SystemTime::now())
                });
            tracing::info!(service = %key, released = ?released, "service deleted");
            pb::DeleteServiceResponse {
                released_ips: released.iter().map(|ip| ip.to_string()).collect(),
                deferred_config,
                others_changed,
            }
        })
    }
}

/// Assignment streams open per caller, bounded.
struct StreamQuota {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream counted against its caller; uncounted when dropped with the stream.
struct StreamPermit {
    quota: Arc<StreamQuota>,
    key: String,
}

impl StreamQuota {
    fn acquire(self: &Arc<Self>, key: String) -> Result<StreamPermit, Error> {
        let mut open = self.open.lock().expect("stream quota lock");
        let count = open.entry(key.clone()).or_default();
        if *count >= self.max {
            return Err(Error::TooLarge(format!(
                "{key} already has {count} assignment streams open, at most {} are allowed",
                self.max
            )));
        }
        *count += 1;
        Ok(StreamPermit { quota: self.clone(), key })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.quota.open.lock().expect("stream quota lock");
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

/// A span for one operation, child of the caller's trace (from the message when it carries
/// one, otherwise from the gRPC metadata through the request span).
/// A node's open stream as layer 2 liveness counts it.
struct Liveness {
    core: Arc<Core>,
    node: String,
}

impl Liveness {
    fn begin(core: Arc<Core>, node: String) -> Self {
        core.change(&pb::TraceContext::default(), |state| state.stream_opened(&node));
        Self { core, node }
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        let now = std::time::Instant::now();
        tracing::info!(node = self.node, "assignment stream closed");
        self.core
            .change(&pb::TraceContext::default(), |state| state.stream_closed(&self.node, now));
    }
}

fn operation_span(name: &'static str, trace: Option<&pb::TraceContext>) -> Span {
    let span = tracing::info_span!("allocator.operation", otel.name = name);
    set_parent_from(&span, trace);
    span
}

fn service_key(key: Option<&pb::ServiceKey>) -> Result<ServiceKey, Error> {
    ServiceKey::from_pb(key).map_err(Error::InvalidArgument)
}

fn required_name<'a>(field: &str, value: &'a str) -> Result<&'a str, Error> {
    if value.trim().is_empty() {
        return Err(Error::InvalidArgument(format!("{field} is required")));
    }
    limits::name_length(field, value, MAX_OBJECT_NAME).map_err(Error::InvalidArgument)?;
    Ok(value)
}

/// `assignments` as shown outside a node's own stream: BGP passwords never leave the
/// allocator any other way.
fn redact_passwords(mut assignments: pb::NodeAssignments) -> pb::NodeAssignments {
    for peer in &mut assignments.peers {
        if !peer.password.is_empty() {
            peer.password = "<redacted>".into();
        }
    }
    assignments
}

#[tonic::async_trait]
impl Allocator for AllocatorApi {
    async fn apply_config(
        &self,
        request: Request<pb::ApplyConfigRequest>,
    ) -> RpcResult<pb::ApplyConfigResponse> {
        self.note_role(&request);
        let request = request.into_inner();
        let span = operation_span("ApplyConfig", request.trace.as_ref());
        let config =
            request.config.ok_or_else(|| Error::InvalidArgument("config is required".into()))?;
        limits::check_config(&config)?;
        let response = span.in_scope(|| {
            // Validation is the costly part; done outside the state's lock, reads go on.
            let validated = validate(&config);
            let response =
                self.core.change(&trace_context_or(&span, request.trace.as_ref()), |state| state.apply_validated(validated, &request.source, SystemTime::now()));
            if response.accepted {
                tracing::info!(source = request.source, changed = response.changed.len(), "configuration accepted");
            } else {
                let reasons: Vec<String> =
                    response.errors.iter().map(|e| format!("{} {}: {}", e.object, e.field, e.message)).collect();
                tracing::warn!(source = request.source, errors = ?reasons, "configuration rejected; the previous one stays in force");
            }
            response
        });
        Ok(Response::new(response))
    }

    async fn upsert_service(
        &self,
        request: Request<pb::UpsertServiceRequest>,
    ) -> RpcResult<pb::UpsertServiceResponse> {
        self.note_role(&request);
        let request = request.into_inner();
        let service = request
            .service
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("service is required".into()))?;
        service_key(service.key.as_ref())?;
        if !self.core.read(|state| state.is_synced()) {
            return Err(Error::NotSynced("UpsertService").into());
        }
        Ok(Response::new(self.upsert(request)))
    }

    async fn delete_service(
        &self,
        request: Request<pb::DeleteServiceRequest>,
    ) -> RpcResult<pb::DeleteServiceResponse> {
        self.note_role(&request);
        let request = request.into_inner();
        service_key(request.service.as_ref())?;
        Ok(Response::new(self.delete(request)))
    }

    async fn update_services(
        &self,
        request: Request<pb::UpdateServicesRequest>,
    ) -> RpcResult<pb::UpdateServicesResponse> {
        self.note_role(&request);
        let request = request.into_inner();
        let entries = request.deletes.len() + request.upserts.len();
        limits::at_most("deletes and upserts", entries, limits::MAX_SERVICES_PER_SYNC)?;
        for (index, delete) in request.deletes.iter().enumerate() {
            ServiceKey::from_pb(delete.service.as_ref()).map_err(|message| {
                Error::InvalidArgument(format!("deletes[{index}]: {message}"))
            })?;
        }
        for (index, upsert) in request.upserts.iter().enumerate() {
            let key = upsert.service.as_ref().map(|service| service.key.as_ref());
            ServiceKey::from_pb(key.flatten()).map_err(|message| {
                Error::InvalidArgument(format!("upserts[{index}]: {message}"))
            })?;
        }
        if !request.upserts.is_empty() && !self.core.read(|state| state.is_synced()) {
            return Err(Error::NotSynced("UpdateServices").into());
        }
        let deletes = request.deletes.into_iter().map(|delete| self.delete(delete)).collect();
        let upserts = request.upserts.into_iter().map(|upsert| self.upsert(upsert)).collect();
        Ok(Response::new(pb::UpdateServicesResponse { deletes, upserts }))
    }

    async fn sync_services(
        &self,
        request: Request<pb::SyncServicesRequest>,
    ) -> RpcResult<pb::SyncServicesResponse> {
        self.note_role(&request);
        let request = request.into_inner();
        let span = operation_span("SyncServices", request.trace.as_ref());
        limits::at_most("services", request.services.len(), limits::MAX_SERVICES_PER_SYNC)?;
        for (index, service) in request.services.iter().enumerate() {
            ServiceKey::from_pb(service.key.as_ref()).map_err(|message| {
                Error::InvalidArgument(format!("services[{index}]: {message}"))
            })?;
        }
        let specs: Vec<_> = request.services.iter().map(ServiceSpec::from_pb).collect();
        let response = span.in_scope(|| {
            let SyncResult { outcomes, released, deferred: deferred_config } =
                self.core.change(&trace_context_or(&span, request.trace.as_ref()), |state| {
                    state.sync(specs, SystemTime::now())
                });
            let outcomes: Vec<pb::ServiceOutcome> = outcomes
                .into_iter()
                .flatten()
                .map(|(key, outcome)| outcome_to_pb(&key, &outcome))
                .collect();
            tracing::info!(
                services = outcomes.len(),
                released = released.len(),
                "full sync applied"
            );
            pb::SyncServicesResponse {
                outcomes,
                released: released.iter().map(crate::state::lease_to_pb).collect(),
                deferred_config,
            }
        });
        self.core.mark_synced().await;
        Ok(Response::new(response))
    }

    async fn update_node(
        &self,
        request: Request<pb::UpdateNodeRequest>,
    ) -> RpcResult<pb::UpdateNodeResponse> {
        self.note_role(&request);
        let request = request.into_inner();
        let span = operation_span("UpdateNode", request.trace.as_ref());
        let node = request.node.ok_or_else(|| Error::InvalidArgument("node is required".into()))?;
        let node = NodeInfo::from_pb(&node).map_err(Error::InvalidArgument)?;
        span.in_scope(|| {
            self.core.change(&trace_context_or(&span, request.trace.as_ref()), |state| {
                state.update_node(node)
            })
        });
        Ok(Response::new(pb::UpdateNodeResponse {}))
    }

    async fn delete_node(
        &self,
        request: Request<pb::DeleteNodeRequest>,
    ) -> RpcResult<pb::DeleteNodeResponse> {
        self.note_role(&request);
        let request = request.into_inner();
        let span = operation_span("DeleteNode", request.trace.as_ref());
        let name = required_name("name", &request.name)?;
        span.in_scope(|| {
            self.core.change(&trace_context_or(&span, request.trace.as_ref()), |state| {
                state.delete_node(name)
            })
        });
        Ok(Response::new(pb::DeleteNodeResponse {}))
    }

    async fn check_config(
        &self,
        request: Request<pb::ApplyConfigRequest>,
    ) -> RpcResult<pb::ApplyConfigResponse> {
        let request = request.into_inner();
        let config =
            request.config.ok_or_else(|| Error::InvalidArgument("config is required".into()))?;
        limits::check_config(&config)?;
        let validated = validate(&config);
        Ok(Response::new(self.core.read(|state| state.check_validated(validated))))
    }

    async fn list_pools(
        &self,
        _: Request<pb::ListPoolsRequest>,
    ) -> RpcResult<pb::ListPoolsResponse> {
        Ok(Response::new(pb::ListPoolsResponse {
            pools: self.core.read(|state| state.list_pools()),
        }))
    }

    async fn list_leases(
        &self,
        request: Request<pb::ListLeasesRequest>,
    ) -> RpcResult<pb::ListLeasesResponse> {
        let request = request.into_inner();
        let leases = self.core.read(|state| state.list_leases(&request.namespace, &request.pool));
        Ok(Response::new(pb::ListLeasesResponse { leases }))
    }

    async fn get_lease(&self, request: Request<pb::GetLeaseRequest>) -> RpcResult<pb::Lease> {
        let key = service_key(request.get_ref().service.as_ref())?;
        let lease = self.core.read(|state| state.lease(&key));
        Ok(Response::new(
            lease.ok_or_else(|| Error::NotFound(format!("service {key} holds no lease")))?,
        ))
    }

    async fn get_node_assignments(
        &self,
        request: Request<pb::GetNodeAssignmentsRequest>,
    ) -> RpcResult<pb::NodeAssignments> {
        let node = required_name("node_name", &request.get_ref().node_name)?;
        self.authorize_node(&request, node, Access::NodeRead, "GetNodeAssignments")?;
        let (view, known) = self
            .core
            .read(|state| (state.node_view(node), !state.is_synced() || state.knows_node(node)));
        if !known {
            return Err(Error::NotFound(format!(
                "node {node} is unknown: the watcher has not reported it and no announcer \
                 opened an assignment stream for it"
            ))
            .into());
        }
        let view = view.ok_or(Error::NotSynced("GetNodeAssignments"))?;
        Ok(Response::new(redact_passwords(view)))
    }

    type WatchAssignmentsStream =
        Pin<Box<dyn Stream<Item = Result<pb::AssignmentUpdate, Status>> + Send>>;

    async fn watch_assignments(
        &self,
        request: Request<pb::WatchAssignmentsRequest>,
    ) -> RpcResult<Self::WatchAssignmentsStream> {
        let node = required_name("node_name", &request.get_ref().node_name)?.to_string();
        let caller = self.authorize_node(&request, &node, Access::OwnNode, "WatchAssignments")?;
        if !self.core.streams().role().serves_announcers() {
            return Err(Status::unavailable(STANDBY_REFUSAL));
        }
        let permit = self.streams_open.acquire(format!("{} on {node}", caller.subject))?;
        let receiver = self.core.read(|state| self.core.streams().open(&node, state));
        tracing::info!(node, caller = caller.subject, address = ?caller.address, "announcer subscribed");
        let alive = Liveness::begin(self.core.clone(), node);
        // The permit and the liveness guard live in the closure, so both end when the stream
        // is dropped: the client left, or its connection failed the keepalive.
        let stream = ReceiverStream::new(receiver).map(move |message| {
            let _held = (&permit, &alive);
            message
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_sessions(
        &self,
        request: Request<pb::ReportSessionsRequest>,
    ) -> RpcResult<pb::ReportSessionsResponse> {
        let node = required_name("node_name", &request.get_ref().node_name)?.to_string();
        self.authorize_node(&request, &node, Access::OwnNode, "ReportSessions")?;
        let request = request.into_inner();
        limits::at_most("sessions", request.sessions.len(), limits::MAX_SESSIONS_PER_REPORT)?;
        self.core.change(&pb::TraceContext::default(), |state| {
            state.report_sessions(&node, request.sessions)
        });
        Ok(Response::new(pb::ReportSessionsResponse {}))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> RpcResult<pb::ListSessionsResponse> {
        self.note_role(&request);
        let sessions = self.core.read(|state| state.list_sessions(&request.get_ref().node_name));
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }
}
