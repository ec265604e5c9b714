//! The tower layer that times every gRPC call and counts the ones that failed, by method and
//! status code (`metrics::GrpcMetrics`). It sits outside the auth layer, so refusals count too.
//!
//! A call is timed to its response headers: for a unary call that is the whole call when it
//! fails (the status is in the headers) and all but the body when it succeeds; for a stream it
//! is the time to start it. A status sent only in trailers (a unary success, a stream's end)
//! counts as OK: failures of this server are all answered in the headers.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::metrics::GrpcMetrics;

/// Adds call metrics to a service.
#[derive(Clone)]
pub struct CallMetricsLayer {
    metrics: GrpcMetrics,
}

impl CallMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: GrpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CallMetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured { inner, metrics: self.metrics.clone() }
    }
}

/// A service behind `CallMetricsLayer`.
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, B> Service<Request<B>> for Measured<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call; the fresh one waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let path = request.uri().path().to_string();
        Box::pin(async move {
            let response = inner.call(request).await;
            let code = match &response {
                Ok(response) => status_in_headers(response.headers()),
                // The transport failed the call; tonic answers it as an internal error.
                Err(_) => tonic::Code::Internal,
            };
            metrics.observe(&method_label(&path, code), code, started.elapsed());
            response
        })
    }
}

/// The status code in `grpc-status`, OK when absent (it follows in the trailers).
fn status_in_headers(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok()?.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

/// The method's name, the last part of the path; `unknown` for a method the server does not
/// have, so that callers cannot make up series.
fn method_label(path: &str, code: tonic::Code) -> String {
    if code == tonic::Code::Unimplemented {
        return "unknown".into();
    }
    path.rsplit('/').next().unwrap_or(path).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_comes_from_the_headers_and_unknown_methods_share_one_label() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_in_headers(&headers), tonic::Code::Ok);
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(status_in_headers(&headers), tonic::Code::NotFound);
        assert_eq!(
            method_label("/metallb.v1.Allocator/GetNodeAssignments", tonic::Code::NotFound),
            "GetNodeAssignments"
        );
        assert_eq!(
            method_label("/metallb.v1.Allocator/Made_Up", tonic::Code::Unimplemented),
            "unknown"
        );
    }
}
