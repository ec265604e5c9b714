//! The `metallb.v1.Allocator` gRPC service. Every RPC of the contract is present; the ones
//! whose logic is not built yet answer UNIMPLEMENTED rather than anything made up.

use std::pin::Pin;

use metallb_proto::pb::{self, allocator_server::Allocator};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::Error;

/// The allocator's API implementation.
#[derive(Debug, Default)]
pub struct AllocatorApi {}

type RpcResult<T> = Result<Response<T>, Status>;

fn not_implemented<T>(rpc: &'static str) -> RpcResult<T> {
    Err(Error::NotImplemented { rpc }.into())
}

#[tonic::async_trait]
impl Allocator for AllocatorApi {
    async fn apply_config(
        &self,
        _: Request<pb::ApplyConfigRequest>,
    ) -> RpcResult<pb::ApplyConfigResponse> {
        not_implemented("ApplyConfig")
    }

    async fn upsert_service(
        &self,
        _: Request<pb::UpsertServiceRequest>,
    ) -> RpcResult<pb::UpsertServiceResponse> {
        not_implemented("UpsertService")
    }

    async fn delete_service(
        &self,
        _: Request<pb::DeleteServiceRequest>,
    ) -> RpcResult<pb::DeleteServiceResponse> {
        not_implemented("DeleteService")
    }

    async fn sync_services(
        &self,
        _: Request<pb::SyncServicesRequest>,
    ) -> RpcResult<pb::SyncServicesResponse> {
        not_implemented("SyncServices")
    }

    async fn update_node(
        &self,
        _: Request<pb::UpdateNodeRequest>,
    ) -> RpcResult<pb::UpdateNodeResponse> {
        not_implemented("UpdateNode")
    }

    async fn delete_node(
        &self,
        _: Request<pb::DeleteNodeRequest>,
    ) -> RpcResult<pb::DeleteNodeResponse> {
        not_implemented("DeleteNode")
    }

    async fn list_pools(
        &self,
        _: Request<pb::ListPoolsRequest>,
    ) -> RpcResult<pb::ListPoolsResponse> {
        not_implemented("ListPools")
    }

    async fn list_leases(
        &self,
        _: Request<pb::ListLeasesRequest>,
    ) -> RpcResult<pb::ListLeasesResponse> {
        not_implemented("ListLeases")
    }

    async fn get_lease(&self, _: Request<pb::GetLeaseRequest>) -> RpcResult<pb::Lease> {
        not_implemented("GetLease")
    }

    async fn get_node_assignments(
        &self,
        _: Request<pb::GetNodeAssignmentsRequest>,
    ) -> RpcResult<pb::NodeAssignments> {
        not_implemented("GetNodeAssignments")
    }

    type WatchAssignmentsStream =
        Pin<Box<dyn Stream<Item = Result<pb::AssignmentUpdate, Status>> + Send>>;

    async fn watch_assignments(
        &self,
        _: Request<pb::WatchAssignmentsRequest>,
    ) -> RpcResult<Self::WatchAssignmentsStream> {
        not_implemented("WatchAssignments")
    }

    async fn report_sessions(
        &self,
        _: Request<pb::ReportSessionsRequest>,
    ) -> RpcResult<pb::ReportSessionsResponse> {
        not_implemented("ReportSessions")
    }

    async fn list_sessions(
        &self,
        _: Request<pb::ListSessionsRequest>,
    ) -> RpcResult<pb::ListSessionsResponse> {
        not_implemented("ListSessions")
    }
}
