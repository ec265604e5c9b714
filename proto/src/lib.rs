//! The allocator's gRPC contract, `metallb.v1`, compiled from `proto/metallb/v1/*.proto`.
//!
//! Service crates keep their own domain types and convert at the edge; this crate holds only
//! the generated code, the descriptor set for server reflection, and the name of the package.

/// Generated messages, enums, client and server of `metallb.v1`.
pub mod pb {
    tonic::include_proto!("metallb.v1");

    pub use crate::update_wire::{AssignmentUpdate, EncodedUpdate, assignment_update};
}

mod update_wire;

/// Encoded `FileDescriptorSet` of the contract (with its imports), for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("metallb_descriptor");

/// Fully qualified name of the allocator service, as health checks and grpcurl spell it.
pub const ALLOCATOR_SERVICE_NAME: &str = "metallb.v1.Allocator";

/// Response header naming the allocator process that answered: new at every start, so a
/// client sees that the leases it built up are gone.
pub const ALLOCATOR_INSTANCE_HEADER: &str = "metallb-allocator-instance";

/// Request header of the watcher's calls telling an allocator replica its role: `sole` (the
/// only replica), `primary` or `standby`. Only the one replica told `primary` or `sole`
/// decides layer 2 owners; a standby refuses announcers' streams (docs/design.md, "Layer 2
/// with several allocator replicas").
pub const REPLICA_ROLE_HEADER: &str = "metallb-replica-role";

/// The message with which a standby refuses an announcer's stream (code UNAVAILABLE): the
/// announcer tries the next replica at once rather than backing off.
pub const STANDBY_REFUSAL: &str =
    "this allocator replica is a standby: announcers follow the primary";

/// How long a replica told `primary` stays primary without hearing it again. The watcher tells
/// it at least every second; it promotes a standby only this long after the old primary last
/// answered, so two replicas never both count as primary.
pub const PRIMARY_LEASE: std::time::Duration = std::time::Duration::from_secs(5);
