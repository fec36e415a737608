//! How finished exchanges reach the usage store: the [`Recorder`] subscriber queues each chat
//! exchange (never blocking the request), and one writer task aggregates them into a [`Ledger`]
//! and writes a batch at most every `flush_interval`, at shutdown too.
//!
//! While the store is down, the batch that failed waits with its id, and everything counted
//! meanwhile aggregates into the next one: memory is bounded by what is distinct (days × users ×
//! models × tasks, the recent list's bound, the traffic window), not by how long the outage
//! lasts. The waiting batch is sent again, with the same id, until the store acknowledges it;
//! the store applies an id once, so a batch that reached it before an ambiguous failure is not
//! counted twice.

use crate::exchange::{Ending, Exchange, Subscriber};
use crate::reporting::model::{NOT_SERVED, Person, RowKey, Subject, TraceItem, UsageTotals};
use crate::reporting::store::{Batch, UsageStore};
use crate::reporting::traffic::{Traffic, now_second};
use bff_telemetry::{GENERATION_NAME, LlmRecord, Outcome, UnixNanos};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Counts of the writer, for metrics and reports.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Exchanges queued for the store.
    pub recorded: AtomicU64,
    /// Exchanges dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Exchanges counted but not yet acknowledged by the store.
    pub waiting: AtomicU64,
}

/// The subscriber: queues chat exchanges for the writer.
pub struct Recorder {
    queue: mpsc::Sender<Arc<Exchange>>,
    chat_routes: &'static [&'static str],
    stats: Arc<WriterStats>,
}

impl Subscriber for Recorder {
    fn finished(&self, exchange: &Arc<Exchange>) {
        if !self.chat_routes.contains(&exchange.route) {
            return;
        }
        if self.queue.try_send(Arc::clone(exchange)).is_ok() {
            self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        } else if self
            .stats
            .dropped
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1000)
        {
            tracing::warn!(
                "the usage store's queue is full: finished requests are not being counted"
            );
        }
    }
}

/// What was counted since the last batch was cut.
#[derive(Default)]
struct Ledger {
    rows: BTreeMap<RowKey, UsageTotals>,
    people: BTreeMap<String, Person>,
    recent: VecDeque<TraceItem>,
    exchanges: u64,
}

impl Ledger {
    fn add(&mut self, exchange: &Exchange, max_recent: usize) {
        let Some(caller) = &exchange.caller else {
            return; // no verified caller: traffic only
        };
        self.exchanges += 1;
        let record = exchange.chat.as_ref().map(|chat| (chat, &chat.record));
        let served = record.filter(|(chat, _)| chat.called && chat.model_known);
        let model = served.map_or(NOT_SERVED, |(_, record)| record.model_requested.as_str());
        let usage = record
            .and_then(|(_, record)| record.usage.clone())
            .unwrap_or_default();
        let totals = UsageTotals {
            requests: 1,
            errors: Some(u64::from(exchange.ending == Ending::Failed)),
            input_tokens: usage.input.unwrap_or(0),
            output_tokens: usage.output.unwrap_or(0),
            total_tokens: usage.total.unwrap_or(0),
            cost_usd: record
                .and_then(|(_, record)| record.cost_usd)
                .unwrap_or(0.0),
        };
        let day = day_of(UnixNanos::from(exchange.started_at));
        let subjects = std::iter::once(Subject::User(caller.user_id.clone())).chain(
            caller
                .groups
                .iter()
                .map(|group| Subject::Group(group.name.clone())),
        );
        for subject in subjects {
            let key = RowKey {
                day: day.clone(),
                subject,
                model: model.to_owned(),
                task: exchange.task.unwrap_or_default().to_owned(),
            };
            self.rows.entry(key).or_default().add(&totals);
        }
        if caller.name.is_some() || caller.email.is_some() {
            let person = Person {
                name: caller.name.clone(),
                email: caller.email.clone(),
            };
            self.people.insert(caller.user_id.clone(), person);
        }
        if let Some((chat, record)) = record.filter(|(chat, _)| chat.called) {
            if self.recent.len() >= max_recent {
                self.recent.pop_front();
            }
            self.recent
                .push_back(trace_item(record, chat.model_known, exchange.task));
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.people.is_empty() && self.recent.is_empty()
    }
}

fn millis_between(start: UnixNanos, end: UnixNanos) -> f64 {
    end.0.saturating_sub(start.0) as f64 / 1e6
}

/// A record as the traces panel shows it: the same level and status message as the Langfuse
/// generation bff exports for it; a model LiteLLM is not known to serve is not named.
pub fn trace_item(record: &LlmRecord, model_known: bool, task: Option<&str>) -> TraceItem {
    let usage = record.usage.clone().unwrap_or_default();
    let (level, status_message) = match record.outcome {
        Outcome::Ok => ("DEFAULT", None),
        Outcome::Error => (
            "ERROR",
            record
                .error
                .as_ref()
                .map(|error| format!("{}: {}", error.kind, error.message)),
        ),
        Outcome::Abandoned => ("WARNING", Some("abandoned: the client disconnected".into())),
    };
    TraceItem {
        trace_id: Some(record.trace_id.clone()),
        name: Some(GENERATION_NAME.into()),
        user_id: record.user_id.clone(),
        session_id: record.session_id.clone(),
        model: Some(if model_known {
            record.model_requested.clone()
        } else {
            NOT_SERVED.to_owned()
        }),
        task: task.map(str::to_owned),
        start_time: Some(record.started_at.to_rfc3339()),
        end_time: Some(record.ended_at.to_rfc3339()),
        latency_ms: Some(millis_between(record.started_at, record.ended_at)),
        time_to_first_token_ms: record
            .first_token_at
            .map(|first| millis_between(record.started_at, first)),
        input_tokens: usage.input,
        output_tokens: usage.output,
        total_tokens: usage.total,
        cost_usd: record.cost_usd,
        level: Some(level.into()),
        status_message,
        tags: record.tags.clone(),
        ..TraceItem::default()
    }
}

/// `YYYY-MM-DD` of a time.
pub fn day_of(time: UnixNanos) -> String {
    time.to_rfc3339().chars().take(10).collect()
}

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Longest time between writes.
    pub flush_interval: Duration,
    /// Days of rows kept.
    pub retention_days: u64,
    /// Requests the recent list keeps.
    pub max_recent: usize,
    /// Exchanges the queue holds before it drops.
    pub queue: usize,
    /// The routes that are chats (the only exchanges the store counts).
    pub chat_routes: &'static [&'static str],
}

/// The running writer: its state shared with the reports.
pub struct Writer {
    store: Arc<dyn UsageStore>,
    traffic: Arc<Mutex<Traffic>>,
    open_streams: Arc<dyn Fn() -> u64 + Send + Sync>,
    stats: Arc<WriterStats>,
    replica: String,
    sequence: u64,
    /// The batch the store has not acknowledged, and how many exchanges it holds.
    pending: Option<(Batch, u64)>,
    /// Writes that failed in a row.
    failures: u64,
    ledger: Ledger,
    config: WriterConfig,
}

/// Handles to a started writer.
pub struct Started {
    /// The subscriber to register.
    pub recorder: Recorder,
    /// The replica's traffic window.
    pub traffic: Arc<Mutex<Traffic>>,
    /// The writer's counts.
    pub stats: Arc<WriterStats>,
    /// Ask it to write what it holds and stop; answers when done.
    pub stop: mpsc::Sender<oneshot::Sender<()>>,
}

impl Writer {
    /// Starts the writer task over `store`. `open_streams` says how many streams are open now.
    pub fn start(
        store: Arc<dyn UsageStore>,
        config: WriterConfig,
        open_streams: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Started {
        let (queue, exchanges) = mpsc::channel(config.queue.max(1));
        let (stop, stops) = mpsc::channel(1);
        let stats = Arc::new(WriterStats::default());
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let writer = Self {
            store,
            traffic: Arc::clone(&traffic),
            open_streams,
            stats: Arc::clone(&stats),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            sequence: 0,
            pending: None,
            failures: 0,
            ledger: Ledger::default(),
            config: config.clone(),
        };
        tokio::spawn(writer.run(exchanges, stops));
        Started {
            recorder: Recorder {
                queue,
                chat_routes: config.chat_routes,
                stats: Arc::clone(&stats),
            },
            traffic,
            stats,
            stop,
        }
    }

    async fn run(
        mut self,
        mut exchanges: mpsc::Receiver<Arc<Exchange>>,
        mut stops: mpsc::Receiver<oneshot::Sender<()>>,
    ) {
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                Some(exchange) = exchanges.recv() => self.add(&exchange),
                _ = tick.tick() => {
                    let per_day = 86_400_000 / self.config.flush_interval.as_millis().max(1);
                    if u128::from(ticks).is_multiple_of(per_day) {
                        self.prune().await;
                    }
                    ticks += 1;
                    self.flush().await;
                }
                stop = stops.recv() => {
                    while let Ok(exchange) = exchanges.try_recv() {
                        self.add(&exchange);
                    }
                    // The waiting batch first, then what was counted since.
                    self.flush().await;
                    self.flush().await;
                    if let Some(done) = stop {
                        let _ = done.send(());
                    }
                    return;
                }
            }
        }
    }

    fn add(&mut self, exchange: &Exchange) {
        let second = now_second();
        let open = (self.open_streams)();
        self.traffic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(exchange, second, open);
        self.ledger.add(exchange, self.config.max_recent);
        self.count_waiting();
    }

    /// Exchanges counted that the store has not acknowledged yet.
    fn count_waiting(&self) {
        let pending = self.pending.as_ref().map_or(0, |(_, exchanges)| *exchanges);
        self.stats
            .waiting
            .store(pending + self.ledger.exchanges, Ordering::Relaxed);
    }

    /// Cuts a batch when none waits, then tries to write the waiting one.
    async fn flush(&mut self) {
        if self.pending.is_none() {
            let traffic = self
                .traffic
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .encoded_since();
            if self.ledger.is_empty() && traffic.is_empty() {
                return;
            }
            self.sequence += 1;
            let ledger = std::mem::take(&mut self.ledger);
            let batch = Batch {
                id: format!("{}:{}", self.replica, self.sequence),
                replica: self.replica.clone(),
                rows: ledger.rows,
                people: ledger.people,
                recent: ledger.recent.into(),
                traffic,
            };
            self.pending = Some((batch, ledger.exchanges));
        }
        let Some((batch, _)) = &self.pending else {
            return;
        };
        match self.store.write(batch).await {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(
                        failures = self.failures,
                        "the usage store is back; what waited is written"
                    );
                }
                self.failures = 0;
                self.pending = None;
            }
            Err(error) => {
                // One line when the store goes, then one a minute or so: no flood.
                if self.failures.is_multiple_of(60) {
                    tracing::warn!(%error, batch = %batch.id, waiting = self.stats.waiting.load(Ordering::Relaxed), "usage could not be written; it waits to be written again");
                }
                self.failures += 1;
            }
        }
        self.count_waiting();
    }

    async fn prune(&self) {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(Duration::from_secs(86_400 * self.config.retention_days))
            .map(|at| day_of(UnixNanos::from(at)));
        if let Some(cutoff) = cutoff
            && let Err(error) = self.store.prune(&cutoff).await
        {
            tracing::warn!(%error, "old usage rows could not be pruned");
        }
    }
}
