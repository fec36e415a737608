//! The two examples against the stand-ins: what a team copying them can rely on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic is a failed test

use bff_auth::{AuthSettings, Gate, Policy};
use bff_examples::chat_service::{CHAT, ChatService, router};
use bff_examples::{batch_job, stand_ins};
use bff_providers::{ApiKey, LiteLlmClient, LiteLlmConfig};
use bff_telemetry::{
    HeliconeConfig, HeliconeSink, LangfuseConfig, LangfuseSink, Pipeline, PipelineConfig, Secret,
    TelemetrySink,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "examples-test-webui-secret-32-bytes!";
const POLICY: &str = "service_role = \"service\"\n[roles.service]\npermissions = []\n\
                      [roles.user]\npermissions = [\"chat\"]\n[roles.pending]\npermissions = []\n";

fn session_token(user: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"id": user, "typ": "session", "exp": now + 600, "iat": now});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn litellm_client(url: &str) -> LiteLlmClient {
    LiteLlmClient::new(LiteLlmConfig::new(
        url.parse().unwrap(),
        ApiKey::new("sk-test"),
    ))
    .unwrap()
}

fn langfuse_sink(url: &str) -> Arc<dyn TelemetrySink> {
    let config =
        LangfuseConfig::new(&url.parse().unwrap(), "pk-lf-test", &Secret::new("sk-lf")).unwrap();
    Arc::new(LangfuseSink::new(config).unwrap())
}

fn helicone_sink(url: &str) -> Arc<dyn TelemetrySink> {
    let config = HeliconeConfig::new(&url.parse().unwrap(), Secret::new("sk-h")).unwrap();
    Arc::new(HeliconeSink::new(config).unwrap())
}

#[tokio::test]
async fn the_chat_service_answers_open_webui_users_who_may_chat_and_records_each_call() {
    let (ada, pat) = (session_token("ada"), session_token("pat"));
    let openwebui = stand_ins::open_webui(&ada, "ada", "user").await;
    let pending = stand_ins::open_webui(&pat, "pat", "pending").await;
    let (litellm, langfuse) = (stand_ins::litellm().await, stand_ins::langfuse().await);
    let serve = |openwebui: String| {
        let (litellm, langfuse) = (litellm.uri(), langfuse.uri());
        async move {
            let settings = AuthSettings::from_lookup(|name| match name {
                "WEBUI_SECRET_KEY" => Some(SECRET.to_owned()),
                "OPENWEBUI_URL" => Some(openwebui.clone()),
                _ => None,
            })
            .unwrap();
            let policy = Policy::parse(POLICY, "test policy", &[CHAT]).unwrap();
            let service = Arc::new(ChatService {
                gate: Gate::from_settings(&settings, policy).unwrap(),
                litellm: Arc::new(litellm_client(&litellm)),
                telemetry: Pipeline::start(
                    PipelineConfig::default(),
                    vec![langfuse_sink(&langfuse)],
                )
                .unwrap(),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let app = router(Arc::clone(&service));
            tokio::spawn(async move { axum::serve(listener, app).await });
            (format!("http://{address}"), service)
        }
    };
    let (url, service) = serve(openwebui.uri()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let chat = |token: Option<String>, url: String| {
        let mut request = client
            .post(format!("{url}/v1/chat/completions"))
            .json(&json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "Hi"}]}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let answered = chat(Some(ada.clone()), url.clone()).await.unwrap();
    assert_eq!(answered.status(), 200);
    let body: Value = answered.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from LiteLLM mock_response"
    );

    let anonymous = chat(None, url.clone()).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_credentials");
    let health = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let (pending_url, _) = serve(pending.uri()).await;
    let refused = chat(Some(pat), pending_url).await.unwrap();
    assert_eq!(refused.status(), 403);

    let stats = service.telemetry.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].exported, 1, "{stats:?}");
    assert_eq!(
        stand_ins::received(&langfuse, "/api/public/otel/v1/traces").await,
        1
    );
}

#[tokio::test]
async fn the_batch_job_loses_no_record_when_helicone_is_down_for_a_run() {
    let (litellm, langfuse) = (stand_ins::litellm().await, stand_ins::langfuse().await);
    let (helicone_down, helicone) = (
        stand_ins::helicone(503).await,
        stand_ins::helicone(200).await,
    );
    let spool = std::env::temp_dir().join(format!("bff-examples-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let prompts: Vec<String> = ["one", "two", "three"].map(String::from).to_vec();
    let client = litellm_client(&litellm.uri());
    let config = || PipelineConfig {
        spool_dir: Some(spool.clone()),
        max_attempts: 1,
        ..PipelineConfig::default()
    };

    let first = Pipeline::start(
        config(),
        vec![
            langfuse_sink(&langfuse.uri()),
            helicone_sink(&helicone_down.uri()),
        ],
    )
    .unwrap();
    let summary = batch_job::run(&client, &first, ("nightly", "mock-gpt"), &prompts).await;
    assert_eq!((summary.answered, summary.failed), (3, 0));
    let stats = first.shutdown(Duration::from_secs(5)).await;
    assert_eq!((stats[0].sink.as_str(), stats[0].exported), ("langfuse", 3));
    assert_eq!(
        (stats[1].sink.as_str(), stats[1].spooled, stats[1].dropped),
        ("helicone", 3, 0)
    );

    let second = Pipeline::start(
        config(),
        vec![
            langfuse_sink(&langfuse.uri()),
            helicone_sink(&helicone.uri()),
        ],
    )
    .unwrap();
    batch_job::run(&client, &second, ("nightly", "mock-gpt"), &prompts).await;
    let stats = second.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[1].exported, 6, "three replayed, three new: {stats:?}");
    assert_eq!(stand_ins::received(&helicone, "/custom/v1/log").await, 6);
    std::fs::remove_dir_all(&spool).unwrap();
}
