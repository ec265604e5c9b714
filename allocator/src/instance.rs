//! This allocator process's identity: a value new at every start, sent as the response header
//! `metallb-allocator-instance` on every gRPC answer. The watcher compares it with the one that
//! answered its last full sync: a different value means a new allocator with empty leases,
//! which needs a full sync at once, even if nothing changes in Kubernetes.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

pub use metallb_proto::ALLOCATOR_INSTANCE_HEADER as INSTANCE_HEADER;

/// A value no earlier start of this allocator had: its start time in nanoseconds and its PID.
pub fn new_instance() -> HeaderValue {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    HeaderValue::try_from(format!("{nanos:x}-{:x}", std::process::id()))
        .expect("hex digits and a dash are a valid header value")
}

/// Adds the instance header to every response.
#[derive(Clone)]
pub struct InstanceLayer {
    instance: HeaderValue,
}

impl InstanceLayer {
    /// A layer announcing `instance`.
    pub fn new(instance: HeaderValue) -> Self {
        Self { instance }
    }
}

impl<S> Layer<S> for InstanceLayer {
    type Service = WithInstance<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithInstance { inner, instance: self.instance.clone() }
    }
}

/// A service behind `InstanceLayer`.
#[derive(Clone)]
pub struct WithInstance<S> {
    inner: S,
    instance: HeaderValue,
}

impl<S> Service<Request<Body>> for WithInstance<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        let instance = self.instance.clone();
        Box::pin(async move {
            let mut response = response.await?;
            response.headers_mut().insert(INSTANCE_HEADER, instance);
            Ok(response)
        })
    }
}
