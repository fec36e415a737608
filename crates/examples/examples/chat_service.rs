//! The axum chat API of `bff_examples::chat_service`.
//!
//! With `LITELLM_URL` (and `LITELLM_API_KEY`, `WEBUI_SECRET_KEY`, `OPENWEBUI_URL`,
//! `RBAC_POLICY_FILE`, `LANGFUSE_HOST`/`_PUBLIC_KEY`/`_SECRET_KEY`) it serves on `BIND`
//! (default 127.0.0.1:8090) until Ctrl-C. Without, it runs offline against local stand-ins,
//! sends itself one chat as an Open WebUI user, prints the answer and stops.
//!
//! `cargo run -p bff-examples --example chat_service`
#![allow(clippy::print_stdout)] // an example's output

use bff_auth::{AuthSettings, Gate, Policy};
use bff_examples::chat_service::{CHAT, ChatService, router};
use bff_examples::stand_ins;
use bff_providers::{ApiKey, LiteLlmClient, LiteLlmConfig};
use bff_telemetry::{LangfuseConfig, LangfuseSink, Pipeline, PipelineConfig, Secret};
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = "service_role = \"service\"\n[roles.service]\npermissions = []\n\
                      [roles.user]\npermissions = [\"chat\"]\n[roles.admin]\npermissions = [\"*\"]\n";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("LITELLM_URL").is_ok() {
        return serve_from_env().await;
    }
    // Offline: a user of a stand-in Open WebUI, a stand-in LiteLLM and Langfuse.
    const SECRET: &str = "example-webui-secret-32-bytes-long!!";
    let token = session_token(SECRET, "ada");
    let (openwebui, litellm, langfuse) = (
        stand_ins::open_webui(&token, "ada", "user").await,
        stand_ins::litellm().await,
        stand_ins::langfuse().await,
    );
    let settings = AuthSettings::from_lookup(|name| match name {
        "WEBUI_SECRET_KEY" => Some(SECRET.to_owned()),
        "OPENWEBUI_URL" => Some(openwebui.uri()),
        _ => None,
    })?;
    let gate = Gate::from_settings(&settings, Policy::parse(POLICY, "example policy", &[CHAT])?)?;
    let service = service(gate, &litellm.uri(), "sk-example", &langfuse.uri())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = router(Arc::clone(&service));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let answer = reqwest_post(&format!("http://{address}/v1/chat/completions"), &token).await?;
    println!("ada asked, the service answered: {answer}");
    let stats = service.telemetry.shutdown(Duration::from_secs(5)).await;
    let exports = stand_ins::received(&langfuse, "/api/public/otel/v1/traces").await;
    println!("telemetry: {stats:?}; Langfuse received {exports} export(s)");
    Ok(())
}

fn service(
    gate: Gate,
    litellm: &str,
    key: &str,
    langfuse: &str,
) -> Result<Arc<ChatService>, Box<dyn std::error::Error>> {
    let client = LiteLlmClient::new(LiteLlmConfig::new(litellm.parse()?, ApiKey::new(key)))?;
    let public = std::env::var("LANGFUSE_PUBLIC_KEY").unwrap_or("pk-lf-example".into());
    let secret =
        Secret::new(std::env::var("LANGFUSE_SECRET_KEY").unwrap_or("sk-lf-example".into()));
    let sink = LangfuseSink::new(LangfuseConfig::new(&langfuse.parse()?, &public, &secret)?)?;
    let telemetry = Pipeline::start(PipelineConfig::default(), vec![Arc::new(sink)])?;
    Ok(Arc::new(ChatService {
        gate,
        litellm: Arc::new(client),
        telemetry,
    }))
}

async fn serve_from_env() -> Result<(), Box<dyn std::error::Error>> {
    let settings = AuthSettings::from_env()?;
    let gate = Gate::from_settings(&settings, Policy::load(&settings.policy_file, &[CHAT])?)?;
    let variable = |name: &str| std::env::var(name).unwrap_or_default();
    let service = service(
        gate,
        &variable("LITELLM_URL"),
        &variable("LITELLM_API_KEY"),
        &variable("LANGFUSE_HOST"),
    )?;
    let bind = std::env::var("BIND").unwrap_or("127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("serving on http://{bind}");
    axum::serve(listener, router(Arc::clone(&service)))
        .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or_default() })
        .await?;
    service.telemetry.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// An Open WebUI session token for `user`, signed as Open WebUI signs them.
fn session_token(secret: &str, user: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let claims = serde_json::json!({"id": user, "typ": "session", "exp": now + 600, "iat": now});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap_or_default()
}

async fn reqwest_post(url: &str, token: &str) -> Result<String, Box<dyn std::error::Error>> {
    let body = serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "Hello"}]});
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    Ok(format!("{} {}", response.status(), response.text().await?))
}
