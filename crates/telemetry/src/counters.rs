//! Per-sink counters, updated with atomics so `record()` never waits on an exporter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Live counters of one sink.
#[derive(Debug, Default)]
pub struct SinkCounters {
    queued: AtomicU64,
    exported: AtomicU64,
    retried: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    ambiguous_retries: AtomicU64,
    unconfirmed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A point-in-time copy of a sink's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// The sink's name.
    pub sink: String,
    /// Records accepted into the sink's in-memory queue.
    pub queued: u64,
    /// Records delivered (live or replayed).
    pub exported: u64,
    /// Export attempts that were retried.
    pub retried: u64,
    /// Records written to the on-disk spool.
    pub spooled: u64,
    /// Records delivered from the spool.
    pub replayed: u64,
    /// Records the destination refused for good (4xx); logged and counted, not retried.
    pub rejected: u64,
    /// Records lost: spool disabled or full, or recorded after shutdown. Always logged.
    pub dropped: u64,
    /// Records sent once more after an ambiguous failure (the destination may have taken
    /// them; where a resend adds a copy, each of these may be one duplicate).
    pub ambiguous_retries: u64,
    /// Records whose answer was lost on the retry too: not sent again (at the destination
    /// once, twice or, rarely, not at all). Always logged.
    pub unconfirmed: u64,
    /// The last export error, if any.
    pub last_error: Option<String>,
}

impl SinkStats {
    /// Every count with its state's name (`queued`, `exported`, …), for metrics.
    pub fn by_state(&self) -> [(&'static str, u64); 8] {
        [
            ("queued", self.queued),
            ("exported", self.exported),
            ("retried", self.retried),
            ("spooled", self.spooled),
            ("replayed", self.replayed),
            ("rejected", self.rejected),
            ("dropped", self.dropped),
            ("unconfirmed", self.unconfirmed),
        ]
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Queued,
    Exported,
    Retried,
    Spooled,
    Replayed,
    Rejected,
    Dropped,
    AmbiguousRetried,
    Unconfirmed,
}

impl SinkCounters {
    /// Adds `amount` and returns the new value (lock-free).
    pub(crate) fn add(&self, counter: Counter, amount: u64) -> u64 {
        let cell = match counter {
            Counter::Queued => &self.queued,
            Counter::Exported => &self.exported,
            Counter::Retried => &self.retried,
            Counter::Spooled => &self.spooled,
            Counter::Replayed => &self.replayed,
            Counter::Rejected => &self.rejected,
            Counter::Dropped => &self.dropped,
            Counter::AmbiguousRetried => &self.ambiguous_retries,
            Counter::Unconfirmed => &self.unconfirmed,
        };
        cell.fetch_add(amount, Ordering::Relaxed) + amount
    }

    pub(crate) fn set_last_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// A snapshot, labelled with the sink name.
    pub fn snapshot(&self, sink: &str) -> SinkStats {
        SinkStats {
            sink: sink.to_owned(),
            queued: self.queued.load(Ordering::Relaxed),
            exported: self.exported.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            spooled: self.spooled.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            ambiguous_retries: self.ambiguous_retries.load(Ordering::Relaxed),
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}
