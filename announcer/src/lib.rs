//! The announcer: one per node. It subscribes to the allocator with its node name, keeps what
//! it is told to announce (a snapshot, then deltas) and keeps the BGP sessions that carry it.
//! It knows nothing of Kubernetes.

pub mod args;
pub mod assignments;
pub mod bfd;
pub mod bgp;
pub mod fence;
pub mod l2;
pub mod metrics;
pub mod reporter;
pub mod speaker;
pub mod subscription;
