//! `/observability/*`: scoping by role, Langfuse v2 with v1 fallback, stable shapes, failures.

use crate::helpers::*;
use crate::langfuse::{Langfuse, Version};
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
        .get_json("/observability/traces?user_id=alice&limit=10", &bob)
        .await;
    assert_eq!(page["source"], "langfuse-v2");
    assert_eq!(page["next_cursor"], "bmV4dA==");
    let item = &page["data"][0];
    assert_eq!(item["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(item["model"], "fake-gpt");
    assert_eq!(item["total_tokens"], 16);
    assert_eq!(item["cost_usd"], 0.000023);
    assert_eq!(item["latency_ms"], 990.0);
    assert_eq!(item["name"], "/v1/chat/completions");
    assert_eq!(
        item["url"],
        format!(
            "{}/trace/0af7651916cd43dd8448eb211c80319c",
            app.langfuse.uri()
        ),
        "each trace links to Langfuse's UI"
    );

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
    let page: Value = app.get_json("/observability/traces", &bob).await;
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
        json!({"day": "2026-01-01", "model": "fake-gpt", "task": null, "requests": 42, "errors": 0,
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
    assert_eq!(
        report["rows"][0]["errors"],
        Value::Null,
        "v1 daily metrics cannot tell errors"
    );
}

#[tokio::test]
async fn v2_usage_counts_bffs_generations_and_their_errors() {
    let app = spawn_app().await;
    Mock::given(path("/api/public/v2/metrics"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            {"providedModelName": "fake-gpt", "level": "DEFAULT", "time_dimension": "2026-01-01T00:00:00.000Z",
             "count_count": "40", "sum_inputTokens": 800, "sum_outputTokens": 600, "sum_totalTokens": 1400, "sum_totalCost": 0.01},
            {"providedModelName": "fake-gpt", "level": "ERROR", "time_dimension": "2026-01-01T00:00:00.000Z",
             "count_count": "2", "sum_inputTokens": 100, "sum_outputTokens": 100, "sum_totalTokens": 200, "sum_totalCost": 0.0023}]})))
        .mount(&app.langfuse)
        .await;
    let bob = app.user("bob", "user").await;
    let report: Value = app
        .get(
            "/observability/usage?from=2026-01-01&to=2026-01-01",
            Some(&bob),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 1, "{report}");
    let row = &report["rows"][0];
    assert_eq!(
        (row["requests"].as_u64(), row["errors"].as_u64()),
        (Some(42), Some(2))
    );
    assert_eq!(row["input_tokens"], 900);
    let asked = received(&app.langfuse, "/api/public/v2/metrics", 1).await;
    let query = asked[0]
        .url
        .query_pairs()
        .find(|(k, _)| k == "query")
        .unwrap()
        .1
        .into_owned();
    let query: Value = serde_json::from_str(&query).unwrap();
    assert!(
        query["filters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["column"] == "name" && f["value"] == bff_telemetry::GENERATION_NAME),
        "{query}"
    );
}

#[tokio::test]
async fn litellms_generation_in_the_same_trace_is_not_counted_twice() {
    let app = spawn_app().await;
    app.litellm_chat().await;
    Mock::given(path("/api/public/otel/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&app.langfuse)
        .await;
    // bff's request joins the trace LiteLLM's recorded export belongs to (a service caller's
    // traceparent is adopted), so both writers' generations land in one trace.
    let response = app.chat_as_service_in_trace().await;
    assert_eq!(response.status(), 200);
    let bff_export = app.langfuse_export().await;
    let litellm_export = include_bytes!("../fixtures/litellm-1.108.7-langfuse-otlp.bin");
    let store = Langfuse::new(Version::V4);
    store.ingest(&bff_export);
    store.ingest(litellm_export);
    let generations_in_trace = store
        .observations()
        .into_iter()
        .filter(|o| o.trace_id == TRACE && o.kind == "GENERATION")
        .count();
    assert_eq!(generations_in_trace, 2);

    // Langfuse answers bff's usage query from everything it stored, with the query's filters.
    Mock::given(path("/api/public/v2/metrics"))
        .respond_with(store)
        .mount(&app.langfuse)
        .await;
    let admin = app.user("alice", "admin").await;
    let today = bff_api::reporting::writer::day_of(bff_telemetry::UnixNanos::now());
    let report: Value = app
        .get(
            &format!("/observability/usage?from={today}&to={today}"),
            Some(&admin),
        )
        .await
        .json()
        .await
        .unwrap();
    // bff's generation only: LiteLLM's recorded one (10 in, 20 out) is in the trace too.
    assert_eq!(report["totals"]["input_tokens"], 9, "{report}");
    assert_eq!(report["totals"]["output_tokens"], 7, "{report}");
    assert_eq!(report["totals"]["requests"], 1, "{report}");
}

#[tokio::test]
async fn without_langfuse_usage_traces_and_top_users_come_from_bff_itself() {
    let app = spawn_with(Options {
        no_telemetry: true,
        ..Options::default()
    })
    .await;
    app.litellm_chat().await;
    let bob = app.user("bob", "user").await;
    let alice = app.user("alice", "admin").await;
    for caller in [&bob, &alice, &alice] {
        app.post_json(
            "/v1/chat/completions",
            caller,
            &chat_body("fake-gpt", false),
        )
        .await;
    }
    let everyone = app
        .get_json_until("/observability/usage", &alice, |report| {
            report["totals"]["requests"] == 3
        })
        .await;
    assert_eq!(everyone["source"], "bff");
    let mine = app
        .get_json("/observability/usage?user_id=alice", &bob)
        .await;
    assert_eq!(mine["source"], "bff");
    assert_eq!(mine["totals"]["requests"], 1, "a user sees only their own");
    assert_eq!(mine["totals"]["total_tokens"], 16);
    assert_eq!(mine["totals"]["cost_usd"], 2.3e-05);

    let traces = app
        .get_json("/observability/traces?user_id=alice", &bob)
        .await;
    assert_eq!(traces["source"], "bff");
    let users: Vec<&str> = traces["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        ["bob"],
        "a user sees only their own, whatever they ask"
    );
    assert_eq!(traces["data"][0]["model"], "fake-gpt");
    assert_eq!(traces["data"][0]["level"], "DEFAULT");
    assert!(traces["data"][0]["url"].is_null(), "no Langfuse, no link");
    let all = app.get_json("/observability/traces?limit=2", &alice).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);

    let top = app.get_json("/observability/usage/users", &alice).await;
    let ranked: Vec<(&str, u64)> = top["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| {
            (
                user["user_id"].as_str().unwrap(),
                user["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ranked, [("alice", 2), ("bob", 1)]);
    let refused = app.get("/observability/usage/users", Some(&bob)).await;
    assert_eq!(refused.status(), 403, "everyone's spend is for admins");
}

#[tokio::test]
async fn traffic_counts_chat_requests_of_the_last_minute_for_any_observer() {
    let app = spawn_app().await;
    app.litellm_chat().await;
    let bob = app.user("bob", "user").await;
    let before: Value = app.get_json("/observability/traffic", &bob).await;
    assert!(before["latency_ms"].is_null(), "no chat yet: {before}");
    app.post_json("/v1/chat/completions", &bob, &chat_body("fake-gpt", false))
        .await;
    app.post_json("/v1/chat/completions", &bob, &json!({"model": 5}))
        .await;
    app.get("/v1/models", Some(&bob)).await; // not a chat: not counted
    let after: Value = app.get_json("/observability/traffic", &bob).await;
    let requests: u64 = after["seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|second| second["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 2, "{after}");
    assert_eq!(after["refused_rate"], 0.5);
    assert_eq!(after["error_rate"], 0.0);
    assert!(after["latency_ms"]["p50"].as_f64().unwrap() >= 0.0);
    assert_eq!(after["active_streams"], 0);
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
    let body: Value = app.get_json("/observability/health", &admin).await;
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
    assert!(body["checked_at"].as_str().unwrap().ends_with('Z'));

    let bob = app.user("bob", "user").await;
    let seen: Value = app.get_json("/observability/health", &bob).await;
    let openwebui = seen["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "openwebui")
        .unwrap();
    assert_eq!(
        openwebui["detail"], "not answering or failing (an administrator sees why)",
        "a user reads that it is down, not what it answered"
    );
}

#[tokio::test]
async fn me_says_who_is_calling_and_what_they_may_do_without_a_refusal() {
    let app = spawn_app().await;
    let bob = app.user("bob", "user").await;
    let alice = app.user("alice", "admin").await;
    let me: Value = app.get_json("/observability/me", &bob).await;
    assert_eq!(
        (me["user_id"].as_str(), me["role"].as_str()),
        (Some("bob"), Some("user"))
    );
    assert_eq!(me["auth"], "session");
    let permissions: Vec<&str> = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|permission| permission.as_str().unwrap())
        .collect();
    assert!(permissions.contains(&"observability:own"), "{me}");
    assert!(!permissions.contains(&"observability:all"), "{me}");
    let admin: Value = app.get_json("/observability/me", &alice).await;
    assert!(
        admin["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("observability:all"))
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        !metrics.contains("bff_auth_failures_total{"),
        "asking what one may do is not a refused request: {metrics}"
    );
}

#[tokio::test]
async fn trace_links_use_the_address_a_browser_reaches() {
    let app = spawn_with(Options {
        vars: vec![("LANGFUSE_UI_URL", "https://langfuse.example.com/".into())],
        ..Options::default()
    })
    .await;
    Mock::given(path("/api/public/v2/observations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "obs-1", "traceId": "0af7651916cd43dd8448eb211c80319c", "type": "GENERATION",
                      "userId": "bob"},
                     {"id": "obs-2", "traceId": "../../admin", "type": "GENERATION", "userId": "bob"}]})))
        .mount(&app.langfuse)
        .await;
    let bob = app.user("bob", "user").await;
    let page: Value = app.get_json("/observability/traces", &bob).await;
    assert_eq!(
        page["data"][0]["url"],
        "https://langfuse.example.com/trace/0af7651916cd43dd8448eb211c80319c"
    );
    assert!(
        page["data"][1]["url"].is_null(),
        "an id that is not a plain token gets no link"
    );
}
