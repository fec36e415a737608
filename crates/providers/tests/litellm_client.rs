//! The LiteLLM client against wiremock fakes that replay real LiteLLM 1.108.7 recordings
//! (`tests/fixtures/litellm-1.108.7/`), plus a raw TCP fake for what wiremock cannot do
//! (stalling mid-stream, observing a client disconnect).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a panic is a failed test

use bff_providers::{
    ApiKey, ChatChunk, ChatRequest, ChatResponse, ChatStream, ErrorKind, LiteLlm, LiteLlmClient,
    LiteLlmConfig, ModelList, PoolMode, ProviderError, RequestContext, ResponseMeta,
    StreamSettings, TraceId,
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-bff-test-master-key";

/// A recorded exchange: status, headers and body.
struct Recording {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn recording(name: &str) -> Recording {
    let path = format!(
        "{}/tests/fixtures/litellm-1.108.7/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    if !bytes.starts_with(b"HTTP/") {
        return Recording {
            status: 200,
            headers: vec![(
                "content-type".into(),
                "text/event-stream; charset=utf-8".into(),
            )],
            body: bytes,
        };
    }
    let split = |separator: &[u8]| {
        bytes
            .windows(separator.len())
            .position(|window| window == separator)
            .map(|at| (at, separator.len()))
    };
    let (at, len) = split(b"\r\n\r\n").or_else(|| split(b"\n\n")).unwrap();
    let head = String::from_utf8(bytes[..at].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        // Framing headers belong to the recorded connection, not to the replay.
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "date"
            )
        })
        .collect();
    Recording {
        status,
        headers,
        body: bytes[at + len..].to_vec(),
    }
}

fn replay(name: &str) -> ResponseTemplate {
    let recorded = recording(name);
    let content_type = recorded
        .headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map_or("application/json".to_owned(), |(_, value)| value.clone());
    let mut template =
        ResponseTemplate::new(recorded.status).set_body_raw(recorded.body, &content_type);
    for (name, value) in recorded.headers {
        if name != "content-type" {
            template = template.insert_header(name.as_str(), value.as_str());
        }
    }
    template
}

fn config(uri: &str) -> LiteLlmConfig {
    let mut config = LiteLlmConfig::new(uri.parse().unwrap(), ApiKey::new(KEY));
    config.backoff_base = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(50);
    config
}

fn client(uri: &str) -> LiteLlmClient {
    LiteLlmClient::new(config(uri)).unwrap()
}

fn context() -> RequestContext {
    let mut context = RequestContext::new(
        "bff-req-0001",
        TraceId::parse("0af7651916cd43dd8448eb211c80319c").unwrap(),
    );
    context.user_id = Some("user-42".into());
    context.session_id = Some("chat-7".into());
    context.tags = vec!["bff".into(), "route:/v1/chat/completions".into()];
    context
}

fn chat_request(stream: bool, include_usage: bool) -> ChatRequest {
    let mut body = json!({
        "model": "fake-gpt",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "response_format": {"type": "text"},
        "x_vendor_field": {"keep": [1, 2, 3]},
        "metadata": {"tenant": "acme"},
    });
    if stream {
        body["stream"] = json!(true);
    }
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    serde_json::from_value(body).unwrap()
}

async fn mount(server: &MockServer, name: &str, calls: u64) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(replay(name))
        .expect(calls)
        .mount(server)
        .await;
}

async fn chat_error(server: &MockServer) -> ProviderError {
    client(&server.uri())
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap_err()
}

/// Drains a stream: the bytes the caller would forward, and the error that ended it.
async fn drain(stream: &mut ChatStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => out.extend_from_slice(&event.bytes),
            Err(error) => return (out, Some(error.kind)),
        }
    }
    (out, None)
}

// ── non-streaming ────────────────────────────────────────────────────────────────────────────

#[tokio::test]
async fn non_stream_success_reads_body_and_litellm_headers() {
    let server = MockServer::start().await;
    mount(&server, "chat.txt", 1).await;
    let completion = client(&server.uri())
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap();
    assert_eq!(completion.raw, Bytes::from(recording("chat.txt").body));
    assert_eq!(
        completion.response.output_text().as_deref(),
        Some("Hello from fake upstream (fake-gpt)")
    );
    assert_eq!(completion.response.finish_reason(), Some("stop"));
    let usage = completion.response.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (Some(9), Some(7), Some(16))
    );
    let meta = completion.meta;
    assert_eq!(
        meta.call_id.as_deref(),
        Some("58bcc6a9-fb15-443c-af8f-28f110cbc1c1")
    );
    assert_eq!(meta.cost_usd, Some(2.3e-05));
    assert_eq!(meta.model_group.as_deref(), Some("fake-gpt"));
    assert_eq!(meta.model_id.as_deref(), Some("fake-gpt-deployment-1"));
    assert_eq!((meta.status, meta.attempts), (200, 1));
}

#[tokio::test]
async fn request_carries_identity_and_trace_and_keeps_unknown_fields() {
    let server = MockServer::start().await;
    mount(&server, "chat.txt", 1).await;
    client(&server.uri())
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap();
    let received = &server.received_requests().await.unwrap()[0];
    let header = |name: &str| {
        received
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("authorization"), format!("Bearer {KEY}"));
    assert_eq!(header("x-litellm-call-id"), "bff-req-0001");
    let traceparent = header("traceparent");
    assert!(
        traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-")
            && traceparent.ends_with("-01"),
        "{traceparent}"
    );
    let timeout: f64 = header("x-litellm-timeout").parse().unwrap();
    assert!(timeout > 0.0 && timeout <= 600.0, "{timeout}");

    let body: Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(
        body["metadata"],
        json!({"trace_id": "0af7651916cd43dd8448eb211c80319c",
               "trace_user_id": "user-42", "session_id": "chat-7",
               "tags": ["bff", "route:/v1/chat/completions"],
               "client_metadata": {"tenant": "acme"}})
    );
    assert_eq!(body["user"], "user-42");
    assert_eq!(body["stream"], false);
    assert!(body.get("stream_options").is_none());
    let sent = chat_request(false, false);
    assert_eq!(body["tools"], sent.extra["tools"]);
    assert_eq!(body["response_format"], sent.extra["response_format"]);
    assert_eq!(body["x_vendor_field"], json!({"keep": [1, 2, 3]}));
}

#[tokio::test]
async fn recorded_bodies_round_trip_through_the_wire_types() {
    let chat = recording("chat.txt").body;
    let parsed: ChatResponse = serde_json::from_slice(&chat).unwrap();
    assert_eq!(
        serde_json::to_value(&parsed).unwrap(),
        serde_json::from_slice::<Value>(&chat).unwrap()
    );
    let models = recording("models.txt").body;
    let parsed: ModelList = serde_json::from_slice(&models).unwrap();
    assert_eq!(
        serde_json::to_value(&parsed).unwrap(),
        serde_json::from_slice::<Value>(&models).unwrap()
    );
    for name in [
        "stream.txt",
        "stream_usage.txt",
        "mock_stream.txt",
        "stream_midstream.txt",
    ] {
        let body = String::from_utf8(recording(name).body).unwrap();
        for data in body.lines().filter_map(|line| line.strip_prefix("data: ")) {
            let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if value.get("choices").is_none() {
                continue; // [DONE] and the error event
            }
            let chunk: ChatChunk = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(
                serde_json::to_value(&chunk).unwrap(),
                value,
                "{name}: {data}"
            );
        }
    }
}

// ── errors, from the recorded table ──────────────────────────────────────────────────────────

#[tokio::test]
async fn unknown_model_is_its_own_kind() {
    let server = MockServer::start().await;
    mount(&server, "unknown_model.txt", 1).await;
    let error = chat_error(&server).await;
    assert!(
        matches!(&error.kind, ErrorKind::UnknownModel { status: 400, message } if message.contains("no-such-model"))
    );
    assert_eq!(
        error.call_id.as_deref(),
        Some("5715efe8-ff5d-41b0-948e-d437f5ea1dda")
    );
    assert!(!error.kind.is_retryable());
}

#[tokio::test]
async fn upstream_bad_request_is_not_retried() {
    let server = MockServer::start().await;
    mount(&server, "upstream400.txt", 1).await;
    let error = chat_error(&server).await;
    assert!(
        matches!(error.kind, ErrorKind::BadRequest { status: 400, .. }),
        "{error:?}"
    );
    assert_eq!(error.attempts, 1);
}

#[tokio::test]
async fn key_rejections_map_to_auth_rejected() {
    for name in ["auth_none.txt", "auth_wrong.txt"] {
        let server = MockServer::start().await;
        mount(&server, name, 1).await;
        let error = chat_error(&server).await;
        assert!(
            matches!(error.kind, ErrorKind::AuthRejected { .. }),
            "{name}: {error:?}"
        );
    }
}

#[tokio::test]
async fn rate_limit_honours_llm_provider_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(replay("upstream429.txt"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    mount(&server, "chat.txt", 1).await;
    let started = std::time::Instant::now();
    let completion = client(&server.uri())
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap();
    assert_eq!(completion.meta.attempts, 2);
    // The recording says `llm_provider-retry-after: 1`; the 10 ms backoff would be far shorter.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn rate_limit_that_persists_is_reported_with_retry_after() {
    let server = MockServer::start().await;
    mount(&server, "upstream429.txt", 1).await;
    let mut config = config(&server.uri());
    config.max_retry_after = Duration::from_millis(1); // the recorded 1 s is "too long": no wait
    let error = LiteLlmClient::new(config)
        .unwrap()
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap_err();
    assert_eq!(
        error.attempts, 1,
        "a retry-after longer than allowed is returned, not slept on"
    );
    assert!(matches!(
        error.kind,
        ErrorKind::RateLimited { retry_after: Some(wait), .. } if wait == Duration::from_secs(1)
    ));
    server.reset().await;
}

#[tokio::test]
async fn upstream_500_is_not_retried_on_top_of_litellm_by_default() {
    let server = MockServer::start().await;
    mount(&server, "upstream500.txt", 1).await;
    let error = chat_error(&server).await;
    assert!(matches!(
        error.kind,
        ErrorKind::UpstreamFailure { status: 500, .. }
    ));
    assert_eq!(error.attempts, 1);
}

#[tokio::test]
async fn upstream_500_is_retried_n_times_when_configured() {
    let server = MockServer::start().await;
    mount(&server, "upstream500.txt", 4).await;
    let mut config = config(&server.uri());
    config.retry_statuses.push(500);
    config.max_attempts = 4;
    let error = LiteLlmClient::new(config)
        .unwrap()
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap_err();
    assert_eq!(error.attempts, 4);
    assert!(matches!(
        error.kind,
        ErrorKind::UpstreamFailure { status: 500, .. }
    ));
}

#[tokio::test]
async fn gateway_errors_are_retried_then_succeed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream connect error"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    mount(&server, "chat.txt", 1).await;
    let completion = client(&server.uri())
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap();
    assert_eq!(completion.meta.attempts, 3);
}

#[tokio::test]
async fn upstream_timeout_408_is_typed_and_not_retried() {
    let server = MockServer::start().await;
    mount(&server, "upstream_timeout.txt", 1).await;
    let error = chat_error(&server).await;
    assert!(
        matches!(error.kind, ErrorKind::UpstreamTimeout { status: 408, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn non_json_500_keeps_the_text() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500).set_body_raw("Internal Server Error", "text/plain"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let error = chat_error(&server).await;
    assert_eq!(
        error.kind,
        ErrorKind::UpstreamFailure {
            status: 500,
            message: "Internal Server Error".into()
        }
    );
}

#[tokio::test]
async fn connection_refused_is_retried_then_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    drop(listener); // nothing listens there now
    let error = client(&uri)
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, ErrorKind::Unavailable { .. }),
        "{error:?}"
    );
    assert_eq!(error.attempts, 3);
}

#[tokio::test]
async fn slow_first_byte_hits_the_limit_and_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(replay("chat.txt").set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config(&server.uri());
    config.first_byte_timeout = Duration::from_millis(200);
    let error = LiteLlmClient::new(config)
        .unwrap()
        .chat(&context(), chat_request(false, false))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::DeadlineExceeded {
            limit: "time to first byte"
        }
    );
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(replay("chat.txt").set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let mut context = context();
    context.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(200));
    let error = client(&server.uri())
        .chat(&context, chat_request(false, false))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::DeadlineExceeded {
            limit: "caller deadline"
        }
    );
}

// ── streaming ───────────────────────────────────────────────────────────────────────────────

#[tokio::test]
async fn stream_without_usage_requested_strips_the_usage_chunk_but_records_it() {
    let server = MockServer::start().await;
    mount(&server, "stream_usage.txt", 1).await;
    let mut stream = client(&server.uri())
        .chat_stream(&context(), chat_request(true, false))
        .await
        .unwrap();
    let (out, error) = drain(&mut stream).await;
    assert_eq!(error, None);
    // What the caller gets is the recording of a stream without usage, byte for byte.
    let without_usage = recording("stream_usage.txt").body;
    let text = String::from_utf8(without_usage).unwrap();
    let expected: String = text
        .split_inclusive("\n\n")
        .filter(|event| !event.contains("\"usage\""))
        .collect();
    assert_eq!(String::from_utf8(out).unwrap(), expected);

    let summary = stream.summary();
    assert!(summary.done);
    assert_eq!(summary.output_text, "Hello from fake upstream (fake-gpt) ");
    assert_eq!(summary.finish_reason.as_deref(), Some("stop"));
    assert!(summary.first_output_at.is_some());
    let usage = summary.usage.as_ref().unwrap();
    assert_eq!((usage.total_tokens, usage.cost), (Some(16), Some(0.000023)));
    assert_eq!(
        stream.meta().call_id.as_deref(),
        Some("cb48deb7-710c-4557-8eea-dc67e0bb0a22")
    );

    let body: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["stream_options"],
        json!({"include_usage": true}),
        "usage is always asked for"
    );
}

#[tokio::test]
async fn stream_with_usage_requested_passes_everything_through() {
    let server = MockServer::start().await;
    mount(&server, "stream_usage.txt", 1).await;
    let mut stream = client(&server.uri())
        .chat_stream(&context(), chat_request(true, true))
        .await
        .unwrap();
    let (out, error) = drain(&mut stream).await;
    assert_eq!(error, None);
    assert_eq!(out, recording("stream_usage.txt").body);
}

#[tokio::test]
async fn mid_stream_error_event_is_a_typed_failure_after_the_good_events() {
    let server = MockServer::start().await;
    mount(&server, "stream_midstream.txt", 1).await;
    let mut stream = client(&server.uri())
        .chat_stream(&context(), chat_request(true, false))
        .await
        .unwrap();
    let (out, error) = drain(&mut stream).await;
    assert_eq!(String::from_utf8(out).unwrap().matches("data: ").count(), 2);
    assert!(matches!(
        error,
        Some(ErrorKind::StreamFailed { message, code: Some(code) })
            if message.contains("APIConnectionError") && code == "500"
    ));
    assert_eq!(stream.summary().output_text, "Hello ");
    assert!(!stream.summary().done);
}

#[tokio::test]
async fn stream_that_ends_without_done_is_truncated() {
    let server = MockServer::start().await;
    let body = String::from_utf8(recording("stream.txt").body).unwrap();
    let truncated = body.replace("data: [DONE]\n\n", "");
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(truncated, "text/event-stream"))
        .mount(&server)
        .await;
    let mut stream = client(&server.uri())
        .chat_stream(&context(), chat_request(true, false))
        .await
        .unwrap();
    let (_, error) = drain(&mut stream).await;
    assert_eq!(error, Some(ErrorKind::StreamTruncated));
}

#[tokio::test]
async fn stream_errors_before_the_first_chunk_are_json_errors() {
    for (name, expected_status) in [("stream_upstream500.txt", 500), ("stream_timeout.txt", 408)] {
        let server = MockServer::start().await;
        mount(&server, name, 1).await;
        let error = client(&server.uri())
            .chat_stream(&context(), chat_request(true, false))
            .await
            .unwrap_err();
        assert_eq!(
            error.kind.upstream_status(),
            Some(expected_status),
            "{name}"
        );
    }
}

#[tokio::test]
async fn recorded_streams_split_at_every_byte_offset_give_the_same_events() {
    for name in [
        "stream.txt",
        "stream_usage.txt",
        "mock_stream.txt",
        "stream_midstream.txt",
    ] {
        let body = recording(name).body;
        let whole = run_split(&body, body.len()).await;
        for split in 0..body.len() {
            assert_eq!(
                run_split(&body, split).await,
                whole,
                "{name} split at {split}"
            );
        }
    }
}

/// Feeds `body` in two reads, split at `at`; returns the output, the error and the summary text.
async fn run_split(body: &[u8], at: usize) -> (Vec<u8>, Option<ErrorKind>, String) {
    let pieces = [
        Bytes::copy_from_slice(&body[..at]),
        Bytes::copy_from_slice(&body[at..]),
    ];
    let stream = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
    let mut stream = ChatStream::from_byte_stream(
        stream,
        ResponseMeta {
            status: 200,
            attempts: 1,
            call_id: None,
            cost_usd: None,
            model_group: None,
            model_id: None,
            time_to_headers: Duration::ZERO,
        },
        StreamSettings {
            caller_wants_usage: false,
            idle_timeout: Duration::from_secs(5),
            deadline: None,
            max_event_bytes: 1 << 20,
            max_captured_output_bytes: 1 << 20,
        },
    );
    let (out, error) = drain(&mut stream).await;
    (out, error, stream.summary().output_text.clone())
}

/// A raw HTTP/1.1 server that starts an SSE stream, sends one event, then one more every
/// `interval` until the client goes away (reported on the channel) or `stall` is set.
async fn trickling_server(
    interval: Duration,
    stall: bool,
) -> (String, tokio::sync::oneshot::Receiver<Duration>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0_u8; 64 * 1024];
        let _ = socket.read(&mut request).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let event = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tick \"}}]}\n\n";
        let chunk = [format!("{:x}\r\n", event.len()).as_bytes(), event, b"\r\n"].concat();
        socket.write_all(&chunk).await.unwrap();
        if stall {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        let first_sent = std::time::Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            if socket.write_all(&chunk).await.is_err() {
                break;
            }
            // A closed peer shows up as EOF on read (or a failed write on the next round).
            let mut probe = [0_u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), socket.read(&mut probe)).await
            {
                break;
            }
        }
        let _ = closed_tx.send(first_sent.elapsed());
    });
    (uri, closed_rx)
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_connection() {
    let (uri, closed) = trickling_server(Duration::from_millis(20), false).await;
    let mut stream = client(&uri)
        .chat_stream(&context(), chat_request(true, false))
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first.bytes).contains("tick"));
    drop(stream); // the client disconnected
    let after = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the upstream connection stayed open after the stream was dropped")
        .unwrap();
    assert!(after < Duration::from_secs(5));
}

#[tokio::test]
async fn a_stalled_stream_hits_the_idle_limit() {
    let (uri, _closed) = trickling_server(Duration::ZERO, true).await;
    let mut config = config(&uri);
    config.stream_idle_timeout = Duration::from_millis(200);
    let mut stream = LiteLlmClient::new(config)
        .unwrap()
        .chat_stream(&context(), chat_request(true, false))
        .await
        .unwrap();
    let (out, error) = drain(&mut stream).await;
    assert!(String::from_utf8(out).unwrap().contains("tick"));
    assert_eq!(
        error,
        Some(ErrorKind::DeadlineExceeded {
            limit: "idle stream"
        })
    );
}

// ── models and health ────────────────────────────────────────────────────────────────────────

#[tokio::test]
async fn models_are_listed_with_their_extra_fields() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(replay("models.txt"))
        .expect(1)
        .mount(&server)
        .await;
    let models = client(&server.uri()).models(&context()).await.unwrap();
    let ids: Vec<&str> = models.data.iter().map(|model| model.id.as_str()).collect();
    assert!(
        ids.contains(&"fake-gpt") && ids.contains(&"mock-gpt"),
        "{ids:?}"
    );
    let mock = models
        .data
        .iter()
        .find(|model| model.id == "mock-gpt")
        .unwrap();
    assert_eq!(mock.extra["max_input_tokens"], 128000);
    let received = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        received.headers.get("authorization").unwrap(),
        &format!("Bearer {KEY}")
    );
}

#[tokio::test]
async fn models_without_a_valid_key_is_auth_rejected() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(replay("models_nokey.txt"))
        .mount(&server)
        .await;
    let error = client(&server.uri()).models(&context()).await.unwrap_err();
    assert!(matches!(
        error.kind,
        ErrorKind::AuthRejected { status: 401, .. }
    ));
}

#[tokio::test]
async fn liveness_and_readiness_from_the_recordings() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health/liveliness"))
        .respond_with(replay("liveliness.txt"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/health/readiness"))
        .respond_with(replay("readiness.txt"))
        .mount(&server)
        .await;
    let client = client(&server.uri());
    client.liveness().await.unwrap();
    let readiness = client.readiness().await.unwrap();
    assert_eq!(readiness.status, "healthy");
    assert_eq!(readiness.db.as_deref(), Some("Not connected"));
    // Probes are not authenticated: the key is not sent where it is not needed.
    for request in server.received_requests().await.unwrap() {
        assert!(request.headers.get("authorization").is_none());
    }
}

#[tokio::test]
async fn readiness_of_a_draining_or_absent_proxy_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health/readiness"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"status": "shutting_down"})))
        .mount(&server)
        .await;
    let error = client(&server.uri()).readiness().await.unwrap_err();
    assert_eq!(error.kind.upstream_status(), Some(503));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = client(&uri).liveness().await.unwrap_err();
    assert!(matches!(error.kind, ErrorKind::Unavailable { .. }));
}

/// actix runs one runtime per worker thread. With per-thread pools, a connection opened on one
/// does not carry another thread's calls (hyper drives it from the runtime that opened it, so
/// every request and chunk would cross threads): calls alternating between two threads open one
/// connection per thread. Both runtimes keep running between calls, as actix's do, so the
/// shared pool (the default) reuses one connection for both.
#[test]
fn per_thread_pools_give_each_thread_its_own_connections() {
    for (pools, expected) in [(PoolMode::PerThread, 2), (PoolMode::Shared, 1)] {
        let server = tokio::runtime::Runtime::new().unwrap();
        let (uri, connections) = server.block_on(counting_litellm());
        let mut config = config(&uri);
        config.pools = pools;
        let client = Arc::new(LiteLlmClient::new(config).unwrap());
        let workers: Vec<_> = (0..2).map(|_| worker_thread(&client)).collect();
        for call in 0..6 {
            let (reply, answer) = std::sync::mpsc::channel();
            workers[call % 2].send(reply).unwrap();
            answer.recv().unwrap().unwrap();
        }
        assert_eq!(connections.load(Ordering::SeqCst), expected, "{pools:?}");
    }
}

/// A call to make: where to send its outcome.
type Job = std::sync::mpsc::Sender<Result<(), ProviderError>>;

/// A thread with its own current-thread runtime that makes one chat call per job, and keeps
/// running between jobs.
fn worker_thread(client: &Arc<LiteLlmClient>) -> tokio::sync::mpsc::UnboundedSender<Job> {
    let (jobs, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Job>();
    let client = Arc::clone(client);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            while let Some(reply) = receiver.recv().await {
                let result = client.chat(&context(), chat_request(false, false)).await;
                let _ = reply.send(result.map(|_| ()));
            }
        });
    });
    jobs
}

/// A keep-alive LiteLLM that answers every chat at once and counts the connections it accepts.
async fn counting_litellm() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let body = br#"{"id":"c","object":"chat.completion","created":1,"model":"fake-gpt","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                answer.extend_from_slice(body);
                while read_one_request(&mut socket).await {
                    if socket.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (uri, connections)
}

/// Reads one request, head and `content-length` body; false once the client has closed.
async fn read_one_request(socket: &mut tokio::net::TcpStream) -> bool {
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
