//! Reporting session state to the allocator, best effort: a missed report is replaced by the
//! next one, so failures are logged at debug level only.

use std::time::Duration;

use metallb_process::propagation;
use metallb_proto::pb::{self, allocator_client::AllocatorClient};
use tonic::transport::Endpoint;

const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `sessions` as `node`'s complete report.
pub async fn report_sessions(endpoint: &str, node: &str, sessions: Vec<pb::SessionState>) {
    let result = async {
        let channel = Endpoint::from_shared(endpoint.to_string())?
            .connect_timeout(REPORT_TIMEOUT)
            .timeout(REPORT_TIMEOUT)
            .connect()
            .await?;
        let mut client =
            AllocatorClient::with_interceptor(channel, propagation::inject_current_context);
        client
            .report_sessions(pb::ReportSessionsRequest { node_name: node.to_string(), sessions })
            .await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(err) = result {
        tracing::debug!(error = format!("{err:#}"), "session report not delivered");
    }
}
