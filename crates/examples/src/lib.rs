//! # bff-examples
//!
//! What another team's Rust service looks like on bff's library crates, small enough to read at
//! once and tested like the rest:
//! - [`chat_service`]: an axum API that authenticates Open WebUI users with `bff-auth`'s tower
//!   layer, calls LiteLLM through `bff-providers` and records every call to Langfuse with
//!   `bff-telemetry` (`cargo run -p bff-examples --example chat_service`);
//! - [`batch_job`]: no web framework; runs a list of prompts through `bff-providers` and records
//!   each to Langfuse and Helicone, with the disk spool
//!   (`cargo run -p bff-examples --example batch_job`).
//!
//! Without `LITELLM_URL` the examples run against [`stand_ins`]: local fakes answering with what
//! the real services answered when recorded, so they run anywhere, offline.

#![deny(missing_docs)]

pub mod batch_job;
pub mod chat_service;
pub mod stand_ins;

use bff_providers::{ChatCompletion, ProviderError};
use bff_telemetry::{LlmRecord, Outcome, RecordError, TokenUsage};

/// Fills `record` with how a chat call ended: usage, cost and answer, or the error.
pub fn record_outcome(record: &mut LlmRecord, result: &Result<ChatCompletion, ProviderError>) {
    match result {
        Ok(completion) => {
            let usage = completion.response.usage.as_ref();
            record.usage = usage.map(|usage| TokenUsage {
                input: usage.prompt_tokens,
                output: usage.completion_tokens,
                total: usage.total_tokens,
                details: Vec::new(),
            });
            record.cost_usd = completion.meta.cost_usd;
            record.model_served = completion.response.model.clone();
            record.output = completion.response.output_text();
            record.attempts = completion.meta.attempts;
        }
        Err(error) => {
            record.outcome = Outcome::Error;
            record.attempts = error.attempts;
            record.error = Some(RecordError {
                kind: error.kind.label().to_owned(),
                message: error.to_string(),
                status: error.kind.upstream_status(),
            });
        }
    }
    record.ended_at = bff_telemetry::UnixNanos::now();
}
