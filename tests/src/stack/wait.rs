//! Bounded polling: every wait of a test ends, saying what it waited for.

use std::time::{Duration, Instant};

/// Pause between two checks.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Some`, for at most `timeout`; fails naming `what`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        anyhow::ensure!(Instant::now() < deadline, "not {what} within {timeout:?}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
