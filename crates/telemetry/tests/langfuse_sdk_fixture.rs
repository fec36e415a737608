//! bff's Langfuse export against what the official Python SDK 5.2.0 sends to Langfuse v4
//! (recorded by `fixtures/record_langfuse_sdk.py` into `fixtures/langfuse-sdk-5.2.0.json`):
//! for the same chat, every attribute the SDK puts on a span, bff puts on its span too, with the
//! same meaning; and the same ingestion header. Two traces: one of bff's own, one continuing a
//! caller's `traceparent`, where the SDK marks its first span as the application's root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a panic is a failed test

use bff_telemetry::{
    LangfuseConfig, LangfuseSink, LlmRecord, Pipeline, PipelineConfig, Secret, TokenUsage,
};
use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FIXTURE: &str = include_str!("fixtures/langfuse-sdk-5.2.0.json");
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// A span's role, its parent, and its attributes as JSON values.
#[derive(Debug)]
struct Observed {
    parent: Option<String>,
    attributes: BTreeMap<String, Value>,
}

/// (root, generation) of one exported trace.
type Trace = (Observed, Observed);

fn sdk_traces() -> Vec<(Trace, BTreeMap<String, String>)> {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    fixture["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|export| {
            let spans: Vec<Observed> =
                export["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|span| Observed {
                        parent: span["parentSpanId"].as_str().map(str::to_owned),
                        attributes: span["attributes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|kv| {
                                (
                                    kv["key"].as_str().unwrap().to_owned(),
                                    json_value(&kv["value"]),
                                )
                            })
                            .collect(),
                    })
                    .collect();
            let headers = export["headers"]
                .as_object()
                .unwrap()
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
            (split(spans), headers)
        })
        .collect()
}

/// An OTLP/JSON attribute value as plain JSON.
fn json_value(value: &Value) -> Value {
    if let Some(array) = value.get("arrayValue") {
        return Value::Array(
            array["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(json_value)
                .collect(),
        );
    }
    match value.as_object().and_then(|object| object.iter().next()) {
        Some((kind, Value::String(number))) if kind == "intValue" => {
            json!(number.parse::<i64>().unwrap())
        }
        Some((_, inner)) => inner.clone(),
        None => Value::Null,
    }
}

fn proto_value(value: Option<&AnyValueKind>) -> Value {
    match value {
        Some(AnyValueKind::StringValue(text)) => json!(text),
        Some(AnyValueKind::BoolValue(flag)) => json!(flag),
        Some(AnyValueKind::IntValue(number)) => json!(number),
        Some(AnyValueKind::DoubleValue(number)) => json!(number),
        Some(AnyValueKind::ArrayValue(array)) => Value::Array(
            array
                .values
                .iter()
                .map(|v| proto_value(v.value.as_ref()))
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}

fn observed(span: &Span) -> Observed {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Observed {
        parent: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
        attributes: span
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    proto_value(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                )
            })
            .collect(),
    }
}

/// (root, generation): the root observation is of type `span`.
fn split(spans: Vec<Observed>) -> Trace {
    let (roots, generations): (Vec<Observed>, Vec<Observed>) = spans
        .into_iter()
        .partition(|span| span.attributes["langfuse.observation.type"] == "span");
    (
        roots.into_iter().next().unwrap(),
        generations.into_iter().next().unwrap(),
    )
}

/// The chat the SDK recorded, as bff records it.
fn record(caller: bool) -> LlmRecord {
    let trace = if caller {
        CALLER_TRACE.to_owned()
    } else {
        "cb".repeat(16)
    };
    let mut record = LlmRecord::new(
        trace,
        format!("req-{caller}"),
        "/v1/chat/completions",
        "gpt-4o-mini",
    );
    if caller {
        record.parent_span_id = Some(CALLER_SPAN.into());
    }
    record.user_id = Some("user-7".into());
    record.session_id = Some("chat-42".into());
    record.role = Some("user".into());
    record.environment = Some("fixture".into());
    record.tags = vec!["bff".into(), "route:/v1/chat/completions".into()];
    record.input = Some(json!([{"role": "user", "content": "Hello"}]));
    record.output = Some("Hello from the fixture".into());
    record.usage = Some(TokenUsage {
        input: Some(5),
        output: Some(7),
        total: None,
        details: Vec::new(),
    });
    record.cost_usd = Some(0.001);
    record
}

/// bff's export of `record`: its trace and the headers it sent.
async fn bff_trace(record: LlmRecord) -> (Trace, BTreeMap<String, String>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/public/otel/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let config = LangfuseConfig::new(
        &server.uri().parse().unwrap(),
        "pk-lf-fixture",
        &Secret::new("sk-lf-fixture"),
    )
    .unwrap();
    let sink = Arc::new(LangfuseSink::new(config).unwrap());
    let pipeline = Pipeline::start(PipelineConfig::default(), vec![sink]).unwrap();
    pipeline.record(record);
    pipeline.shutdown(Duration::from_secs(5)).await;
    let request = &server.received_requests().await.unwrap()[0];
    let mut protobuf = Vec::new();
    GzDecoder::new(request.body.as_slice())
        .read_to_end(&mut protobuf)
        .unwrap();
    let export = ExportTraceServiceRequest::decode(protobuf.as_slice()).unwrap();
    let spans = export.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(observed)
        .collect();
    let headers = request
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (split(spans), headers)
}

/// Whether two values say the same: JSON text is compared as JSON (the SDK writes
/// `{"a": 1}`, bff `{"a":1}`).
fn same(sdk: &Value, bff: &Value) -> bool {
    let parsed = |value: &Value| {
        value
            .as_str()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .unwrap_or_else(|| value.clone())
    };
    sdk == bff || parsed(sdk) == parsed(bff)
}

/// Every attribute the SDK sets, bff sets to the same.
fn assert_covers(what: &str, sdk: &Observed, bff: &Observed) {
    for (key, value) in &sdk.attributes {
        let Some(ours) = bff.attributes.get(key) else {
            panic!("{what}: bff does not send `{key}` (the SDK sends {value})");
        };
        assert!(
            same(value, ours),
            "{what}: `{key}` is {ours}, the SDK sends {value}"
        );
    }
}

#[tokio::test]
async fn bffs_spans_carry_everything_the_official_sdk_sends_to_langfuse_v4() {
    let recorded = sdk_traces();
    assert_eq!(
        recorded.len(),
        2,
        "a trace of its own, and one continuing a caller's"
    );
    for ((sdk_trace, sdk_headers), caller) in recorded.iter().zip([false, true]) {
        let ((root, generation), headers) = bff_trace(record(caller)).await;
        let (sdk_root, sdk_generation) = sdk_trace;
        assert_covers("the root", sdk_root, &root);
        assert_covers("the generation", sdk_generation, &generation);
        // The same shape: a root marked as the application's root, whose parent is the
        // caller's span when there is one, and the generation below it.
        assert_eq!(sdk_root.parent.is_some(), caller);
        assert_eq!(root.parent.as_deref(), caller.then_some(CALLER_SPAN));
        assert_eq!(root.attributes["langfuse.internal.is_app_root"], true);
        assert!(generation.parent.is_some() && sdk_generation.parent.is_some());
        assert!(
            !generation
                .attributes
                .contains_key("langfuse.internal.is_app_root")
        );
        // The headers: v4 ingestion, and who is sending.
        assert_eq!(sdk_headers["x-langfuse-ingestion-version"], "4");
        assert_eq!(headers["x-langfuse-ingestion-version"], "4");
        assert_eq!(headers["x-langfuse-sdk-name"], "bff-telemetry");
        assert!(!headers["x-langfuse-sdk-version"].is_empty());
        assert_eq!(
            headers["x-langfuse-public-key"],
            sdk_headers["x-langfuse-public-key"]
        );
    }
}
