//! The batch job of `bff_examples::batch_job`: prompts (one per line of the file given as the
//! first argument, or three built-in ones) through LiteLLM, each call recorded to Langfuse and
//! Helicone with a disk spool.
//!
//! With `LITELLM_URL` (`LITELLM_API_KEY`, `LANGFUSE_HOST`/`_PUBLIC_KEY`/`_SECRET_KEY`,
//! `HELICONE_API_KEY`) it uses those. Without, it runs offline against local stand-ins, with a
//! Helicone that fails: its records wait in the spool, and a second run, Helicone back, delivers
//! them.
//!
//! `cargo run -p bff-examples --example batch_job [prompts.txt]`
#![allow(clippy::print_stdout)] // an example's output

use bff_examples::{batch_job, stand_ins};
use bff_providers::{ApiKey, LiteLlmClient, LiteLlmConfig};
use bff_telemetry::{
    HeliconeConfig, HeliconeSink, LangfuseConfig, LangfuseSink, Pipeline, PipelineConfig, Secret,
    TelemetrySink,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prompts: Vec<String> = match std::env::args().nth(1) {
        Some(file) => std::fs::read_to_string(file)?
            .lines()
            .map(str::to_owned)
            .collect(),
        None => ["What is a spool?", "Name a prime.", "Say hello."]
            .map(String::from)
            .to_vec(),
    };
    let spool = std::env::temp_dir().join(format!("bff-batch-example-{}", std::process::id()));
    if let Ok(litellm) = std::env::var("LITELLM_URL") {
        let variable = |name: &str| std::env::var(name).unwrap_or_default();
        let sinks = sinks(&variable("LANGFUSE_HOST"), &variable("HELICONE_API_URL"))?;
        run(
            &litellm,
            &variable("LITELLM_API_KEY"),
            sinks,
            &spool,
            &prompts,
        )
        .await?;
        return Ok(());
    }
    let litellm = stand_ins::litellm().await;
    let langfuse = stand_ins::langfuse().await;
    let helicone_down = stand_ins::helicone(503).await;
    println!("run 1, Helicone failing:");
    let sinks_now = sinks(&langfuse.uri(), &helicone_down.uri())?;
    run(&litellm.uri(), "sk-example", sinks_now, &spool, &prompts).await?;
    let helicone = stand_ins::helicone(200).await;
    println!("run 2, Helicone back (the spool is replayed first):");
    let sinks_now = sinks(&langfuse.uri(), &helicone.uri())?;
    run(&litellm.uri(), "sk-example", sinks_now, &spool, &prompts).await?;
    let logged = stand_ins::received(&helicone, "/custom/v1/log").await;
    println!(
        "Helicone logged {logged} calls: both runs' ({} each)",
        prompts.len()
    );
    std::fs::remove_dir_all(&spool)?;
    Ok(())
}

type Sinks = Vec<Arc<dyn TelemetrySink>>;

fn sinks(langfuse: &str, helicone: &str) -> Result<Sinks, Box<dyn std::error::Error>> {
    let public = std::env::var("LANGFUSE_PUBLIC_KEY").unwrap_or("pk-lf-example".into());
    let secret =
        Secret::new(std::env::var("LANGFUSE_SECRET_KEY").unwrap_or("sk-lf-example".into()));
    let langfuse = LangfuseConfig::new(&langfuse.parse()?, &public, &secret)?;
    let key =
        Secret::new(std::env::var("HELICONE_API_KEY").unwrap_or("sk-helicone-example".into()));
    let helicone = HeliconeConfig::new(&helicone.parse()?, key)?;
    Ok(vec![
        Arc::new(LangfuseSink::new(langfuse)?),
        Arc::new(HeliconeSink::new(helicone)?),
    ])
}

async fn run(
    litellm: &str,
    key: &str,
    sinks: Sinks,
    spool: &Path,
    prompts: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let client = LiteLlmClient::new(LiteLlmConfig::new(litellm.parse()?, ApiKey::new(key)))?;
    let config = PipelineConfig {
        spool_dir: Some(spool.to_owned()),
        max_attempts: 2,
        ..PipelineConfig::default()
    };
    let telemetry = Pipeline::start(config, sinks)?;
    let summary = batch_job::run(&client, &telemetry, ("nightly-eval", "mock-gpt"), prompts).await;
    let stats = telemetry.shutdown(Duration::from_secs(3)).await;
    println!("  {summary:?}");
    for sink in stats {
        println!(
            "  {}: exported {}, replayed {}, spooled {}, dropped {}",
            sink.sink, sink.exported, sink.replayed, sink.spooled, sink.dropped
        );
    }
    Ok(())
}
