//! The formats MetalLB users bring, read into the allocator's contract (`metallb.v1.Config`
//! and the fields of `metallb.v1.Service`): the v0.1 ConfigMap (and the keys later ConfigMap
//! versions added), the `metallb.io` resources, and the Service annotations. Pure functions:
//! the watcher fetches the objects, this crate only reads them.

pub mod annotations;
pub mod bgp_peer_v1beta1;
pub mod configmap;
pub mod duration;
pub mod resources;
pub mod selector;

/// One precise reason an object could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    /// The object, e.g. "ConfigMap metallb-system/config" or "IPAddressPool/default".
    pub object: String,
    /// What is wrong, with the field path where there is one.
    pub message: String,
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

impl std::error::Error for FormatError {}
