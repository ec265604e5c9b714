//! Reporting session state to the allocator, best effort: a missed report is replaced by the
//! next one, so failures are logged at debug level only.

use std::time::Duration;

use metallb_process::{AllocatorConnector, allocator_client::Client};
use metallb_proto::pb;

const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends session reports over one connection, opened on first use and reopened by tonic
/// when it breaks.
pub struct Reporter {
    client: Client,
}

impl Reporter {
    /// A reporter for the allocator `connector` reaches.
    pub fn new(connector: &AllocatorConnector) -> anyhow::Result<Self> {
        Ok(Self { client: connector.connect_lazy(REPORT_TIMEOUT)? })
    }

    /// Sends `sessions` as `node`'s complete report.
    pub async fn report(&mut self, node: &str, sessions: Vec<pb::SessionState>) {
        let request = pb::ReportSessionsRequest { node_name: node.to_string(), sessions };
        if let Err(status) = self.client.report_sessions(request).await {
            tracing::debug!(error = %status, "session report not delivered");
        }
    }
}
