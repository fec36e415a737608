//! The Langfuse sink against a wiremock Langfuse: decode the OTLP it received and check it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a panic is a failed test

mod support;

use base64::Engine as _;
use bff_telemetry::{
    LangfuseConfig, LangfuseSink, LlmRecord, Outcome, Pipeline, RecordError, Secret, TokenUsage,
    UnixNanos,
};
use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PUBLIC: &str = "pk-lf-test";
const SECRET: &str = "sk-lf-test";
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const T0: u64 = 1_767_225_600_010_000_000;

fn sink(server: &MockServer) -> Arc<LangfuseSink> {
    let mut config =
        LangfuseConfig::new(&server.uri().parse().unwrap(), PUBLIC, &Secret::new(SECRET)).unwrap();
    config.environment = Some("test".into());
    Arc::new(LangfuseSink::new(config).unwrap())
}

fn basic_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PUBLIC}:{SECRET}"))
    )
}

fn success_record() -> LlmRecord {
    let mut record = LlmRecord::new(TRACE, "req-ok", "/v1/chat/completions", "fake-gpt");
    record.user_id = Some("user-42".into());
    record.role = Some("user".into());
    record.session_id = Some("chat-7".into());
    record.groups = vec!["research".into()];
    record.task = Some("title_generation".into());
    record.model_served = Some("openai/fake-gpt".into());
    record.started_at = UnixNanos(T0);
    record.ended_at = UnixNanos(T0 + 990_000_000);
    record.usage = Some(TokenUsage {
        input: Some(9),
        output: Some(7),
        total: Some(16),
        details: vec![("reasoning_tokens".into(), 0)],
    });
    record.cost_usd = Some(2.3e-05);
    record.upstream_call_id = Some("req-ok".into());
    record.tags = vec!["bff".into(), "env:test".into()];
    record.input = Some(json!([{"role": "user", "content": "hi"}]));
    record.output = Some("Hello from fake upstream".into());
    record.finish_reason = Some("stop".into());
    record
}

fn error_record() -> LlmRecord {
    let mut record = LlmRecord::new(
        "1bf7651916cd43dd8448eb211c80319d",
        "req-err",
        "/v1/chat/completions",
        "fake-429",
    );
    record.started_at = UnixNanos(T0);
    record.ended_at = UnixNanos(T0 + 5_000_000_000);
    record.outcome = Outcome::Error;
    record.error = Some(RecordError {
        kind: "rate_limited".into(),
        message: "rate limited (HTTP 429)".into(),
        status: Some(429),
    });
    record.attempts = 3;
    record
}

fn stream_record() -> LlmRecord {
    let mut record = LlmRecord::new(
        "2cf7651916cd43dd8448eb211c80319e",
        "req-stream",
        "/chat/stream",
        "mock-gpt",
    );
    record.stream = true;
    record.started_at = UnixNanos(T0);
    record.first_token_at = Some(UnixNanos(T0 + 290_000_000));
    record.ended_at = UnixNanos(T0 + 1_000_000_000);
    record
}

/// Checks the transport of one export and decodes it.
fn decode(request: &Request) -> ExportTraceServiceRequest {
    assert_eq!(
        request
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        basic_auth()
    );
    assert_eq!(request.headers.get("content-encoding").unwrap(), "gzip");
    assert_eq!(
        request.headers.get("content-type").unwrap(),
        "application/x-protobuf"
    );
    let mut body = Vec::new();
    GzDecoder::new(request.body.as_slice())
        .read_to_end(&mut body)
        .unwrap();
    ExportTraceServiceRequest::decode(body.as_slice()).unwrap()
}

fn attributes(span: &Span) -> HashMap<String, Value> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValueKind::StringValue(s)) => json!(s),
                Some(AnyValueKind::IntValue(i)) => json!(i),
                Some(AnyValueKind::DoubleValue(d)) => json!(d),
                Some(AnyValueKind::BoolValue(b)) => json!(b),
                Some(AnyValueKind::ArrayValue(array)) => json!(
                    array
                        .values
                        .iter()
                        .map(|v| match &v.value {
                            Some(AnyValueKind::StringValue(s)) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                ),
                other => json!(format!("{other:?}")),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

async fn export_all(server: &MockServer, records: Vec<LlmRecord>) -> Vec<Span> {
    let pipeline = Pipeline::start(fast_config(None), vec![sink(server)]).unwrap();
    for record in records {
        pipeline.record(record);
    }
    let stats = pipeline.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].dropped, 0, "{stats:?}");
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .flat_map(|request| {
            let export = decode(request);
            let resource = &export.resource_spans[0];
            let service = attributes_of_resource(resource);
            assert_eq!(service, "bff");
            resource.scope_spans[0].spans.clone()
        })
        .collect()
}

fn attributes_of_resource(
    resource: &opentelemetry_proto::tonic::trace::v1::ResourceSpans,
) -> String {
    let attribute = &resource.resource.as_ref().unwrap().attributes[0];
    assert_eq!(attribute.key, "service.name");
    match attribute.value.as_ref().unwrap().value.as_ref().unwrap() {
        AnyValueKind::StringValue(name) => name.clone(),
        other => panic!("{other:?}"),
    }
}

async fn langfuse() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/public/otel/v1/traces"))
        .and(header("authorization", basic_auth().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    server
}

fn by_trace<'a>(spans: &'a [Span], trace: &str) -> (&'a Span, &'a Span) {
    let trace: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace[i * 2..i * 2 + 2], 16).unwrap())
        .collect();
    let mine: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    assert_eq!(mine.len(), 2, "a root and a generation per record");
    let root = mine.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    let generation = mine.iter().find(|s| !s.parent_span_id.is_empty()).unwrap();
    assert_eq!(
        generation.parent_span_id, root.span_id,
        "the generation is the root's child"
    );
    (root, generation)
}

#[tokio::test]
async fn a_successful_chat_becomes_a_trace_root_and_a_generation() {
    let server = langfuse().await;
    let spans = export_all(&server, vec![success_record()]).await;
    let (root, generation) = by_trace(&spans, TRACE);
    assert_eq!(root.span_id.len(), 8);
    assert_eq!(
        (root.start_time_unix_nano, root.end_time_unix_nano),
        (T0, T0 + 990_000_000)
    );
    assert_eq!(
        (
            generation.start_time_unix_nano,
            generation.end_time_unix_nano
        ),
        (T0, T0 + 990_000_000)
    );

    let root = attributes(root);
    let generation = attributes(generation);
    // Langfuse v4 reads each span on its own: both carry the trace's attributes.
    for span in [&root, &generation] {
        assert_eq!(span["langfuse.trace.name"], "/v1/chat/completions");
        assert_eq!(span["user.id"], "user-42");
        assert_eq!(span["session.id"], "chat-7");
        assert_eq!(
            span["langfuse.trace.tags"],
            json!(["bff", "env:test", "group:research"])
        );
        assert_eq!(span["langfuse.trace.metadata.groups"], r#"["research"]"#);
        assert_eq!(
            span["langfuse.trace.metadata.task"],
            r#""title_generation""#
        );
        // Metadata values are JSON, as the official SDK writes them.
        assert_eq!(span["langfuse.trace.metadata.request_id"], r#""req-ok""#);
        assert_eq!(span["langfuse.trace.metadata.role"], r#""user""#);
        assert_eq!(
            span["langfuse.trace.metadata.upstream_call_id"],
            r#""req-ok""#
        );
        assert_eq!(span["langfuse.trace.metadata.stream"], "false");
        assert_eq!(span["langfuse.environment"], "test");
    }
    // The root observation carries the trace's input and output (v4), and v3's names too.
    for key in ["langfuse.observation.input", "langfuse.trace.input"] {
        assert_eq!(root[key], r#"[{"role":"user","content":"hi"}]"#);
    }
    for key in ["langfuse.observation.output", "langfuse.trace.output"] {
        assert_eq!(root[key], "Hello from fake upstream");
    }
    assert_eq!(root["langfuse.observation.type"], "span");
    assert_eq!(root["langfuse.internal.is_app_root"], true);
    assert!(!generation.contains_key("langfuse.internal.is_app_root"));

    assert_eq!(generation["langfuse.observation.type"], "generation");
    assert_eq!(generation["gen_ai.request.model"], "fake-gpt");
    assert_eq!(generation["gen_ai.response.model"], "openai/fake-gpt");
    assert_eq!(generation["gen_ai.usage.input_tokens"], 9);
    assert_eq!(generation["gen_ai.usage.output_tokens"], 7);
    let usage: Value = serde_json::from_str(
        generation["langfuse.observation.usage_details"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        usage,
        json!({"input": 9, "output": 7, "total": 16, "reasoning_tokens": 0})
    );
    let cost: Value = serde_json::from_str(
        generation["langfuse.observation.cost_details"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cost, json!({"total": 2.3e-05}));
    assert_eq!(generation["langfuse.observation.level"], "DEFAULT");
    assert_eq!(generation["langfuse.environment"], "test");
}

#[tokio::test]
async fn errors_and_streams_carry_level_status_and_first_token_time() {
    let server = langfuse().await;
    let spans = export_all(&server, vec![error_record(), stream_record()]).await;

    let (root, generation) = by_trace(&spans, "1bf7651916cd43dd8448eb211c80319d");
    assert_eq!(
        generation.status.as_ref().unwrap().code,
        2,
        "OTLP error status"
    );
    assert_eq!(root.end_time_unix_nano, T0 + 5_000_000_000);
    let attrs = attributes(generation);
    assert_eq!(attrs["langfuse.observation.level"], "ERROR");
    assert_eq!(
        attrs["langfuse.observation.status_message"],
        "rate_limited: rate limited (HTTP 429)"
    );
    assert_eq!(attributes(root)["langfuse.trace.metadata.attempts"], "3");

    let (_, generation) = by_trace(&spans, "2cf7651916cd43dd8448eb211c80319e");
    let attrs = attributes(generation);
    assert_eq!(
        attrs["langfuse.observation.completion_start_time"],
        "2026-01-01T00:00:00.300Z"
    );
}

#[tokio::test]
async fn replays_reuse_the_same_span_ids() {
    let server = langfuse().await;
    let spans = export_all(&server, vec![success_record(), success_record()]).await;
    assert_eq!(spans.len(), 4);
    assert_eq!(spans[0].span_id, spans[2].span_id);
    assert_eq!(spans[1].span_id, spans[3].span_id);
}

#[tokio::test]
async fn a_401_is_logged_once_counted_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": "UnauthorizedError", "message": "Invalid credentials. Confirm that you've configured the correct host."}),
        ))
        .expect(1..=6) // one call per batch at most: never a retry
        .mount(&server)
        .await;
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = Arc::clone(&logs);
        move || LogWriter(Arc::clone(&logs))
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut config = fast_config(None);
    config.batch_size = 2;
    let pipeline = Pipeline::start(config, vec![sink(&server)]).unwrap();
    for n in 0..6 {
        let mut record = success_record();
        record.request_id = format!("req-{n}");
        pipeline.record(record);
    }
    let stats = pipeline.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        (stats[0].rejected, stats[0].retried, stats[0].spooled),
        (6, 0, 0),
        "{stats:?}"
    );
    assert!(stats[0].last_error.as_deref().unwrap().contains("401"));
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let refusals = logs.matches("telemetry refused by the destination").count();
    assert_eq!(refusals, 1, "{logs}");
    assert!(logs.contains("Invalid credentials"), "{logs}");
    assert!(!logs.contains(SECRET), "{logs}");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_delivered() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = fast_config(None);
    config.max_attempts = 3;
    let pipeline = Pipeline::start(config, vec![sink(&server)]).unwrap();
    pipeline.record(success_record());
    let stats = pipeline.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (stats[0].exported, stats[0].retried, stats[0].dropped),
        (1, 2, 0),
        "{stats:?}"
    );
}

/// Collects log output for assertions.
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
