//! The Helicone sink against a wiremock Helicone worker, per `shared/contracts/helicone.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a panic is a failed test

mod support;

use bff_telemetry::{
    ExportError, HeliconeConfig, HeliconeSink, LlmRecord, Outcome, Pipeline, RecordError, Secret,
    TelemetrySink, TokenUsage, UnixNanos, helicone_request_id,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-helicone-test";
const T0: u64 = 1_767_225_600_010_000_000;

fn sink(server: &MockServer) -> Arc<HeliconeSink> {
    let config = HeliconeConfig::new(&server.uri().parse().unwrap(), Secret::new(KEY)).unwrap();
    Arc::new(HeliconeSink::new(config).unwrap())
}

fn chat_record(request_id: &str, stream: bool) -> LlmRecord {
    let mut record = LlmRecord::new(
        "0af7651916cd43dd8448eb211c80319c",
        request_id,
        "/v1/chat/completions",
        "fake-gpt",
    );
    record.user_id = Some("user-42".into());
    record.role = Some("admin".into());
    record.groups = vec!["research".into(), "interns".into()];
    record.task = Some("title_generation".into());
    record.session_id = Some("chat-7".into());
    record.stream = stream;
    record.started_at = UnixNanos(T0);
    record.first_token_at = Some(UnixNanos(T0 + 290_000_000));
    record.ended_at = UnixNanos(T0 + 990_000_000);
    record.usage = Some(TokenUsage {
        input: Some(5),
        output: Some(7),
        total: Some(12),
        details: Vec::new(),
    });
    record.input = Some(json!([{"role": "user", "content": "hi"}]));
    record.output = Some("hello".into());
    record.finish_reason = Some("stop".into());
    record
}

async fn worker(status: u16, body: &str, calls: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/custom/v1/log"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_string(body)
                .insert_header("helicone-id", "0af76519-16cd-43dd-8448-eb211c80319c"),
        )
        .expect(calls)
        .mount(&server)
        .await;
    server
}

/// Every field the worker's validator requires, with its type.
fn assert_valid_async_log(body: &Value) {
    let request = &body["providerRequest"];
    assert!(request["url"].is_string(), "{body}");
    assert!(!request["json"].is_null(), "{body}");
    assert!(request["meta"].is_object(), "{body}");
    let response = &body["providerResponse"];
    assert!(
        !response["json"].is_null(),
        "providerResponse.json must be defined: {body}"
    );
    assert!(response["status"].is_number(), "{body}");
    assert!(response["headers"].is_object(), "{body}");
    for point in ["startTime", "endTime"] {
        assert!(body["timing"][point]["seconds"].is_u64(), "{body}");
        let millis = body["timing"][point]["milliseconds"].as_u64().unwrap();
        assert!(millis < 1000, "{body}");
    }
    let start = &body["timing"]["startTime"];
    let end = &body["timing"]["endTime"];
    let as_ms =
        |t: &Value| t["seconds"].as_u64().unwrap() * 1000 + t["milliseconds"].as_u64().unwrap();
    assert!(as_ms(start) <= as_ms(end), "{body}");
}

#[tokio::test]
async fn one_post_per_record_with_the_contract_body() {
    let server = worker(200, "ok", 2).await;
    let pipeline = Pipeline::start(fast_config(None), vec![sink(&server)]).unwrap();
    pipeline.record(chat_record("0af76519-16cd-43dd-8448-eb211c80319c", false));
    pipeline.record(chat_record("req-stream-1", true));
    let stats = pipeline.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].exported, 2, "{stats:?}");

    let requests = server.received_requests().await.unwrap();
    let bodies: Vec<Value> = requests
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect();
    for body in &bodies {
        assert_valid_async_log(body);
    }
    let plain = bodies
        .iter()
        .find(|b| b["providerRequest"]["json"]["stream"] == false)
        .unwrap();
    let meta = &plain["providerRequest"]["meta"];
    assert_eq!(meta["Helicone-User-Id"], "user-42");
    assert_eq!(meta["Helicone-Session-Id"], "chat-7");
    assert_eq!(
        meta["Helicone-Request-Id"],
        "0af76519-16cd-43dd-8448-eb211c80319c"
    );
    assert_eq!(meta["Helicone-Property-Route"], "/v1/chat/completions");
    assert_eq!(meta["Helicone-Property-Role"], "admin");
    assert_eq!(meta["Helicone-Property-Group"], "research,interns");
    assert_eq!(meta["Helicone-Property-Task"], "title_generation");
    assert_eq!(
        plain["providerRequest"]["json"]["messages"],
        json!([{"role": "user", "content": "hi"}])
    );
    let response = &plain["providerResponse"];
    assert_eq!(response["status"], 200);
    assert_eq!(
        response["json"]["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12})
    );
    assert_eq!(
        response["json"]["choices"][0]["message"]["content"],
        "hello"
    );
    assert_eq!(
        plain["timing"]["startTime"],
        json!({"seconds": 1_767_225_600_u64, "milliseconds": 10})
    );
    assert_eq!(plain["timing"]["timeToFirstToken"], 290);

    let streamed = bodies
        .iter()
        .find(|b| b["providerRequest"]["json"]["stream"] == true)
        .unwrap();
    assert_eq!(
        streamed["providerResponse"]["json"],
        json!({}),
        "streams send json {{}}"
    );
    let text = streamed["providerResponse"]["textBody"].as_str().unwrap();
    assert!(
        text.starts_with("data: {") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(
        text.contains("\"content\":\"hello\"") && text.contains("\"total_tokens\":12"),
        "{text}"
    );
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 4, "content, finish, usage, [DONE]: {text}");
    let usage: Value = serde_json::from_str(events[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 12);
    // A non-UUID request id becomes a stable UUID.
    let id = streamed["providerRequest"]["meta"]["Helicone-Request-Id"]
        .as_str()
        .unwrap();
    assert_eq!(id, helicone_request_id(&chat_record("req-stream-1", true)));
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "5");
}

#[test]
fn helicone_request_ids_are_uuids_it_keeps_and_stable_across_resends() {
    // bff's request ids are UUID v7, which Helicone would replace: they map to a v5.
    let v7 = "019ac3b2-7f3e-7c41-9d2a-3f5b6e7d8c9a";
    let id = helicone_request_id(&chat_record(v7, false));
    assert_ne!(id, v7);
    assert_eq!(&id[14..15], "5");
    assert_eq!(
        &id[19..20].chars().next().unwrap().to_digit(16).unwrap() & 0b1100,
        0b1000
    );
    assert_eq!(id, helicone_request_id(&chat_record(v7, true)), "stable");
    assert_ne!(
        id,
        helicone_request_id(&chat_record("019ac3b2-7f3e-7c41-9d2a-3f5b6e7d8c9b", false))
    );
    // A v4 is kept as it is.
    let v4 = "0af76519-16cd-43dd-8448-eb211c80319c";
    assert_eq!(helicone_request_id(&chat_record(v4, false)), v4);
}

#[tokio::test]
async fn a_huge_retry_after_is_clamped_not_a_panic() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1e12"))
        .mount(&server)
        .await;
    let results = sink(&server).export(&[&chat_record("req-1", false)]).await;
    match &results[0] {
        Err(ExportError::Retryable { retry_after, .. }) => {
            assert_eq!(*retry_after, Some(Duration::from_secs(86_400)));
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_200_with_an_error_body_is_a_failure_and_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"error": "storage failed"})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let pipeline = Pipeline::start(fast_config(None), vec![sink(&server)]).unwrap();
    pipeline.record(chat_record("req-1", false));
    let stats = pipeline.shutdown(Duration::from_secs(5)).await;
    assert_eq!((stats[0].exported, stats[0].retried), (1, 1), "{stats:?}");
    assert!(
        stats[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("storage failed")
    );
}

#[tokio::test]
async fn validation_and_auth_failures_are_refused_not_retried() {
    for (status, body) in [
        (400, r#"{"error":"providerResponse.json is required"}"#),
        (401, "Unauthorized"),
    ] {
        let server = worker(status, body, 1).await;
        let pipeline = Pipeline::start(fast_config(None), vec![sink(&server)]).unwrap();
        pipeline.record(chat_record("req-1", false));
        let stats = pipeline.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            (stats[0].rejected, stats[0].retried),
            (1, 0),
            "{status}: {stats:?}"
        );
    }
}

#[tokio::test]
async fn failed_requests_are_logged_with_their_status() {
    let server = worker(200, "ok", 1).await;
    let mut record = chat_record("req-1", false);
    record.outcome = Outcome::Error;
    record.error = Some(RecordError {
        kind: "upstream_timeout".into(),
        message: "no answer".into(),
        status: Some(504),
    });
    let pipeline = Pipeline::start(fast_config(None), vec![sink(&server)]).unwrap();
    pipeline.record(record);
    pipeline.shutdown(Duration::from_secs(5)).await;
    let body: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_valid_async_log(&body);
    assert_eq!(body["providerResponse"]["status"], 504);
    assert_eq!(
        body["providerResponse"]["json"]["error"]["type"],
        "upstream_timeout"
    );
}

/// Helicone has no batch endpoint, so the sink keeps `concurrency` posts in flight (64 by
/// default). The fake worker answers nothing until that many are waiting at once: a sink that
/// sends fewer in parallel never gets its first answer.
#[tokio::test]
async fn a_batch_keeps_its_concurrency_in_flight_and_no_more() {
    let concurrency = HeliconeConfig::DEFAULT_CONCURRENCY;
    let worker = holding::Worker::start(concurrency).await;
    let config = HeliconeConfig::new(&worker.url, Secret::new(KEY)).unwrap();
    assert_eq!(config.concurrency, concurrency);
    let sink = HeliconeSink::new(config).unwrap();
    let records: Vec<LlmRecord> = (0..concurrency * 2 + 8)
        .map(|n| chat_record(&format!("req-{n}"), false))
        .collect();
    let batch: Vec<&LlmRecord> = records.iter().collect();
    let results = tokio::time::timeout(Duration::from_secs(10), sink.export(&batch))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the worker held {} posts and waited for {concurrency}",
                worker.most_in_flight()
            )
        });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(worker.most_in_flight(), concurrency);
    assert_eq!(worker.answered(), records.len());
}

/// A raw HTTP/1.1 Helicone worker that holds every answer until `hold` posts wait at once.
mod holding {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;
    use url::Url;

    #[derive(Default)]
    struct Counts {
        in_flight: AtomicUsize,
        most: AtomicUsize,
        answered: AtomicUsize,
    }

    pub struct Worker {
        pub url: Url,
        counts: Arc<Counts>,
    }

    impl Worker {
        pub async fn start(hold: usize) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap())
                .parse()
                .unwrap();
            let counts = Arc::new(Counts::default());
            let (release, released) = watch::channel(false);
            let release = Arc::new(release);
            let shared = Arc::clone(&counts);
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let connection = (Arc::clone(&shared), Arc::clone(&release), released.clone());
                    tokio::spawn(serve(socket, hold, connection));
                }
            });
            Self { url, counts }
        }

        pub fn most_in_flight(&self) -> usize {
            self.counts.most.load(Ordering::SeqCst)
        }

        pub fn answered(&self) -> usize {
            self.counts.answered.load(Ordering::SeqCst)
        }
    }

    type Connection = (Arc<Counts>, Arc<watch::Sender<bool>>, watch::Receiver<bool>);

    async fn serve(
        mut socket: TcpStream,
        hold: usize,
        (counts, release, mut released): Connection,
    ) {
        while read_request(&mut socket).await {
            let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            counts.most.fetch_max(now, Ordering::SeqCst);
            if now >= hold {
                release.send_replace(true);
            }
            if released.wait_for(|open| *open).await.is_err() {
                return;
            }
            counts.in_flight.fetch_sub(1, Ordering::SeqCst);
            counts.answered.fetch_add(1, Ordering::SeqCst);
            let answer =
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
            if socket.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    /// Reads one request (head and `content-length` body); false when the client closed.
    async fn read_request(socket: &mut TcpStream) -> bool {
        let mut data = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            if let Some(end) = data.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().unwrap());
                if data.len() >= end + 4 + length {
                    return true;
                }
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(read) => data.extend_from_slice(&chunk[..read]),
            }
        }
    }
}
