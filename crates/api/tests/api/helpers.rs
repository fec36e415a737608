//! `spawn_app()`: the real application on a random port against wiremock dependencies.

use bff_api::Application;
use bff_api::settings::Settings;
use bff_providers::LiteLlm;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const WEBUI_SECRET: &str = "api-test-webui-secret-32-bytes!!";
pub const SERVICE_KEY: &str = "sk-bff-service-key-for-api-tests";
pub const LITELLM_KEY: &str = "sk-litellm-master-for-tests";
/// A W3C trace id callers continue in tests.
pub const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
/// The caller's span in that trace.
pub const PARENT_SPAN: &str = "b7ad6b7169203331";

/// A running bff and its fakes.
pub struct TestApp {
    pub address: String,
    /// Stops the server gracefully.
    pub server: actix_web::dev::ServerHandle,
    /// Ends when the server has stopped and flushed.
    pub stopped: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub client: reqwest::Client,
    pub litellm: MockServer,
    pub openwebui: MockServer,
    pub langfuse: MockServer,
    pub helicone: MockServer,
    pub spool: PathBuf,
    /// What Open WebUI answers each credential asking for its own groups.
    pub groups: Memberships,
}

/// Open WebUI's group memberships, by credential: `(id, name)` pairs, changeable mid-test.
#[derive(Clone, Default)]
pub struct Memberships(Arc<std::sync::Mutex<HashMap<String, Vec<IdAndName>>>>);

/// A group's id and name.
type IdAndName = (String, String);

impl Memberships {
    pub fn set(&self, credential: &str, groups: &[&str]) {
        let groups = groups
            .iter()
            .map(|name| (format!("id-{name}"), (*name).to_owned()))
            .collect();
        self.0.lock().unwrap().insert(credential.to_owned(), groups);
    }
}

impl wiremock::Respond for Memberships {
    /// `GET /api/v1/users/groups?include_inherited=true`, as Open WebUI 0.12.4 answers it.
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let credential = request
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        let groups = self.0.lock().unwrap().get(credential).cloned();
        let body: Vec<Value> = groups
            .unwrap_or_default()
            .iter()
            .map(|(id, name)| {
                json!({"id": id, "name": name, "description": "", "user_id": "admin",
                "parent_group_id": null, "data": null, "meta": null, "permissions": null,
                "created_at": 1_795_551_560_u64, "updated_at": 1_795_551_560_u64,
                "membership_type": "direct"})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(body)
    }
}

/// Options for [`spawn_with`].
#[derive(Default)]
pub struct Options {
    /// Extra or overriding variables.
    pub vars: Vec<(&'static str, String)>,
    /// Do not configure Langfuse and Helicone.
    pub no_telemetry: bool,
    /// Use this LiteLLM instead of the HTTP client (a mock).
    pub litellm: Option<Arc<dyn LiteLlm>>,
}

/// Writes an RBAC policy for one test and returns its path. Every call gets its own file: tests
/// run in parallel in one process, and a shared name let one test's policy replace another's
/// before its app had read it.
pub fn policy_file(toml: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let file = std::env::temp_dir().join(format!(
        "bff-api-test-policy-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&file, toml).unwrap();
    file.display().to_string()
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(options: Options) -> TestApp {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let litellm = MockServer::start().await;
    let openwebui = MockServer::start().await;
    let langfuse = MockServer::start().await;
    let helicone = MockServer::start().await;
    let spool = std::env::temp_dir().join(format!(
        "bff-api-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&spool);
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/rbac.toml");
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("BFF_BIND", "127.0.0.1:0".to_owned()),
        ("WEBUI_SECRET_KEY", WEBUI_SECRET.to_owned()),
        ("OPENWEBUI_URL", openwebui.uri()),
        ("AUTH_SERVICE_KEYS", format!("openwebui={SERVICE_KEY}")),
        ("RBAC_POLICY_FILE", policy.to_owned()),
        ("LITELLM_URL", litellm.uri()),
        ("LITELLM_API_KEY", LITELLM_KEY.to_owned()),
        ("BFF_DATA_DIR", spool.display().to_string()),
        ("TELEMETRY_FLUSH_INTERVAL_MS", "20".to_owned()),
        ("USAGE_FLUSH_INTERVAL_MS", "20".to_owned()),
        ("MAX_BODY_BYTES", "65536".to_owned()),
    ]);
    if !options.no_telemetry {
        vars.insert("LANGFUSE_HOST", langfuse.uri());
        vars.insert("LANGFUSE_PUBLIC_KEY", "pk-lf-test".into());
        vars.insert("LANGFUSE_SECRET_KEY", "sk-lf-test".into());
        vars.insert("HELICONE_API_KEY", "sk-helicone-test".into());
        vars.insert("HELICONE_BASE_URL", helicone.uri());
        vars.insert("HELICONE_API_URL", helicone.uri());
    }
    for (name, value) in options.vars {
        vars.insert(name, value);
    }
    let settings = Settings::from_lookup(|name| vars.get(name).cloned()).unwrap();
    let application = match options.litellm {
        Some(litellm) => Application::build_with(settings, litellm).await,
        None => Application::build(settings).await,
    }
    .unwrap();
    let groups = Memberships::default();
    Mock::given(method("GET"))
        .and(path("/api/v1/users/groups"))
        .and(wiremock::matchers::query_param("include_inherited", "true"))
        .respond_with(groups.clone())
        .mount(&openwebui)
        .await;
    let address = format!("http://127.0.0.1:{}", application.port());
    let server = application.handle();
    let stopped = Some(tokio::spawn(application.run_until_stopped()));
    TestApp {
        address,
        server,
        stopped,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        litellm,
        openwebui,
        langfuse,
        helicone,
        spool,
        groups,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.spool);
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An Open WebUI session token for `user` (no role: Open WebUI's fake decides).
pub fn session_token(user: &str) -> String {
    let now = now();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"id": user, "typ": "session", "auth_method": "password", "auth_time": now,
                "session_stamp": "9b2d4e61-7a0f-4c3b-8e15-d6a4f2c9b870", "mfa_verified": false,
                "exp": now + 3600, "jti": format!("jti-{user}"), "iat": now}),
        &EncodingKey::from_secret(WEBUI_SECRET.as_bytes()),
    )
    .unwrap()
}

impl TestApp {
    /// Stops the server as SIGTERM does and waits until it has flushed what it holds.
    pub async fn stop(&mut self) {
        self.server.stop(true).await;
        if let Some(stopped) = self.stopped.take() {
            stopped.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Makes Open WebUI answer `token` with `role` for `user`; returns the token.
    pub async fn user(&self, user: &str, role: &str) -> String {
        self.person(user, role, user).await
    }

    /// Like [`Self::user`], in Open WebUI `groups` (by name; ids are `id-<name>`).
    pub async fn member(&self, user: &str, role: &str, groups: &[&str]) -> String {
        let token = self.user(user, role).await;
        self.groups.set(&token, groups);
        token
    }

    /// Like [`Self::user`], with the display name Open WebUI gives.
    pub async fn person(&self, user: &str, role: &str, name: &str) -> String {
        let token = session_token(user);
        Mock::given(method("GET"))
            .and(path("/api/v1/auths/"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": user, "name": name, "email": format!("{user}@example.com"), "role": role,
                "profile_image_url": "/user.png", "token": token, "token_type": "Bearer",
                "expires_at": null, "permissions": {}})))
            .mount(&self.openwebui)
            .await;
        token
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// `GET path` as `token`'s caller, its body as JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.get(path, Some(token)).await.json().await.unwrap()
    }

    /// `GET path` as `token`'s caller until its JSON body satisfies `check` (the reports are
    /// written by a background writer, at most one flush interval behind), for at most 5 s.
    pub async fn get_json_until(
        &self,
        path: &str,
        token: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..250 {
            let body = self.get_json(path, token).await;
            if check(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{path} never showed what was expected: {}",
            self.get_json(path, token).await
        );
    }

    /// LiteLLM's `/health/readiness` answering healthy.
    pub async fn litellm_ready(&self) {
        Mock::given(method("GET"))
            .and(path("/health/readiness"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"status": "healthy", "db": "Not connected"})),
            )
            .mount(&self.litellm)
            .await;
    }

    /// LiteLLM's chat endpoint answering a recorded non-streaming completion.
    pub async fn litellm_chat(&self) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(CHAT_BODY, "application/json")
                    .insert_header("x-litellm-call-id", "from-litellm")
                    .insert_header("x-litellm-response-cost", "2.3e-05"),
            )
            .mount(&self.litellm)
            .await;
    }

    /// LiteLLM's chat endpoint failing with `status` and LiteLLM's error body (`type`, `code`).
    pub async fn litellm_error(&self, status: u16, error_type: &str, message: &str) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": {
                "message": message, "type": error_type, "param": null, "code": status.to_string()}})))
            .mount(&self.litellm)
            .await;
    }

    /// LiteLLM's chat endpoint answering a recorded stream (with the usage chunk).
    pub async fn litellm_stream(&self) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(STREAM_BODY, "text/event-stream"))
            .mount(&self.litellm)
            .await;
    }

    /// A chat by a service-key caller continuing trace [`TRACE`] (span [`PARENT_SPAN`]).
    pub async fn chat_as_service_in_trace(&self) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(SERVICE_KEY)
            .header("traceparent", format!("00-{TRACE}-{PARENT_SPAN}-01"))
            .json(&chat_body("fake-gpt", false))
            .send()
            .await
            .unwrap()
    }

    /// The first OTLP export Langfuse received, decompressed (protobuf bytes).
    pub async fn langfuse_export(&self) -> Vec<u8> {
        let export = &received(&self.langfuse, "/api/public/otel/v1/traces", 1).await[0];
        let mut protobuf = Vec::new();
        flate2::read::GzDecoder::new(export.body.as_slice())
            .read_to_end(&mut protobuf)
            .unwrap();
        protobuf
    }

    /// The attributes of every span of the first OTLP export, by span name, as text.
    pub async fn langfuse_spans(&self) -> HashMap<String, HashMap<String, String>> {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message as _;
        let request =
            ExportTraceServiceRequest::decode(self.langfuse_export().await.as_slice()).unwrap();
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| &scope.spans);
        spans
            .map(|span| (span.name.clone(), text_attributes(span)))
            .collect()
    }

    /// Telemetry endpoints accepting everything.
    pub async fn telemetry_up(&self) {
        Mock::given(method("POST"))
            .and(path("/api/public/otel/v1/traces"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .mount(&self.langfuse)
            .await;
        Mock::given(method("POST"))
            .and(path("/custom/v1/log"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&self.helicone)
            .await;
    }
}

/// Waits until `server` has received `count` requests to `path`, for at most 5 s.
pub async fn received(server: &MockServer, path: &str, count: usize) -> Vec<wiremock::Request> {
    for _ in 0..250 {
        let requests: Vec<_> = server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|request| request.url.path() == path)
            .collect();
        if requests.len() >= count {
            return requests;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} did not receive {count} requests");
}

pub const CHAT_BODY: &str = r#"{"id":"chatcmpl-835be166317e4ae5b1db01c5","created":1795550564,"model":"fake-gpt","object":"chat.completion","system_fingerprint":"fp_fake","choices":[{"finish_reason":"stop","index":0,"message":{"content":"Hello from fake upstream (fake-gpt)","role":"assistant"},"provider_specific_fields":{},"logprobs":null}],"usage":{"completion_tokens":7,"prompt_tokens":9,"total_tokens":16}}"#;

pub const STREAM_BODY: &str = concat!(
    "data: {\"id\":\"c1\",\"model\":\"fake-gpt\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\",\"role\":\"assistant\"}}]}\n\n",
    "data: {\"id\":\"c1\",\"model\":\"fake-gpt\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello \"}}]}\n\n",
    "data: {\"id\":\"c1\",\"model\":\"fake-gpt\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"world\"}}]}\n\n",
    "data: {\"id\":\"c1\",\"model\":\"fake-gpt\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}]}\n\n",
    "data: {\"id\":\"c1\",\"model\":\"fake-gpt\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":3,\"total_tokens\":5,\"cost\":0.00001}}\n\n",
    "data: [DONE]\n\n",
);

/// A span's attributes as text (numbers and flags written out, anything else as Rust shows it).
pub fn text_attributes(
    span: &opentelemetry_proto::tonic::trace::v1::Span,
) -> HashMap<String, String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    span.attributes
        .iter()
        .filter_map(|kv| {
            let text = match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(text) => text.clone(),
                Any::IntValue(number) => number.to_string(),
                Any::BoolValue(flag) => flag.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), text))
        })
        .collect()
}

/// `count` chats by `token`'s caller, each answered 200.
pub async fn chats(app: &TestApp, token: &str, count: usize) {
    for _ in 0..count {
        let response = app
            .post_json("/v1/chat/completions", token, &chat_body("fake-gpt", false))
            .await;
        assert_eq!(response.status(), 200);
    }
}

/// A response's `Retry-After`, in seconds.
pub fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}
