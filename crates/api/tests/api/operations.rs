//! `/health`, `/ready`, `/metrics`, request ids, limits and malformed input.

use crate::helpers::*;
use serde_json::Value;

#[tokio::test]
async fn health_is_public_and_carries_a_request_id_bff_minted() {
    let app = spawn_app().await;
    let response = app.get("/health", None).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    // A caller's id never becomes the id bff, LiteLLM and the sinks key on.
    let minted = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(minted, "client-chosen-42");
    assert_eq!(uuid::Uuid::parse_str(minted).unwrap().get_version_num(), 7);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn ready_when_litellm_and_open_webui_answer() {
    let app = spawn_app().await;
    app.litellm_ready().await;
    wiremock::Mock::given(wiremock::matchers::path("/health"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": true})),
        )
        .mount(&app.openwebui)
        .await;
    let response = app.get("/ready", None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn ready_is_503_naming_litellm_when_it_is_down() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let app = spawn_with(Options {
        vars: vec![("LITELLM_URL", dead)],
        ..Options::default()
    })
    .await;
    wiremock::Mock::given(wiremock::matchers::path("/health"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&app.openwebui)
        .await;
    let response = app.get("/ready", None).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["down"], serde_json::json!(["litellm"]));

    // And chat answers 503 too, in OpenAI's shape.
    let token = app.user("alice", "user").await;
    let response = app
        .post_json(
            "/v1/chat/completions",
            &token,
            &chat_body("fake-gpt", false),
        )
        .await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
}

#[tokio::test]
async fn malformed_json_is_a_400_that_names_the_problem() {
    let app = spawn_app().await;
    let token = app.user("alice", "user").await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"model\": \"fake-gpt\", \"messages\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("EOF"),
        "{body}"
    );
    assert_eq!(body["error"]["request_id"], request_id.as_str());

    let response = app
        .post_json(
            "/v1/chat/completions",
            &token,
            &serde_json::json!({"model": "fake-gpt", "messages": []}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "messages");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_in_openai_shape() {
    let app = spawn_app().await;
    let token = app.user("alice", "user").await;
    let big = serde_json::json!({"model": "fake-gpt", "messages": [{"role": "user", "content": "x".repeat(100_000)}]});
    let response = app.post_json("/v1/chat/completions", &token, &big).await;
    assert_eq!(response.status(), 413);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("65536"),
        "{body}"
    );
    assert_eq!(body["error"]["request_id"], request_id);
}

#[tokio::test]
async fn unknown_routes_are_openai_shaped_errors_never_plain_text() {
    let app = spawn_app().await;
    let token = app.user("alice", "admin").await;
    let response = app.get("/nope", Some(&token)).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    // Without credentials, an unknown route is not even revealed.
    assert_eq!(app.get("/nope", None).await.status(), 401);
}

#[tokio::test]
async fn metrics_expose_the_documented_series() {
    let app = spawn_app().await;
    app.litellm_stream().await;
    app.telemetry_up().await;
    let token = app.user("alice", "user").await;
    let streamed = app
        .post_json("/v1/chat/completions", &token, &chat_body("fake-gpt", true))
        .await;
    streamed.text().await.unwrap();
    app.get("/v1/models", Some("not-a-token")).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for series in [
        r#"bff_http_requests_total{route="/v1/chat/completions",method="POST",status="200"} 1"#,
        r#"bff_http_request_duration_seconds_count{route="/v1/chat/completions"} 1"#,
        r#"bff_overhead_seconds_count{route="/v1/chat/completions"} 1"#,
        r#"bff_auth_failures_total{reason="token_malformed"} 1"#,
        r#"bff_time_to_first_token_seconds_count{model="fake-gpt"} 1"#,
        "# TYPE bff_time_to_first_token_seconds histogram",
        r#"bff_telemetry_records_total{sink="langfuse",state="queued"}"#,
        r#"bff_telemetry_records_total{sink="helicone",state="dropped"} 0"#,
        r#"bff_telemetry_ambiguous_retries_total{sink="langfuse"} 0"#,
        r#"bff_usage_exchanges_total{state="dropped"} 0"#,
        r#"bff_quota_backend_errors_total{op="settle"} 0"#,
    ] {
        assert!(text.contains(series), "missing {series}\n{text}");
    }
}

#[tokio::test]
async fn metrics_can_require_the_metrics_permission() {
    let app = spawn_with(Options {
        vars: vec![("METRICS_REQUIRE_AUTH", "true".into())],
        ..Options::default()
    })
    .await;
    assert_eq!(app.get("/metrics", None).await.status(), 401);
    let user = app.user("bob", "user").await;
    assert_eq!(app.get("/metrics", Some(&user)).await.status(), 403);
    let admin = app.user("alice", "admin").await;
    assert_eq!(app.get("/metrics", Some(&admin)).await.status(), 200);
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let preflight = |app: &TestApp| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/chat/completions"))
            .header("origin", "https://monitor.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let closed = spawn_app().await;
    let response = preflight(&closed).await.unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let open = spawn_with(Options {
        vars: vec![("CORS_ALLOWED_ORIGINS", "https://monitor.example".into())],
        ..Options::default()
    })
    .await;
    let response = preflight(&open).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://monitor.example"
    );
    let other = open
        .client
        .get(open.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn every_route_in_the_route_list_is_served() {
    let app = spawn_app().await;
    let admin = app.user("alice", "admin").await;
    for (verb, path) in bff_api::routes::ROUTES {
        let request = match verb {
            "GET" => app.client.get(app.url(path)),
            _ => app
                .client
                .post(app.url(path))
                .json(&chat_body("fake-gpt", false)),
        };
        let status = request.bearer_auth(&admin).send().await.unwrap().status();
        assert!(status != 404 && status != 405, "{verb} {path}: {status}");
    }
}

#[tokio::test]
async fn the_monitoring_page_is_public_html_and_its_data_is_not() {
    let app = spawn_app().await;
    let response = app.get("/monitoring", None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("<style>") && !page.contains("style="));
    let script = app.get("/monitoring.js", None).await;
    assert_eq!(script.status(), 200);
    let script = script.text().await.unwrap();
    assert!(script.contains("/observability/health") && script.contains("/observability/usage"));
    assert_eq!(app.get("/monitoring.css", None).await.status(), 200);
    // The page names its icon, so a browser does not ask for a /favicon.ico that is not there.
    assert!(page.contains(r#"rel="icon" type="image/svg+xml" href="/monitoring.svg""#));
    let icon = app.get("/monitoring.svg", None).await;
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert_eq!(app.get("/observability/health", None).await.status(), 401);
}
