//! This allocator process's identity: a value new at every start, sent as the response header
//! `metallb-allocator-instance` on every gRPC answer. The watcher compares it with the one that
//! answered its last full sync: a different value means a new allocator with empty leases,
//! which needs a full sync at once, even if nothing changes in Kubernetes.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Response};
use tonic::body::Body;
use tower::util::MapResponseLayer;

pub use metallb_proto::ALLOCATOR_INSTANCE_HEADER as INSTANCE_HEADER;

/// A value no earlier start of this allocator had: its start time in nanoseconds and its PID.
pub fn new_instance() -> HeaderValue {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    HeaderValue::try_from(format!("{nanos:x}-{:x}", std::process::id()))
        .expect("hex digits and a dash are a valid header value")
}

/// A layer adding the instance header to every response.
pub fn instance_layer(
    instance: HeaderValue,
) -> MapResponseLayer<impl Fn(Response<Body>) -> Response<Body> + Clone> {
    MapResponseLayer::new(move |mut response: Response<Body>| {
        response.headers_mut().insert(INSTANCE_HEADER, instance.clone());
        response
    })
}
