//! Fake sinks and records shared by the telemetry tests.
#![allow(dead_code)] // each test binary uses a different subset

use async_trait::async_trait;
use bff_telemetry::{ExportError, LlmRecord, PipelineConfig, TelemetrySink};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A sink that can be switched down and up, and remembers what it received.
pub struct FakeSink {
    name: String,
    pub up: AtomicBool,
    pub calls: AtomicU64,
    pub delivered: Mutex<Vec<LlmRecord>>,
    pub delay: Duration,
}

impl FakeSink {
    pub fn new(name: &str, up: bool) -> Arc<Self> {
        Self::slow(name, up, Duration::ZERO)
    }

    pub fn slow(name: &str, up: bool, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            up: AtomicBool::new(up),
            calls: AtomicU64::new(0),
            delivered: Mutex::new(Vec::new()),
            delay,
        })
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn delivered_ids(&self) -> Vec<String> {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .map(|record| record.request_id.clone())
            .collect()
    }
}

#[async_trait]
impl TelemetrySink for FakeSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if !self.up.load(Ordering::SeqCst) {
            return vec![
                Err(ExportError::Retryable {
                    reason: format!("{} is down", self.name),
                    retry_after: None,
                });
                batch.len()
            ];
        }
        self.delivered
            .lock()
            .unwrap()
            .extend(batch.iter().map(|record| (*record).clone()));
        vec![Ok(()); batch.len()]
    }
}

pub fn record(request_id: &str) -> LlmRecord {
    let mut record = LlmRecord::new(
        "0af7651916cd43dd8448eb211c80319c",
        request_id,
        "/v1/chat/completions",
        "fake-gpt",
    );
    record.user_id = Some("user-42".into());
    record.input = Some(serde_json::json!([{"role": "user", "content": "hi"}]));
    record.output = Some("hello".into());
    record
}

/// Fast timings so tests finish quickly.
pub fn fast_config(spool_dir: Option<PathBuf>) -> PipelineConfig {
    PipelineConfig {
        batch_size: 10,
        flush_interval: Duration::from_millis(20),
        max_attempts: 2,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        replay_interval: Duration::from_millis(50),
        spool_dir,
        ..PipelineConfig::default()
    }
}

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bff-telemetry-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Waits until `condition` holds, polling, for at most `limit`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// Number of records in a sink's spool folder.
pub fn spooled_lines(dir: &std::path::Path, sink: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir.join(sink)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "jsonl"))
        .map(|entry| {
            std::fs::read_to_string(entry.path())
                .unwrap()
                .lines()
                .filter(|line| !line.is_empty())
                .count()
        })
        .sum()
}
