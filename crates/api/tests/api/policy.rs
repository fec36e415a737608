//! What a hostile caller tries: LiteLLM controls in the body, forbidden fallbacks, wrong types,
//! cross-site form posts, label floods. Each refused request must never reach LiteLLM.

use crate::helpers::*;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// LiteLLM's chat endpoint, which these requests must never reach.
async fn litellm_must_not_be_called(litellm: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(CHAT_BODY, "application/json"))
        .expect(0)
        .mount(litellm)
        .await;
}

fn with(field: &str, value: Value) -> Value {
    let mut body = chat_body("fake-gpt", false);
    body[field] = value;
    body
}

#[tokio::test]
async fn litellm_controls_in_the_body_are_refused_before_any_upstream_call() {
    let app = spawn_app().await;
    litellm_must_not_be_called(&app.litellm).await;
    let token = app.user("mallory", "user").await;
    let cases = [
        ("fallbacks", json!(["gpt-4o"])),
        ("fallbacks", json!([{"fake-gpt": ["gpt-4o"]}])),
        ("num_retries", json!(10)),
        ("api_base", json!("http://evil.example")),
        ("base_url", json!("http://evil.example")),
        ("api_key", json!("sk-mine")),
        ("model_list", json!([])),
        ("litellm_params", json!({})),
        ("mock_response", json!("free answer")),
        (
            "context_window_fallback_dict",
            json!({"fake-gpt": "gpt-4o"}),
        ),
        ("cache", json!({"no-cache": true})),
        ("caching", json!(true)),
        ("timeout", json!(1)),
        ("user_config", json!({})),
    ];
    for (field, value) in cases {
        for stream in [false, true] {
            let mut body = with(field, value.clone());
            body["stream"] = json!(stream);
            let response = app.post_json("/v1/chat/completions", &token, &body).await;
            assert_eq!(response.status(), 400, "{field}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unsupported_parameter", "{field}");
            assert_eq!(body["error"]["param"], field);
            assert!(
                body["error"]["message"].as_str().unwrap().contains(field),
                "{body}"
            );
        }
    }
    app.litellm.verify().await;
}

#[tokio::test]
async fn wrong_types_are_a_400_at_once_naming_the_field() {
    let app = spawn_app().await;
    litellm_must_not_be_called(&app.litellm).await;
    let token = app.user("mallory", "user").await;
    let cases = [
        (
            json!({"model": "fake-gpt", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "fake-gpt", "messages": [{"role": "root", "content": "x"}]}),
            "messages[0].role",
        ),
        (with("temperature", json!("hot")), "temperature"),
        (with("max_tokens", json!(0)), "max_tokens"),
        (with("stream", json!("yes")), "stream"),
        (with("metadata", json!({"tags": ["route-me"]})), "metadata"),
        (json!({"model": 7, "messages": []}), "model"),
    ];
    for (body, param) in cases {
        let response = app.post_json("/v1/chat/completions", &token, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    for body in ["[1, 2]", "\"text\"", "null"] {
        let response = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
    }
    app.litellm.verify().await;
}

#[tokio::test]
async fn chat_routes_take_json_only_whatever_the_credential() {
    let app = spawn_app().await;
    litellm_must_not_be_called(&app.litellm).await;
    let token = app.user("alice", "user").await;
    let body = chat_body("fake-gpt", false).to_string();
    for route in ["/v1/chat/completions", "/chat/completions", "/chat/stream"] {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let mut request = app
                .client
                .post(app.url(route))
                .bearer_auth(&token)
                .body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 415, "{route} {content_type:?}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], "unsupported_media_type");
        }
    }
    app.litellm.verify().await;
}

#[tokio::test]
async fn a_cross_site_form_post_with_the_cookie_cannot_chat() {
    let app = spawn_app().await;
    litellm_must_not_be_called(&app.litellm).await;
    let token = app.user("victim", "user").await;
    let cookie = format!("token={token}");
    // What an attacker's page can make a browser send: a "simple" request with the cookie.
    let payload = chat_body("fake-gpt", false).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json",
    ] {
        for origin in [
            None,
            Some("http://localhost:3000"),
            Some("http://evil.example"),
            Some("null"),
        ] {
            let mut request = app
                .client
                .post(app.url("/v1/chat/completions"))
                .header("cookie", &cookie)
                .header("content-type", content_type)
                .body(payload.clone());
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{content_type} {origin:?}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], "cookie_not_accepted");
        }
    }
    // The monitoring page's reads still work with the cookie.
    let response = app
        .client
        .get(app.url("/observability/health"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.litellm.verify().await;
}

/// A policy where `user` may use only `fake-gpt`, and may send `fallbacks`.
fn fallback_policy() -> String {
    policy_file(
        r#"
service_role = "service"
[roles.service]
permissions = ["chat"]
[roles.user]
permissions = ["chat"]
models = ["fake-gpt"]
allow_params = ["fallbacks", "num_retries"]
"#,
    )
}

#[tokio::test]
async fn an_allowed_parameter_still_reaches_only_allowed_models() {
    let app = spawn_with(Options {
        vars: vec![("RBAC_POLICY_FILE", fallback_policy())],
        ..Options::default()
    })
    .await;
    app.litellm_chat().await;
    app.telemetry_up().await;
    let token = app.user("bob", "user").await;
    for fallbacks in [
        json!(["gpt-4o"]),
        json!([{"fake-gpt": ["gpt-4o"]}]),
        json!([{"model": "gpt-4o"}]),
        json!([{"fake-gpt": {"hidden": "gpt-4o"}}]),
    ] {
        let response = app
            .post_json(
                "/v1/chat/completions",
                &token,
                &with("fallbacks", fallbacks.clone()),
            )
            .await;
        assert!(
            [400, 403].contains(&response.status().as_u16()),
            "{fallbacks}: {}",
            response.status()
        );
    }
    assert!(
        app.litellm
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "no refused request reached LiteLLM"
    );
    // Opted in and within the allow-list: it goes through, with the field.
    let response = app
        .post_json(
            "/v1/chat/completions",
            &token,
            &with("num_retries", json!(1)),
        )
        .await;
    assert_eq!(response.status(), 200);
    let sent = &received(&app.litellm, "/v1/chat/completions", 1).await[0];
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["num_retries"], 1);
}

#[tokio::test]
async fn client_metadata_never_reaches_litellms_controls() {
    let app = spawn_app().await;
    app.litellm_chat().await;
    app.telemetry_up().await;
    let token = app.user("alice", "user").await;
    let response = app
        .post_json(
            "/v1/chat/completions",
            &token,
            &with(
                "metadata",
                json!({"tags": "free-tier-bypass", "trace_id": "someone-elses", "note": "hi"}),
            ),
        )
        .await;
    assert_eq!(response.status(), 200);
    let sent = &received(&app.litellm, "/v1/chat/completions", 1).await[0];
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    let metadata = sent["metadata"].as_object().unwrap();
    assert_eq!(
        metadata["tags"],
        json!(["bff", "route:/v1/chat/completions"])
    );
    assert_ne!(metadata["trace_id"], "someone-elses");
    assert_eq!(
        metadata["client_metadata"],
        json!({"tags": "free-tier-bypass", "trace_id": "someone-elses", "note": "hi"})
    );
}

#[tokio::test]
async fn a_body_field_litellm_refuses_is_the_callers_error_not_the_operators() {
    let app = spawn_app().await;
    app.litellm_error(
        401,
        "auth_error",
        "Authentication Error, Rejected Request: api_base is not allowed in request body. Enable with `general_settings::allow_client_side_credentials` on proxy config.yaml.",
    )
    .await;
    let token = app.user("alice", "user").await;
    let response = app
        .post_json(
            "/v1/chat/completions",
            &token,
            &chat_body("fake-gpt", false),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("api_base is not allowed"), "{message}");
    assert!(!message.contains("LITELLM_API_KEY"), "{message}");
}

#[tokio::test]
async fn random_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    let series = |text: &str| text.lines().filter(|line| !line.starts_with('#')).count();
    let send = |method: String, path: String| {
        let client = app.client.clone();
        let url = app.url(&path);
        async move {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            client.request(method, url).send().await.unwrap();
        }
    };
    // Warm up every label value this flood can reach, then flood.
    for n in 0..20 {
        send(format!("WARM{n}"), format!("/warm/{n}")).await;
        send("GET".into(), format!("/warm/{n}")).await;
        send("POST".into(), "/health".into()).await;
    }
    app.get("/metrics", None).await; // the scrape itself is a series too
    let before = series(&app.get("/metrics", None).await.text().await.unwrap());
    for n in 0..1000 {
        send(
            format!("M{n:04}{}", "X".repeat(n % 97)),
            format!("/{}/{n}", "p".repeat(n % 50)),
        )
        .await;
    }
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(series(&text), before, "{text}");
    assert!(!text.contains("M0999"));
}
