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
    /// The destination may have taken the records: the request was sent, then the answer was
    /// lost (a timeout, a broken connection, a gateway's 504). For a destination where a resend
    /// adds a second copy (Langfuse v4), the pipeline sends these once more with the same ids,
    /// and counts it.
    #[error("{reason}")]
    Ambiguous {
        /// What happened.
        reason: String,
    },
}

impl ExportError {
    /// For a destination where a resend replaces what it holds (Helicone keys on the request
    /// id): an ambiguous failure is an ordinary retryable one.
    pub fn resend_replaces(self) -> Self {
        match self {
            Self::Ambiguous { reason } => Self::Retryable {
                reason,
                retry_after: None,
            },
            other => other,
        }
    }
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
