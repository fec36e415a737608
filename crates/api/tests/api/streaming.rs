//! Streaming timing and cancellation, against raw TCP fakes of LiteLLM (wiremock sends a body
//! all at once, so it cannot show chunk-by-chunk delivery or notice a disconnect).

use crate::helpers::*;
use futures_util::StreamExt as _;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const EVENT: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tick \"}}]}\n\n";

fn chunk(bytes: &[u8]) -> Vec<u8> {
    [format!("{:x}\r\n", bytes.len()).as_bytes(), bytes, b"\r\n"].concat()
}

/// Reads one HTTP request (headers and a content-length body).
async fn read_request(socket: &mut TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        let read = socket.read(&mut chunk).await.unwrap();
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if buffer.len() >= end + 4 + length {
                return;
            }
        }
    }
}

async fn start_stream(socket: &mut TcpStream) {
    read_request(socket).await;
    socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nx-litellm-call-id: fake\r\n\r\n")
        .await
        .unwrap();
    socket.write_all(&chunk(EVENT)).await.unwrap();
}

/// bff, without telemetry, in front of the raw fake at `litellm_url`, and a user's token.
async fn app_in_front_of(litellm_url: String) -> (TestApp, String) {
    let app = spawn_with(Options {
        vars: vec![("LITELLM_URL", litellm_url)],
        no_telemetry: true,
        ..Options::default()
    })
    .await;
    let token = app.user("alice", "user").await;
    (app, token)
}

#[tokio::test]
async fn chunks_reach_the_client_before_litellm_has_finished() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let litellm_url = format!("http://{}", listener.local_addr().unwrap());
    let (release, released) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        start_stream(&mut socket).await;
        // Hold the rest back until the test has seen the first event arrive at the client.
        released.await.unwrap();
        socket.write_all(&chunk(EVENT)).await.unwrap();
        socket.write_all(&chunk(b"data: [DONE]\n\n")).await.unwrap();
        socket.write_all(b"0\r\n\r\n").await.unwrap();
    });
    let (app, token) = app_in_front_of(litellm_url).await;
    let response = app
        .post_json("/chat/stream", &token, &chat_body("fake-gpt", true))
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("the first event was held back: bff buffers the stream")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], EVENT);
    release.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(bytes) = body.next().await {
        rest.extend_from_slice(&bytes.unwrap());
    }
    assert_eq!(rest, [EVENT, b"data: [DONE]\n\n"].concat());
}

#[tokio::test]
async fn a_client_that_disconnects_closes_the_upstream_request_and_is_recorded_as_abandoned() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let litellm_url = format!("http://{}", listener.local_addr().unwrap());
    let (closed_tx, closed) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        start_stream(&mut socket).await;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if socket.write_all(&chunk(EVENT)).await.is_err() {
                break;
            }
            let mut probe = [0_u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), socket.read(&mut probe)).await
            {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let app = spawn_with(Options {
        vars: vec![("LITELLM_URL", litellm_url)],
        ..Options::default()
    })
    .await;
    app.telemetry_up().await;
    let token = app.user("alice", "user").await;
    {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let response = client
            .post(app.url("/chat/stream"))
            .bearer_auth(&token)
            .json(&chat_body("fake-gpt", true))
            .send()
            .await
            .unwrap();
        let mut body = response.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("tick"));
    } // the client goes away mid-stream
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("LiteLLM kept streaming after the client disconnected")
        .unwrap();
    let log = &received(&app.helicone, "/custom/v1/log", 1).await[0];
    let log: Value = serde_json::from_slice(&log.body).unwrap();
    assert_eq!(log["providerResponse"]["status"], 499);
    assert_eq!(
        log["providerResponse"]["json"]["error"]["type"],
        "abandoned"
    );
}

#[tokio::test]
async fn a_client_that_leaves_while_the_model_pauses_closes_the_upstream_request_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let litellm_url = format!("http://{}", listener.local_addr().unwrap());
    let (closed_tx, closed) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        start_stream(&mut socket).await;
        // A model thinking: nothing more is written, so no write to the gone client can fail.
        // Only bff closing this request ends the read.
        let mut rest = [0_u8; 64];
        while socket.read(&mut rest).await.is_ok_and(|read| read > 0) {}
        let _ = closed_tx.send(());
    });
    let (app, token) = app_in_front_of(litellm_url).await;
    {
        let response = app
            .post_json("/chat/stream", &token, &chat_body("fake-gpt", true))
            .await;
        let mut body = response.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], EVENT);
    } // the client goes away while LiteLLM is silent
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the upstream request stayed open: bff did not notice the client left")
        .unwrap();
    let traffic: Value = app.get_json("/observability/traffic", &token).await;
    assert_eq!(
        traffic["active_streams"], 0,
        "the stream is closed, not counted open"
    );
}

#[tokio::test]
async fn an_upstream_failure_after_the_first_byte_ends_with_an_openai_error_event() {
    let app = spawn_with(Options {
        no_telemetry: true,
        ..Options::default()
    })
    .await;
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello \"}}]}\n\n",
        "data: {\"error\": {\"message\": \"litellm.APIConnectionError: Connection error.\", \"type\": null, \"param\": null, \"code\": \"500\"}}\n\n",
    );
    wiremock::Mock::given(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&app.litellm)
        .await;
    let token = app.user("alice", "user").await;
    let response = app
        .client
        .post(app.url("/chat/stream"))
        .bearer_auth(&token)
        .json(&chat_body("fake-gpt", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{text}");
    let last: Value = serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_failed");
    assert_eq!(last["error"]["request_id"], request_id.as_str());
    // The upstream's words stay in the log; the caller learns what failed and the id.
    let message = last["error"]["message"].as_str().unwrap();
    assert!(!message.contains("APIConnectionError"), "{message}");
    assert!(message.contains("request id"), "{message}");
    assert!(!text.contains("[DONE]"));
}

/// A policy where every user may have two requests in flight.
fn two_at_a_time() -> String {
    policy_file(
        "service_role = \"service\"\n[roles.service]\npermissions = [\"chat\"]\n\
         [roles.user]\npermissions = [\"chat\", \"observability:own\"]\n\
         [roles.user.limits]\nconcurrent_requests = 2\n",
    )
}

#[tokio::test]
async fn a_client_that_leaves_before_the_first_byte_frees_its_slot_and_drops_the_call() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let litellm_url = format!("http://{}", listener.local_addr().unwrap());
    let (closed_tx, mut closed) = tokio::sync::mpsc::channel::<()>(4);
    tokio::spawn(async move {
        for call in 0.. {
            let (mut socket, _) = listener.accept().await.unwrap();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                read_request(&mut socket).await;
                if call < 2 {
                    // A model thinking for a long time: nothing comes until bff hangs up.
                    let mut rest = [0_u8; 64];
                    while socket.read(&mut rest).await.is_ok_and(|read| read > 0) {}
                    let _ = closed_tx.send(()).await;
                } else {
                    let body = CHAT_BODY.as_bytes();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    socket.write_all(head.as_bytes()).await.unwrap();
                    socket.write_all(body).await.unwrap();
                }
            });
        }
    });
    let app = spawn_with(Options {
        vars: vec![
            ("LITELLM_URL", litellm_url),
            ("RBAC_POLICY_FILE", two_at_a_time()),
        ],
        ..Options::default()
    })
    .await;
    app.telemetry_up().await;
    let token = app.user("alice", "user").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for stream in [false, true] {
        let left = impatient
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&chat_body("fake-gpt", stream))
            .send()
            .await;
        assert!(left.is_err(), "the client gave up waiting");
    }
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), closed.recv())
            .await
            .expect("the upstream call went on after its client left")
            .unwrap();
    }
    // Both slots are free again: a third request is admitted at once.
    app.get_json_until("/observability/quota", &token, |report| {
        report["scopes"][0]["used"]["concurrent_requests"] == 0
    })
    .await;
    let third = app
        .post_json(
            "/v1/chat/completions",
            &token,
            &chat_body("fake-gpt", false),
        )
        .await;
    assert_eq!(third.status(), 200);
    // Each left request is recorded as abandoned, with the status nginx gives a client that left.
    let logs = received(&app.helicone, "/custom/v1/log", 3).await;
    let abandoned = logs
        .iter()
        .map(|log| serde_json::from_slice::<Value>(&log.body).unwrap())
        .filter(|log| log["providerResponse"]["json"]["error"]["type"] == "abandoned")
        .inspect(|log| assert_eq!(log["providerResponse"]["status"], 499))
        .count();
    assert_eq!(abandoned, 2);
}

/// A stream whose answer is `bytes` long, in chunks of 10 kB.
fn long_stream(bytes: usize) -> String {
    let piece = "x".repeat(10_000);
    let mut body = String::new();
    for _ in 0..bytes / piece.len() {
        body.push_str(&format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{piece}\"}}}}]}}\n\n"
        ));
    }
    body.push_str("data: [DONE]\n\n");
    body
}

/// The generation's captured answer and whether it is marked cut, with `limit` as the one
/// capture limit.
async fn captured(limit: usize, answer: usize) -> (usize, bool) {
    let app = spawn_with(Options {
        vars: vec![("TELEMETRY_MAX_CAPTURE_BYTES", limit.to_string())],
        ..Options::default()
    })
    .await;
    app.telemetry_up().await;
    wiremock::Mock::given(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_raw(long_stream(answer), "text/event-stream"),
        )
        .mount(&app.litellm)
        .await;
    let token = app.user("alice", "user").await;
    let response = app
        .post_json("/chat/stream", &token, &chat_body("fake-gpt", true))
        .await;
    assert!(
        response.text().await.unwrap().len() > answer,
        "the client gets it all"
    );
    let spans = app.langfuse_spans().await;
    let generation = &spans["bff-chat"];
    (
        generation["langfuse.observation.output"].len(),
        generation
            .get("langfuse.observation.metadata.capture_truncated")
            .is_some(),
    )
}

#[tokio::test]
async fn one_capture_limit_cuts_and_marks_a_streamed_answer() {
    // Past the stream's old fixed 1 MiB: kept whole under a 2 MiB limit.
    assert_eq!(captured(2 << 20, 1_500_000).await, (1_500_000, false));
    // Under a small limit: cut to it, and marked.
    let (kept, marked) = captured(1000, 50_000).await;
    assert!(kept <= 1000 && marked, "{kept} {marked}");
}
