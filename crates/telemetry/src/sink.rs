//! The one trait every telemetry destination implements.

use crate::record::LlmRecord;
use async_trait::async_trait;
use std::time::Duration;

/// Why a record was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Worth trying again later: connection failure, timeout, 429, 5xx, or a failure reported
    /// in a success status (Helicone's `200 {"error":…}`).
    #[error("{reason}")]
    Retryable {
        /// What happened (never a credential).
        reason: String,
        /// How long the destination asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Refused for good (4xx other than 429): retrying the same bytes cannot help.
    #[error("{reason}")]
    Rejected {
        /// What the destination said.
        reason: String,
    },
}

/// A telemetry destination. The pipeline gives each sink its own worker, queue and spool, so a
/// slow or dead sink never delays another.
#[async_trait]
pub trait TelemetrySink: Send + Sync + 'static {
    /// A short stable name (`langfuse`, `helicone`): used for the spool folder, counters and logs.
    fn name(&self) -> &str;

    /// Delivers a batch. Returns one result per record, in order. Implementations must not
    /// log credentials and should bound their own request time.
    async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>>;
}
