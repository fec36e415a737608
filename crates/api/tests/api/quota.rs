//! Quotas over HTTP: refusals never reach LiteLLM, headers, real usage accounted (stream,
//! disconnect), the report — in process, and in a real Redis shared by two bff instances.

use crate::helpers::*;
use bff_quota::test_support::RedisServer;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// A policy file with `user` limited as given (TOML lines of `[roles.user.limits]`).
fn policy_with(name: &str, limits: &str) -> String {
    let file = std::env::temp_dir().join(format!(
        "bff-quota-policy-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &file,
        format!(
            "service_role = \"service\"\n[roles.service]\npermissions = [\"chat\"]\n\
             [roles.admin]\npermissions = [\"*\"]\n\
             [roles.user]\npermissions = [\"chat\", \"observability:own\"]\n\
             [roles.user.limits]\n{limits}\n"
        ),
    )
    .unwrap();
    file.display().to_string()
}

async fn limited_app(name: &str, limits: &str, extra: Vec<(&'static str, String)>) -> TestApp {
    let mut vars = vec![("RBAC_POLICY_FILE", policy_with(name, limits))];
    vars.extend(extra);
    spawn_with(Options {
        vars,
        no_telemetry: true,
        ..Options::default()
    })
    .await
}

async fn chat(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/v1/chat/completions", token, &chat_body("fake-gpt", false))
        .await
}

/// Polls the report until `check` holds (settlement happens off the request path).
async fn report_until(app: &TestApp, token: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let report: Value = app.get_json("/observability/quota", token).await;
        if check(&report) {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the quota report never matched");
}

#[tokio::test]
async fn a_request_past_the_limit_is_a_429_that_never_reaches_litellm() {
    let app = limited_app("rpm", "requests_per_minute = 2", vec![]).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(CHAT_BODY, "application/json"))
        .expect(4) // bob's two, alice's and the admin's: never bob's third
        .mount(&app.litellm)
        .await;
    let token = app.user("bob", "user").await;
    let first = chat(&app, &token).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
    assert!(first.headers().contains_key("x-ratelimit-reset-requests"));
    assert!(!first.headers().contains_key("x-ratelimit-limit-tokens"));
    assert_eq!(chat(&app, &token).await.status(), 200);
    let refused = chat(&app, &token).await;
    assert_eq!(refused.status(), 429);
    let wait = retry_after(&refused);
    assert!((1..=60).contains(&wait), "{wait}");
    // The same headers as an admitted request, at zero.
    assert_eq!(refused.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(refused.headers().contains_key("x-ratelimit-reset-requests"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 requests per minute"), "{message}");
    // One number of seconds, in the body and in Retry-After.
    assert!(
        message.ends_with(&format!("try again in {wait}s")),
        "{message} / {wait}"
    );
    // Another user has their own window.
    let alice = app.user("alice", "user").await;
    assert_eq!(chat(&app, &alice).await.status(), 200);
    // Admins have no limits in this policy: no headers, no counting.
    let admin = app.user("root", "admin").await;
    let response = chat(&app, &admin).await;
    assert!(
        !response
            .headers()
            .contains_key("x-ratelimit-limit-requests")
    );
}

#[tokio::test]
async fn spend_is_accounted_from_litellms_cost_and_a_spent_budget_is_insufficient_quota() {
    // CHAT_BODY costs 2.3e-05 (x-litellm-response-cost) and uses 16 tokens.
    let app = limited_app(
        "budget",
        "daily_budget_usd = 0.00004\ntokens_per_minute = 1000",
        vec![],
    )
    .await;
    app.litellm_chat().await;
    let token = app.user("bob", "user").await;
    let first = chat(&app, &token).await;
    assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "1000");
    report_until(&app, &token, |r| {
        r["scopes"][0]["used"]["tokens_this_minute"] == 16
    })
    .await;
    assert_eq!(chat(&app, &token).await.status(), 200);
    let report = report_until(&app, &token, |r| {
        r["scopes"][0]["used"]["spent_today_usd"].as_f64() > Some(0.00004)
    })
    .await;
    assert_eq!(report["scopes"][0]["remaining"]["today_usd"], 0.0);
    assert_eq!(report["backend"], "local");
    let refused = chat(&app, &token).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(body["error"]["type"], "insufficient_quota");
}

#[tokio::test]
async fn a_stream_is_accounted_from_its_usage_chunk_and_releases_its_slot() {
    let app = limited_app(
        "stream",
        "concurrent_requests = 1\ndaily_budget_usd = 5.0",
        vec![],
    )
    .await;
    app.litellm_stream().await;
    let token = app.user("bob", "user").await;
    let response = app
        .post_json("/v1/chat/completions", &token, &chat_body("fake-gpt", true))
        .await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    // STREAM_BODY's usage chunk: 5 tokens, cost 0.00001.
    let report = report_until(&app, &token, |r| {
        r["scopes"][0]["used"]["spent_today_usd"].as_f64() == Some(0.00001)
            && r["scopes"][0]["used"]["concurrent_requests"] == 0
    })
    .await;
    assert_eq!(report["scopes"][0]["limits"]["concurrent_requests"], 1);
}

#[tokio::test]
async fn a_client_that_leaves_a_stream_frees_its_slot() {
    // A stream that never ends on its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 65536];
                let _ = socket.read(&mut buffer).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let event = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                while socket.write_all(chunk.as_bytes()).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    let app = spawn_with(Options {
        vars: vec![
            (
                "RBAC_POLICY_FILE",
                policy_with("leave2", "concurrent_requests = 1"),
            ),
            ("LITELLM_URL", upstream),
        ],
        no_telemetry: true,
        ..Options::default()
    })
    .await;
    let token = app.user("bob", "user").await;
    let mut held = app
        .post_json("/v1/chat/completions", &token, &chat_body("fake-gpt", true))
        .await;
    assert_eq!(held.status(), 200);
    held.chunk().await.unwrap();
    let second = app
        .post_json("/v1/chat/completions", &token, &chat_body("fake-gpt", true))
        .await;
    assert_eq!(second.status(), 429, "one stream at a time");
    drop(held); // the client leaves
    report_until(&app, &token, |r| {
        r["scopes"][0]["used"]["concurrent_requests"] == 0
    })
    .await;
    let third = app
        .post_json("/v1/chat/completions", &token, &chat_body("fake-gpt", true))
        .await;
    assert_eq!(third.status(), 200);
}

#[tokio::test]
async fn a_user_sees_their_own_quota_and_an_admin_anyones() {
    let app = limited_app(
        "report",
        "requests_per_minute = 60\nmonthly_budget_usd = 50.0",
        vec![],
    )
    .await;
    app.litellm_chat().await;
    let bob = app.user("bob", "user").await;
    chat(&app, &bob).await;
    let own: Value = app
        .get_json("/observability/quota?user_id=alice", &bob)
        .await;
    assert_eq!(
        own["user_id"], "bob",
        "a user never sees another user's quota"
    );
    assert_eq!(own["scopes"][0]["limits"]["monthly_budget_usd"], 50.0);
    assert_eq!(own["scopes"][0]["used"]["requests_this_minute"], 1);
    assert_eq!(own["scopes"][0]["remaining"]["requests_this_minute"], 59);
    assert!(
        own["scopes"][0]["resets"]["month"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );
    let admin = app.user("root", "admin").await;
    let bobs: Value = app
        .get_json("/observability/quota?user_id=bob&role=user", &admin)
        .await;
    assert_eq!(bobs["user_id"], "bob");
    assert_eq!(bobs["scopes"][0]["used"]["requests_this_minute"], 1);
}

async fn replica(name: &str, limits: &str, redis: &RedisServer, fail_mode: &str) -> TestApp {
    let app = limited_app(
        name,
        limits,
        vec![
            ("QUOTA_REDIS_URL", redis.url.clone()),
            ("QUOTA_FAIL_MODE", fail_mode.to_owned()),
        ],
    )
    .await;
    app.litellm_chat().await;
    app
}

#[tokio::test]
async fn two_replicas_sharing_redis_enforce_one_limit_and_see_one_spend() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let limits = "requests_per_minute = 5\nmonthly_budget_usd = 100.0";
    let one = replica("redis-a", limits, &redis, "closed").await;
    let two = replica("redis-b", limits, &redis, "closed").await;
    let token_one = one.user("bob", "user").await;
    let token_two = two.user("bob", "user").await;
    let mut admitted = 0;
    for n in 0..10 {
        let (app, token) = if n % 2 == 0 {
            (&one, &token_one)
        } else {
            (&two, &token_two)
        };
        match chat(app, token).await.status().as_u16() {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 5, "exactly the limit, across both replicas");
    // Spend recorded through one replica is seen by the other.
    let seen = report_until(&two, &token_two, |r| {
        r["scopes"][0]["used"]["spent_this_month_usd"].as_f64() > Some(0.0001)
    })
    .await;
    assert_eq!(seen["backend"], "redis");
    let spent = seen["scopes"][0]["used"]["spent_this_month_usd"]
        .as_f64()
        .unwrap();
    assert!((spent - 5.0 * 2.3e-05).abs() < 1e-9, "{spent}");
    // New instances (a restart) still see the month's spend.
    let three = replica("redis-c", limits, &redis, "closed").await;
    let token_three = three.user("bob", "user").await;
    let after = report_until(&three, &token_three, |_| true).await;
    assert_eq!(
        after["scopes"][0]["used"]["spent_this_month_usd"].as_f64(),
        Some(spent)
    );
    let health: Value = three
        .get("/observability/health", Some(&token_three))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        health["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "redis" && d["status"] == "up"),
        "{health}"
    );
}

#[tokio::test]
async fn with_redis_gone_the_fail_mode_holds_and_nothing_hangs() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let limits = "requests_per_minute = 100";
    let closed = replica("gone-closed", limits, &redis, "closed").await;
    let open = replica("gone-open", limits, &redis, "open").await;
    let token_closed = closed.user("bob", "user").await;
    let token_open = open.user("bob", "user").await;
    assert_eq!(chat(&closed, &token_closed).await.status(), 200);
    redis.kill();
    let started = std::time::Instant::now();
    let refused = chat(&closed, &token_closed).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_unavailable");
    assert_eq!(chat(&open, &token_open).await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by QUOTA_REDIS_TIMEOUT_MS, not a hang: {:?}",
        started.elapsed()
    );
    let ready = closed.get("/ready", None).await;
    let ready: Value = ready.json().await.unwrap();
    assert!(
        ready["down"].as_array().unwrap().contains(&json!("redis")),
        "{ready}"
    );
}
