//! `POST /chat/completions`, `POST /v1/chat/completions` (honour `stream`) and
//! `POST /chat/stream` (always streams).
//!
//! A chat tells its exchange ([`crate::exchange`]) what happened — the caller, the record of the
//! model call, the quota ticket — and never counts anything itself: the exchange's subscribers
//! do, once it ends.

use crate::context::RequestInfo;
use crate::error::{ApiError, render};
use crate::exchange::{ChatDraft, Ending, ExchangeHandle, Failure, OpenStream, QuotaCheck};
use crate::state::AppState;
use crate::tasks::task_of;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bff_auth::Identity;
use bff_providers::{
    ChatRequest, ChatStream, ProviderError, RequestContext, StreamSummary, Usage, reachable_models,
    validate_chat_body,
};
use bff_quota::{Kind, QuotaError, Ticket};
use bff_telemetry::{LlmRecord, TokenUsage, UnixNanos};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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

/// The request's exchange (the request-context middleware starts one for every request).
fn exchange_of(request: &HttpRequest) -> Result<ExchangeHandle, ApiError> {
    request
        .extensions()
        .get::<ExchangeHandle>()
        .cloned()
        .ok_or(ApiError::NotConfigured("the request context is not wired"))
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
    let exchange = exchange_of(&request)?;
    exchange.set_route(request.match_pattern().as_deref());
    let task = task_of(&request);
    exchange.update(|draft| {
        draft.caller = Some(identity.clone());
        draft.task = task;
    });
    let chat = admit(&request, &body, &identity, &state)?;
    let stream = always_stream || chat.stream == Some(true);
    let info = RequestInfo::of(&request);
    let mut record = new_record(&request, &info, &identity, &state, (&chat, stream));
    record.task = task.map(str::to_owned);
    exchange.update(|draft| {
        draft.chat = Some(ChatDraft {
            record,
            called: false,
            model_known: state.models.knows(&chat.model),
            first_token: None,
            upstream_error: None,
            quota: None,
        });
    });
    let kind = if task.is_some() {
        Kind::Task
    } else {
        Kind::Chat
    };
    let ticket = take_quota(&exchange, &info, &identity, &state, (&chat.model, kind)).await?;
    let context = RequestContext {
        request_id: info.request_id.clone(),
        trace_id: info.trace_id.clone(),
        user_id: Some(identity.user_id.clone()),
        session_id: identity.chat_id.clone(),
        tags: exchange
            .chat(|chat| chat.record.tags.clone())
            .unwrap_or_default(),
        deadline: info.deadline(state.request_timeout),
    };
    let headers = ticket.headers().pairs();
    exchange.update(|draft| draft.ticket = Some(ticket));
    exchange.chat(|chat| chat.called = true);
    let mut response = HttpResponse::Ok();
    for header in headers {
        response.insert_header(header);
    }
    let state = state.into_inner();
    if stream {
        start_stream(&exchange, &state, &context, chat, response).await
    } else {
        complete(&exchange, &state, &context, chat, response).await
    }
}

/// Everything decided before LiteLLM is called: the body is JSON, every OpenAI parameter has
/// its documented type (a model name past 256 bytes first), and the policy allows every model
/// the request can reach and every field that is not an OpenAI parameter.
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

/// The telemetry record of a chat that passed admission.
fn new_record(
    request: &HttpRequest,
    info: &RequestInfo,
    identity: &Identity,
    state: &AppState,
    (chat, stream): (&ChatRequest, bool),
) -> LlmRecord {
    let route = request
        .match_pattern()
        .unwrap_or_else(|| request.path().to_owned());
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
    record.groups = identity
        .groups
        .iter()
        .map(|group| group.name.clone())
        .collect();
    record.session_id = identity.chat_id.clone();
    record.environment = state.environment.clone();
    record.stream = stream;
    record.started_at = UnixNanos::from(info.started_at);
    record.tags = vec!["bff".into(), format!("route:{route}")];
    if let Some(kind) = &identity.openwebui_auth_type {
        record.tags.push(format!("openwebui_auth:{kind}"));
    }
    record.input = serde_json::to_value(&chat.messages).ok();
    record
}

/// The caller's usage limits for `model`, checked and counted: a ticket to settle when the
/// request ends, or a 429 (503 when the counters cannot be reached and the fail mode is
/// closed). Never reaches LiteLLM when refused.
async fn take_quota(
    exchange: &ExchangeHandle,
    info: &RequestInfo,
    identity: &Identity,
    state: &AppState,
    (model, kind): (&str, Kind),
) -> Result<Ticket, ApiError> {
    let scopes = state.access.scopes(identity, model);
    let started = Instant::now();
    let result = state.quota.admit(scopes, kind, &info.request_id).await;
    let check = QuotaCheck {
        took: started.elapsed(),
        refused: result.as_ref().err().map(QuotaError::kind),
    };
    exchange.chat(|chat| chat.quota = Some(check));
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

/// Notes a failed call in the exchange and turns it into the API error.
fn failed(exchange: &ExchangeHandle, state: &AppState, error: ProviderError) -> ApiError {
    let known = !matches!(error.kind, bff_providers::ErrorKind::UnknownModel { .. });
    exchange.chat(|chat| {
        chat.record.attempts = error.attempts;
        chat.record.upstream_call_id.clone_from(&error.call_id);
        chat.record.upstream_status = error.kind.upstream_status();
        chat.upstream_error = Some(error.kind.label());
        chat.model_known &= known && state.models.knows(&chat.record.model_requested);
    });
    ApiError::Provider(error)
}

/// A non-streaming call: LiteLLM's body is passed on byte for byte.
async fn complete(
    exchange: &ExchangeHandle,
    state: &AppState,
    context: &RequestContext,
    chat: ChatRequest,
    mut response: HttpResponseBuilder,
) -> Result<HttpResponse, ApiError> {
    let waiting = Instant::now();
    let result = state.litellm.chat(context, chat).await;
    exchange.update(|draft| draft.upstream_wait = waiting.elapsed());
    let completion = result.map_err(|error| failed(exchange, state, error))?;
    exchange.chat(|chat| {
        let record = &mut chat.record;
        let usage = completion.response.usage.as_ref();
        state.models.learn(&record.model_requested);
        chat.model_known = true;
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
        record.upstream_status = Some(completion.meta.status);
        record.attempts = completion.meta.attempts;
        record.output = completion.response.output_text();
        record.finish_reason = completion.response.finish_reason().map(str::to_owned);
    });
    if let Some(call_id) = &completion.meta.call_id {
        response.insert_header((LITELLM_CALL_ID, call_id.as_str()));
    }
    Ok(response
        .content_type("application/json")
        .body(completion.raw))
}

/// A streaming call: returns once LiteLLM's stream has started; the [`Relay`] ends the exchange.
async fn start_stream(
    exchange: &ExchangeHandle,
    state: &Arc<AppState>,
    context: &RequestContext,
    chat: ChatRequest,
    mut response: HttpResponseBuilder,
) -> Result<HttpResponse, ApiError> {
    let waiting = Instant::now();
    let result = state.litellm.chat_stream(context, chat).await;
    exchange.update(|draft| draft.upstream_wait = waiting.elapsed());
    let upstream = result.map_err(|error| failed(exchange, state, error))?;
    exchange.chat(|chat| {
        state.models.learn(&chat.record.model_requested);
        chat.model_known = true;
        chat.record.upstream_call_id = upstream.meta().call_id.clone();
        chat.record.upstream_status = Some(upstream.meta().status);
        chat.record.attempts = upstream.meta().attempts;
    });
    if let Some(call_id) = &upstream.meta().call_id {
        response.insert_header((LITELLM_CALL_ID, call_id.as_str()));
    }
    let relay = Relay {
        upstream: Some(upstream),
        _open: exchange.streams(),
        exchange: exchange.clone(),
        request_id: context.request_id.clone(),
    };
    Ok(response
        .content_type("text/event-stream")
        .insert_header(("x-accel-buffering", "no"))
        .streaming(relay))
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

/// Copies what a stream said into the exchange's record.
fn note_summary(exchange: &ExchangeHandle, summary: &StreamSummary) {
    exchange.chat(|chat| {
        let record = &mut chat.record;
        record.model_served.clone_from(&summary.model);
        record.usage = summary.usage.as_ref().map(token_usage);
        record.cost_usd = summary.usage.as_ref().and_then(|usage| usage.cost);
        record.output = Some(summary.output_text.clone());
        record.capture_truncated |= summary.output_truncated;
        record.finish_reason.clone_from(&summary.finish_reason);
        chat.first_token = summary.first_output_at;
    });
}

/// The response body of a streaming chat: LiteLLM's events, byte for byte, as they arrive.
/// On an upstream failure after the first byte it sends one final OpenAI-shaped
/// `data: {"error":…}` event and ends. The exchange ends when the stream ends, fails, or is
/// dropped because the client went away; dropping it drops the upstream request, which closes it.
struct Relay {
    upstream: Option<ChatStream>,
    /// Counts the stream as open (monitoring's "active streams") until the body is dropped.
    _open: OpenStream,
    exchange: ExchangeHandle,
    request_id: String,
}

impl Relay {
    fn end(&mut self, ending: Ending, failure: Option<Failure>) {
        if let Some(upstream) = self.upstream.take() {
            note_summary(&self.exchange, upstream.summary());
            self.exchange.finish(ending, failure);
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(upstream) = this.upstream.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut *upstream).poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(event.bytes))),
            Poll::Ready(Some(Err(error))) => {
                let label = error.kind.label();
                let api_error = ApiError::Provider(error);
                if api_error.is_server_side() {
                    tracing::warn!(request_id = %this.request_id, error = %api_error, "stream failed upstream");
                }
                let parts = api_error.parts();
                let body = render(&parts, &this.request_id);
                this.exchange.chat(|chat| chat.upstream_error = Some(label));
                let failure = Failure {
                    code: parts.code,
                    message: parts.message.into_owned(),
                    auth: false,
                };
                this.end(Ending::Failed, Some(failure));
                Poll::Ready(Some(Ok(Bytes::from(format!("data: {body}\n\n")))))
            }
            Poll::Ready(None) => {
                this.end(Ending::Answered, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.end(Ending::Abandoned, None);
    }
}
