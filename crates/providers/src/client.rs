//! [`LiteLlmClient`]: the reqwest implementation of [`LiteLlm`].

use crate::api_key::ApiKey;
use crate::context::{RequestContext, random_fraction};
use crate::error::{ErrorKind, ProviderError};
use crate::stream::{ChatStream, MAX_CAPTURED_OUTPUT_BYTES, StreamSettings};
use crate::wire::{ChatRequest, ChatResponse, ModelList, StreamOptions};
use crate::{ChatCompletion, LiteLlm, ProxyReadiness, ResponseMeta};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use thread_local::ThreadLocal;
use tokio::time::Instant;
use url::Url;

/// Largest error body read from LiteLLM.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Client configuration. [`LiteLlmConfig::new`] gives production defaults.
#[derive(Debug, Clone)]
pub struct LiteLlmConfig {
    /// LiteLLM proxy base URL, e.g. `http://litellm:4000`.
    pub base_url: Url,
    /// Master or virtual key.
    pub api_key: ApiKey,
    /// TCP/TLS connect limit. Default 5 s.
    pub connect_timeout: Duration,
    /// Limit until the response headers arrive (for streams: until the stream starts).
    /// Default 120 s.
    pub first_byte_timeout: Duration,
    /// Whole-call limit for non-streaming chat, body included. Default 600 s (LiteLLM's own
    /// upstream default is 6000 s).
    pub request_timeout: Duration,
    /// Longest silence between two reads of a stream. Default 120 s.
    pub stream_idle_timeout: Duration,
    /// Limit for models and health calls. Default 10 s.
    pub short_call_timeout: Duration,
    /// Most HTTP attempts per call, the first included. Default 3.
    pub max_attempts: u32,
    /// First backoff step; doubles each retry, with jitter. Default 250 ms.
    pub backoff_base: Duration,
    /// Largest backoff step. Default 4 s.
    pub backoff_max: Duration,
    /// Longest `retry-after` honoured; a longer one is returned to the caller. Default 20 s.
    pub max_retry_after: Duration,
    /// Statuses retried before anything reached the caller. Default 429, 502, 503, 504.
    /// LiteLLM already retries 500/429/408 against the model provider itself (2 retries by
    /// default), so 500 and 408 are not retried again on top unless added here.
    pub retry_statuses: Vec<u16>,
    /// Largest single SSE event. Default 16 MiB.
    pub max_event_bytes: usize,
    /// Largest non-streaming response body. Default 64 MiB.
    pub max_body_bytes: usize,
    /// Most of a stream's output text kept for telemetry (past it, cut and marked). Default
    /// [`MAX_CAPTURED_OUTPUT_BYTES`]; a service with its own capture limit passes that.
    pub max_captured_output_bytes: usize,
    /// How connections are pooled. Default [`PoolMode::Shared`].
    pub pools: PoolMode,
}

/// How a [`LiteLlmClient`] keeps its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMode {
    /// One pool for every thread: right on a multi-threaded tokio runtime, where tasks move
    /// between threads anyway.
    #[default]
    Shared,
    /// One pool per calling thread: right when each thread runs its own single-threaded runtime
    /// (actix-web's workers). hyper drives a pooled connection from a task on the runtime that
    /// opened it, so with one pool a call often rode a connection driven by another thread, and
    /// the request and every chunk of its answer crossed threads twice.
    PerThread,
}

impl LiteLlmConfig {
    /// Defaults for a proxy at `base_url` with `api_key`.
    pub fn new(base_url: Url, api_key: ApiKey) -> Self {
        Self {
            base_url,
            api_key,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(120),
            short_call_timeout: Duration::from_secs(10),
            max_attempts: 3,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(20),
            retry_statuses: vec![429, 502, 503, 504],
            max_event_bytes: 16 << 20,
            max_body_bytes: 64 << 20,
            max_captured_output_bytes: MAX_CAPTURED_OUTPUT_BYTES,
            pools: PoolMode::default(),
        }
    }
}

/// Why a [`LiteLlmClient`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientBuildError {
    /// The base URL cannot be used.
    #[error("LiteLLM URL `{0}` must be an http(s) URL with a host")]
    InvalidUrl(String),
    /// The key cannot go in an HTTP header.
    #[error("the LiteLLM key contains characters that cannot be sent in a header")]
    InvalidKey,
    /// The HTTP client could not be built (TLS backend).
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// A LiteLLM proxy client, with one connection pool or one per calling thread
/// ([`LiteLlmConfig::pools`]).
#[derive(Debug, Clone)]
pub struct LiteLlmClient {
    /// One connection pool per thread, with [`PoolMode::PerThread`].
    pools: Arc<ThreadLocal<reqwest::Client>>,
    /// The pool every thread shares, with [`PoolMode::Shared`] (also the fallback should a
    /// per-thread one fail to build: never seen, the same settings built this one).
    shared: reqwest::Client,
    config: LiteLlmConfig,
    authorization: HeaderValue,
    /// `{base}/v1/chat/completions`, parsed once rather than on every call.
    chat_url: Url,
}

/// A time a call must finish by, and the name its error gives when it passes.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    limit: &'static str,
}

impl Deadline {
    /// The sooner of the caller's deadline and this client's own `limit` from now.
    fn sooner(caller: Option<Instant>, own: Duration, limit: &'static str) -> Self {
        let own = Self {
            at: Instant::now() + own,
            limit,
        };
        match caller {
            Some(at) if at <= own.at => Self {
                at,
                limit: "caller deadline",
            },
            _ => own,
        }
    }

    /// The caller's deadline, if it set one.
    fn caller(caller: Option<Instant>) -> Option<Self> {
        caller.map(|at| Self {
            at,
            limit: "caller deadline",
        })
    }
}

/// A call in flight and how it got there.
struct Sent {
    response: reqwest::Response,
    attempts: u32,
    sent_at: Instant,
}

impl LiteLlmClient {
    /// Builds the client and its connection pool.
    pub fn new(config: LiteLlmConfig) -> Result<Self, ClientBuildError> {
        if !matches!(config.base_url.scheme(), "http" | "https")
            || config.base_url.host_str().is_none()
        {
            return Err(ClientBuildError::InvalidUrl(config.base_url.to_string()));
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", config.api_key.expose()))
                .map_err(|_| ClientBuildError::InvalidKey)?;
        authorization.set_sensitive(true);
        let chat_url = Url::parse(&url_of(&config.base_url, "v1/chat/completions"))
            .map_err(|_| ClientBuildError::InvalidUrl(config.base_url.to_string()))?;
        let shared = http_client(&config)?;
        Ok(Self {
            pools: Arc::default(),
            shared,
            config,
            authorization,
            chat_url,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &LiteLlmConfig {
        &self.config
    }

    /// The connection pool for this call: the shared one, or this thread's (see
    /// [`PoolMode`]).
    fn http(&self) -> &reqwest::Client {
        match self.config.pools {
            PoolMode::Shared => &self.shared,
            PoolMode::PerThread => self
                .pools
                .get_or(|| http_client(&self.config).unwrap_or_else(|_| self.shared.clone())),
        }
    }

    /// Sends `build()` until it succeeds, fails for good, or the attempts or time run out.
    ///
    /// Retried: connect failures (nothing reached LiteLLM) and `retry_statuses`, with jittered
    /// exponential backoff or the server's `retry-after`. Never retried: a timeout or a broken
    /// connection after the request may have been received, and any other status.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        first_byte_limit: Duration,
        deadline: Option<Deadline>,
    ) -> Result<Sent, ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = Instant::now();
            let remaining = deadline.map(|deadline| deadline.at.saturating_duration_since(now));
            if let Some(deadline) = deadline
                && remaining == Some(Duration::ZERO)
            {
                return Err(ProviderError::new(
                    ErrorKind::DeadlineExceeded {
                        limit: deadline.limit,
                    },
                    attempt - 1,
                ));
            }
            let limit = remaining.map_or(first_byte_limit, |left| left.min(first_byte_limit));
            // Which limit runs out first names the error.
            let expired = deadline
                .filter(|_| remaining.is_some_and(|left| left < first_byte_limit))
                .map_or("time to first byte", |deadline| deadline.limit);
            let result = tokio::time::timeout(limit, build().send()).await;
            let response = match result {
                Err(_) => {
                    return Err(ProviderError::new(
                        ErrorKind::DeadlineExceeded { limit: expired },
                        attempt,
                    ));
                }
                Ok(Err(error)) => {
                    let kind = transport_error(&error);
                    if error.is_connect() && attempt < self.config.max_attempts {
                        let delay = self.backoff(attempt);
                        if fits(deadline, delay) {
                            tracing::debug!(attempt, ?delay, "LiteLLM connect failed; retrying");
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    }
                    return Err(ProviderError::new(kind, attempt));
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status().as_u16();
            if response.status().is_success() {
                return Ok(Sent {
                    response,
                    attempts: attempt,
                    sent_at: now,
                });
            }
            let call_id = header_text(response.headers(), "x-litellm-call-id");
            let retry_after = retry_after(response.headers());
            let body = read_limited(response, MAX_ERROR_BODY_BYTES, deadline.map(|d| d.at))
                .await
                .unwrap_or_default();
            let kind = ErrorKind::from_response(status, retry_after, &body);
            if self.config.retry_statuses.contains(&status) && attempt < self.config.max_attempts {
                let delay = match retry_after {
                    Some(wait) if wait > self.config.max_retry_after => None,
                    Some(wait) => Some(wait),
                    None => Some(self.backoff(attempt)),
                };
                if let Some(delay) = delay.filter(|delay| fits(deadline, *delay)) {
                    tracing::debug!(
                        attempt,
                        status,
                        ?delay,
                        "LiteLLM answered a retryable status; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            return Err(ProviderError {
                kind,
                attempts: attempt,
                call_id,
            });
        }
    }

    /// Jittered exponential backoff: a random point in the upper half of `base · 2^(n-1)`.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .config
            .backoff_base
            .saturating_mul(1_u32 << attempt.saturating_sub(1).min(16))
            .min(self.config.backoff_max);
        exponential.mul_f64(0.5 + random_fraction() / 2.0)
    }

    fn post_chat(
        &self,
        context: &RequestContext,
        body: Bytes,
        timeout_hint: Option<Duration>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http()
            .post(self.chat_url.clone())
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-litellm-call-id", context.request_id.as_str())
            .header("traceparent", context.traceparent())
            .body(body);
        if let Some(timeout) = timeout_hint {
            // Tell LiteLLM when bff will stop waiting, so it stops the upstream call too.
            request = request.header("x-litellm-timeout", format!("{:.1}", timeout.as_secs_f64()));
        }
        request
    }

    fn get(&self, path: &str, authorized: bool) -> reqwest::RequestBuilder {
        let request = self.http().get(url_of(&self.config.base_url, path));
        if authorized {
            request.header(reqwest::header::AUTHORIZATION, self.authorization.clone())
        } else {
            request
        }
    }
}

/// A connection pool with the client's timeouts; no redirects (LiteLLM never sends one, and
/// following one would carry the master key elsewhere).
fn http_client(config: &LiteLlmConfig) -> Result<reqwest::Client, ClientBuildError> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| ClientBuildError::Http(error.to_string()))
}

/// `path` under `base`, whether or not `base` ends with a slash.
fn url_of(base: &Url, path: &str) -> String {
    format!("{}/{path}", base.as_str().trim_end_matches('/'))
}

/// Whether waiting `delay` still leaves time before `deadline`.
fn fits(deadline: Option<Deadline>, delay: Duration) -> bool {
    deadline.is_none_or(|deadline| Instant::now() + delay < deadline.at)
}

fn transport_error(error: &reqwest::Error) -> ErrorKind {
    let reason = if error.is_connect() {
        "cannot connect to LiteLLM"
    } else if error.is_timeout() {
        "the connection timed out"
    } else {
        "the connection failed before LiteLLM answered"
    };
    ErrorKind::Unavailable {
        reason: reason.to_owned(),
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// `retry-after(-ms)` or LiteLLM's `llm_provider-retry-after(-ms)`, in that order.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = |name| {
        header_text(headers, name)
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|value| value.is_finite() && *value >= 0.0)
    };
    seconds("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| seconds("retry-after"))
        .or_else(|| seconds("llm_provider-retry-after-ms").map(|ms| ms / 1000.0))
        .or_else(|| seconds("llm_provider-retry-after"))
        .and_then(|seconds| Duration::try_from_secs_f64(seconds.min(MAX_RETRY_AFTER_SECONDS)).ok())
}

/// The longest wait a `retry-after` header is read as (a day); larger values are clamped.
const MAX_RETRY_AFTER_SECONDS: f64 = 86_400.0;

fn meta_of(sent: &Sent) -> ResponseMeta {
    let headers = sent.response.headers();
    ResponseMeta {
        status: sent.response.status().as_u16(),
        attempts: sent.attempts,
        call_id: header_text(headers, "x-litellm-call-id"),
        cost_usd: header_text(headers, "x-litellm-response-cost")
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|cost| cost.is_finite()),
        model_group: header_text(headers, "x-litellm-model-group"),
        model_id: header_text(headers, "x-litellm-model-id"),
        time_to_headers: sent.sent_at.elapsed(),
    }
}

/// Reads at most `limit` bytes of a body before `deadline`; `None` if it is larger or fails.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    deadline: Option<Instant>,
) -> Option<Bytes> {
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.ok()? {
            if body.len() + chunk.len() > limit {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        Some(body.freeze())
    };
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, read).await.ok()?,
        None => read.await,
    }
}

/// Key under which a request's own `metadata` is passed on: LiteLLM reads routing, budget and
/// logging controls from top-level metadata keys (`tags`, `trace_id`, …) but not from this one.
pub const CLIENT_METADATA_KEY: &str = "client_metadata";

/// Sets the body's `metadata` to what the context says (trace, user, session, tags) and `user`
/// to the authenticated user. The request's own metadata is kept only under
/// [`CLIENT_METADATA_KEY`], where LiteLLM does not interpret it.
fn annotate(request: &mut ChatRequest, context: &RequestContext) {
    let mut metadata = Map::new();
    metadata.insert("trace_id".into(), context.trace_id.as_str().into());
    if let Some(user) = &context.user_id {
        metadata.insert("trace_user_id".into(), user.as_str().into());
        request.user = Some(user.clone());
    }
    if let Some(session) = &context.session_id {
        metadata.insert("session_id".into(), session.as_str().into());
    }
    if !context.tags.is_empty() {
        let tags = context.tags.iter().cloned().map(Value::String).collect();
        metadata.insert("tags".into(), Value::Array(tags));
    }
    if let Some(client) = request.metadata.take().filter(|client| !client.is_empty()) {
        metadata.insert(CLIENT_METADATA_KEY.into(), Value::Object(client));
    }
    request.metadata = Some(metadata);
}

fn encode(request: &ChatRequest) -> Result<Bytes, ProviderError> {
    serde_json::to_vec(request)
        .map(Bytes::from)
        .map_err(|error| {
            ProviderError::new(
                ErrorKind::Protocol {
                    reason: format!("cannot encode the request: {error}"),
                },
                0,
            )
        })
}

#[async_trait]
impl LiteLlm for LiteLlmClient {
    async fn chat(
        &self,
        context: &RequestContext,
        mut request: ChatRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        annotate(&mut request, context);
        request.stream = Some(false);
        request.stream_options = None;
        let body = encode(&request)?;
        let deadline =
            Deadline::sooner(context.deadline, self.config.request_timeout, "whole call");
        let hint = deadline.at.saturating_duration_since(Instant::now());
        let sent = self
            .send(
                || self.post_chat(context, body.clone(), Some(hint)),
                self.config.first_byte_timeout,
                Some(deadline),
            )
            .await?;
        let meta = meta_of(&sent);
        let fail = |kind| ProviderError {
            kind,
            attempts: meta.attempts,
            call_id: meta.call_id.clone(),
        };
        let raw = read_limited(sent.response, self.config.max_body_bytes, Some(deadline.at))
            .await
            .ok_or_else(|| {
                fail(if Instant::now() >= deadline.at {
                    ErrorKind::DeadlineExceeded {
                        limit: deadline.limit,
                    }
                } else {
                    ErrorKind::Protocol {
                        reason: "the response body is unreadable or too large".into(),
                    }
                })
            })?;
        let response: ChatResponse = serde_json::from_slice(&raw).map_err(|error| {
            fail(ErrorKind::Protocol {
                reason: format!("the response is not a chat completion: {error}"),
            })
        })?;
        Ok(ChatCompletion {
            response,
            raw,
            meta,
        })
    }

    async fn chat_stream(
        &self,
        context: &RequestContext,
        mut request: ChatRequest,
    ) -> Result<ChatStream, ProviderError> {
        annotate(&mut request, context);
        let options = request
            .stream_options
            .get_or_insert_with(StreamOptions::default);
        let caller_wants_usage = options.include_usage == Some(true);
        options.include_usage = Some(true);
        request.stream = Some(true);
        let body = encode(&request)?;
        let sent = self
            .send(
                || self.post_chat(context, body.clone(), None),
                self.config.first_byte_timeout,
                Deadline::caller(context.deadline),
            )
            .await?;
        let meta = meta_of(&sent);
        let content_type = header_text(sent.response.headers(), "content-type").unwrap_or_default();
        if !content_type.contains("text/event-stream") {
            return Err(ProviderError {
                kind: ErrorKind::Protocol {
                    reason: format!("expected an event stream, got `{content_type}`"),
                },
                attempts: meta.attempts,
                call_id: meta.call_id,
            });
        }
        Ok(ChatStream::from_byte_stream(
            sent.response.bytes_stream(),
            meta,
            StreamSettings {
                caller_wants_usage,
                idle_timeout: self.config.stream_idle_timeout,
                deadline: context.deadline,
                max_event_bytes: self.config.max_event_bytes,
                max_captured_output_bytes: self.config.max_captured_output_bytes,
            },
        ))
    }

    async fn models(&self, context: &RequestContext) -> Result<ModelList, ProviderError> {
        let deadline = Deadline::sooner(
            context.deadline,
            self.config.short_call_timeout,
            "whole call",
        );
        let sent = self
            .send(
                || {
                    self.get("v1/models", true)
                        .header("x-litellm-call-id", context.request_id.as_str())
                        .header("traceparent", context.traceparent())
                },
                self.config.short_call_timeout,
                Deadline::caller(context.deadline),
            )
            .await?;
        let attempts = sent.attempts;
        let raw = read_limited(sent.response, self.config.max_body_bytes, Some(deadline.at))
            .await
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Protocol {
                        reason: "the model list is unreadable or too large".into(),
                    },
                    attempts,
                )
            })?;
        serde_json::from_slice(&raw).map_err(|error| {
            ProviderError::new(
                ErrorKind::Protocol {
                    reason: format!("the model list is not `{{\"data\":[…]}}`: {error}"),
                },
                attempts,
            )
        })
    }

    async fn liveness(&self) -> Result<(), ProviderError> {
        self.probe("health/liveliness").await.map(|_| ())
    }

    async fn readiness(&self) -> Result<ProxyReadiness, ProviderError> {
        let body = self.probe("health/readiness").await?;
        let value: Value = serde_json::from_slice(&body).map_err(|_| {
            ProviderError::new(
                ErrorKind::Protocol {
                    reason: "readiness answer is not JSON".into(),
                },
                1,
            )
        })?;
        Ok(ProxyReadiness {
            status: value
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            db: value.get("db").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

impl LiteLlmClient {
    /// One unauthenticated GET of a health endpoint, no retries: a probe reports what it sees.
    /// Returns the body of a 2xx answer.
    async fn probe(&self, path: &str) -> Result<Bytes, ProviderError> {
        let timeout = self.config.short_call_timeout;
        let deadline = Instant::now() + timeout;
        let response = tokio::time::timeout(timeout, self.get(path, false).send())
            .await
            .map_err(|_| {
                ProviderError::new(
                    ErrorKind::DeadlineExceeded {
                        limit: "whole call",
                    },
                    1,
                )
            })?
            .map_err(|error| ProviderError::new(transport_error(&error), 1))?;
        let status = response.status().as_u16();
        let body = read_limited(response, MAX_ERROR_BODY_BYTES, Some(deadline))
            .await
            .unwrap_or_default();
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(ProviderError::new(
                ErrorKind::from_response(status, None, &body),
                1,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TraceId;
    use serde_json::json;

    fn client() -> LiteLlmClient {
        LiteLlmClient::new(LiteLlmConfig::new(
            Url::parse("http://127.0.0.1:4000").unwrap(),
            ApiKey::new("sk-test"),
        ))
        .unwrap()
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let client = client();
        for attempt in 1..=8 {
            let full = Duration::from_millis(250)
                .saturating_mul(1 << (attempt - 1))
                .min(Duration::from_secs(4));
            let delay = client.backoff(attempt);
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn retry_after_headers_in_order_of_preference() {
        let mut headers = HeaderMap::new();
        headers.insert("llm_provider-retry-after", HeaderValue::from_static("1"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(1)));
        headers.insert("retry-after", HeaderValue::from_static("2.5"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(2500)));
        headers.insert("retry-after-ms", HeaderValue::from_static("300"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(300)));
        let mut junk = HeaderMap::new();
        junk.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&junk), None);
        let mut huge = HeaderMap::new();
        huge.insert("retry-after", HeaderValue::from_static("1e300"));
        assert_eq!(retry_after(&huge), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn annotate_builds_metadata_and_fences_off_the_clients() {
        let mut request: ChatRequest = serde_json::from_value(json!({
            "model": "m", "messages": [], "user": "spoofed",
            "metadata": {"tenant": "acme", "tags": ["route-me"], "trace_id": "client-chose"}
        }))
        .unwrap();
        let mut context = RequestContext::new("req-1", TraceId::parse(&"ab".repeat(16)).unwrap());
        context.user_id = Some("u-1".into());
        context.session_id = Some("chat-1".into());
        context.tags = vec!["bff".into()];
        annotate(&mut request, &context);
        assert_eq!(request.user.as_deref(), Some("u-1"));
        assert_eq!(
            Value::Object(request.metadata.unwrap()),
            json!({"trace_id": "ab".repeat(16), "trace_user_id": "u-1", "session_id": "chat-1",
                   "tags": ["bff"],
                   "client_metadata": {"tenant": "acme", "tags": ["route-me"], "trace_id": "client-chose"}})
        );
    }

    #[test]
    fn rejects_unusable_urls_and_keys() {
        let url = Url::parse("file:///tmp/x").unwrap();
        assert!(matches!(
            LiteLlmClient::new(LiteLlmConfig::new(url, ApiKey::new("k"))),
            Err(ClientBuildError::InvalidUrl(_))
        ));
        let url = Url::parse("http://litellm:4000").unwrap();
        assert_eq!(
            LiteLlmClient::new(LiteLlmConfig::new(url, ApiKey::new("bad\nkey"))).unwrap_err(),
            ClientBuildError::InvalidKey
        );
    }
}
