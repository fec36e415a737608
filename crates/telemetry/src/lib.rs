//! # bff-telemetry
//!
//! Records what every LLM request did and ships it to Langfuse and Helicone without slowing
//! the request or losing the record; also owns logging setup. Knows nothing of HTTP servers,
//! auth or LiteLLM, so any Rust service can use it.
//!
//! - [`LlmRecord`]: one value per request (ids, user, route, models, timings, outcome, usage,
//!   cost, attempts, tags, input/output under a [`CapturePolicy`]).
//! - [`Pipeline`]: `record()` is synchronous and non-blocking (a bounded queue per sink); a
//!   worker per sink batches, exports, retries with jittered backoff or `Retry-After`, and
//!   spools to disk what it cannot deliver, replaying it in order later (also after a
//!   restart). `shutdown(deadline)` flushes, then spools the rest. [`SinkStats`] counts
//!   everything: queued, exported, retried, spooled, replayed, rejected, dropped, last error.
//! - [`TelemetrySink`]: the one trait behind [`LangfuseSink`] (OTLP/HTTP protobuf, gzip, to
//!   `/api/public/otel/v1/traces`, or any OTLP collector) and [`HeliconeSink`] (async log).
//! - [`init_logging`]: `tracing-subscriber` with the given filter (`RUST_LOG` syntax), JSON or
//!   pretty, written to stdout by a dedicated thread (hold the returned [`LogGuard`]).
//!
//! ## Features
//! - `langfuse`: [`LangfuseSink`] (OTLP/HTTP protobuf; no OpenTelemetry SDK is pulled in).
//! - `helicone`: [`HeliconeSink`].
//! - `logging`: [`init_logging`] (`tracing-subscriber`, `tracing-appender`).
//! - `test-support`: the Helicone body and request id as sent, for tests and benchmarks.
//!
//! None is on by default: the pipeline and the record are what every user needs. The disk spool
//! is Unix only (it keeps prompts in owner-only files); elsewhere, opening one fails with a
//! clear error, and the crate works without it.
//!
//! ## Use from another service (features `langfuse`)
//! ```no_run
//! use bff_telemetry::{LangfuseConfig, LangfuseSink, LlmRecord, Pipeline, PipelineConfig, Secret};
//! use std::{sync::Arc, time::Duration};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let langfuse = LangfuseConfig::new(&"https://cloud.langfuse.com".parse()?, "pk-lf-…", &Secret::new("sk-lf-…"))?;
//! let config = PipelineConfig { spool_dir: Some("/var/lib/bff/spool".into()), ..PipelineConfig::default() };
//! let pipeline = Pipeline::start(config, vec![Arc::new(LangfuseSink::new(langfuse)?)])?;
//!
//! let mut record = LlmRecord::new("0af7651916cd43dd8448eb211c80319c", "req-1", "/v1/chat/completions", "gpt-4o-mini");
//! record.user_id = Some("user-7".into());
//! pipeline.record(record); // returns at once
//!
//! pipeline.shutdown(Duration::from_secs(5)).await; // flush; spool what is left
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod counters;
mod error;
#[cfg(feature = "helicone")]
mod helicone;
#[cfg(feature = "helicone")]
mod helicone_body;
#[cfg(any(feature = "langfuse", feature = "helicone"))]
mod http;
#[cfg(feature = "langfuse")]
mod langfuse;
#[cfg(feature = "logging")]
mod logging;
#[cfg(feature = "langfuse")]
mod otlp;
mod pipeline;
mod record;
mod secret;
mod sink;
mod spool;

pub use counters::SinkStats;
pub use error::TelemetryError;
#[cfg(feature = "helicone")]
pub use helicone::{HeliconeConfig, HeliconeSink};
#[cfg(all(feature = "helicone", feature = "test-support"))]
pub use helicone::{helicone_request_id, log_body};
#[cfg(feature = "langfuse")]
pub use langfuse::{GENERATION_NAME, LangfuseConfig, LangfuseSink, basic_authorization};
#[cfg(feature = "logging")]
pub use logging::{LogFormat, LogGuard, init_logging};
pub use pipeline::{Pipeline, PipelineConfig};
pub use record::{CapturePolicy, LlmRecord, Outcome, RecordError, TokenUsage, UnixNanos};
pub use secret::Secret;
pub use sink::{ExportError, TelemetrySink};
pub use spool::SpoolError;
