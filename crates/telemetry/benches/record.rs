//! Cost of `Pipeline::record` on the request path: the normal path (queue has room) and the
//! overload path (queue and spool backlog full). Building the record is excluded.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use bff_telemetry::{ExportError, LlmRecord, Pipeline, PipelineConfig, TelemetrySink, TokenUsage};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Duration;

/// Accepts everything instantly.
struct NullSink;

#[async_trait]
impl TelemetrySink for NullSink {
    fn name(&self) -> &str {
        "null"
    }
    async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>> {
        vec![Ok(()); batch.len()]
    }
}

/// Never finishes an export, so its queue fills up.
struct StuckSink;

#[async_trait]
impl TelemetrySink for StuckSink {
    fn name(&self) -> &str {
        "stuck"
    }
    async fn export(&self, _: &[&LlmRecord]) -> Vec<Result<(), ExportError>> {
        std::future::pending().await
    }
}

fn sample_record() -> LlmRecord {
    let mut record = LlmRecord::new(
        "0af7651916cd43dd8448eb211c80319c",
        "01936f8e-7c2a-7b3c-9d4e-5f6a7b8c9d0e",
        "/v1/chat/completions",
        "gpt-4o-mini",
    );
    record.user_id = Some("5f0c2b7e-3d41-4a8e-9c57-2e1b6d9f0a13".into());
    record.role = Some("user".into());
    record.session_id = Some("7d3a9e52-0c4b-4f18-b6e2-9a51c3f08d47".into());
    record.usage = Some(TokenUsage {
        input: Some(120),
        output: Some(380),
        total: Some(500),
        details: Vec::new(),
    });
    record.cost_usd = Some(0.000_23);
    record.input = Some(serde_json::json!([
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Explain backpressure in two paragraphs."}
    ]));
    record.output = Some("x".repeat(1500));
    record
}

fn bench_record(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let template = sample_record();

    let pipeline = Pipeline::start(
        PipelineConfig {
            queue_capacity: 1 << 20,
            ..PipelineConfig::default()
        },
        vec![Arc::new(NullSink)],
    )
    .unwrap();
    c.bench_function("record/queue has room", |b| {
        b.iter_batched(
            || template.clone(),
            |record| pipeline.record(record),
            BatchSize::SmallInput,
        );
    });
    runtime.block_on(pipeline.shutdown(Duration::from_secs(5)));

    let overloaded = Pipeline::start(
        PipelineConfig {
            queue_capacity: 1,
            overflow_capacity: 1,
            ..PipelineConfig::default()
        },
        vec![Arc::new(StuckSink)],
    )
    .unwrap();
    c.bench_function("record/queue and backlog full", |b| {
        b.iter_batched(
            || template.clone(),
            |record| overloaded.record(record),
            BatchSize::SmallInput,
        );
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_record
}
criterion_main!(benches);
