//! Policy by Open WebUI group: models and limits per group, shared team budgets, the group on
//! every record and report, and Open WebUI's background tasks counted apart.

use crate::helpers::*;
use crate::langfuse::{Langfuse, Version};
use serde_json::{Value, json};
use wiremock::matchers::{any, path};
use wiremock::{Mock, ResponseTemplate};

/// A role and two groups: `research` adds a model, `support` shares a token budget; users
/// get `requests_per_minute = 2` and `tasks_per_minute = 3`.
const POLICY: &str = r#"
service_role = "service"
[roles.service]
permissions = ["chat"]
[roles.admin]
permissions = ["*"]
[roles.user]
permissions = ["chat", "observability:own"]
models = ["fake-gpt"]
[roles.user.limits]
requests_per_minute = 2
tasks_per_minute = 3
[groups."research"]
models = ["fake-large"]
[groups."support".budget]
daily_tokens = 20
"#;

const FORWARD_SECRET: &str = "api-test-forward-user-jwt-secret!";

async fn group_app(vars: Vec<(&'static str, String)>) -> TestApp {
    let mut all = vec![
        ("RBAC_POLICY_FILE", policy_file(POLICY)),
        ("OPENWEBUI_FORWARD_JWT_SECRET", FORWARD_SECRET.to_owned()),
    ];
    all.extend(vars);
    let app = spawn_with(Options {
        vars: all,
        ..Options::default()
    })
    .await;
    app.litellm_chat().await;
    Mock::given(any())
        .respond_with(Langfuse::new(Version::V4))
        .mount(&app.langfuse)
        .await;
    Mock::given(path("/custom/v1/log"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&app.helicone)
        .await;
    app
}

async fn chat(app: &TestApp, token: &str, model: &str) -> reqwest::Response {
    app.post_json("/v1/chat/completions", token, &chat_body(model, false))
        .await
}

async fn chat_with(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&chat_body("fake-gpt", false));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The signed `X-OpenWebUI-User-Jwt` Open WebUI sends for `user` (no groups in it).
fn forwarded_jwt(user: &str) -> String {
    let now = now();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "email": format!("{user}@example.com"), "name": user,
                "role": "user", "iss": "open-webui", "iat": now, "exp": now + 300}),
        &jsonwebtoken::EncodingKey::from_secret(FORWARD_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_groups_model_is_for_its_members_only_and_a_session_callers_header_gains_nothing() {
    let app = group_app(vec![]).await;
    let member = app.member("rita", "user", &["research"]).await;
    let outsider = app.user("oscar", "user").await;
    assert_eq!(chat(&app, &member, "fake-large").await.status(), 200);

    let refused = chat(&app, &outsider, "fake-large").await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_allowed");

    // A session caller who claims the group in a header is still refused.
    let request = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&outsider)
        .header("x-openwebui-user-groups", "research")
        .header("x-openwebui-user-group-ids", "id-research")
        .json(&chat_body("fake-large", false));
    assert_eq!(request.send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn a_change_of_membership_takes_effect_once_the_cached_answer_expires() {
    // TTL 0: every request asks Open WebUI (the TTL itself is tested on a paused clock in
    // bff-auth's cache).
    let app = group_app(vec![("AUTH_CACHE_TTL_SECONDS", "0".into())]).await;
    let rita = app.member("rita", "user", &[]).await;
    assert_eq!(chat(&app, &rita, "fake-large").await.status(), 403);
    app.groups.set(&rita, &["research"]);
    assert_eq!(chat(&app, &rita, "fake-large").await.status(), 200);
    app.groups.set(&rita, &[]);
    assert_eq!(chat(&app, &rita, "fake-large").await.status(), 403);
}

#[tokio::test]
async fn forwarded_users_get_their_groups_from_the_connection_header_of_a_service_key() {
    let app = group_app(vec![]).await;
    let jwt = forwarded_jwt("fern");
    let forwarded = |groups: &'static str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(SERVICE_KEY)
            .header("x-openwebui-user-jwt", jwt.clone())
            .header("x-openwebui-user-groups", groups)
            .json(&chat_body("fake-large", false))
    };
    assert_eq!(forwarded("research").send().await.unwrap().status(), 200);
    assert_eq!(forwarded("support").send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn a_shared_budget_spent_by_one_member_refuses_the_next_member() {
    let app = group_app(vec![]).await;
    let ann = app.member("ann", "user", &["support"]).await;
    let ben = app.member("ben", "user", &["support"]).await;
    // Each answer uses 16 tokens; the group has 20 a day.
    assert_eq!(chat(&app, &ann, "fake-gpt").await.status(), 200);
    app.get_json_until("/observability/quota", &ben, |report| {
        report["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|scope| scope["scope"] == "group:support" && scope["used"]["tokens_today"] == 16)
    })
    .await;
    assert_eq!(chat(&app, &ben, "fake-gpt").await.status(), 200);
    app.get_json_until("/observability/quota", &ann, |report| {
        report["scopes"][1]["used"]["tokens_today"] == 32
    })
    .await;

    let refused = chat(&app, &ann, "fake-gpt").await;
    assert_eq!(refused.status(), 429);
    let wait = retry_after(&refused);
    assert!(
        (1..=86_400).contains(&wait),
        "until the day's reset: {wait}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("group `support`'s shared budget"),
        "{message}"
    );

    // Someone outside the group is not affected, and cannot read the group's budget by naming
    // it (or a member) in the query: a user's report is always their own.
    let carl = app.user("carl", "user").await;
    assert_eq!(chat(&app, &carl, "fake-gpt").await.status(), 200);
    let report = app
        .get_json("/observability/quota?user_id=ann&groups=support", &carl)
        .await;
    assert_eq!(report["user_id"], "carl", "{report}");
    let scopes = report["scopes"].as_array().unwrap();
    assert!(
        scopes.iter().all(|scope| scope["scope"] != "group:support"),
        "{report}"
    );
}

#[tokio::test]
async fn tasks_have_their_own_bucket_and_a_faked_task_header_only_moves_a_request_there() {
    let app = group_app(vec![]).await;
    let token = app.user("tess", "user").await;
    let task = [("x-openwebui-task", "title_generation")];
    let made_up = [("x-openwebui-task", "anything-at-all")];
    // Two chats a minute, three tasks: the tasks bucket fills on its own.
    for _ in 0..2 {
        assert_eq!(chat_with(&app, &token, &[]).await.status(), 200);
    }
    assert_eq!(chat_with(&app, &token, &[]).await.status(), 429);
    for headers in [&task[..], &task[..], &made_up[..]] {
        assert_eq!(chat_with(&app, &token, headers).await.status(), 200);
    }
    let refused = chat_with(&app, &token, &task).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("tasks per minute"), "{message}");

    // The usage report shows what the UI itself spent next to what the person typed (from
    // bff's ledger, Langfuse being configured here); a refusal is a request and an error.
    let usage = app
        .get_json_until("/observability/usage", &token, |usage| {
            usage["by_task"]
                .as_array()
                .is_some_and(|lines| lines.iter().map(|l| &l["requests"]).sum_u64() == 7)
        })
        .await;
    let requests_of = |task: Value| {
        usage["by_task"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["task"] == task)
            .map(|line| line["requests"].clone())
    };
    assert_eq!(requests_of(Value::Null), Some(json!(3)), "{usage}");
    assert_eq!(
        requests_of(json!("title_generation")),
        Some(json!(3)),
        "{usage}"
    );
    assert_eq!(requests_of(json!("other_task")), Some(json!(1)), "{usage}");
    assert_eq!(
        usage["by_task"][0]["task"],
        Value::Null,
        "people's requests first"
    );
}

trait SumU64 {
    fn sum_u64(self) -> u64;
}

impl<'a, I: Iterator<Item = &'a Value>> SumU64 for I {
    fn sum_u64(self) -> u64 {
        self.filter_map(Value::as_u64).sum()
    }
}

#[tokio::test]
async fn the_group_goes_to_langfuse_helicone_and_the_usage_reports() {
    let app = group_app(vec![]).await;
    let rita = app.member("rita", "user", &["research"]).await;
    let alice = app.user("alice", "admin").await;
    let oscar = app.user("oscar", "user").await;
    assert_eq!(
        chat_with(&app, &rita, &[("x-openwebui-task", "tags_generation")])
            .await
            .status(),
        200
    );

    let spans = app.langfuse_spans().await;
    for span in spans.values() {
        assert!(
            span["langfuse.trace.tags"].contains("group:research"),
            "{span:?}"
        );
        assert_eq!(span["langfuse.trace.metadata.groups"], r#"["research"]"#);
        assert_eq!(span["langfuse.trace.metadata.task"], r#""tags_generation""#);
    }
    let logged = &received(&app.helicone, "/custom/v1/log", 1).await[0];
    let logged: Value = serde_json::from_slice(&logged.body).unwrap();
    let meta = &logged["providerRequest"]["meta"];
    assert_eq!(meta["Helicone-Property-Group"], "research");
    assert_eq!(meta["Helicone-Property-Task"], "tags_generation");

    let mine = app
        .get_json_until("/observability/usage?group=research", &rita, |usage| {
            usage["totals"]["requests"] == 1
        })
        .await;
    assert_eq!(mine["group"], "research");
    let outsider = app
        .get("/observability/usage?group=research", Some(&oscar))
        .await;
    assert_eq!(outsider.status(), 403);
    let teams = app.get_json("/observability/usage/groups", &alice).await;
    assert_eq!(teams["groups"][0]["group"], "research", "{teams}");
    assert_eq!(teams["groups"][0]["requests"], 1, "{teams}");
}
