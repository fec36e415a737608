//! The pipeline's promises: never block the caller, never lose a record silently, never
//! deliver one twice, stop by the deadline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a panic is a failed test

mod support;

use bff_telemetry::{CapturePolicy, Pipeline, PipelineConfig, TelemetrySink};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("req-{n:04}")).collect()
}

fn assert_exactly_once(delivered: &[String], expected: &[String]) {
    let unique: BTreeSet<&String> = delivered.iter().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "duplicates delivered: {delivered:?}"
    );
    let expected: BTreeSet<&String> = expected.iter().collect();
    assert_eq!(unique, expected);
}

#[tokio::test]
async fn a_sink_down_for_a_while_then_back_gets_every_record_once() {
    let dir = temp_dir("down-then-up");
    let sink = FakeSink::new("flaky", false);
    let pipeline = Pipeline::start(fast_config(Some(dir.clone())), vec![sink.clone()]).unwrap();
    let expected = ids(0..40);
    for id in &expected[..25] {
        pipeline.record(record(id));
    }
    assert!(
        eventually(Duration::from_secs(5), || pipeline.stats()[0].spooled == 25).await,
        "{:?}",
        pipeline.stats()
    );
    sink.set_up(true);
    for id in &expected[25..] {
        pipeline.record(record(id));
    }
    assert!(
        eventually(Duration::from_secs(5), || sink.delivered_ids().len() >= 40).await,
        "{:?}",
        pipeline.stats()
    );
    let stats = pipeline.shutdown(Duration::from_secs(2)).await;
    assert_exactly_once(&sink.delivered_ids(), &expected);
    let stats = &stats[0];
    assert_eq!(
        (stats.exported, stats.replayed, stats.dropped),
        (40, 25, 0),
        "{stats:?}"
    );
    assert!(stats.retried > 0);
    assert_eq!(
        spooled_lines(&dir, "flaky"),
        0,
        "the spool is empty once replayed"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_restart_between_outage_and_recovery_still_delivers_everything() {
    let dir = temp_dir("restart");
    let expected = ids(0..30);
    {
        let down = FakeSink::new("flaky", false);
        let pipeline = Pipeline::start(fast_config(Some(dir.clone())), vec![down.clone()]).unwrap();
        for id in &expected[..20] {
            pipeline.record(record(id));
        }
        let stats = pipeline.shutdown(Duration::from_millis(300)).await;
        assert_eq!(stats[0].spooled, 20, "{stats:?}");
        assert!(down.delivered_ids().is_empty());
    }
    assert_eq!(spooled_lines(&dir, "flaky"), 20);

    let up = FakeSink::new("flaky", true);
    let pipeline = Pipeline::start(fast_config(Some(dir.clone())), vec![up.clone()]).unwrap();
    for id in &expected[20..] {
        pipeline.record(record(id));
    }
    assert!(eventually(Duration::from_secs(5), || up.delivered_ids().len() >= 30).await);
    pipeline.shutdown(Duration::from_secs(2)).await;
    assert_exactly_once(&up.delivered_ids(), &expected);
    // The spooled records came first, in their original order.
    assert_eq!(up.delivered_ids()[..20], expected[..20]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_full_queue_never_blocks_and_spills_to_the_spool() {
    let dir = temp_dir("queue-full");
    let stuck = FakeSink::slow("stuck", true, Duration::from_secs(60));
    let config = PipelineConfig {
        queue_capacity: 4,
        batch_size: 1,
        ..fast_config(Some(dir.clone()))
    };
    let pipeline = Pipeline::start(config, vec![stuck.clone()]).unwrap();
    // The sink never finishes an export: if `record` waited on it, this loop would hang.
    for id in ids(0..200) {
        pipeline.record(record(&id));
    }
    assert!(
        eventually(Duration::from_secs(5), || pipeline.stats()[0].spooled
            >= 190)
        .await,
        "{:?}",
        pipeline.stats()
    );
    let stats = pipeline.stats();
    assert_eq!(stats[0].dropped, 0);
    assert_eq!(stats[0].queued + stats[0].spooled, 200, "{stats:?}");
    drop(pipeline);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn shutdown_with_a_dead_sink_ends_by_its_deadline_and_keeps_the_records() {
    let dir = temp_dir("dead-sink");
    let dead = FakeSink::slow("dead", false, Duration::from_secs(30));
    let pipeline = Pipeline::start(fast_config(Some(dir.clone())), vec![dead.clone()]).unwrap();
    for id in ids(0..15) {
        pipeline.record(record(&id));
    }
    let started = Instant::now();
    let stats = pipeline.shutdown(Duration::from_millis(400)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats[0].spooled, 15, "{stats:?}");
    assert_eq!(spooled_lines(&dir, "dead"), 15);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn without_a_spool_undeliverable_records_are_counted_as_dropped() {
    let down = FakeSink::new("down", false);
    let pipeline = Pipeline::start(fast_config(None), vec![down.clone()]).unwrap();
    for id in ids(0..5) {
        pipeline.record(record(&id));
    }
    assert!(eventually(Duration::from_secs(5), || pipeline.stats()[0].dropped == 5).await);
    let stats = pipeline.shutdown(Duration::from_millis(200)).await;
    assert_eq!(stats[0].last_error.as_deref(), Some("down is down"));
    pipeline.record(record("late"));
    assert_eq!(
        pipeline.stats()[0].dropped,
        6,
        "a record after shutdown is counted"
    );
}

#[tokio::test]
async fn metadata_only_capture_never_ships_prompts_or_answers() {
    let sink = FakeSink::new("sink", true);
    let config = PipelineConfig {
        capture: CapturePolicy::MetadataOnly,
        ..fast_config(None)
    };
    let pipeline = Pipeline::start(config, vec![sink.clone()]).unwrap();
    pipeline.record(record("req-1"));
    pipeline.shutdown(Duration::from_secs(2)).await;
    let delivered = sink.delivered.lock().unwrap();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].input.is_none() && delivered[0].output.is_none());
    assert_eq!(delivered[0].user_id.as_deref(), Some("user-42"));
}

#[tokio::test]
async fn a_slow_sink_does_not_delay_another() {
    let slow = FakeSink::slow("slow", true, Duration::from_secs(30));
    let fast = FakeSink::new("fast", true);
    let sinks: Vec<Arc<dyn TelemetrySink>> = vec![slow.clone(), fast.clone()];
    let pipeline = Pipeline::start(fast_config(None), sinks).unwrap();
    for id in ids(0..10) {
        pipeline.record(record(&id));
    }
    assert!(eventually(Duration::from_secs(2), || fast.delivered_ids().len() == 10).await);
    assert!(slow.delivered_ids().is_empty());
}

#[tokio::test]
async fn memory_waiting_for_a_sink_is_bounded_in_bytes_and_overflows_to_the_spool() {
    let dir = temp_dir("byte-bound");
    let stuck = FakeSink::slow("stuck", true, Duration::from_secs(60));
    let config = PipelineConfig {
        max_capture_bytes: 10 << 10,
        max_queued_bytes: 100 << 10,
        ..fast_config(Some(dir.clone()))
    };
    let pipeline = Pipeline::start(config, vec![stuck.clone()]).unwrap();
    // `record()` never yields, so neither the worker nor the spool writer takes anything
    // off their channels meanwhile: only the byte bounds hold the burst.
    for n in 0..100 {
        let mut big = record(&format!("req-{n}"));
        big.output = Some("x".repeat(1 << 20));
        big.input = Some(serde_json::json!([{"role": "user", "content": "y".repeat(1 << 20)}]));
        pipeline.record(big);
    }
    let stats = pipeline.stats();
    // Each record holds at most 2 × 10 KiB of capture plus 1 KiB: 100 KiB hold about 4.
    assert!(stats[0].queued <= 5, "{stats:?}");
    assert!(stats[0].dropped >= 90, "{stats:?}");
    assert!(
        eventually(Duration::from_secs(5), || {
            let stats = &pipeline.stats()[0];
            stats.spooled >= 1 && stats.queued + stats.spooled + stats.dropped == 100
        })
        .await,
        "{:?}",
        pipeline.stats()
    );
    // What reached the disk was cut to the capture limit.
    assert!(spooled_lines(&dir, "stuck") >= 1);
    let spooled_bytes: u64 = std::fs::read_dir(dir.join("stuck"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(spooled_bytes < 200 << 10, "{spooled_bytes}");
}

#[tokio::test]
async fn a_torn_last_spool_line_costs_that_line_only() {
    let dir = temp_dir("torn-tail");
    let folder = dir.join("sink");
    std::fs::create_dir_all(&folder).unwrap();
    let mut text = String::new();
    for id in ids(0..3) {
        text.push_str(&serde_json::to_string(&record(&id)).unwrap());
        text.push('\n');
    }
    text.push_str("{\"trace_id\":\"0af7651916cd43dd8448eb21"); // a crash mid-write
    std::fs::write(folder.join(format!("{:020}.jsonl", 0)), text).unwrap();
    let sink = FakeSink::new("sink", true);
    let pipeline = Pipeline::start(fast_config(Some(dir.clone())), vec![sink.clone()]).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || sink.delivered_ids().len() == 3).await,
        "{:?}",
        pipeline.stats()
    );
    let stats = pipeline.shutdown(Duration::from_secs(1)).await;
    assert_eq!((stats[0].replayed, stats[0].dropped), (3, 1), "{stats:?}");
    assert_exactly_once(&sink.delivered_ids(), &ids(0..3));
    std::fs::remove_dir_all(&dir).unwrap();
}
