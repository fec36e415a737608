//! The crate's error type (start-up and configuration; exports report [`crate::ExportError`]).

use crate::spool::SpoolError;

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The spool folder cannot be used.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A sink's configuration cannot be used.
    #[error("{what}: {reason}")]
    InvalidConfig {
        /// What is wrong (a variable or setting name).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The log subscriber could not be installed (another one already is, or a bad filter).
    #[error("cannot set up logging: {0}")]
    Logging(String),
}
