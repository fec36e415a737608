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

/// Keeps the log writer thread alive; dropping it flushes what is still buffered. Hold it
/// until the process ends.
#[must_use = "logs written after this guard is dropped are lost"]
pub struct LogGuard {
    /// Held for its `Drop`, which flushes the writer thread.
    _writer: tracing_appender::non_blocking::WorkerGuard,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

/// Installs the global subscriber. Call once, at start-up, with the filter directives
/// (`EnvFilter` syntax, e.g. `info,bff_api=debug`) the service's settings chose — typically
/// `RUST_LOG` read from the environment or a `.env` file, with a default.
///
/// Lines are formatted on the calling thread and written to stdout by a dedicated thread
/// (`tracing-appender`), so a request never waits on a `write` system call; when its buffer is
/// full, callers wait rather than lose lines.
pub fn init_logging(format: LogFormat, filter: &str) -> Result<LogGuard, TelemetryError> {
    let filter = EnvFilter::try_new(filter).map_err(|error| {
        TelemetryError::Logging(format!("RUST_LOG: invalid log filter: {error}"))
    })?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            // The request span is the only span; listing it again as `spans` doubled its
            // fields on every line.
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    installed
        .map(|()| LogGuard { _writer: guard })
        .map_err(|error| TelemetryError::Logging(error.to_string()))
}
