//! Chat end to end: what reaches LiteLLM, what the caller gets, what telemetry receives.

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_chat_goes_through_with_identity_and_reaches_langfuse_and_helicone() {
    let app = spawn_app().await;
    app.litellm_chat().await;
    app.telemetry_up().await;
    let token = app.user("alice", "user").await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .header("x-request-id", "req-chat-1")
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .json(&json!({"model": "fake-gpt", "messages": [{"role": "user", "content": "hi"}],
                      "tools": [{"type": "function", "function": {"name": "f"}}], "user": "spoofed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // bff mints the id every system keys on; the caller's is only an attribute.
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(request_id, "req-chat-1");
    assert_eq!(
        uuid::Uuid::parse_str(&request_id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(response.headers()["x-litellm-call-id"], "from-litellm");
    assert_eq!(
        response.text().await.unwrap(),
        CHAT_BODY,
        "the body is LiteLLM's, byte for byte"
    );

    let upstream = &received(&app.litellm, "/v1/chat/completions", 1).await[0];
    assert_eq!(upstream.headers["x-litellm-call-id"], request_id.as_str());
    assert_eq!(
        upstream.headers["authorization"],
        format!("Bearer {LITELLM_KEY}").as_str()
    );
    // A user's traceparent is not honoured: only trusted backends continue their trace.
    assert!(
        !upstream.headers["traceparent"]
            .to_str()
            .unwrap()
            .contains("0af7651916cd43dd8448eb211c80319c")
    );
    let sent: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(sent["user"], "alice");
    let trace = sent["metadata"]["trace_id"].as_str().unwrap().to_owned();
    assert_ne!(trace, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(sent["metadata"]["trace_user_id"], "alice");
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {"name": "f"}}])
    );
    assert!(upstream.headers.get("x-openwebui-user-role").is_none());

    // Telemetry: one OTLP export at Langfuse with the trace id, one log at Helicone.
    let protobuf = app.langfuse_export().await;
    assert!(contains_hex(&protobuf, &trace));
    let text = String::from_utf8_lossy(&protobuf);
    assert!(text.contains("alice"));
    assert!(
        text.contains("req-chat-1"),
        "client_request_id is kept as an attribute"
    );
    let log = &received(&app.helicone, "/custom/v1/log", 1).await[0];
    let log: Value = serde_json::from_slice(&log.body).unwrap();
    assert_eq!(log["providerRequest"]["meta"]["Helicone-User-Id"], "alice");
    assert_eq!(
        log["providerRequest"]["meta"]["Helicone-Property-Role"],
        "user"
    );
    assert_eq!(log["providerResponse"]["json"]["usage"]["total_tokens"], 16);
}

fn contains_hex(haystack: &[u8], hex: &str) -> bool {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap())
        .collect();
    haystack.windows(bytes.len()).any(|window| window == bytes)
}

#[tokio::test]
async fn a_service_callers_traceparent_becomes_the_parent_of_bffs_spans() {
    let app = spawn_app().await;
    app.litellm_chat().await;
    app.telemetry_up().await;
    let response = app.chat_as_service_in_trace().await;
    assert_eq!(response.status(), 200);
    let upstream = &received(&app.litellm, "/v1/chat/completions", 1).await[0];
    let sent: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(sent["metadata"]["trace_id"], TRACE);
    let protobuf = app.langfuse_export().await;
    assert!(contains_hex(&protobuf, TRACE));
    assert!(
        contains_hex(&protobuf, PARENT_SPAN),
        "the caller's span is the parent, not bff's own span"
    );
}

#[tokio::test]
async fn a_stream_goes_through_and_usage_is_stripped_unless_asked() {
    let app = spawn_app().await;
    app.litellm_stream().await;
    app.telemetry_up().await;
    let token = app.user("alice", "user").await;
    let response = app
        .post_json("/v1/chat/completions", &token, &chat_body("fake-gpt", true))
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("Hello ") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(
        !text.contains("usage"),
        "the caller did not ask for usage: {text}"
    );

    let response = app
        .post_json(
            "/chat/stream",
            &token,
            &json!({"model": "fake-gpt", "messages": [{"role": "user", "content": "hi"}],
                    "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(response.text().await.unwrap(), STREAM_BODY);

    // Both reach telemetry with the streamed text and usage.
    let logs = received(&app.helicone, "/custom/v1/log", 2).await;
    let log: Value = serde_json::from_slice(&logs[0].body).unwrap();
    let text_body = log["providerResponse"]["textBody"].as_str().unwrap();
    assert!(
        text_body.contains("Hello world") && text_body.contains("\"total_tokens\":5"),
        "{text_body}"
    );
    assert!(log["timing"]["timeToFirstToken"].is_u64());
}

#[tokio::test]
async fn the_model_allow_list_is_enforced_before_litellm_is_called() {
    let policy = policy_file(
        "service_role = \"service\"\n[roles.service]\npermissions = []\n[roles.user]\npermissions = [\"chat\", \"models\"]\nmodels = [\"fake-*\"]\n",
    );
    let app = spawn_with(Options {
        vars: vec![("RBAC_POLICY_FILE", policy.clone())],
        ..Options::default()
    })
    .await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(500))
        .expect(0)
        .mount(&app.litellm)
        .await;
    let token = app.user("alice", "user").await;
    let response = app
        .post_json("/v1/chat/completions", &token, &chat_body("gpt-4o", false))
        .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-4o")
    );
    std::fs::remove_file(&policy).unwrap();
}

#[tokio::test]
async fn models_are_filtered_by_the_role_allow_list() {
    let policy = policy_file(
        "service_role = \"service\"\n[roles.service]\npermissions = []\n[roles.user]\npermissions = [\"models\"]\nmodels = [\"mock-*\"]\n[roles.admin]\npermissions = [\"*\"]\n",
    );
    let app = spawn_with(Options {
        vars: vec![("RBAC_POLICY_FILE", policy.clone())],
        ..Options::default()
    })
    .await;
    wiremock::Mock::given(wiremock::matchers::path("/v1/models"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [
            {"id": "fake-gpt", "object": "model", "created": 1, "owned_by": "openai"},
            {"id": "mock-gpt", "object": "model", "created": 1, "owned_by": "openai", "max_input_tokens": 128000}]})))
        .mount(&app.litellm)
        .await;
    let user = app.user("bob", "user").await;
    let body: Value = app.get_json("/v1/models", &user).await;
    assert_eq!(
        body,
        json!({"object": "list", "data": [{"id": "mock-gpt", "object": "model", "created": 1, "owned_by": "openai", "max_input_tokens": 128000}]})
    );
    let admin = app.user("alice", "admin").await;
    let body: Value = app.get_json("/v1/models", &admin).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    std::fs::remove_file(&policy).unwrap();
}

#[tokio::test]
async fn the_open_webui_chat_id_becomes_the_session_for_trusted_callers() {
    let app = spawn_with(Options {
        vars: vec![("AUTH_TRUST_FORWARDED_USER_HEADERS", "true".into())],
        ..Options::default()
    })
    .await;
    app.litellm_chat().await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(SERVICE_KEY)
        .header("x-openwebui-user-id", "carol")
        .header("x-openwebui-user-role", "user")
        .header("x-openwebui-chat-id", "chat-77")
        .json(&chat_body("fake-gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let upstream = &received(&app.litellm, "/v1/chat/completions", 1).await[0];
    let sent: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(sent["metadata"]["session_id"], "chat-77");
    assert_eq!(sent["user"], "carol");
}
