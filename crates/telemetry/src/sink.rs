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

    /// Whether the pipeline holds records back to fill a batch (`batch_size` records or
    /// `flush_interval`, whichever comes first). Yes by default: a destination with a batch
    /// endpoint (Langfuse) pays per call. A destination that takes one record per call anyway
    /// (Helicone) answers `false`, and each export takes what is queued at that moment: records
    /// leave as they come, not in bursts of `batch_size` calls that take the CPU from requests.
    fn fills_batches(&self) -> bool {
        true
    }

    /// Delivers a batch. Returns one result per record, in order. Implementations must not
    /// log credentials and should bound their own request time.
    async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>>;
}
