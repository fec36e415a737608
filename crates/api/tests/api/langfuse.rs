//! bff against a Langfuse stand-in that applies the server's rules (`shared/contracts/langfuse.md`
//! §7), as v4 and as v3:
//! - v4 ingests each span on its own (an observation's user is its own span's `user.id`),
//!   takes a trace's input and output from its root observation, adds an observation for a span
//!   id sent again, serves Observations and Metrics API v2, and answers 404 on v1's
//!   `/api/public/traces` and `/api/public/metrics/daily`;
//! - v3 copies the trace's attributes from the root to every observation, keeps one observation
//!   per span id (a resend replaces it), reads the trace's input from `langfuse.trace.input`, and
//!   serves v1 only.

use crate::helpers::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Version {
    V3,
    V4,
}

/// One observation as Langfuse keeps it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub trace_id: String,
    pub span_id: String,
    pub parent: Option<String>,
    pub name: String,
    pub kind: String,
    pub level: String,
    pub user_id: Option<String>,
    pub model: String,
    pub usage: Value,
    pub input: Option<String>,
    pub output: Option<String>,
    attributes: HashMap<String, String>,
}

/// A Langfuse server of one version, holding what it was sent.
#[derive(Clone)]
pub struct Langfuse {
    version: Version,
    observations: Arc<Mutex<Vec<Observation>>>,
    ingestion_versions: Arc<Mutex<Vec<Option<String>>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Langfuse {
    pub fn new(version: Version) -> Self {
        Self {
            version,
            observations: Arc::default(),
            ingestion_versions: Arc::default(),
        }
    }

    pub fn observations(&self) -> Vec<Observation> {
        self.observations.lock().unwrap().clone()
    }

    /// The trace's input and output as Langfuse shows them.
    pub fn trace_io(&self, trace_id: &str) -> (Option<String>, Option<String>) {
        let observations = self.observations();
        let root = observations.iter().find(|o| {
            o.trace_id == trace_id
                && o.attributes
                    .get("langfuse.observation.type")
                    .map(String::as_str)
                    == Some("span")
        });
        let Some(root) = root else {
            return (None, None);
        };
        match self.version {
            Version::V4 => (root.input.clone(), root.output.clone()),
            Version::V3 => (
                root.attributes.get("langfuse.trace.input").cloned(),
                root.attributes.get("langfuse.trace.output").cloned(),
            ),
        }
    }

    pub fn ingest(&self, protobuf: &[u8]) {
        let request = ExportTraceServiceRequest::decode(protobuf).unwrap();
        let spans: Vec<&Span> = request
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| &scope.spans)
            .collect();
        let mut stored = self.observations.lock().unwrap();
        for span in spans {
            let attributes = text_attributes(span);
            let observation = Observation {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
                name: span.name.clone(),
                kind: attributes
                    .get("langfuse.observation.type")
                    .cloned()
                    .unwrap_or_default()
                    .to_uppercase(),
                level: attributes
                    .get("langfuse.observation.level")
                    .cloned()
                    .unwrap_or("DEFAULT".into()),
                user_id: attributes.get("user.id").cloned(),
                model: attributes
                    .get("langfuse.observation.model.name")
                    .cloned()
                    .unwrap_or_default(),
                usage: attributes
                    .get("langfuse.observation.usage_details")
                    .and_then(|text| serde_json::from_str(text).ok())
                    .unwrap_or(Value::Null),
                input: attributes.get("langfuse.observation.input").cloned(),
                output: attributes.get("langfuse.observation.output").cloned(),
                attributes,
            };
            if self.version == Version::V3 {
                // v3: one observation per span id, a resend replaces it.
                stored.retain(|o| o.span_id != observation.span_id);
            }
            stored.push(observation);
        }
        if self.version == Version::V3 {
            // v3 copies the trace's user (from its root) to every observation of the trace.
            let users: HashMap<String, String> = stored
                .iter()
                .filter(|o| o.kind == "SPAN")
                .filter_map(|o| Some((o.trace_id.clone(), o.attributes.get("user.id")?.clone())))
                .collect();
            for observation in stored.iter_mut() {
                observation.user_id = users.get(&observation.trace_id).cloned();
            }
        }
    }

    /// bff's generations of `user` (or everyone's).
    fn generations(&self, user: Option<&str>) -> Vec<Observation> {
        self.observations()
            .into_iter()
            .filter(|o| o.kind == "GENERATION" && o.name == "bff-chat")
            .filter(|o| user.is_none_or(|user| o.user_id.as_deref() == Some(user)))
            .collect()
    }

    fn v2_observations(&self, request: &Request) -> ResponseTemplate {
        let user = query(request, "userId");
        let data: Vec<Value> = self
            .generations(user.as_deref())
            .iter()
            .map(|o| {
                json!({"id": o.span_id, "traceId": o.trace_id, "type": "GENERATION", "name": o.name,
                       "userId": o.user_id, "providedModelName": o.model, "usageDetails": o.usage,
                       "level": o.level, "startTime": "2026-01-01T00:00:00.000Z"})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"data": data, "meta": {}}))
    }

    fn v2_metrics(&self, request: &Request) -> ResponseTemplate {
        let query: Value = serde_json::from_str(&query(request, "query").unwrap()).unwrap();
        assert!(
            query["dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|dimension| dimension["field"] != "userId"),
            "userId is a filter in v2 metrics, never a dimension"
        );
        // Every filter bff sends is applied, so a query that forgot one (say, the generation's
        // name) would count another writer's generations too.
        let filters = query["filters"].as_array().cloned().unwrap_or_default();
        let picked: Vec<Observation> = self
            .observations()
            .into_iter()
            .filter(|o| filters.iter().all(|filter| matches(o, filter)))
            .collect();
        let rows = if picked.is_empty() {
            vec![]
        } else {
            let sum =
                |key: &str| -> u64 { picked.iter().filter_map(|o| o.usage[key].as_u64()).sum() };
            vec![
                json!({"providedModelName": picked[0].model, "level": "DEFAULT",
                "time_dimension": query["fromTimestamp"], "count_count": picked.len().to_string(),
                "sum_inputTokens": sum("input"), "sum_outputTokens": sum("output"),
                "sum_totalTokens": sum("total"), "sum_totalCost": 0.0}),
            ]
        };
        ResponseTemplate::new(200).set_body_json(json!({"data": rows}))
    }

    fn v1_traces(&self, request: &Request) -> ResponseTemplate {
        let user = query(request, "userId");
        let traces: Vec<Value> = self
            .generations(user.as_deref())
            .iter()
            .map(|o| json!({"id": o.trace_id, "name": "/v1/chat/completions", "userId": o.user_id,
                            "timestamp": "2026-01-01T00:00:00.000Z", "latency": 0.5, "totalCost": 0.0}))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"data": traces,
            "meta": {"page": 1, "limit": 50, "totalItems": traces.len(), "totalPages": 1}}))
    }

    fn v1_daily(&self, request: &Request) -> ResponseTemplate {
        let picked = self.generations(query(request, "userId").as_deref());
        let usage =
            |key: &str| -> u64 { picked.iter().filter_map(|o| o.usage[key].as_u64()).sum() };
        let day = query(request, "fromTimestamp").unwrap_or_default();
        let data = if picked.is_empty() {
            vec![]
        } else {
            vec![
                json!({"date": &day[..10], "usage": [{"model": picked[0].model,
                "inputUsage": usage("input"), "outputUsage": usage("output"), "totalUsage": usage("total"),
                "countObservations": picked.len(), "totalCost": 0.0}]}),
            ]
        };
        ResponseTemplate::new(200).set_body_json(json!({"data": data, "meta": {}}))
    }
}

/// Whether `observation` passes one Metrics API v2 filter.
fn matches(observation: &Observation, filter: &Value) -> bool {
    let wanted = filter["value"].as_str().unwrap_or_default();
    match filter["column"].as_str().unwrap_or_default() {
        "type" => observation.kind == wanted,
        "name" => observation.name == wanted,
        "level" => observation.level == wanted,
        "userId" => observation.user_id.as_deref() == Some(wanted),
        other => panic!("the stand-in does not know the filter column {other}"),
    }
}

fn query(request: &Request, key: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn not_served(version: &str) -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"message": format!("This endpoint is not available on deployments running in Langfuse {version}.")}))
}

impl Respond for Langfuse {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let v4 = self.version == Version::V4;
        match (request.url.path(), v4) {
            ("/api/public/otel/v1/traces", _) => {
                let version = request
                    .headers
                    .get("x-langfuse-ingestion-version")
                    .map(|value| value.to_str().unwrap().to_owned());
                self.ingestion_versions.lock().unwrap().push(version);
                let mut protobuf = Vec::new();
                flate2::read::GzDecoder::new(request.body.as_slice())
                    .read_to_end(&mut protobuf)
                    .unwrap();
                self.ingest(&protobuf);
                ResponseTemplate::new(200).set_body_json(json!({}))
            }
            ("/api/public/v2/observations", true) => self.v2_observations(request),
            ("/api/public/v2/metrics", true) => self.v2_metrics(request),
            ("/api/public/traces", false) => self.v1_traces(request),
            ("/api/public/metrics/daily", false) => self.v1_daily(request),
            (_, true) => not_served("v4 events_only mode"),
            (_, false) => not_served("v3"),
        }
    }
}

/// bff with Langfuse answered by `stand_in`, and Helicone off.
async fn app_with(stand_in: &Langfuse) -> TestApp {
    let app = spawn_app().await;
    Mock::given(any())
        .respond_with(stand_in.clone())
        .mount(&app.langfuse)
        .await;
    app.litellm_chat().await;
    wiremock::Mock::given(wiremock::matchers::path("/custom/v1/log"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&app.helicone)
        .await;
    app
}

/// Waits until the stand-in holds `count` generations.
async fn exported(stand_in: &Langfuse, count: usize) {
    for _ in 0..250 {
        if stand_in.generations(None).len() >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("Langfuse never received {count} generations");
}

#[tokio::test]
async fn on_langfuse_v4_a_users_usage_and_traces_count_their_requests() {
    let stand_in = Langfuse::new(Version::V4);
    let app = app_with(&stand_in).await;
    let bob = app.user("bob", "user").await;
    let alice = app.user("alice", "admin").await;
    chats(&app, &bob, 2).await;
    chats(&app, &alice, 1).await;
    exported(&stand_in, 3).await;

    let usage = app.get_json("/observability/usage", &bob).await;
    assert_eq!(usage["source"], "langfuse-v2");
    assert_eq!(usage["totals"]["requests"], 2, "{usage}");
    let everyone = app.get_json("/observability/usage", &alice).await;
    assert_eq!(everyone["totals"]["requests"], 3, "{everyone}");
    let traces = app.get_json("/observability/traces", &bob).await;
    assert_eq!(traces["source"], "langfuse-v2");
    assert_eq!(traces["data"].as_array().unwrap().len(), 2, "{traces}");
    assert_eq!(traces["data"][0]["user_name"], "bob");

    // Each generation hangs under its request's root span, in the same trace.
    let observations = stand_in.observations();
    for generation in stand_in.generations(None) {
        let root = observations
            .iter()
            .find(|o| Some(&o.span_id) == generation.parent.as_ref())
            .expect("the generation's parent was exported");
        assert_eq!(root.trace_id, generation.trace_id);
    }

    // Every export asks for v4 ingestion; the trace shows the request's input and answer.
    assert!(
        stand_in
            .ingestion_versions
            .lock()
            .unwrap()
            .iter()
            .all(|version| version.as_deref() == Some("4"))
    );
    let trace = &stand_in.generations(Some("bob"))[0].trace_id;
    let (input, output) = stand_in.trace_io(trace);
    assert!(input.unwrap().contains(r#""content":"hi""#));
    assert_eq!(
        output.as_deref(),
        Some("Hello from fake upstream (fake-gpt)")
    );
}

#[tokio::test]
async fn on_langfuse_v3_the_same_answers_come_from_v1() {
    let stand_in = Langfuse::new(Version::V3);
    let app = app_with(&stand_in).await;
    let bob = app.user("bob", "user").await;
    chats(&app, &bob, 2).await;
    exported(&stand_in, 2).await;
    let usage = app.get_json("/observability/usage", &bob).await;
    assert_eq!(usage["source"], "langfuse-v1");
    assert_eq!(usage["totals"]["requests"], 2, "{usage}");
    let traces = app.get_json("/observability/traces", &bob).await;
    assert_eq!(traces["source"], "langfuse-v1");
    assert_eq!(traces["data"].as_array().unwrap().len(), 2, "{traces}");
    let trace = &stand_in.generations(Some("bob"))[0].trace_id;
    let (input, _) = stand_in.trace_io(trace);
    assert!(
        input.unwrap().contains(r#""content":"hi""#),
        "v3 reads langfuse.trace.input"
    );
}

#[tokio::test]
async fn a_span_id_sent_again_is_a_second_observation_on_v4_and_a_replacement_on_v3() {
    for (version, copies) in [(Version::V4, 2), (Version::V3, 1)] {
        let stand_in = Langfuse::new(version);
        let app = app_with(&stand_in).await;
        let bob = app.user("bob", "user").await;
        chats(&app, &bob, 1).await;
        let export = app.langfuse_export().await;
        stand_in.ingest(&export); // what a replay after a lost answer would do
        assert_eq!(stand_in.generations(None).len(), copies, "{version:?}");
    }
}

#[tokio::test]
async fn a_v1_route_answering_404_on_v4_is_the_last_page_not_an_error() {
    let stand_in = Langfuse::new(Version::V4);
    let app = app_with(&stand_in).await;
    let bob = app.user("bob", "user").await;
    // A v1 page cursor from before the server moved to v4.
    let page = app
        .get("/observability/traces?cursor=page:2", Some(&bob))
        .await;
    assert_eq!(page.status(), 200);
    let page: Value = page.json().await.unwrap();
    assert_eq!(page["data"], json!([]));
    assert_eq!(page["next_cursor"], Value::Null);
}
