//! Reporting session state to the allocator, best effort: a missed report is replaced by the
//! next one, so failures are logged at debug level only.

use std::time::Duration;

use metallb_process::propagation;
use metallb_proto::pb::{self, allocator_client::AllocatorClient};
use tonic::{service::interceptor::InterceptedService, transport::Endpoint};

const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

type Interceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// Sends session reports over one connection, opened on first use and reopened by tonic
/// when it breaks.
pub struct Reporter {
    client: AllocatorClient<InterceptedService<tonic::transport::Channel, Interceptor>>,
}

impl Reporter {
    /// A reporter for the allocator at `endpoint` (a URL checked by the flag parser).
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(endpoint.to_string())?
            .connect_timeout(REPORT_TIMEOUT)
            .timeout(REPORT_TIMEOUT)
            .connect_lazy();
        let inject: Interceptor = propagation::inject_current_context;
        Ok(Self { client: AllocatorClient::with_interceptor(channel, inject) })
    }

    /// Sends `sessions` as `node`'s complete report.
    pub async fn report(&mut self, node: &str, sessions: Vec<pb::SessionState>) {
        let request = pb::ReportSessionsRequest { node_name: node.to_string(), sessions };
        if let Err(status) = self.client.report_sessions(request).await {
            tracing::debug!(error = %status, "session report not delivered");
        }
    }
}
