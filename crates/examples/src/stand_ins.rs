//! Local stand-ins for the services the examples talk to, answering with what the real ones
//! answered when recorded (LiteLLM 1.108.7's mock model, Open WebUI 0.12.4's whoami): the
//! examples' offline mode and their tests. Never used against production.

use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// LiteLLM 1.108.7's recorded answer to a non-streaming chat with its `mock-gpt` model.
const RECORDED_CHAT: &str = include_str!("../../providers/tests/fixtures/litellm-1.108.7/mock.txt");

/// A LiteLLM proxy answering every chat with the recorded completion (and its cost header).
pub async fn litellm() -> MockServer {
    let server = MockServer::start().await;
    let (head, body) = RECORDED_CHAT
        .split_once("\r\n\r\n")
        .or_else(|| RECORDED_CHAT.split_once("\n\n"))
        .unwrap_or_default();
    let cost = head
        .lines()
        .find_map(|line| line.strip_prefix("x-litellm-response-cost: "))
        .unwrap_or("0");
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(body.trim_end().to_owned(), "application/json")
                .insert_header("x-litellm-response-cost", cost),
        )
        .mount(&server)
        .await;
    server
}

/// A Langfuse accepting OTLP exports.
pub async fn langfuse() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/public/otel/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&server)
        .await;
    server
}

/// A Helicone worker accepting async logs, or failing them with `status`.
pub async fn helicone(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/custom/v1/log"))
        .respond_with(ResponseTemplate::new(status).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

/// An Open WebUI that knows one session token: `user_id`, with `role`, in no group.
pub async fn open_webui(token: &str, user_id: &str, role: &str) -> MockServer {
    let server = MockServer::start().await;
    let bearer = format!("Bearer {token}");
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": user_id, "name": user_id, "email": format!("{user_id}@example.com"),
            "role": role, "token": token, "token_type": "Bearer"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/groups"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    server
}

/// How many requests `server` received on `route`.
pub async fn received(server: &MockServer, route: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == route)
        .count()
}
