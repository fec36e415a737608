//! `POST /chat/completions`, `POST /v1/chat/completions` (honour `stream`) and
//! `POST /chat/stream` (always streams).

use crate::context::{RequestInfo, UpstreamWait};
use crate::disconnect::{Client, ClientWatch};
use crate::error::{ApiError, render};
use crate::state::AppState;
use crate::traffic::OpenStream;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bff_auth::Identity;
use bff_providers::{
    ChatRequest, ChatStream, ProviderError, RequestContext, StreamSummary, Usage, reachable_models,
    validate_chat_body,
};
use bff_quota::{Kind, Spend, Ticket};
use bff_telemetry::{LlmRecord, Outcome, RecordError, TokenUsage, UnixNanos};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::time::Instant;

/// LiteLLM's call id, passed back to the caller (it equals bff's request id, which LiteLLM
/// adopts), so one id finds the request in bff's logs, LiteLLM's logs and Langfuse.
const LITELLM_CALL_ID: &str = "x-litellm-call-id";

/// Chat completion; streams when the body says `"stream": true`.
pub async fn completions(
    request: HttpRequest,
    body: web::Bytes,
    identity: Identity,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    serve(request, body, identity, state, false).await
}

/// Always-streaming chat.
pub async fn stream(
    request: HttpRequest,
    body: web::Bytes,
    identity: Identity,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    serve(request, body, identity, state, true).await
}

/// Both chat routes: admission, quota, then the call; `always_stream` streams whatever the
/// body says.
async fn serve(
    request: HttpRequest,
    body: web::Bytes,
    identity: Identity,
    state: web::Data<AppState>,
    always_stream: bool,
) -> Result<HttpResponse, ApiError> {
    let chat = admit(&request, &body, &identity, &state)?;
    let stream = always_stream || chat.stream == Some(true);
    let info = RequestInfo::of(&request);
    let ticket = take_quota(&info, &identity, &state, &chat.model).await?;
    handle(
        request,
        info,
        identity,
        state.into_inner(),
        chat,
        stream,
        ticket,
    )
    .await
}

/// Everything decided before LiteLLM is called: the body is JSON, every OpenAI parameter has
/// its documented type, and the policy allows every model the request can reach and every
/// field that is not an OpenAI parameter.
fn admit(
    request: &HttpRequest,
    body: &[u8],
    identity: &Identity,
    state: &AppState,
) -> Result<ChatRequest, ApiError> {
    if request
        .mime_type()
        .ok()
        .flatten()
        .is_none_or(|mime| mime.essence_str() != "application/json")
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    let fields = parse_object(body)?;
    let checked = validate_chat_body(fields)?;
    let models = reachable_models(&checked.fields)?;
    state
        .access
        .check_chat(identity, &models, &checked.extra_parameters)?;
    serde_json::from_value(Value::Object(checked.fields)).map_err(|error| {
        ApiError::bad_request(
            format!("the request body is not a valid chat completion request: {error}"),
            None,
        )
    })
}

/// The caller's usage limits for `model`, checked and counted: a ticket to settle when the
/// request ends, or a 429 (503 when the counters cannot be reached and the fail mode is
/// closed). Never reaches LiteLLM when refused.
async fn take_quota(
    info: &RequestInfo,
    identity: &Identity,
    state: &AppState,
    model: &str,
) -> Result<Ticket, ApiError> {
    let scopes = state.access.scopes(identity, model);
    let started = Instant::now();
    let result = state
        .quota
        .admit(scopes, Kind::Chat, &info.request_id)
        .await;
    let refused = result.as_ref().err().map(bff_quota::QuotaError::kind);
    state.metrics.quota_admission(started.elapsed(), refused);
    Ok(result?)
}

/// The body as a JSON object, or a 400 naming what is wrong.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON chat completion request",
            None,
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
            None,
        )),
        Err(error) => Err(ApiError::bad_request(
            format!("the request body is not valid JSON: {error}"),
            None,
        )),
    }
}

async fn handle(
    request: HttpRequest,
    info: RequestInfo,
    identity: Identity,
    state: Arc<AppState>,
    chat: ChatRequest,
    stream: bool,
    ticket: Ticket,
) -> Result<HttpResponse, ApiError> {
    let route = request
        .match_pattern()
        .unwrap_or_else(|| request.path().to_owned());
    let context = RequestContext {
        request_id: info.request_id.clone(),
        trace_id: info.trace_id.clone(),
        user_id: Some(identity.user_id.clone()),
        session_id: identity.chat_id.clone(),
        tags: vec!["bff".into(), format!("route:{route}")],
        deadline: info.deadline(state.request_timeout),
    };
    let mut record = LlmRecord::new(
        info.trace_id.as_str(),
        &info.request_id,
        &route,
        &chat.model,
    );
    record.client_request_id.clone_from(&info.client_request_id);
    record.parent_span_id.clone_from(&info.parent_span_id);
    record.user_id = Some(identity.user_id.clone());
    record.role = identity.role.clone();
    record.session_id = identity.chat_id.clone();
    record.environment = state.environment.clone();
    record.stream = stream;
    record.started_at = UnixNanos::from(info.started_at);
    record.tags = context.tags.clone();
    if let Some(kind) = &identity.openwebui_auth_type {
        record.tags.push(format!("openwebui_auth:{kind}"));
    }
    record.input = serde_json::to_value(&chat.messages).ok();
    if stream {
        start_stream(&request, &info, state, &context, chat, (record, ticket)).await
    } else {
        complete(&request, &state, &context, chat, (record, ticket)).await
    }
}

/// A non-streaming call: LiteLLM's body is passed on byte for byte.
async fn complete(
    request: &HttpRequest,
    state: &AppState,
    context: &RequestContext,
    chat: ChatRequest,
    (mut record, ticket): (LlmRecord, Ticket),
) -> Result<HttpResponse, ApiError> {
    let waiting = Instant::now();
    let result = state.litellm.chat(context, chat).await;
    request
        .extensions_mut()
        .insert(UpstreamWait(waiting.elapsed()));
    let completion = match result {
        Ok(completion) => completion,
        Err(error) => return Err(failed(state, (record, ticket), error)),
    };
    let usage = completion.response.usage.as_ref();
    record.model_served = completion
        .response
        .model
        .clone()
        .or_else(|| completion.meta.model_group.clone());
    record.usage = usage.map(token_usage);
    record.cost_usd = completion
        .meta
        .cost_usd
        .or_else(|| usage.and_then(|u| u.cost));
    record.upstream_call_id = completion.meta.call_id.clone();
    record.attempts = completion.meta.attempts;
    record.output = completion.response.output_text();
    record.finish_reason = completion.response.finish_reason().map(str::to_owned);
    record.ended_at = UnixNanos::now();
    let mut response = HttpResponse::Ok();
    for header in ticket.headers().pairs() {
        response.insert_header(header);
    }
    finish(state, record, ticket);
    if let Some(call_id) = &completion.meta.call_id {
        response.insert_header((LITELLM_CALL_ID, call_id.as_str()));
    }
    Ok(response
        .content_type("application/json")
        .body(completion.raw))
}

/// A streaming call: returns once LiteLLM's stream has started; the [`Relay`] records the rest.
async fn start_stream(
    request: &HttpRequest,
    info: &RequestInfo,
    state: Arc<AppState>,
    context: &RequestContext,
    chat: ChatRequest,
    (mut record, ticket): (LlmRecord, Ticket),
) -> Result<HttpResponse, ApiError> {
    let waiting = Instant::now();
    let result = state.litellm.chat_stream(context, chat).await;
    request
        .extensions_mut()
        .insert(UpstreamWait(waiting.elapsed()));
    let upstream = match result {
        Ok(upstream) => upstream,
        Err(error) => return Err(failed(&state, (record, ticket), error)),
    };
    record.upstream_call_id = upstream.meta().call_id.clone();
    record.attempts = upstream.meta().attempts;
    let mut response = HttpResponse::Ok();
    if let Some(call_id) = &upstream.meta().call_id {
        response.insert_header((LITELLM_CALL_ID, call_id.as_str()));
    }
    for header in ticket.headers().pairs() {
        response.insert_header(header);
    }
    let relay = Relay {
        upstream: Some(upstream),
        client: ClientWatch::of(request),
        pending: Some(Pending {
            _open: state.metrics.traffic.stream_opened(),
            state,
            record,
            ticket,
            started: info.started,
            started_at: info.started_at,
        }),
        request_id: info.request_id.clone(),
    };
    Ok(response
        .content_type("text/event-stream")
        .insert_header(("x-accel-buffering", "no"))
        .streaming(relay))
}

/// Records a failed call and turns it into the API error.
fn failed(
    state: &AppState,
    (mut record, ticket): (LlmRecord, Ticket),
    error: ProviderError,
) -> ApiError {
    state.metrics.upstream_error(error.kind.label());
    record.attempts = error.attempts;
    record.upstream_call_id = error.call_id.clone();
    let api_error = ApiError::Provider(error);
    record.outcome = Outcome::Error;
    record.error = Some(record_error(&api_error));
    record.ended_at = UnixNanos::now();
    finish(state, record, ticket);
    api_error
}

fn record_error(error: &ApiError) -> RecordError {
    use actix_web::ResponseError as _;
    RecordError {
        kind: error.parts().code.to_owned(),
        message: error.to_string(),
        status: Some(error.status_code().as_u16()),
    }
}

/// Hands a finished record to the quota, telemetry, the usage ledger and the recent requests
/// (all non-blocking).
fn finish(state: &AppState, record: LlmRecord, ticket: Ticket) {
    ticket.settle(Spend {
        tokens: record.usage.as_ref().map_or(0, |usage| {
            usage
                .total
                .unwrap_or_else(|| usage.input.unwrap_or(0) + usage.output.unwrap_or(0))
        }),
        cost_usd: record.cost_usd.unwrap_or(0.0),
    });
    state.usage.add(&record);
    state.recent.add(&record);
    state.telemetry.record(record);
}

/// Token counts, with the `*_details` objects flattened.
fn token_usage(usage: &Usage) -> TokenUsage {
    let details = usage
        .extra
        .values()
        .filter_map(Value::as_object)
        .flat_map(|fields| fields.iter())
        .filter_map(|(key, value)| value.as_u64().map(|count| (key.clone(), count)))
        .collect();
    TokenUsage {
        input: usage.prompt_tokens,
        output: usage.completion_tokens,
        total: usage.total_tokens,
        details,
    }
}

/// What a stream still has to record when it ends, however it ends.
struct Pending {
    /// Counts the stream as open (monitoring's "active streams") until it is recorded.
    _open: OpenStream,
    state: Arc<AppState>,
    record: LlmRecord,
    ticket: Ticket,
    started: Instant,
    started_at: SystemTime,
}

impl Pending {
    fn complete(mut self, outcome: Outcome, error: Option<RecordError>, summary: &StreamSummary) {
        log_stream_end(&self.record, outcome, error.as_ref());
        let record = &mut self.record;
        record.outcome = outcome;
        record.error = error;
        record.model_served.clone_from(&summary.model);
        record.usage = summary.usage.as_ref().map(token_usage);
        record.cost_usd = summary.usage.as_ref().and_then(|usage| usage.cost);
        record.output = Some(summary.output_text.clone());
        record.finish_reason.clone_from(&summary.finish_reason);
        if let Some(first) = summary.first_output_at {
            let after = first.saturating_duration_since(self.started);
            record.first_token_at = Some(UnixNanos::from(self.started_at + after));
            self.state
                .metrics
                .time_to_first_token(&record.model_requested, after);
        }
        record.ended_at = UnixNanos::now();
        finish(&self.state, self.record, self.ticket);
    }
}

/// The line that says how a stream ended (its request's line only said it started): INFO
/// when it completed, WARN when it failed or the client left.
fn log_stream_end(record: &LlmRecord, outcome: Outcome, error: Option<&RecordError>) {
    let outcome_name = match outcome {
        Outcome::Ok => "ok",
        Outcome::Error => "error",
        Outcome::Cancelled => "cancelled",
    };
    let code = error.map(|error| error.kind.as_str());
    let user_id = record.user_id.as_deref();
    match outcome {
        Outcome::Ok => {
            tracing::info!(request_id = %record.request_id, user_id, outcome = outcome_name, "stream finished")
        }
        _ => {
            tracing::warn!(request_id = %record.request_id, user_id, outcome = outcome_name, error_code = code, "stream did not finish")
        }
    }
}

/// The response body of a streaming chat: LiteLLM's events, byte for byte, as they arrive.
/// On an upstream failure after the first byte it sends one final OpenAI-shaped
/// `data: {"error":…}` event and ends. Telemetry is recorded when the stream ends, fails, or
/// the client goes away: noticed by [`ClientWatch`] even while LiteLLM is silent, or when the
/// body is dropped. Either way the upstream request is dropped, and so closed, at once.
struct Relay {
    upstream: Option<ChatStream>,
    client: Option<ClientWatch>,
    pending: Option<Pending>,
    request_id: String,
}

impl Relay {
    /// Records the stream as cancelled and closes the upstream request.
    fn cancel(&mut self) {
        if let (Some(pending), Some(upstream)) = (self.pending.take(), self.upstream.take()) {
            pending.complete(
                Outcome::Cancelled,
                Some(RecordError {
                    kind: "cancelled".into(),
                    message: "the client disconnected before the stream ended".into(),
                    status: None,
                }),
                upstream.summary(),
            );
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.pending.is_none() {
            return Poll::Ready(None);
        }
        match this.client.as_ref().map(|client| client.poll(cx)) {
            Some(Poll::Ready(Client::Gone)) => {
                this.cancel();
                return Poll::Ready(None);
            }
            Some(Poll::Ready(Client::Unknown)) => this.client = None,
            Some(Poll::Pending) | None => {}
        }
        let Some(upstream) = this.upstream.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut *upstream).poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(event.bytes))),
            Poll::Ready(Some(Err(error))) => {
                let kind = error.kind.label();
                let api_error = ApiError::Provider(error);
                if let Some(pending) = this.pending.take() {
                    pending.state.metrics.upstream_error(kind);
                    pending.complete(
                        Outcome::Error,
                        Some(record_error(&api_error)),
                        upstream.summary(),
                    );
                }
                if api_error.is_server_side() {
                    tracing::warn!(request_id = %this.request_id, error = %api_error, "stream failed upstream");
                }
                let body = render(&api_error.parts(), &this.request_id);
                Poll::Ready(Some(Ok(Bytes::from(format!("data: {body}\n\n")))))
            }
            Poll::Ready(None) => {
                if let Some(pending) = this.pending.take() {
                    pending.complete(Outcome::Ok, None, upstream.summary());
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cancel();
    }
}
