//! # bff-providers
//!
//! How bff — and any other Rust service — talks to a [LiteLLM](https://github.com/BerriAI/litellm)
//! proxy (reference: 1.108.7). [`LiteLlm`] is the trait (mock it with `MockLiteLlm`, feature
//! `mock`); [`LiteLlmClient`] is the production implementation on reqwest.
//!
//! - **OpenAI wire types** ([`ChatRequest`], [`ChatResponse`], [`ChatChunk`]) type what bff
//!   reads and carry every other field through untouched, in order.
//! - **Tracing pass-through**: each call sends `x-litellm-call-id: <request id>` (LiteLLM
//!   adopts it), `metadata.trace_id`, `metadata.trace_user_id` and `user`,
//!   `metadata.session_id`, `metadata.tags` and a W3C `traceparent`, so LiteLLM's own Langfuse
//!   logging joins the caller's trace. `metadata` is built from the [`RequestContext`] alone; a
//!   request's own metadata travels only under `metadata.client_metadata`, which LiteLLM does
//!   not act on.
//! - **What a request may carry** ([`validate_chat_body`], [`chat_parameters`],
//!   [`reachable_models`], [`ParameterAllowList`]): the OpenAI parameters with their documented
//!   types, model names of at most [`MAX_MODEL_NAME_BYTES`], the fields that are not OpenAI's
//!   (LiteLLM treats many as its own controls: `fallbacks`, `num_retries`, `api_base`, …) for an
//!   allow-list to refuse unless an operator opted in, never those in [`NEVER_ALLOWED_PARAMS`],
//!   and every model a request can be routed to.
//! - **Time limits**: connect, time to first byte, whole call (non-streaming), idle gap
//!   (streams) and the caller's deadline from [`RequestContext`]; never LiteLLM's 6000 s.
//! - **Retries** only before anything reached the caller: connect failures and 429/502/503/504
//!   by default, jittered exponential backoff, `retry-after` and `llm_provider-retry-after`
//!   honoured, attempts bounded and reported ([`ResponseMeta::attempts`],
//!   [`ProviderError::attempts`]).
//! - **Streaming** ([`ChatStream`]): usage is always requested upstream and removed again if
//!   the caller did not ask; each event is handed on as soon as it is complete, with no
//!   buffering beyond it; mid-stream `{"error":…}` events and truncation are distinct errors;
//!   dropping the stream closes the upstream connection.
//! - **Errors** ([`ErrorKind`]): LiteLLM's `{"error":{…,"code":"500"}}` and bare-text bodies
//!   mapped to bad request, auth rejected, unknown model, rate limited, upstream timeout,
//!   upstream failure, unavailable, protocol, deadline exceeded, stream failed, truncated.
//!
//! ## Use from another service
//! ```no_run
//! use bff_providers::{ApiKey, ChatRequest, LiteLlm, LiteLlmClient, LiteLlmConfig, RequestContext, TraceId};
//! use futures_util::StreamExt as _;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = LiteLlmConfig::new("http://litellm:4000".parse()?, ApiKey::new("sk-…"));
//! let litellm = LiteLlmClient::new(config)?; // build once, share: one connection pool
//! let mut context = RequestContext::new("req-42", TraceId::random());
//! context.user_id = Some("user-7".into());
//! let request: ChatRequest = serde_json::from_str(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#)?;
//! let mut stream = litellm.chat_stream(&context, request).await?;
//! while let Some(event) = stream.next().await {
//!     print!("{}", String::from_utf8_lossy(&event?.bytes)); // SSE bytes, ready to forward
//! }
//! println!("usage: {:?}", stream.summary().usage);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod api_key;
mod client;
mod context;
mod error;
mod params;
mod sse;
mod stream;
mod wire;

pub use api_key::ApiKey;
pub use client::{CLIENT_METADATA_KEY, ClientBuildError, LiteLlmClient, LiteLlmConfig, PoolMode};
pub use context::{RequestContext, TraceId};
pub use error::{ErrorKind, ProviderError};
pub use params::{
    ChatBody, ForbiddenParameter, InvalidParameter, MAX_MODEL_NAME_BYTES, NEVER_ALLOWED_PARAMS,
    ParameterAllowList, UnsupportedParameter, chat_parameters, reachable_models,
    validate_chat_body,
};
pub use sse::{EventTooLarge, SseEvent, SseParser};
pub use stream::{
    ChatStream, DONE_EVENT, MAX_CAPTURED_OUTPUT_BYTES, StreamEvent, StreamSettings, StreamSummary,
};
pub use wire::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, Choice, ChunkChoice, Model, ModelList,
    StreamOptions, Usage,
};

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// What LiteLLM's response headers said about a call.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    /// HTTP status of the answer.
    pub status: u16,
    /// HTTP attempts made, the successful one included.
    pub attempts: u32,
    /// `x-litellm-call-id` (bff's request id, which LiteLLM adopts).
    pub call_id: Option<String>,
    /// `x-litellm-response-cost` in USD (absent on streams: see the usage chunk's `cost`).
    pub cost_usd: Option<f64>,
    /// `x-litellm-model-group`.
    pub model_group: Option<String>,
    /// `x-litellm-model-id` (the deployment).
    pub model_id: Option<String>,
    /// From sending the successful attempt to its response headers.
    pub time_to_headers: Duration,
}

/// A non-streaming chat completion.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCompletion {
    /// The parsed response.
    pub response: ChatResponse,
    /// The body exactly as LiteLLM sent it, to forward without re-encoding.
    pub raw: Bytes,
    /// Header metadata.
    pub meta: ResponseMeta,
}

/// LiteLLM's `/health/readiness` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReadiness {
    /// `healthy` when ready.
    pub status: String,
    /// Database state (`Not connected` without a DB), if reported.
    pub db: Option<String>,
}

/// A LiteLLM proxy. Every chat call carries a [`RequestContext`].
#[cfg_attr(any(test, feature = "test-support"), mockall::automock)]
#[async_trait]
pub trait LiteLlm: Send + Sync {
    /// A non-streaming chat completion.
    async fn chat(
        &self,
        context: &RequestContext,
        request: ChatRequest,
    ) -> Result<ChatCompletion, ProviderError>;

    /// A streaming chat completion; returns once the stream has started.
    async fn chat_stream(
        &self,
        context: &RequestContext,
        request: ChatRequest,
    ) -> Result<ChatStream, ProviderError>;

    /// The models the key may use.
    async fn models(&self, context: &RequestContext) -> Result<ModelList, ProviderError>;

    /// Liveness: the proxy process answers (`/health/liveliness`).
    async fn liveness(&self) -> Result<(), ProviderError>;

    /// Readiness: the proxy is ready to serve (`/health/readiness`).
    async fn readiness(&self) -> Result<ProxyReadiness, ProviderError>;
}
