//! The test harness. Every component a test needs is real: built or installed by
//! `tests/scripts/install-tools.sh`, started here on loopback or inside network namespaces the
//! test creates, and stopped (with its namespaces and files) when the handle is dropped, also
//! when the test fails.

pub mod bgp_routers;
pub mod child;
pub mod configuration;
pub mod daemons;
pub mod grpcurl;
pub mod helm;
pub mod host_link;
pub mod images;
pub mod jaeger;
pub mod kube_addons;
pub mod kube_control_plane;
pub mod kube_node;
pub mod lab;
pub mod manifests;
pub mod neighbor_probes;
pub mod port_forward;
pub mod ports;
pub mod prometheus;
pub mod route_monitor;
pub mod stack;
pub mod tools;
pub mod trust;
