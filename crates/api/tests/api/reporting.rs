//! What bff reports holds for a fleet and across restarts: the usage store on disk across a
//! restart, in a real Redis shared by two replicas, and through a Redis outage; nothing a caller
//! types becomes a row; people are shown by name.

use crate::helpers::*;
use bff_quota::test_support::RedisServer;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

/// A data folder of the test's own, outside any app's (which each remove theirs when dropped).
fn data_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bff-reporting-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn app_with(vars: Vec<(&'static str, String)>) -> TestApp {
    let app = spawn_with(Options {
        vars,
        no_telemetry: true,
        ..Options::default()
    })
    .await;
    app.litellm_chat().await;
    app
}

/// The reports an admin sees, without what differs by nature between two readers (the page
/// cursor, a trace's own timing fields are the same records so they compare whole).
async fn reports(app: &TestApp, admin: &str) -> (Value, Value, Value) {
    (
        app.get_json("/observability/usage", admin).await,
        app.get_json("/observability/usage/users", admin).await,
        app.get_json("/observability/traces?limit=100", admin).await,
    )
}

#[tokio::test]
async fn usage_top_users_and_recent_requests_survive_a_restart() {
    let data = data_dir("restart");
    let vars = || vec![("BFF_DATA_DIR", data.display().to_string())];
    let mut first = app_with(vars()).await;
    let bob = first.person("bob", "user", "Bob Builder").await;
    let alice = first.person("alice", "admin", "Alice Admin").await;
    chats(&first, &bob, 2).await;
    chats(&first, &alice, 1).await;
    first
        .get_json_until("/observability/usage", &alice, |r| {
            r["totals"]["requests"] == 3
        })
        .await;
    let before = reports(&first, &alice).await;
    first.stop().await;

    let second = app_with(vars()).await;
    let alice = second.person("alice", "admin", "Alice Admin").await;
    let after = reports(&second, &alice).await;
    assert_eq!(after.0["rows"], before.0["rows"]);
    assert_eq!(after.1["users"], before.1["users"]);
    assert_eq!(after.2["data"], before.2["data"]);
    assert_eq!(after.1["users"][0]["name"], "Bob Builder");
    assert_eq!(after.2["data"].as_array().unwrap().len(), 3);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn two_replicas_on_one_redis_agree_on_every_report() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let vars = || vec![("REDIS_URL", redis.url.clone())];
    let one = app_with(vars()).await;
    let two = app_with(vars()).await;
    let bob = [
        one.person("bob", "user", "Bob Builder").await,
        two.person("bob", "user", "Bob Builder").await,
    ];
    let alice = [
        one.person("alice", "admin", "Alice Admin").await,
        two.person("alice", "admin", "Alice Admin").await,
    ];
    chats(&one, &bob[0], 2).await;
    chats(&two, &bob[1], 1).await;
    chats(&two, &alice[1], 1).await;
    let ready = |r: &Value| r["totals"]["requests"] == 4;
    one.get_json_until("/observability/usage", &alice[0], ready)
        .await;
    two.get_json_until("/observability/usage", &alice[1], ready)
        .await;
    let (seen_by_one, seen_by_two) = (
        reports(&one, &alice[0]).await,
        reports(&two, &alice[1]).await,
    );
    assert_eq!(seen_by_one, seen_by_two);
    assert_eq!(seen_by_one.1["users"][0]["user_id"], "bob");
    assert_eq!(seen_by_one.1["users"][0]["requests"], 3);
    assert_eq!(seen_by_one.2["data"].as_array().unwrap().len(), 4);
    let traffic = one
        .get_json_until("/observability/traffic", &alice[0], |t| t["replicas"] == 2)
        .await;
    let requests: u64 = traffic["seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|second| second["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 4, "{traffic}");
}

#[tokio::test]
async fn chats_go_on_while_redis_is_down_and_are_counted_once_when_it_is_back() {
    let dir = data_dir("outage-redis");
    let Some(mut redis) = RedisServer::start_persistent(&dir) else {
        return;
    };
    let app = app_with(vec![("REDIS_URL", redis.url.clone())]).await;
    let alice = app.person("alice", "admin", "Alice Admin").await;
    chats(&app, &alice, 3).await;
    app.get_json_until("/observability/usage", &alice, |r| {
        r["totals"]["requests"] == 3
    })
    .await;
    redis.kill();
    chats(&app, &alice, 4).await;
    let down = app.get("/observability/usage", Some(&alice)).await;
    assert_eq!(down.status(), 503);
    let body: Value = down.json().await.unwrap();
    assert_eq!(body["error"]["code"], "usage_store_unavailable");
    redis.restart().unwrap();
    app.get_json_until("/observability/usage", &alice, |r| {
        r["totals"]["requests"] == 7
    })
    .await;
    // Nothing waits any more, and nothing was counted twice.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("bff_usage_waiting_exchanges 0"),
        "{metrics}"
    );
    let usage = app.get_json("/observability/usage", &alice).await;
    assert_eq!(usage["totals"]["requests"], 7);
    let traces = app
        .get_json("/observability/traces?limit=100", &alice)
        .await;
    assert_eq!(traces["data"].as_array().unwrap().len(), 7);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn nothing_a_caller_types_becomes_a_row_or_a_label() {
    let app = app_with(vec![("MAX_BODY_BYTES", (4 << 20).to_string())]).await;
    let hostile = "<img src=x onerror=alert(1)>";
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": hostile})))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": format!("/chat/completions: Invalid model name passed in model={hostile}. Call `/v1/models` to view available models for your key."),
            "type": "invalid_request_error", "param": null, "code": "400"}})))
        .with_priority(1)
        .expect(1)
        .mount(&app.litellm)
        .await;
    let alice = app.person("alice", "admin", "Alice Admin").await;
    chats(&app, &alice, 1).await;
    let unknown = app
        .post_json("/v1/chat/completions", &alice, &chat_body(hostile, false))
        .await;
    assert_eq!(unknown.status(), 404);
    let huge = app
        .post_json(
            "/v1/chat/completions",
            &alice,
            &chat_body(&"m".repeat(1 << 20), false),
        )
        .await;
    assert_eq!(huge.status(), 400);
    let body: Value = huge.json().await.unwrap();
    assert_eq!(body["error"]["param"], "model");
    assert!(
        body.to_string().len() < 1000,
        "the answer does not echo the name"
    );

    let usage = app
        .get_json_until("/observability/usage", &alice, |r| {
            r["totals"]["requests"] == 3
        })
        .await;
    let models: Vec<&str> = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["(not served)", "fake-gpt"], "{usage}");
    assert_eq!(usage["rows"][0]["requests"], 2);
    let traces = app.get_json("/observability/traces", &alice).await;
    let traced: Vec<&str> = traces["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["model"].as_str().unwrap())
        .collect();
    assert_eq!(traced, ["(not served)", "fake-gpt"], "{traces}");
    for text in [
        usage.to_string(),
        app.get("/metrics", None).await.text().await.unwrap(),
    ] {
        assert!(
            !text.contains("<img") && !text.contains("mmmmmmmmmm"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn people_are_shown_by_name_with_their_id_beside_it() {
    let app = app_with(vec![]).await;
    let bob = app.person("bob", "user", "Bob Builder").await;
    let alice = app.person("alice", "admin", "Alice Admin").await;
    chats(&app, &bob, 1).await;
    let top = app
        .get_json_until("/observability/usage/users", &alice, |r| {
            r["users"][0]["requests"] == 1
        })
        .await;
    assert_eq!(
        (
            &top["users"][0]["user_id"],
            &top["users"][0]["name"],
            &top["users"][0]["email"]
        ),
        (
            &json!("bob"),
            &json!("Bob Builder"),
            &json!("bob@example.com")
        )
    );
    let traces = app.get_json("/observability/traces", &alice).await;
    assert_eq!(traces["data"][0]["user_name"], "Bob Builder");
    assert_eq!(traces["data"][0]["user_id"], "bob");
    let me = app.get_json("/observability/me", &alice).await;
    assert_eq!(me["name"], "Alice Admin");
}

#[tokio::test]
async fn the_quota_panel_shows_what_was_used_without_any_limit() {
    let app = app_with(vec![]).await;
    let alice = app.person("alice", "admin", "Alice Admin").await;
    chats(&app, &alice, 2).await;
    let report = app
        .get_json_until("/observability/quota", &alice, |r| {
            r["scopes"][0]["used"]["requests_this_minute"] == 2
        })
        .await;
    let account = &report["scopes"][0];
    assert_eq!(account["limits"]["requests_per_minute"], Value::Null);
    assert_eq!(account["used"]["tokens_today"], 32);
    assert_eq!(account["used"]["spent_today_usd"], 4.6e-5);
}
