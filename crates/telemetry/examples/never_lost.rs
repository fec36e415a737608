//! Records survive a telemetry backend that is down: a pipeline whose Langfuse does not answer
//! spools its records at shutdown; the next pipeline on the same spool, with Langfuse back,
//! delivers them. Langfuse is a local stand-in here, so the example runs offline.
//!
//! `cargo run -p bff-telemetry --features langfuse --example never_lost`
#![allow(clippy::print_stdout)] // an example's output

use bff_telemetry::{LangfuseConfig, LangfuseSink, LlmRecord, Pipeline, PipelineConfig, Secret};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spool = std::env::temp_dir().join(format!("bff-telemetry-example-{}", std::process::id()));
    let config = || PipelineConfig {
        spool_dir: Some(spool.clone()),
        max_attempts: 2,
        ..PipelineConfig::default()
    };
    let langfuse = |host: &str| -> Result<Arc<LangfuseSink>, Box<dyn std::error::Error>> {
        let config = LangfuseConfig::new(
            &host.parse()?,
            "pk-lf-example",
            &Secret::new("sk-lf-example"),
        )?;
        Ok(Arc::new(LangfuseSink::new(config)?))
    };

    // Nothing listens on port 9: every export fails, and shutdown spools what is left.
    let pipeline = Pipeline::start(config(), vec![langfuse("http://127.0.0.1:9")?])?;
    for n in 0..3 {
        let mut record = LlmRecord::new(
            "0af7651916cd43dd8448eb211c80319c",
            format!("request-{n}"),
            "/v1/chat/completions",
            "gpt-4o-mini",
        );
        record.user_id = Some("user-7".into());
        pipeline.record(record);
    }
    let stats = pipeline.shutdown(Duration::from_secs(2)).await;
    println!("Langfuse down: {stats:?}");

    // Langfuse is back: the spool is replayed when the pipeline starts.
    let server = MockServer::start().await;
    Mock::given(path("/api/public/otel/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&server)
        .await;
    let pipeline = Pipeline::start(config(), vec![langfuse(&server.uri())?])?;
    for _ in 0..100 {
        if pipeline.stats().iter().all(|sink| sink.replayed == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = pipeline.shutdown(Duration::from_secs(5)).await;
    let exports = server.received_requests().await.unwrap_or_default().len();
    println!("Langfuse back: {stats:?}, {exports} export(s) received");
    std::fs::remove_dir_all(&spool)?;
    Ok(())
}
