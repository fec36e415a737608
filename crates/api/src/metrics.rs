//! Prometheus metrics on `GET /metrics`, counted from finished exchanges ([`Subscriber`]).
//!
//! | series | type | labels |
//! |---|---|---|
//! | `bff_http_requests_total` | counter | `route`, `method`, `status` (499: the client left before an answer) |
//! | `bff_http_request_duration_seconds` | histogram | `route` (until the response head; streams: until they start) |
//! | `bff_overhead_seconds` | histogram | `route` — time to the head minus time waiting on LiteLLM |
//! | `bff_time_to_first_token_seconds` | histogram | `model` (streams) |
//! | `bff_upstream_errors_total` | counter | `kind` (`rate_limited`, `upstream_timeout`, …) |
//! | `bff_auth_failures_total` | counter | `reason` (`token_expired`, `permission_denied`, …) |
//! | `bff_quota_refusals_total` | counter | `kind` (`requests`, `tasks`, `tokens`, `concurrency`, `daily_budget`, …, `unavailable`) |
//! | `bff_quota_backend_seconds` | histogram | `op` (`admit`) — time the quota counters took |
//! | `bff_quota_backend_errors_total` | counter | `op` (`admit`, `settle`) |
//! | `bff_telemetry_records_total` | counter | `sink`, `state` (`queued`, `exported`, `retried`, `spooled`, `replayed`, `rejected`, `dropped`, `unconfirmed`) |
//! | `bff_telemetry_ambiguous_retries_total` | counter | `sink` — records sent once more after an export's answer was lost |
//! | `bff_usage_exchanges_total` | counter | `state` (`recorded`, `dropped`) — exchanges the usage store took |
//! | `bff_usage_waiting_exchanges` | gauge | — exchanges counted but not yet written (the store is down or slow) |
//!
//! Recording uses `metrics` with `metrics-exporter-prometheus`: counters are atomics and
//! histograms lock-free buckets. Each worker thread keeps the handles it has used, so a request
//! touches no lock shared with other requests; a handle is registered, under a lock, the first
//! time a thread meets a label set. Every label that input can reach is bounded: the method is a
//! fixed set, the route the matched pattern or `unmatched`, the model only one LiteLLM is known
//! to serve, and no family holds more than [`MAX_SERIES`] label sets (later ones count as
//! `other`).

use crate::exchange::{Exchange, Subscriber};
use bff_telemetry::SinkStats;
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use thread_local::ThreadLocal;

const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const OVERHEAD_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Most label sets one family keeps; later ones are counted as `other`.
pub const MAX_SERIES: usize = 256;

const REQUESTS: &str = "bff_http_requests_total";
const DURATION: &str = "bff_http_request_duration_seconds";
const OVERHEAD: &str = "bff_overhead_seconds";
const FIRST_TOKEN: &str = "bff_time_to_first_token_seconds";
const UPSTREAM_ERRORS: &str = "bff_upstream_errors_total";
const AUTH_FAILURES: &str = "bff_auth_failures_total";
const QUOTA_REFUSALS: &str = "bff_quota_refusals_total";
const QUOTA_BACKEND: &str = "bff_quota_backend_seconds";
const QUOTA_BACKEND_ERRORS: &str = "bff_quota_backend_errors_total";
const TELEMETRY_RECORDS: &str = "bff_telemetry_records_total";
const TELEMETRY_AMBIGUOUS: &str = "bff_telemetry_ambiguous_retries_total";
const USAGE_EXCHANGES: &str = "bff_usage_exchanges_total";
const USAGE_WAITING: &str = "bff_usage_waiting_exchanges";

const HELP: [(&str, &str); 13] = [
    (
        REQUESTS,
        "HTTP requests by route, method and status (499: the client left before an answer).",
    ),
    (
        DURATION,
        "Time until the response head (streams: until the stream starts).",
    ),
    (
        OVERHEAD,
        "Time bff itself added: time to the head minus time waiting on LiteLLM.",
    ),
    (
        FIRST_TOKEN,
        "Time from request start to the first streamed output token.",
    ),
    (UPSTREAM_ERRORS, "LiteLLM call failures by kind."),
    (
        AUTH_FAILURES,
        "Requests refused by authentication or authorization, by reason.",
    ),
    (
        QUOTA_REFUSALS,
        "Requests refused by a usage limit, by kind.",
    ),
    (
        QUOTA_BACKEND,
        "Time the quota counters (in process or Redis) took per admission.",
    ),
    (
        QUOTA_BACKEND_ERRORS,
        "Quota counter calls that failed (unreachable or slow), by operation.",
    ),
    (TELEMETRY_RECORDS, "Telemetry records per sink and state."),
    (
        TELEMETRY_AMBIGUOUS,
        "Telemetry records sent once more because the answer to an export was lost (the destination may have taken them: each may be one duplicate).",
    ),
    (
        USAGE_EXCHANGES,
        "Finished exchanges the usage store took, or dropped because its queue was full.",
    ),
    (
        USAGE_WAITING,
        "Batches of usage waiting to be written (the store is down or slow).",
    ),
];

/// One request's handles: the request counter and the two duration histograms.
type RequestHandles = (Counter, Histogram, Histogram);

/// Handles a thread has used.
#[derive(Default)]
struct Handles {
    requests: HashMap<(&'static str, &'static str, u16), RequestHandles>,
    counters: HashMap<&'static str, HashMap<String, Counter>>,
    histograms: HashMap<&'static str, HashMap<String, Histogram>>,
}

/// Values read when `/metrics` is scraped, from the parts that count them.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The telemetry sinks' counters.
    pub telemetry: Vec<SinkStats>,
    /// Quota backend failures: admissions, settlements.
    pub quota_errors: (u64, u64),
    /// The usage store: exchanges recorded, dropped, and waiting to be written.
    pub usage: (u64, u64, u64),
}

/// bff's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    local: ThreadLocal<RefCell<Handles>>,
    /// Label sets admitted per family, for the bound.
    admitted: Mutex<HashMap<&'static str, HashSet<Vec<String>>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let builder = PrometheusBuilder::new();
        let builder = [DURATION, FIRST_TOKEN]
            .into_iter()
            .fold(builder, |builder, name| {
                builder
                    .set_buckets_for_metric(Matcher::Full(name.into()), &LATENCY_BUCKETS)
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            });
        let builder = [OVERHEAD, QUOTA_BACKEND]
            .into_iter()
            .fold(builder, |builder, name| {
                builder
                    .set_buckets_for_metric(Matcher::Full(name.into()), &OVERHEAD_BUCKETS)
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            });
        let recorder = builder.build_recorder();
        for (name, help) in HELP {
            recorder.describe_counter(name.into(), None, help.into());
        }
        Self {
            handle: recorder.handle(),
            recorder,
            local: ThreadLocal::new(),
            admitted: Mutex::new(HashMap::new()),
        }
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new("bff", Level::INFO, Some(module_path!()))
}

impl Metrics {
    /// `labels` if the family has room for them (or already has them), else all `other`.
    fn bounded(&self, family: &'static str, labels: Vec<String>) -> Vec<String> {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = admitted.entry(family).or_default();
        if seen.contains(&labels) || seen.len() < MAX_SERIES {
            seen.insert(labels.clone());
            labels
        } else {
            vec!["other".to_owned(); labels.len()]
        }
    }

    fn key(&self, family: &'static str, names: &[&'static str], values: Vec<String>) -> Key {
        let values = self.bounded(family, values);
        let labels: Vec<Label> = names
            .iter()
            .zip(values)
            .map(|(name, value)| Label::new(*name, value))
            .collect();
        Key::from_parts(family, labels)
    }

    fn with_handles<T>(&self, use_them: impl FnOnce(&mut Handles) -> T) -> T {
        use_them(&mut self.local.get_or_default().borrow_mut())
    }

    fn count(&self, family: &'static str, label: &'static str, value: &str, amount: u64) {
        self.with_handles(|handles| {
            let family_handles = handles.counters.entry(family).or_default();
            if let Some(counter) = family_handles.get(value) {
                return counter.increment(amount);
            }
            let key = self.key(family, &[label], vec![value.to_owned()]);
            let counter = self.recorder.register_counter(&key, &metadata());
            counter.increment(amount);
            family_handles.insert(value.to_owned(), counter);
        });
    }

    fn observe(&self, family: &'static str, label: &'static str, value: &str, seconds: Duration) {
        self.with_handles(|handles| {
            let family_handles = handles.histograms.entry(family).or_default();
            if let Some(histogram) = family_handles.get(value) {
                return histogram.record(seconds.as_secs_f64());
            }
            let key = self.key(family, &[label], vec![value.to_owned()]);
            let histogram = self.recorder.register_histogram(&key, &metadata());
            histogram.record(seconds.as_secs_f64());
            family_handles.insert(value.to_owned(), histogram);
        });
    }

    fn request(&self, exchange: &Exchange) {
        let head = exchange.head_after.unwrap_or(exchange.elapsed);
        let key = (exchange.route, exchange.method, exchange.status);
        self.with_handles(|handles| {
            let (requests, duration, overhead) = handles.requests.entry(key).or_insert_with(|| {
                let labels = vec![
                    exchange.route.to_owned(),
                    exchange.method.to_owned(),
                    exchange.status.to_string(),
                ];
                let key = self.key(REQUESTS, &["route", "method", "status"], labels);
                let route = vec![exchange.route.to_owned()];
                (
                    self.recorder.register_counter(&key, &metadata()),
                    self.recorder.register_histogram(
                        &self.key(DURATION, &["route"], route.clone()),
                        &metadata(),
                    ),
                    self.recorder
                        .register_histogram(&self.key(OVERHEAD, &["route"], route), &metadata()),
                )
            });
            requests.increment(1);
            duration.record(head.as_secs_f64());
            overhead.record(head.saturating_sub(exchange.upstream_wait).as_secs_f64());
        });
    }

    /// The exposition text, with the values of `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let absolute = |family: &'static str, labels: Vec<(&'static str, String)>, value: u64| {
            let key = Key::from_parts(
                family,
                labels
                    .into_iter()
                    .map(|(name, value)| Label::new(name, value))
                    .collect::<Vec<_>>(),
            );
            self.recorder
                .register_counter(&key, &metadata())
                .absolute(value);
        };
        let (admit, settle) = snapshot.quota_errors;
        absolute(QUOTA_BACKEND_ERRORS, vec![("op", "admit".into())], admit);
        absolute(QUOTA_BACKEND_ERRORS, vec![("op", "settle".into())], settle);
        for stats in &snapshot.telemetry {
            for (state, value) in stats.by_state() {
                let labels = vec![("sink", stats.sink.clone()), ("state", state.to_owned())];
                absolute(TELEMETRY_RECORDS, labels, value);
            }
            let sink = vec![("sink", stats.sink.clone())];
            absolute(TELEMETRY_AMBIGUOUS, sink, stats.ambiguous_retries);
        }
        let (recorded, dropped, waiting) = snapshot.usage;
        absolute(
            USAGE_EXCHANGES,
            vec![("state", "recorded".into())],
            recorded,
        );
        absolute(USAGE_EXCHANGES, vec![("state", "dropped".into())], dropped);
        let gauge: Gauge = self
            .recorder
            .register_gauge(&Key::from_name(USAGE_WAITING), &metadata());
        gauge.set(waiting as f64);
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; call every few seconds, so memory stays
    /// bounded whether or not `/metrics` is scraped.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

impl Subscriber for Metrics {
    fn finished(&self, exchange: &Arc<Exchange>) {
        self.request(exchange);
        if let Some(failure) = exchange.failure.as_ref().filter(|failure| failure.auth) {
            self.count(AUTH_FAILURES, "reason", failure.code, 1);
        }
        let Some(chat) = &exchange.chat else {
            return;
        };
        if let Some(kind) = chat.upstream_error {
            self.count(UPSTREAM_ERRORS, "kind", kind, 1);
        }
        if let Some(quota) = chat.quota {
            self.observe(QUOTA_BACKEND, "op", "admit", quota.took);
            if let Some(kind) = quota.refused {
                self.count(QUOTA_REFUSALS, "kind", kind, 1);
            }
        }
        if let Some(after) = chat.first_token_after {
            let model = if chat.model_known {
                chat.record.model_requested.as_str()
            } else {
                "other"
            };
            self.observe(FIRST_TOKEN, "model", model, after);
        }
    }
}
