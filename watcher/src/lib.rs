//! The watcher: the only component that talks to the Kubernetes API. It watches Services,
//! EndpointSlices, Nodes and the configuration, forwards what changed to the allocator, and
//! writes the results back to the objects.

pub mod admission;
pub mod allocator_tls;
pub mod announcement_status;
pub mod args;
pub mod changes;
pub mod desired;
pub mod events;
pub mod kube_connection;
pub mod leadership;
pub mod leftovers;
pub mod metrics;
pub mod pki;
pub mod pool_status;
pub mod reconciler;
pub mod replica;
pub mod slice_index;
pub mod sources;
pub mod translate;
pub mod webhook_tls;
pub mod write_queue;
pub mod writeback;
