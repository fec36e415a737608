//! CPU cost of turning one record into what a sink sends: Helicone's async-log JSON body (one
//! per record: Helicone has no batch endpoint). The worker pays it for every chat request.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bff_telemetry::{LlmRecord, TokenUsage, log_body};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;

/// A chat of a realistic size: a system prompt, ten turns of history, a 1,500-byte answer.
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
    record.upstream_call_id = Some("chatcmpl-6cda153f-d081-4846-87c2-43c65275df28".into());
    record.usage = Some(TokenUsage {
        input: Some(1200),
        output: Some(380),
        total: Some(1580),
        details: Vec::new(),
    });
    let mut messages = vec![json!({"role": "system", "content": "You are a helpful assistant."})];
    for turn in 0..10 {
        messages.push(
            json!({"role": "user", "content": format!("Question {turn}: {}", "why ".repeat(40))}),
        );
        messages.push(json!({"role": "assistant", "content": format!("Answer {turn}: {}", "because ".repeat(60))}));
    }
    record.input = Some(json!(messages));
    record.output = Some("x".repeat(1500));
    record.finish_reason = Some("stop".into());
    record
}

fn bench_export(c: &mut Criterion) {
    let plain = sample_record();
    let mut streamed = sample_record();
    streamed.stream = true;
    let mut small = sample_record();
    small.input = Some(json!([{"role": "user", "content": "Say hello in one sentence."}]));
    small.output = Some("Hello! This is an instant answer from the benchmark upstream.".into());
    c.bench_function("helicone body/one-line chat", |b| {
        b.iter(|| serde_json::to_vec(&log_body(black_box(&small))).unwrap())
    });
    c.bench_function("helicone body/chat", |b| {
        b.iter(|| serde_json::to_vec(&log_body(black_box(&plain))).unwrap())
    });
    c.bench_function("helicone body/stream", |b| {
        b.iter(|| serde_json::to_vec(&log_body(black_box(&streamed))).unwrap())
    });
}

criterion_group!(benches, bench_export);
criterion_main!(benches);
