//! Chat traffic now: requests per second, error rates, latency, bff's overhead and time to first
//! token over the last minute, and the streams open. One replica keeps its own window
//! ([`Traffic`]); replicas sharing Redis also write each second of theirs there
//! ([`Traffic::encoded_since`]), and the report merges every replica's seconds
//! ([`TrafficReport::merge`]), saying how many replicas reported.
//!
//! Memory is fixed whatever the traffic: one slot per second of the window, each with three HDR
//! histograms (`hdrhistogram`, 2 significant digits: quantiles within 1%), serialized in
//! HdrHistogram's V2 format to cross replicas.

use crate::exchange::{CLIENT_CLOSED, Exchange};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds the window covers.
pub const WINDOW_SECONDS: u64 = 60;
/// Largest duration a histogram holds (longer ones count as this).
const MAX_MICROS: u64 = 3_600_000_000;

#[allow(clippy::expect_used)] // constant bounds hdrhistogram accepts (1 ≤ low, high ≥ 2·low, 2 digits ≤ 5)
fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("constant, valid histogram bounds")
}

/// One second of chat traffic on one replica.
#[derive(Clone)]
struct Slot {
    second: u64,
    requests: u64,
    client_errors: u64,
    server_errors: u64,
    abandoned: u64,
    open_streams: u64,
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
            abandoned: 0,
            open_streams: 0,
            latency: histogram(),
            overhead: histogram(),
            first_token: histogram(),
        }
    }

    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.abandoned += other.abandoned;
        self.open_streams += other.open_streams;
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.overhead.add(&other.overhead);
        let _ = self.first_token.add(&other.first_token);
    }
}

/// A slot as one replica writes it for the others.
#[derive(Serialize, Deserialize)]
struct Encoded {
    second: u64,
    requests: u64,
    client_errors: u64,
    server_errors: u64,
    abandoned: u64,
    open_streams: u64,
    latency: String,
    overhead: String,
    first_token: String,
}

fn encode(histogram: &Histogram<u32>) -> String {
    let mut bytes = Vec::new();
    let _ = V2Serializer::new().serialize(histogram, &mut bytes);
    BASE64.encode(bytes)
}

fn decode(text: &str) -> Option<Histogram<u32>> {
    let bytes = BASE64.decode(text).ok()?;
    let decoded: Histogram<u32> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()?;
    let mut bounded = histogram();
    bounded.add(&decoded).ok()?;
    Some(bounded)
}

impl Slot {
    fn encode(&self) -> String {
        let encoded = Encoded {
            second: self.second,
            requests: self.requests,
            client_errors: self.client_errors,
            server_errors: self.server_errors,
            abandoned: self.abandoned,
            open_streams: self.open_streams,
            latency: encode(&self.latency),
            overhead: encode(&self.overhead),
            first_token: encode(&self.first_token),
        };
        serde_json::to_string(&encoded).unwrap_or_default()
    }

    fn decode(text: &str) -> Option<Self> {
        let encoded: Encoded = serde_json::from_str(text).ok()?;
        Some(Self {
            second: encoded.second,
            requests: encoded.requests,
            client_errors: encoded.client_errors,
            server_errors: encoded.server_errors,
            abandoned: encoded.abandoned,
            open_streams: encoded.open_streams,
            latency: decode(&encoded.latency)?,
            overhead: decode(&encoded.overhead)?,
            first_token: decode(&encoded.first_token)?,
        })
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// p50 and p99 of a histogram in milliseconds.
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
    /// Replicas whose traffic this counts (those that reported in the window).
    pub replicas: u64,
    /// Chat requests per second over the window.
    pub requests_per_second: f64,
    /// Share of chat requests answered 5xx (bff's or an upstream's failure).
    pub error_rate: f64,
    /// Share refused with 4xx (policy, quota, bad input).
    pub refused_rate: f64,
    /// Share whose client left before the end.
    pub abandoned_rate: f64,
    /// Until the response head (streams: until they start).
    pub latency_ms: Option<Quantiles>,
    /// Time bff itself added (head time minus waiting on LiteLLM).
    pub overhead_ms: Option<Quantiles>,
    /// Streams' time to first token.
    pub time_to_first_token_ms: Option<Quantiles>,
    /// Streams open now.
    pub active_streams: u64,
    /// Every second of the window, oldest first.
    pub seconds: Vec<Second>,
}

impl TrafficReport {
    /// The report over `slots` (any replicas' seconds) for the window ending at `now`;
    /// `replicas` counted the slots' writers, `open` streams are open now.
    fn of(slots: &[Slot], now: u64, replicas: u64, open: u64) -> Self {
        let first = now.saturating_sub(WINDOW_SECONDS - 1);
        let mut total = Slot::new(now);
        let mut seconds: Vec<Second> = (first..=now)
            .map(|at| Second {
                at,
                requests: 0,
                errors: 0,
            })
            .collect();
        for slot in slots
            .iter()
            .filter(|slot| (first..=now).contains(&slot.second))
        {
            total.add(slot);
            if let Some(second) = seconds.iter_mut().find(|second| second.at == slot.second) {
                second.requests += slot.requests;
                second.errors += slot.server_errors;
            }
        }
        let share = |part: u64| {
            if total.requests == 0 {
                0.0
            } else {
                part as f64 / total.requests as f64
            }
        };
        Self {
            window_seconds: WINDOW_SECONDS,
            replicas,
            requests_per_second: total.requests as f64 / WINDOW_SECONDS as f64,
            error_rate: share(total.server_errors),
            refused_rate: share(total.client_errors),
            abandoned_rate: share(total.abandoned),
            latency_ms: Quantiles::of(&total.latency),
            overhead_ms: Quantiles::of(&total.overhead),
            time_to_first_token_ms: Quantiles::of(&total.first_token),
            active_streams: open,
            seconds,
        }
    }

    /// The fleet's report from every replica's encoded seconds (`(replica, encoded slot)`),
    /// for the window ending at `now`. Streams open: each replica's count in its latest second.
    pub fn merge(encoded: &[(String, String)], now: u64) -> Self {
        let mut slots: Vec<(String, Slot)> = encoded
            .iter()
            .filter_map(|(replica, text)| Some((replica.clone(), Slot::decode(text)?)))
            .collect();
        slots.sort_by_key(|(_, slot)| slot.second);
        let replicas: BTreeSet<String> = slots.iter().map(|(replica, _)| replica.clone()).collect();
        let open = replicas
            .iter()
            .filter_map(|replica| slots.iter().rev().find(|(r, _)| r == replica))
            .map(|(_, slot)| slot.open_streams)
            .sum();
        let slots: Vec<Slot> = slots.into_iter().map(|(_, slot)| slot).collect();
        Self::of(&slots, now, replicas.len() as u64, open)
    }
}

/// One replica's window.
pub struct Traffic {
    slots: Vec<Slot>,
    /// Seconds changed since [`Self::encoded_since`] last took them.
    changed: BTreeSet<u64>,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            slots: (0..WINDOW_SECONDS).map(Slot::new).collect(),
            changed: BTreeSet::new(),
        }
    }
}

/// Unix seconds of now.
pub fn now_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Traffic {
    /// The slot of `second`, emptied first if it held an older second.
    fn slot(&mut self, second: u64) -> Option<&mut Slot> {
        let index = usize::try_from(second % WINDOW_SECONDS).unwrap_or_default();
        let slot = self.slots.get_mut(index)?;
        if slot.second != second {
            *slot = Slot::new(second);
        }
        self.changed.insert(second);
        Some(slot)
    }

    /// Counts a finished chat exchange in `second`, with `open` streams open then.
    pub fn record(&mut self, exchange: &Exchange, second: u64, open: u64) {
        let Some(slot) = self.slot(second) else {
            return;
        };
        slot.requests += 1;
        slot.open_streams = open;
        match exchange.status {
            CLIENT_CLOSED => slot.abandoned += 1,
            400..=499 => slot.client_errors += 1,
            500.. => slot.server_errors += 1,
            _ => {}
        }
        if let Some(head) = exchange.head_after {
            slot.latency.saturating_record(micros(head));
            slot.overhead
                .saturating_record(micros(head.saturating_sub(exchange.upstream_wait)));
        }
        if let Some(first) = exchange
            .chat
            .as_ref()
            .and_then(|chat| chat.first_token_after)
        {
            slot.first_token.saturating_record(micros(first));
        }
    }

    /// This replica's report for the window ending at `now`, with `open` streams open.
    pub fn report(&self, now: u64, open: u64) -> TrafficReport {
        TrafficReport::of(&self.slots, now, 1, open)
    }

    /// The seconds changed since the last call, encoded for other replicas (each a whole
    /// second so far: writing it again replaces, never adds).
    pub fn encoded_since(&mut self) -> Vec<(u64, String)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|second| {
                let index = usize::try_from(second % WINDOW_SECONDS).ok()?;
                let slot = self.slots.get(index).filter(|slot| slot.second == second)?;
                Some((second, slot.encode()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    fn slot(second: u64, requests: u64, latency_ms: u64) -> Slot {
        let mut slot = Slot::new(second);
        slot.requests = requests;
        slot.server_errors = 1;
        for _ in 0..requests {
            slot.latency.saturating_record(latency_ms * 1000);
        }
        slot
    }

    #[test]
    fn reports_rates_and_quantiles_of_the_last_minute_only() {
        let slots = [
            slot(T - 120, 50, 9000),
            slot(T - 1, 98, 100),
            slot(T, 2, 100),
        ];
        let report = TrafficReport::of(&slots, T, 1, 3);
        assert_eq!(report.requests_per_second, 100.0 / 60.0);
        assert_eq!(report.error_rate, 0.02);
        let latency = report
            .latency_ms
            .unwrap_or_else(|| unreachable!("has samples"));
        assert!((latency.p99 - 100.0).abs() < 1.0, "{latency:?}");
        assert_eq!(report.seconds.len(), 60);
        assert_eq!(report.active_streams, 3);
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
    fn replicas_seconds_merge_into_one_fleet_report() {
        let encoded = vec![
            ("a".to_owned(), slot(T - 1, 10, 100).encode()),
            ("b".to_owned(), slot(T - 1, 30, 300).encode()),
            ("b".to_owned(), slot(T, 20, 300).encode()),
            ("c".to_owned(), "not json".to_owned()),
        ];
        let report = TrafficReport::merge(&encoded, T);
        assert_eq!(report.replicas, 2);
        assert_eq!(report.requests_per_second, 60.0 / 60.0);
        let latency = report
            .latency_ms
            .unwrap_or_else(|| unreachable!("has samples"));
        assert!((latency.p50 - 300.0).abs() < 3.0, "{latency:?}");
        assert!(report.latency_ms.is_some_and(|l| l.p99 <= 303.0));
    }

    #[test]
    fn a_slot_is_emptied_when_its_second_comes_round_again_and_encoded_once() {
        let mut traffic = Traffic::default();
        traffic.slot(T).unwrap().requests = 5;
        traffic.slot(T + WINDOW_SECONDS).unwrap().requests += 1;
        let report = traffic.report(T + WINDOW_SECONDS, 0);
        assert_eq!(report.seconds.iter().map(|s| s.requests).sum::<u64>(), 1);
        let encoded = traffic.encoded_since();
        assert_eq!(encoded.len(), 1, "the overwritten second is not sent");
        assert!(traffic.encoded_since().is_empty());
    }
}
