//! Prometheus metrics, rendered in the text exposition format on `GET /metrics`.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `bff_http_requests_total` | counter | `route`, `method`, `status` |
//! | `bff_http_request_duration_seconds` | histogram | `route` (until the response head; streams: until they start) |
//! | `bff_overhead_seconds` | histogram | `route` — total time minus time waiting on LiteLLM |
//! | `bff_time_to_first_token_seconds` | histogram | `model` (streams) |
//! | `bff_upstream_errors_total` | counter | `kind` (`rate_limited`, `upstream_timeout`, …) |
//! | `bff_auth_failures_total` | counter | `reason` (`token_expired`, `permission_denied`, …) |
//! | `bff_quota_refusals_total` | counter | `kind` (`requests`, `tokens`, `concurrency`, `daily_budget`, `monthly_budget`, `unavailable`) |
//! | `bff_quota_backend_seconds` | histogram | `op` (`admit`) — time the quota counters took |
//! | `bff_quota_backend_errors_total` | counter | `op` (`admit`, `settle`) |
//! | `bff_telemetry_records_total` | counter | `sink`, `state` (`queued`, `exported`, `retried`, `spooled`, `replayed`, `rejected`, `dropped`) |

//!
//! Every label that input can reach is bounded: the method is one of GET, POST, HEAD, OPTIONS or
//! `other`; the route is the matched pattern or `unmatched`; and no family holds more than
//! [`MAX_SERIES`] series (past that, new label values are counted under `other`), so no
//! caller can grow `/metrics` or bff's memory by sending new strings.

use crate::routes::CHAT_ROUTES;
use crate::traffic::Traffic;
use bff_telemetry::SinkStats;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const OVERHEAD_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Most series one family keeps; later label values are counted as `other`.
pub const MAX_SERIES: usize = 256;

/// The label set `values` may be stored under in `map`: itself when known or when there is
/// room, else all-`other`.
fn bounded_key<K: Ord, V>(map: &BTreeMap<K, V>, key: K, overflow: K) -> K {
    if map.len() < MAX_SERIES || map.contains_key(&key) {
        key
    } else {
        overflow
    }
}

struct CounterFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterFamily {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn add(&self, labels: &[&str], amount: u64) {
        let key = labels.iter().map(|label| (*label).to_owned()).collect();
        let overflow = vec!["other".to_owned(); labels.len()];
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let key = bounded_key(&values, key, overflow);
        *values.entry(key).or_default() += amount;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} counter",
            self.name, self.help, self.name
        );
        for (labels, value) in self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "{}{} {value}",
                self.name,
                label_set(self.labels, labels, None)
            );
        }
    }
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    bounds: &'static [f64],
    values: Mutex<BTreeMap<String, Histogram>>,
}

impl HistogramFamily {
    const fn new(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        bounds: &'static [f64],
    ) -> Self {
        Self {
            name,
            help,
            label,
            bounds,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn observe(&self, label: &str, value: Duration) {
        let seconds = value.as_secs_f64();
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let key = bounded_key(&values, label.to_owned(), "other".to_owned());
        let histogram = values.entry(key).or_insert_with(|| Histogram {
            buckets: vec![0; self.bounds.len()],
            ..Histogram::default()
        });
        for (bucket, bound) in histogram.buckets.iter_mut().zip(self.bounds) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} histogram",
            self.name, self.help, self.name
        );
        let labels = [self.label];
        for (label, histogram) in self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let values = [label.clone()];
            for (bound, count) in self.bounds.iter().zip(&histogram.buckets) {
                let le = bound.to_string();
                let _ = writeln!(
                    out,
                    "{}_bucket{} {count}",
                    self.name,
                    label_set(&labels, &values, Some(&le))
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                label_set(&labels, &values, Some("+Inf")),
                histogram.count
            );
            let _ = writeln!(
                out,
                "{}_sum{} {}",
                self.name,
                label_set(&labels, &values, None),
                histogram.sum
            );
            let _ = writeln!(
                out,
                "{}_count{} {}",
                self.name,
                label_set(&labels, &values, None),
                histogram.count
            );
        }
    }
}

fn label_set(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// bff's metrics registry.
pub struct Metrics {
    requests: CounterFamily,
    duration: HistogramFamily,
    overhead: HistogramFamily,
    time_to_first_token: HistogramFamily,
    upstream_errors: CounterFamily,
    auth_failures: CounterFamily,
    quota_refusals: CounterFamily,
    quota_backend: HistogramFamily,
    quota_backend_errors: CounterFamily,
    /// The last minute of chat traffic, for the monitoring page.
    pub traffic: Traffic,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: CounterFamily::new(
                "bff_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            ),
            duration: HistogramFamily::new(
                "bff_http_request_duration_seconds",
                "Time until the response head (streams: until the stream starts).",
                "route",
                &LATENCY_BUCKETS,
            ),
            overhead: HistogramFamily::new(
                "bff_overhead_seconds",
                "Time bff itself added: total time minus time waiting on LiteLLM.",
                "route",
                &OVERHEAD_BUCKETS,
            ),
            time_to_first_token: HistogramFamily::new(
                "bff_time_to_first_token_seconds",
                "Time from request start to the first streamed output token.",
                "model",
                &LATENCY_BUCKETS,
            ),
            upstream_errors: CounterFamily::new(
                "bff_upstream_errors_total",
                "LiteLLM call failures by kind.",
                &["kind"],
            ),
            auth_failures: CounterFamily::new(
                "bff_auth_failures_total",
                "Requests refused by authentication or authorization, by reason.",
                &["reason"],
            ),
            quota_refusals: CounterFamily::new(
                "bff_quota_refusals_total",
                "Requests refused by a usage limit, by kind.",
                &["kind"],
            ),
            quota_backend: HistogramFamily::new(
                "bff_quota_backend_seconds",
                "Time the quota counters (in process or Redis) took per admission.",
                "op",
                &OVERHEAD_BUCKETS,
            ),
            quota_backend_errors: CounterFamily::new(
                "bff_quota_backend_errors_total",
                "Quota counter calls that failed (unreachable or slow), by operation.",
                &["op"],
            ),
            traffic: Traffic::default(),
        }
    }
}

impl Metrics {
    /// One finished request (its head, for streams).
    pub fn request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        total: Duration,
        upstream: Duration,
    ) {
        self.requests.add(&[route, method, &status.to_string()], 1);
        self.duration.observe(route, total);
        self.overhead.observe(route, total.saturating_sub(upstream));
        if CHAT_ROUTES.contains(&route) {
            self.traffic.request(status, total, upstream);
        }
    }

    /// Time to the first streamed token.
    pub fn time_to_first_token(&self, model: &str, elapsed: Duration) {
        self.time_to_first_token.observe(model, elapsed);
        self.traffic.first_token(elapsed);
    }

    /// A LiteLLM failure.
    pub fn upstream_error(&self, kind: &str) {
        self.upstream_errors.add(&[kind], 1);
    }

    /// An auth refusal.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.add(&[reason], 1);
    }

    /// A quota admission: how long the counters took and, if refused, why.
    pub fn quota_admission(&self, took: Duration, refused: Option<&str>) {
        self.quota_backend.observe("admit", took);
        if let Some(kind) = refused {
            self.quota_refusals.add(&[kind], 1);
        }
    }

    /// A quota counter call that failed (`admit` or `settle`).
    pub fn quota_backend_error(&self, op: &'static str) {
        self.quota_backend_errors.add(&[op], 1);
    }

    /// The exposition text, with the telemetry sinks' counters.
    pub fn render(&self, telemetry: &[SinkStats]) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        self.duration.render(&mut out);
        self.overhead.render(&mut out);
        self.time_to_first_token.render(&mut out);
        self.upstream_errors.render(&mut out);
        self.auth_failures.render(&mut out);
        self.quota_refusals.render(&mut out);
        self.quota_backend.render(&mut out);
        self.quota_backend_errors.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP bff_telemetry_records_total Telemetry records per sink and state.\n# TYPE bff_telemetry_records_total counter"
        );
        for stats in telemetry {
            for (state, value) in [
                ("queued", stats.queued),
                ("exported", stats.exported),
                ("retried", stats.retried),
                ("spooled", stats.spooled),
                ("replayed", stats.replayed),
                ("rejected", stats.rejected),
                ("dropped", stats.dropped),
            ] {
                let _ = writeln!(
                    out,
                    "bff_telemetry_records_total{{sink=\"{}\",state=\"{state}\"}} {value}",
                    escape(&stats.sink)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_family_grows_past_its_bound() {
        let metrics = Metrics::default();
        for n in 0..MAX_SERIES * 3 {
            metrics.time_to_first_token(&format!("model-{n}"), Duration::from_millis(5));
            metrics.upstream_error(&format!("kind-{n}"));
        }
        let text = metrics.render(&[]);
        let series = |prefix: &str| text.lines().filter(|line| line.starts_with(prefix)).count();
        assert_eq!(
            series("bff_time_to_first_token_seconds_count"),
            MAX_SERIES + 1
        );
        assert_eq!(series("bff_upstream_errors_total{"), MAX_SERIES + 1);
        assert!(text.contains(r#"bff_time_to_first_token_seconds_count{model="other"} 512"#));
    }

    #[test]
    fn renders_counters_histograms_and_escapes_labels() {
        let metrics = Metrics::default();
        metrics.request(
            "/v1/chat/completions",
            "POST",
            200,
            Duration::from_millis(30),
            Duration::from_millis(28),
        );
        metrics.auth_failure("token_\"expired\"");
        let text = metrics.render(&[]);
        assert!(text.contains(r#"bff_http_requests_total{route="/v1/chat/completions",method="POST",status="200"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"bff_overhead_seconds_bucket{route="/v1/chat/completions",le="0.0025"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"bff_overhead_seconds_bucket{route="/v1/chat/completions",le="0.001"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"bff_http_request_duration_seconds_count{route="/v1/chat/completions"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"bff_auth_failures_total{reason="token_\"expired\""} 1"#),
            "{text}"
        );
    }
}
