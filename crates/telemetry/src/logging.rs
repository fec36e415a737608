//! Logging setup: `tracing-subscriber` with an `EnvFilter` (`RUST_LOG` wins) and JSON or
//! human-readable output.

use crate::error::TelemetryError;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    #[default]
    Json,
    /// Human-readable lines (development).
    Pretty,
}

impl LogFormat {
    /// Parses `json` or `pretty`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "pretty" | "text" => Some(Self::Pretty),
            _ => None,
        }
    }
}

/// Installs the global subscriber. Call once, at start-up, with the filter directives
/// (`EnvFilter` syntax, e.g. `info,bff_api=debug`) the service's settings chose — typically
/// `RUST_LOG` read from the environment or a `.env` file, with a default.
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(filter).map_err(|error| {
        TelemetryError::Logging(format!("RUST_LOG: invalid log filter: {error}"))
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    installed.map_err(|error| TelemetryError::Logging(error.to_string()))
}
