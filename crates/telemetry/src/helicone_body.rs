//! The async-log body Helicone's worker takes for one record, serialized straight from the
//! record: borrowed fields, no `serde_json::Value` tree and no copy of the prompt. Helicone has
//! no batch endpoint, so this runs once per chat request.

use crate::record::{LlmRecord, Outcome, TokenUsage, UnixNanos};
use serde::Serialize;
use serde::ser::{SerializeMap as _, Serializer};
use serde_json::Value;

/// The body of `POST /custom/v1/log` for one record; serialize it with serde.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBody<'a> {
    provider_request: ProviderRequest<'a>,
    provider_response: ProviderResponse<'a>,
    timing: Timing,
}

#[derive(Serialize)]
struct ProviderRequest<'a> {
    url: &'static str,
    json: RequestJson<'a>,
    meta: Meta<'a>,
}

#[derive(Serialize)]
struct RequestJson<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a Value>,
    stream: bool,
}

/// `Helicone-*` headers as Helicone reads them from `meta`: the request id always, the others
/// when set and not empty.
struct Meta<'a> {
    request_id: String,
    record: &'a LlmRecord,
}

impl Serialize for Meta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.record;
        let groups = record.groups.join(",");
        let optional = [
            ("Helicone-User-Id", record.user_id.as_deref()),
            ("Helicone-Session-Id", record.session_id.as_deref()),
            ("Helicone-Property-Route", Some(record.route.as_str())),
            ("Helicone-Property-Role", record.role.as_deref()),
            ("Helicone-Property-Group", Some(groups.as_str())),
            ("Helicone-Property-Task", record.task.as_deref()),
            ("Helicone-Property-Trace-Id", Some(record.trace_id.as_str())),
            (
                "Helicone-Property-Environment",
                record.environment.as_deref(),
            ),
        ];
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("Helicone-Request-Id", &self.request_id)?;
        for (key, value) in optional {
            if let Some(value) = value.filter(|value| !value.is_empty()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderResponse<'a> {
    json: ResponseJson<'a>,
    text_body: Option<String>,
    status: u16,
    headers: Headers,
}

#[derive(Serialize)]
struct Headers {
    #[serde(rename = "content-type")]
    content_type: &'static str,
}

/// What the model answered, as OpenAI's API would have: an error, nothing (a stream: the text
/// is in `textBody`), or a chat completion.
#[derive(Serialize)]
#[serde(untagged)]
enum ResponseJson<'a> {
    Error { error: ErrorJson<'a> },
    Empty(Empty),
    Completion(Completion<'a>),
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: Option<&'a str>,
    object: &'static str,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
}

/// OpenAI's usage object.
#[derive(Serialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

impl From<&TokenUsage> for Usage {
    fn from(usage: &TokenUsage) -> Self {
        Self {
            prompt_tokens: usage.input,
            completion_tokens: usage.output,
            total_tokens: usage.total,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timing {
    start_time: TimingPoint,
    end_time: TimingPoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_first_token: Option<u64>,
}

/// `{seconds, milliseconds}` as Helicone's timing wants it.
#[derive(Serialize)]
struct TimingPoint {
    seconds: u64,
    milliseconds: u64,
}

impl From<UnixNanos> for TimingPoint {
    fn from(time: UnixNanos) -> Self {
        Self {
            seconds: time.0 / 1_000_000_000,
            milliseconds: (time.0 / 1_000_000) % 1000,
        }
    }
}

/// The async-log body for one record, under the Helicone request id `request_id`.
pub(crate) fn body(record: &LlmRecord, request_id: String) -> LogBody<'_> {
    let usage = record.usage.as_ref().map(Usage::from);
    let model = record
        .model_served
        .as_deref()
        .unwrap_or(&record.model_requested);
    let (status, json, text_body) = match record.outcome {
        Outcome::Error | Outcome::Abandoned => {
            let error = record.error.as_ref();
            let json = ResponseJson::Error {
                error: ErrorJson {
                    message: error.map_or("abandoned: the client disconnected", |error| {
                        error.message.as_str()
                    }),
                    kind: error.map_or("abandoned", |error| error.kind.as_str()),
                },
            };
            // A client that left gets nginx's 499, whatever head it had already received.
            let status = if record.outcome == Outcome::Abandoned {
                499
            } else {
                error.and_then(|error| error.status).unwrap_or(500)
            };
            (status, json, None)
        }
        Outcome::Ok if record.stream => (
            200,
            ResponseJson::Empty(Empty {}),
            Some(sse_text(record, model, usage.as_ref())),
        ),
        Outcome::Ok => (
            200,
            ResponseJson::Completion(completion(record, model, usage)),
            None,
        ),
    };
    LogBody {
        provider_request: ProviderRequest {
            url: "custom-model-nopath",
            json: RequestJson {
                model: &record.model_requested,
                messages: record.input.as_ref(),
                stream: record.stream,
            },
            meta: Meta { request_id, record },
        },
        provider_response: ProviderResponse {
            headers: Headers {
                content_type: if text_body.is_some() {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            },
            json,
            text_body,
            status,
        },
        timing: Timing {
            start_time: record.started_at.into(),
            end_time: record.ended_at.max(record.started_at).into(),
            time_to_first_token: record
                .first_token_at
                .map(|first| first.0.saturating_sub(record.started_at.0) / 1_000_000),
        },
    }
}

fn completion<'a>(record: &'a LlmRecord, model: &'a str, usage: Option<Usage>) -> Completion<'a> {
    Completion {
        id: record.upstream_call_id.as_deref(),
        object: "chat.completion",
        model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: record.output.as_deref(),
            },
            finish_reason: record.finish_reason.as_deref(),
        }],
        usage,
    }
}

/// A stream as Helicone reads one (`textBody`): the SSE text of an OpenAI stream with usage —
/// the output, the finish, a usage chunk with `choices: []`, then `[DONE]`.
fn sse_text(record: &LlmRecord, model: &str, usage: Option<&Usage>) -> String {
    let chunk = |choices: StreamChoices<'_>, usage: Option<&Usage>| {
        let chunk = StreamChunk {
            id: record.upstream_call_id.as_deref(),
            object: "chat.completion.chunk",
            model,
            choices,
            usage,
        };
        // Serializing borrowed strings and numbers into a String cannot fail.
        serde_json::to_string(&chunk)
            .map_or_else(|_| String::new(), |json| format!("data: {json}\n\n"))
    };
    let mut text = chunk(
        StreamChoices::Content([ContentChoice {
            index: 0,
            delta: Message {
                role: "assistant",
                content: record.output.as_deref(),
            },
        }]),
        None,
    );
    text.push_str(&chunk(
        StreamChoices::Finish([FinishChoice {
            index: 0,
            delta: Empty {},
            finish_reason: record.finish_reason.as_deref(),
        }]),
        None,
    ));
    if usage.is_some() {
        text.push_str(&chunk(StreamChoices::None([]), usage));
    }
    text.push_str("data: [DONE]\n\n");
    text
}

/// One `chat.completion.chunk` of the stream Helicone is shown.
#[derive(Serialize)]
struct StreamChunk<'a> {
    id: Option<&'a str>,
    object: &'static str,
    model: &'a str,
    choices: StreamChoices<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum StreamChoices<'a> {
    Content([ContentChoice<'a>; 1]),
    Finish([FinishChoice<'a>; 1]),
    None([(); 0]),
}

#[derive(Serialize)]
struct ContentChoice<'a> {
    index: u32,
    delta: Message<'a>,
}

#[derive(Serialize)]
struct FinishChoice<'a> {
    index: u32,
    delta: Empty,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Empty {}
