//! `/observability/*`: scoping by role, Langfuse v2 with v1 fallback, stable shapes, failures.

use crate::helpers::*;
use serde_json::{Value, json};
use wiremock::matchers::{header, path, query_param};
use wiremock::{Mock, ResponseTemplate};

fn user_id_asked(request: &wiremock::Request) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(key, _)| key == "userId")
        .map(|(_, value)| value.into_owned())
}

#[tokio::test]
async fn traces_come_from_v2_observations_in_a_stable_shape_scoped_by_role() {
    let app = spawn_app().await;
    Mock::given(path("/api/public/v2/observations"))
        .and(header("authorization", "Basic cGstbGYtdGVzdDpzay1sZi10ZXN0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "obs-1", "traceId": "0af7651916cd43dd8448eb211c80319c", "type": "GENERATION",
                      "name": "chat fake-gpt", "traceName": "/v1/chat/completions", "userId": "bob",
                      "sessionId": "chat-7", "startTime": "2026-01-01T00:00:00.010Z",
                      "endTime": "2026-01-01T00:00:01.000Z", "providedModelName": "fake-gpt",
                      "usageDetails": {"input": 9, "output": 7, "total": 16}, "totalCost": "0.000023",
                      "latency": 0.99, "timeToFirstToken": 0.29, "level": "DEFAULT", "tags": ["bff"]}],
            "meta": {"cursor": "bmV4dA=="}})))
        .mount(&app.langfuse)
        .await;
    let bob = app.user("bob", "user").await;
    let admin = app.user("alice", "admin").await;

    let page: Value = app
        .get("/observability/traces?user_id=alice&limit=10", Some(&bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["source"], "langfuse-v2");
    assert_eq!(page["next_cursor"], "bmV4dA==");
    let item = &page["data"][0];
    assert_eq!(item["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(item["model"], "fake-gpt");
    assert_eq!(item["total_tokens"], 16);
    assert_eq!(item["cost_usd"], 0.000023);
    assert_eq!(item["latency_ms"], 990.0);
    assert_eq!(item["name"], "/v1/chat/completions");

    app.get("/observability/traces?user_id=carol", Some(&admin))
        .await;
    app.get("/observability/traces", Some(&admin)).await;
    let asked = received(&app.langfuse, "/api/public/v2/observations", 3).await;
    assert_eq!(
        user_id_asked(&asked[0]).as_deref(),
        Some("bob"),
        "a user sees only their own"
    );
    assert_eq!(
        user_id_asked(&asked[1]).as_deref(),
        Some("carol"),
        "an admin may pick a user"
    );
    assert_eq!(user_id_asked(&asked[2]), None, "an admin may see everyone");
}

#[tokio::test]
async fn traces_fall_back_to_v1_when_v2_is_not_served() {
    let app = spawn_app().await;
    Mock::given(path("/api/public/v2/observations"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "not available"})))
        .mount(&app.langfuse)
        .await;
    Mock::given(path("/api/public/traces"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "0af7651916cd43dd8448eb211c80319c", "timestamp": "2026-01-01T00:00:00.000Z",
                      "name": "/v1/chat/completions", "userId": "bob", "sessionId": null, "tags": ["bff"],
                      "latency": 1.5, "totalCost": -1, "observations": [], "scores": []}],
            "meta": {"page": 1, "limit": 50, "totalItems": 60, "totalPages": 2}})))
        .mount(&app.langfuse)
        .await;
    let bob = app.user("bob", "user").await;
    let page: Value = app
        .get("/observability/traces", Some(&bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["source"], "langfuse-v1");
    assert_eq!(page["next_cursor"], "page:2");
    assert_eq!(page["data"][0]["latency_ms"], 1500.0);
    assert_eq!(
        page["data"][0]["cost_usd"],
        Value::Null,
        "-1 means not computed"
    );
    let asked = received(&app.langfuse, "/api/public/traces", 1).await;
    assert_eq!(user_id_asked(&asked[0]).as_deref(), Some("bob"));
}

#[tokio::test]
async fn langfuse_failures_are_502_naming_langfuse_and_bad_queries_are_400() {
    let app = spawn_app().await;
    Mock::given(path("/api/public/v2/observations"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"error": "Internal Server Error"})),
        )
        .mount(&app.langfuse)
        .await;
    let admin = app.user("alice", "admin").await;
    let response = app.get("/observability/traces", Some(&admin)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("langfuse"),
        "{body}"
    );
    assert_eq!(
        app.get("/observability/traces?limit=1000", Some(&admin))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get("/observability/traces?from=yesterday", Some(&admin))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get("/observability/traces?colour=blue", Some(&admin))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get(
            "/observability/usage?from=2026-02-01&to=2026-01-01",
            Some(&admin)
        )
        .await
        .status(),
        400
    );
}

#[tokio::test]
async fn usage_from_v2_metrics_with_string_counts_then_v1_daily_fallback() {
    let app = spawn_app().await;
    Mock::given(path("/api/public/v2/metrics"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            {"providedModelName": "fake-gpt", "time_dimension": "2026-01-01T00:00:00.000Z", "count_count": "42",
             "sum_inputTokens": "900", "sum_outputTokens": 700, "sum_totalTokens": "1600", "sum_totalCost": 0.0123}]})))
        .up_to_n_times(1)
        .mount(&app.langfuse)
        .await;
    let bob = app.user("bob", "user").await;
    let report: Value = app
        .get(
            "/observability/usage?from=2026-01-01&to=2026-01-07",
            Some(&bob),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["source"], "langfuse-v2");
    assert_eq!(report["user_id"], "bob");
    assert_eq!(
        report["rows"][0],
        json!({"day": "2026-01-01", "model": "fake-gpt", "requests": 42, "errors": 0,
        "input_tokens": 900, "output_tokens": 700, "total_tokens": 1600, "cost_usd": 0.0123})
    );
    let asked = received(&app.langfuse, "/api/public/v2/metrics", 1).await;
    let query: Value = serde_json::from_str(
        &asked[0]
            .url
            .query_pairs()
            .find(|(k, _)| k == "query")
            .unwrap()
            .1,
    )
    .unwrap();
    assert!(
        query["filters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["column"] == "userId" && f["value"] == "bob")
    );
    assert_eq!(query["fromTimestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(query["toTimestamp"], "2026-01-08T00:00:00Z");

    Mock::given(path("/api/public/v2/metrics"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "legacy mode"})))
        .mount(&app.langfuse)
        .await;
    Mock::given(path("/api/public/metrics/daily"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            {"date": "2026-01-02", "countTraces": 3, "countObservations": 3, "totalCost": 0.5,
             "usage": [{"model": "fake-gpt", "inputUsage": 10, "outputUsage": 20, "totalUsage": 30,
                        "countObservations": 3, "countTraces": 3, "totalCost": 0.5}]}], "meta": {}})))
        .mount(&app.langfuse)
        .await;
    let report: Value = app
        .get(
            "/observability/usage?from=2026-01-01&to=2026-01-07",
            Some(&bob),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["source"], "langfuse-v1");
    assert_eq!(report["totals"]["total_tokens"], 30);
    assert_eq!(report["rows"][0]["day"], "2026-01-02");
}

#[tokio::test]
async fn without_langfuse_usage_comes_from_bff_itself_and_traces_say_why_not() {
    let app = spawn_with(Options {
        no_telemetry: true,
        ..Options::default()
    })
    .await;
    app.litellm_chat().await;
    let bob = app.user("bob", "user").await;
    let alice = app.user("alice", "admin").await;
    app.post_json("/v1/chat/completions", &bob, &chat_body("fake-gpt", false))
        .await;
    app.post_json(
        "/v1/chat/completions",
        &alice,
        &chat_body("fake-gpt", false),
    )
    .await;

    let mine: Value = app
        .get("/observability/usage", Some(&bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["source"], "bff");
    assert_eq!(mine["totals"]["requests"], 1);
    assert_eq!(mine["totals"]["total_tokens"], 16);
    assert_eq!(mine["totals"]["cost_usd"], 2.3e-05);
    let everyone: Value = app
        .get("/observability/usage", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(everyone["totals"]["requests"], 2);

    let response = app.get("/observability/traces", Some(&bob)).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("LANGFUSE_HOST")
    );
}

#[tokio::test]
async fn observability_health_lists_every_dependency_and_the_sinks() {
    let app = spawn_app().await;
    app.litellm_ready().await;
    Mock::given(path("/api/public/health"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "OK", "version": "4.16.0"})),
        )
        .mount(&app.langfuse)
        .await;
    Mock::given(path("/v1/metrics/totalRequests"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": 0, "error": null})))
        .mount(&app.helicone)
        .await;
    Mock::given(path("/health"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.openwebui)
        .await;
    let admin = app.user("alice", "admin").await;
    let body: Value = app
        .get("/observability/health", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let status = |name: &str| {
        body["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("litellm"), "up");
    assert_eq!(status("langfuse"), "up");
    assert_eq!(status("helicone"), "up");
    assert_eq!(status("openwebui"), "down");
    assert_eq!(body["status"], "degraded");
    let sinks: Vec<&str> = body["telemetry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sink"].as_str().unwrap())
        .collect();
    assert_eq!(sinks, ["langfuse", "helicone"]);
}
