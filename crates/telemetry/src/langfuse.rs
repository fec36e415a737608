//! Langfuse over OpenTelemetry: OTLP/HTTP protobuf, gzip, to `/api/public/otel/v1/traces`,
//! written for Langfuse v4 (and read the same by v3, which has accepted all of it since 3.154).
//!
//! Every record becomes two OTLP spans in the request's trace (the same trace id LiteLLM's own
//! Langfuse logging uses):
//! - a root span for the request, with the request's input and output
//!   (`langfuse.observation.input`/`.output`; `langfuse.trace.input`/`.output` for v3), marked
//!   as the application's root (`langfuse.internal.is_app_root`) as the official SDK marks its
//!   own;
//! - a child `generation` span for the model call (model, usage and cost details, completion
//!   start time, `ERROR` level and status message on failure).
//!
//! v4 ingests each span on its own and copies nothing from the root to its children, so both
//! carry the trace's attributes: `user.id`, `session.id`, `langfuse.trace.name`,
//! `langfuse.trace.tags`, `langfuse.trace.metadata.*` (values as JSON, as the SDK writes them)
//! and `langfuse.environment`. Exports carry `x-langfuse-ingestion-version: 4`, so Langfuse Cloud
//! takes them on its real-time path.
//!
//! Span ids are derived from the request id. v4 adds an observation when a span id is sent again
//! (v3 replaced it), so a record is sent again only when an export's answer was lost, and then
//! only once (see the pipeline). Any OTLP/HTTP collector works too: set the endpoint and headers
//! with [`LangfuseConfig::otlp`].

use crate::error::TelemetryError;
use crate::http;
use crate::otlp::Value as AnyValueKind;
use crate::otlp::{
    AnyValue, ArrayValue, ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource,
    ResourceSpans, ScopeSpans, Span, SpanKind, Status, StatusCode,
};
use crate::record::{LlmRecord, Outcome, unhex};
use crate::secret::Secret;
use crate::sink::{ExportError, TelemetrySink};
use async_trait::async_trait;
use base64::Engine as _;
use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message as _;
use reqwest::header::{HeaderName, HeaderValue};
use std::io::Write as _;
use std::time::Duration;
use url::Url;

/// The name of the generation observation bff writes for each request. bff is the one writer
/// of a request's generation (usage, cost, timings); readers that sum usage filter on this name,
/// so a generation another writer adds to the same trace (LiteLLM's own Langfuse callback, if an
/// operator turns it on) is never counted twice.
pub const GENERATION_NAME: &str = "bff-chat";

/// Largest uncompressed export body; bigger batches are split (Langfuse rejects > ~4.5 MB).
const MAX_EXPORT_BYTES: usize = 3 * 1024 * 1024;

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct LangfuseConfig {
    /// Full OTLP traces URL.
    pub endpoint: Url,
    /// Headers sent with every export (Langfuse: `Authorization: Basic …`).
    pub headers: Vec<(String, Secret)>,
    /// `service.name` of the exported resource. Default `bff`.
    pub service_name: String,
    /// `langfuse.environment`, unless a record names its own. Default none.
    pub environment: Option<String>,
    /// Per-request timeout. Default 10 s.
    pub timeout: Duration,
}

impl LangfuseConfig {
    /// Langfuse at `host` (e.g. `https://cloud.langfuse.com`) with a project's key pair. Exports
    /// say they are v4 ingestion (`x-langfuse-ingestion-version: 4`) and who sends them.
    pub fn new(host: &Url, public_key: &str, secret_key: &Secret) -> Result<Self, TelemetryError> {
        let endpoint = Url::parse(&format!(
            "{}/api/public/otel/v1/traces",
            host.as_str().trim_end_matches('/')
        ))
        .map_err(|error| TelemetryError::InvalidConfig {
            what: "LANGFUSE_HOST",
            reason: error.to_string(),
        })?;
        let header = |name: &str, value: &str| (name.to_owned(), Secret::new(value));
        Ok(Self::otlp(
            endpoint,
            vec![
                (
                    "authorization".into(),
                    basic_authorization(public_key, secret_key),
                ),
                header("x-langfuse-ingestion-version", "4"),
                header("x-langfuse-sdk-name", "bff-telemetry"),
                header("x-langfuse-sdk-version", env!("CARGO_PKG_VERSION")),
                header("x-langfuse-public-key", public_key),
            ],
        ))
    }

    /// Any OTLP/HTTP collector at `endpoint` with `headers`.
    pub fn otlp(endpoint: Url, headers: Vec<(String, Secret)>) -> Self {
        Self {
            endpoint,
            headers,
            service_name: "bff".into(),
            environment: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The `Authorization` value of a Langfuse project key pair (`Basic base64(pk:sk)`), for the
/// write path here and for readers of Langfuse's public API.
pub fn basic_authorization(public_key: &str, secret_key: &Secret) -> Secret {
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{public_key}:{}", secret_key.expose()));
    Secret::new(format!("Basic {credentials}"))
}

/// The Langfuse (OTLP) sink.
pub struct LangfuseSink {
    client: reqwest::Client,
    config: LangfuseConfig,
    headers: reqwest::header::HeaderMap,
}

impl LangfuseSink {
    /// Builds the sink and its HTTP client.
    pub fn new(config: LangfuseConfig) -> Result<Self, TelemetryError> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let invalid = |reason: &str| TelemetryError::InvalidConfig {
                what: "OTLP header",
                reason: format!("`{name}`: {reason}"),
            };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("bad name"))?;
            let mut value =
                HeaderValue::from_str(value.expose()).map_err(|_| invalid("bad value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(Self {
            client: http::client(config.timeout)?,
            config,
            headers,
        })
    }

    /// The OTLP request carrying `spans`.
    fn export_request(&self, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text("service.name", &self.config.service_name)],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "bff".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    }),
                    spans,
                }],
            }],
        }
    }

    fn spans(&self, record: &LlmRecord) -> [Span; 2] {
        let trace_id = unhex::<16>(&record.trace_id).map_or_else(
            || record.derived_id::<16>("trace").to_vec(),
            |id| id.to_vec(),
        );
        let root_id = record.derived_id::<8>("bff-request").to_vec();
        let parent = record.parent_span_id.as_deref().and_then(unhex::<8>);
        let failed = record.outcome == Outcome::Error;
        let status = Status {
            code: if failed {
                StatusCode::Error as i32
            } else {
                StatusCode::Ok as i32
            },
            message: record
                .error
                .as_ref()
                .map(|error| error.message.clone())
                .unwrap_or_default(),
        };
        let input = record.input.as_ref().map(ToString::to_string);
        let trace = self.trace_attributes(record);
        [
            Span {
                trace_id: trace_id.clone(),
                span_id: root_id.clone(),
                parent_span_id: parent.map(|id| id.to_vec()).unwrap_or_default(),
                name: record.route.clone(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: record.started_at.0,
                end_time_unix_nano: record.ended_at.0,
                attributes: [trace.clone(), root_attributes(record, input.as_deref())].concat(),
                status: Some(status.clone()),
            },
            Span {
                trace_id,
                span_id: record.derived_id::<8>("bff-generation").to_vec(),
                parent_span_id: root_id,
                name: GENERATION_NAME.to_owned(),
                kind: SpanKind::Client as i32,
                start_time_unix_nano: record.started_at.0,
                end_time_unix_nano: record.ended_at.0,
                attributes: [trace, generation_attributes(record, input.as_deref())].concat(),
                status: Some(status),
            },
        ]
    }

    /// What Langfuse v4 reads from each span on its own (it copies nothing from the root to its
    /// children): user, session, trace name, tags, filterable metadata, environment.
    fn trace_attributes(&self, record: &LlmRecord) -> Vec<KeyValue> {
        let mut attributes = vec![text("langfuse.trace.name", &record.route)];
        push_text(&mut attributes, "user.id", record.user_id.as_deref());
        push_text(&mut attributes, "session.id", record.session_id.as_deref());
        let environment = record
            .environment
            .as_deref()
            .or(self.config.environment.as_deref());
        push_text(&mut attributes, "langfuse.environment", environment);
        if !record.tags.is_empty() || !record.groups.is_empty() {
            let group_tags = record.groups.iter().map(|group| format!("group:{group}"));
            let tags = record.tags.iter().cloned().chain(group_tags);
            attributes.push(strings("langfuse.trace.tags", tags));
        }
        let text_of = |value: Option<&str>| {
            value
                .filter(|value| !value.is_empty())
                .map(serde_json::Value::from)
        };
        let metadata = [
            ("request_id", text_of(Some(&record.request_id))),
            ("route", text_of(Some(&record.route))),
            ("outcome", text_of(Some(outcome_name(record.outcome)))),
            ("stream", Some(record.stream.into())),
            ("attempts", Some(record.attempts.into())),
            ("role", text_of(record.role.as_deref())),
            ("task", text_of(record.task.as_deref())),
            (
                "groups",
                (!record.groups.is_empty()).then(|| record.groups.clone().into()),
            ),
            (
                "upstream_call_id",
                text_of(record.upstream_call_id.as_deref()),
            ),
            (
                "client_request_id",
                text_of(record.client_request_id.as_deref()),
            ),
        ];
        for (key, value) in metadata {
            // As the official SDK writes metadata values: JSON.
            if let Some(value) = value {
                let key = format!("langfuse.trace.metadata.{key}");
                attributes.push(text(&key, &value.to_string()));
            }
        }
        attributes
    }

    async fn post(&self, spans: Vec<Span>) -> Result<(), ExportError> {
        let body = self.export_request(spans).encode_to_vec();
        let mut gzip = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        let compressed = gzip
            .write_all(&body)
            .and_then(|()| gzip.finish())
            .map_err(|error| ExportError::Rejected {
                reason: format!("langfuse: cannot compress the export: {error}"),
            })?;
        let response = self
            .client
            .post(self.config.endpoint.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(compressed)
            .send()
            .await
            .map_err(|error| http::transport("langfuse", &error))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let retry_after = http::retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        Err(http::status_error("langfuse", status, retry_after, &body))
    }
}

/// One export: the spans of `records` consecutive records.
struct Export {
    records: usize,
    spans: Vec<Span>,
}

/// Builds each record's spans once and packs them into exports no larger than
/// [`MAX_EXPORT_BYTES`] (a single oversized record still goes alone).
fn pack(sink: &LangfuseSink, records: &[&LlmRecord]) -> Vec<Export> {
    let mut exports: Vec<Export> = Vec::new();
    let mut size = 0;
    for record in records {
        let spans = sink.spans(record);
        let record_size: usize = spans.iter().map(prost::Message::encoded_len).sum();
        match exports.last_mut() {
            Some(export) if size + record_size <= MAX_EXPORT_BYTES => {
                export.records += 1;
                export.spans.extend(spans);
                size += record_size;
            }
            _ => {
                exports.push(Export {
                    records: 1,
                    spans: spans.into(),
                });
                size = record_size;
            }
        }
    }
    exports
}

#[async_trait]
impl TelemetrySink for LangfuseSink {
    fn name(&self) -> &str {
        "langfuse"
    }

    async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>> {
        let mut results = Vec::with_capacity(batch.len());
        for export in pack(self, batch) {
            let result = self.post(export.spans).await;
            results.extend(std::iter::repeat_n(result, export.records));
        }
        results
    }
}

/// The root observation: the request as a whole, with its input and output (v4 reads the
/// trace's input and output from the root; `langfuse.trace.*` keep v3 showing them). It is
/// marked as the application's root, as the official SDK marks its own: for a request that
/// continues a caller's trace, its parent is the caller's span, and it is still the root of
/// what bff did.
fn root_attributes(record: &LlmRecord, input: Option<&str>) -> Vec<KeyValue> {
    let mut root = vec![
        text("langfuse.observation.type", "span"),
        boolean("langfuse.internal.is_app_root", true),
    ];
    if record.parent_span_id.is_some() {
        root.push(boolean("langfuse.internal.as_root", true));
    }
    for key in ["langfuse.observation.input", "langfuse.trace.input"] {
        push_text(&mut root, key, input);
    }
    for key in ["langfuse.observation.output", "langfuse.trace.output"] {
        push_text(&mut root, key, record.output.as_deref());
    }
    root
}

/// The model call: model, input and output, usage, cost, timings, level.
fn generation_attributes(record: &LlmRecord, input: Option<&str>) -> Vec<KeyValue> {
    let model = record
        .model_served
        .as_deref()
        .unwrap_or(&record.model_requested);
    let mut generation = vec![
        text("langfuse.observation.type", "generation"),
        text("gen_ai.request.model", &record.model_requested),
        text("langfuse.observation.model.name", model),
    ];
    push_text(
        &mut generation,
        "gen_ai.response.model",
        record.model_served.as_deref(),
    );
    push_text(&mut generation, "langfuse.observation.input", input);
    push_text(
        &mut generation,
        "langfuse.observation.output",
        record.output.as_deref(),
    );
    push_text(
        &mut generation,
        "langfuse.observation.metadata.finish_reason",
        record.finish_reason.as_deref(),
    );
    if let Some(status) = record.upstream_status {
        generation.push(int(
            "langfuse.observation.metadata.upstream_status",
            i64::from(status),
        ));
    }
    if record.capture_truncated {
        generation.push(text(
            "langfuse.observation.metadata.capture_truncated",
            "true",
        ));
    }
    usage_and_cost(record, &mut generation);
    if let Some(first_token) = record.first_token_at {
        generation.push(text(
            "langfuse.observation.completion_start_time",
            &first_token.to_rfc3339(),
        ));
    }
    level(record, &mut generation);
    generation
}

fn usage_and_cost(record: &LlmRecord, generation: &mut Vec<KeyValue>) {
    if let Some(usage) = &record.usage {
        let mut details = serde_json::Map::new();
        for (key, value, semconv) in [
            ("input", usage.input, Some("gen_ai.usage.input_tokens")),
            ("output", usage.output, Some("gen_ai.usage.output_tokens")),
            ("total", usage.total, None),
        ] {
            if let Some(value) = value {
                details.insert(key.into(), value.into());
                if let Some(semconv) = semconv {
                    generation.push(int(semconv, i64::try_from(value).unwrap_or(i64::MAX)));
                }
            }
        }
        for (key, value) in &usage.details {
            details.insert(key.clone(), (*value).into());
        }
        generation.push(text(
            "langfuse.observation.usage_details",
            &serde_json::Value::Object(details).to_string(),
        ));
    }
    if let Some(cost) = record.cost_usd {
        generation.push(text(
            "langfuse.observation.cost_details",
            &serde_json::json!({ "total": cost }).to_string(),
        ));
        generation.push(KeyValue {
            key: "gen_ai.usage.cost".into(),
            value: Some(AnyValue {
                value: Some(AnyValueKind::DoubleValue(cost)),
            }),
        });
    }
}

fn level(record: &LlmRecord, generation: &mut Vec<KeyValue>) {
    match record.outcome {
        Outcome::Error => {
            generation.push(text("langfuse.observation.level", "ERROR"));
            let message = record.error.as_ref().map_or_else(String::new, |error| {
                format!("{}: {}", error.kind, error.message)
            });
            generation.push(text("langfuse.observation.status_message", &message));
        }
        Outcome::Abandoned => {
            generation.push(text("langfuse.observation.level", "WARNING"));
            generation.push(text(
                "langfuse.observation.status_message",
                "abandoned: the client disconnected",
            ));
        }
        Outcome::Ok => generation.push(text("langfuse.observation.level", "DEFAULT")),
    }
}

fn strings(key: &str, values: impl Iterator<Item = String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::ArrayValue(ArrayValue {
                values: values
                    .map(|value| AnyValue {
                        value: Some(AnyValueKind::StringValue(value)),
                    })
                    .collect(),
            })),
        }),
    }
}

fn boolean(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::BoolValue(value)),
        }),
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Error => "error",
        Outcome::Abandoned => "abandoned",
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::StringValue(value.into())),
        }),
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::IntValue(value)),
        }),
    }
}

fn push_text(attributes: &mut Vec<KeyValue>, key: &str, value: Option<&str>) {
    if let Some(value) = value.filter(|value| !value.is_empty()) {
        attributes.push(text(key, value));
    }
}
