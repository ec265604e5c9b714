//! Reporting session state to the allocator, best effort: a missed report is replaced by the
//! next one, so failures are logged at debug level only.

use std::time::Duration;

use metallb_process::{AllocatorConnector, allocator_client::Client};
use metallb_proto::pb;

const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends session reports over one connection, opened on first use and reopened by tonic
/// when it breaks; after a failure, to the replica the assignment stream follows.
pub struct Reporter {
    connector: AllocatorConnector,
    client: Option<(String, Client)>,
}

impl Reporter {
    /// A reporter for the allocator `connector` reaches.
    pub fn new(connector: &AllocatorConnector) -> Self {
        Self { connector: connector.clone(), client: None }
    }

    /// Sends `sessions` as `node`'s complete report.
    pub async fn report(&mut self, node: &str, sessions: Vec<pb::SessionState>) {
        let request = pb::ReportSessionsRequest { node_name: node.to_string(), sessions };
        let preferred = self.connector.preferred().to_string();
        if self.client.as_ref().is_none_or(|(endpoint, _)| *endpoint != preferred) {
            match self.connector.connect_lazy(REPORT_TIMEOUT) {
                Ok(client) => self.client = Some((preferred, client)),
                Err(err) => {
                    tracing::debug!(error = format!("{err:#}"), "session report not delivered");
                    return;
                }
            }
        }
        let Some((_, client)) = self.client.as_mut() else { return };
        if let Err(status) = client.report_sessions(request).await {
            tracing::debug!(error = %status, "session report not delivered");
        }
    }
}
