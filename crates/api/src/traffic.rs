//! Chat traffic now: requests per second, error rates, latency, bff's overhead and time to first
//! token over the last minute, and the streams open right now. The monitoring page reads it
//! from `GET /observability/traffic`; `/metrics` has the same events as cumulative series.
//!
//! Memory is fixed whatever the traffic: one slot per second of the window, each with three
//! HDR histograms (`hdrhistogram`, 2 significant digits: quantiles within 1%).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds the window covers.
pub const WINDOW_SECONDS: u64 = 60;
/// Largest duration a histogram holds (longer ones count as this).
const MAX_MICROS: u64 = 3_600_000_000;

#[allow(clippy::expect_used)] // constant bounds hdrhistogram accepts (1 ≤ low, high ≥ 2·low, 2 digits ≤ 5)
fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("constant, valid histogram bounds")
}

/// One second of chat traffic.
struct Slot {
    second: u64,
    requests: u64,
    client_errors: u64,
    server_errors: u64,
    latency: Histogram<u32>,
    overhead: Histogram<u32>,
    first_token: Histogram<u32>,
}

impl Slot {
    fn new(second: u64) -> Self {
        Self {
            second,
            requests: 0,
            client_errors: 0,
            server_errors: 0,
            latency: histogram(),
            overhead: histogram(),
            first_token: histogram(),
        }
    }

    /// Empties the slot for a new second.
    fn reuse(&mut self, second: u64) {
        self.second = second;
        self.requests = 0;
        self.client_errors = 0;
        self.server_errors = 0;
        self.latency.reset();
        self.overhead.reset();
        self.first_token.reset();
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// p50 and p99 of a histogram in milliseconds; `None` without samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Quantiles {
    fn of(histogram: &Histogram<u32>) -> Option<Self> {
        let millis = |quantile| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        (!histogram.is_empty()).then(|| Self {
            p50: millis(0.5),
            p99: millis(0.99),
        })
    }
}

/// Requests and errors of one second, for the page's chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Second {
    /// Unix time of the second.
    pub at: u64,
    /// Chat requests finished in it.
    pub requests: u64,
    /// Of those, answered 5xx.
    pub errors: u64,
}

/// What `GET /observability/traffic` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficReport {
    /// Seconds covered.
    pub window_seconds: u64,
    /// Chat requests per second over the window.
    pub requests_per_second: f64,
    /// Share of chat requests answered 5xx (bff's or an upstream's failure).
    pub error_rate: f64,
    /// Share refused with 4xx (policy, quota, bad input).
    pub refused_rate: f64,
    /// Until the response head (streams: until they start).
    pub latency_ms: Option<Quantiles>,
    /// Time bff itself added (total minus waiting on LiteLLM).
    pub overhead_ms: Option<Quantiles>,
    /// Streams' time to first token.
    pub time_to_first_token_ms: Option<Quantiles>,
    /// Streams open now.
    pub active_streams: u64,
    /// Every second of the window, oldest first.
    pub seconds: Vec<Second>,
}

/// The window.
pub struct Traffic {
    slots: Mutex<Vec<Slot>>,
    active_streams: Arc<AtomicU64>,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            slots: Mutex::new((0..WINDOW_SECONDS).map(Slot::new).collect()),
            active_streams: Arc::default(),
        }
    }
}

fn now_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Traffic {
    /// Runs `update` on the slot of `second`, emptying it first if it held an older second.
    fn at(&self, second: u64, update: impl FnOnce(&mut Slot)) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let index = usize::try_from(second % WINDOW_SECONDS).unwrap_or_default();
        if let Some(slot) = slots.get_mut(index) {
            if slot.second != second {
                slot.reuse(second);
            }
            update(slot);
        }
    }

    /// A finished chat request (its head, for streams).
    pub fn request(&self, status: u16, total: Duration, upstream: Duration) {
        self.request_at(now_second(), status, total, upstream);
    }

    fn request_at(&self, second: u64, status: u16, total: Duration, upstream: Duration) {
        self.at(second, |slot| {
            slot.requests += 1;
            slot.client_errors += u64::from((400..500).contains(&status));
            slot.server_errors += u64::from(status >= 500);
            slot.latency.saturating_record(micros(total));
            slot.overhead
                .saturating_record(micros(total.saturating_sub(upstream)));
        });
    }

    /// A stream's first token.
    pub fn first_token(&self, elapsed: Duration) {
        self.first_token_at(now_second(), elapsed);
    }

    fn first_token_at(&self, second: u64, elapsed: Duration) {
        self.at(second, |slot| {
            slot.first_token.saturating_record(micros(elapsed))
        });
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn stream_opened(&self) -> OpenStream {
        self.active_streams.fetch_add(1, Ordering::Relaxed);
        OpenStream(Arc::clone(&self.active_streams))
    }

    /// The last [`WINDOW_SECONDS`] seconds.
    pub fn report(&self) -> TrafficReport {
        self.report_at(now_second())
    }

    fn report_at(&self, now: u64) -> TrafficReport {
        let first = now.saturating_sub(WINDOW_SECONDS - 1);
        let (mut latency, mut overhead, mut first_token) = (histogram(), histogram(), histogram());
        let (mut requests, mut refused, mut errors) = (0, 0, 0);
        let mut seconds: Vec<Second> = (first..=now)
            .map(|at| Second {
                at,
                requests: 0,
                errors: 0,
            })
            .collect();
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in slots
            .iter()
            .filter(|slot| (first..=now).contains(&slot.second))
        {
            requests += slot.requests;
            refused += slot.client_errors;
            errors += slot.server_errors;
            // Same bounds everywhere, so adding cannot fail.
            let _ = latency.add(&slot.latency);
            let _ = overhead.add(&slot.overhead);
            let _ = first_token.add(&slot.first_token);
            if let Some(second) = seconds.iter_mut().find(|second| second.at == slot.second) {
                second.requests = slot.requests;
                second.errors = slot.server_errors;
            }
        }
        drop(slots);
        let share = |part: u64| {
            if requests == 0 {
                0.0
            } else {
                part as f64 / requests as f64
            }
        };
        TrafficReport {
            window_seconds: WINDOW_SECONDS,
            requests_per_second: requests as f64 / WINDOW_SECONDS as f64,
            error_rate: share(errors),
            refused_rate: share(refused),
            latency_ms: Quantiles::of(&latency),
            overhead_ms: Quantiles::of(&overhead),
            time_to_first_token_ms: Quantiles::of(&first_token),
            active_streams: self.active_streams.load(Ordering::Relaxed),
            seconds,
        }
    }
}

/// An open stream; dropping it (however the stream ends) closes it in the count.
#[derive(Debug)]
pub struct OpenStream(Arc<AtomicU64>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    #[test]
    fn reports_rates_and_quantiles_of_the_last_minute_only() {
        let traffic = Traffic::default();
        traffic.request_at(T - 120, 200, Duration::from_secs(9), Duration::ZERO); // too old
        for _ in 0..98 {
            traffic.request_at(
                T - 1,
                200,
                Duration::from_millis(100),
                Duration::from_millis(95),
            );
        }
        traffic.request_at(T, 429, Duration::from_millis(2), Duration::ZERO);
        traffic.request_at(T, 502, Duration::from_secs(2), Duration::from_secs(2));
        traffic.first_token_at(T, Duration::from_millis(300));
        let report = traffic.report_at(T);
        assert_eq!(report.requests_per_second, 100.0 / 60.0);
        assert_eq!((report.error_rate, report.refused_rate), (0.01, 0.01));
        let latency = report
            .latency_ms
            .unwrap_or_else(|| unreachable!("has samples"));
        assert!((latency.p50 - 100.0).abs() < 1.0, "{latency:?}");
        assert!((latency.p99 - 100.0).abs() < 1.0, "{latency:?}");
        let overhead = report
            .overhead_ms
            .unwrap_or_else(|| unreachable!("has samples"));
        assert!((overhead.p50 - 5.0).abs() < 0.1, "{overhead:?}");
        let first_token = report
            .time_to_first_token_ms
            .unwrap_or_else(|| unreachable!("has samples"));
        assert!((first_token.p50 - 300.0).abs() < 3.0, "{first_token:?}");
        assert_eq!(report.seconds.len(), 60);
        assert_eq!(
            report.seconds.last(),
            Some(&Second {
                at: T,
                requests: 2,
                errors: 1
            })
        );
    }

    #[test]
    fn a_slot_is_emptied_when_its_second_comes_round_again() {
        let traffic = Traffic::default();
        traffic.request_at(T, 500, Duration::from_secs(1), Duration::ZERO);
        traffic.request_at(
            T + WINDOW_SECONDS,
            200,
            Duration::from_millis(1),
            Duration::ZERO,
        );
        let report = traffic.report_at(T + WINDOW_SECONDS);
        assert_eq!(report.error_rate, 0.0);
        assert_eq!(report.seconds.iter().map(|s| s.requests).sum::<u64>(), 1);
    }

    #[test]
    fn without_traffic_there_are_no_quantiles_and_no_rates() {
        let report = Traffic::default().report_at(T);
        assert_eq!((report.requests_per_second, report.error_rate), (0.0, 0.0));
        assert_eq!(report.latency_ms, None);
    }

    #[test]
    fn open_streams_are_counted_until_their_guard_drops() {
        let traffic = Traffic::default();
        let first = traffic.stream_opened();
        let second = traffic.stream_opened();
        assert_eq!(traffic.report_at(T).active_streams, 2);
        drop(first);
        drop(second);
        assert_eq!(traffic.report_at(T).active_streams, 0);
    }
}
