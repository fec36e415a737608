//! Tokens and cost since start, per day, model and user: what `/observability/usage` answers
//! when Langfuse is not configured.

use bff_telemetry::{LlmRecord, Outcome, UnixNanos};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Totals of one (day, model) row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageTotals {
    /// Requests.
    pub requests: u64,
    /// Requests that failed; `None` (JSON `null`) when the source cannot say (Langfuse's v1
    /// daily metrics have no level).
    pub errors: Option<u64>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
    /// Cost in USD.
    pub cost_usd: f64,
}

impl Default for UsageTotals {
    fn default() -> Self {
        Self {
            requests: 0,
            errors: Some(0),
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            cost_usd: 0.0,
        }
    }
}

impl UsageTotals {
    /// Adds another row's totals to these (errors stay unknown once one row does not know).
    pub fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors = self.errors.zip(other.errors).map(|(a, b)| a + b);
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
        self.cost_usd += other.cost_usd;
    }
}

/// One row of a usage answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Model.
    pub model: String,
    /// Totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// Most (day, model, user) rows the ledger keeps; past it, the oldest day's rows go first.
pub const MAX_ROWS: usize = 10_000;

/// In-memory usage, keyed by (day, model, user), at most [`MAX_ROWS`] rows.
#[derive(Debug, Default)]
pub struct UsageLedger {
    rows: Mutex<BTreeMap<(String, String, String), UsageTotals>>,
}

impl UsageLedger {
    /// Adds one finished request.
    pub fn add(&self, record: &LlmRecord) {
        let day = day_of(record.started_at);
        let model = record
            .model_served
            .clone()
            .unwrap_or_else(|| record.model_requested.clone());
        let user = record.user_id.clone().unwrap_or_default();
        let usage = record.usage.clone().unwrap_or_default();
        let totals = UsageTotals {
            requests: 1,
            errors: Some(u64::from(record.outcome == Outcome::Error)),
            input_tokens: usage.input.unwrap_or(0),
            output_tokens: usage.output.unwrap_or(0),
            total_tokens: usage.total.unwrap_or(0),
            cost_usd: record.cost_usd.unwrap_or(0.0),
        };
        let key = (day, model, user);
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if !rows.contains_key(&key) && rows.len() >= MAX_ROWS {
            rows.pop_first(); // keys start with the day: this is the oldest row
        }
        rows.entry(key).or_default().add(&totals);
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no request was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows for days in `[from, to]` (inclusive, `YYYY-MM-DD`), for one user or all.
    pub fn query(&self, from: &str, to: &str, user: Option<&str>) -> Vec<UsageRow> {
        let mut merged: BTreeMap<(String, String), UsageTotals> = BTreeMap::new();
        for ((day, model, row_user), totals) in self
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if day.as_str() < from || day.as_str() > to || user.is_some_and(|u| u != row_user) {
                continue;
            }
            merged
                .entry((day.clone(), model.clone()))
                .or_default()
                .add(totals);
        }
        merged
            .into_iter()
            .map(|((day, model), totals)| UsageRow { day, model, totals })
            .collect()
    }
}

/// `YYYY-MM-DD` of a time.
pub fn day_of(time: UnixNanos) -> String {
    time.to_rfc3339().chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff_telemetry::TokenUsage;

    fn record(user: &str, model: &str, day_nanos: u64, tokens: u64) -> LlmRecord {
        let mut record = LlmRecord::new("ab".repeat(16), "r", "/chat", model);
        record.user_id = Some(user.into());
        record.started_at = UnixNanos(day_nanos);
        record.usage = Some(TokenUsage {
            input: Some(tokens),
            output: Some(tokens),
            total: Some(tokens * 2),
            details: Vec::new(),
        });
        record.cost_usd = Some(0.5);
        record
    }

    #[test]
    fn random_model_names_cannot_grow_the_ledger_without_bound() {
        let ledger = UsageLedger::default();
        for n in 0..MAX_ROWS + 500 {
            ledger.add(&record("mallory", &format!("no-such-model-{n}"), 0, 1));
        }
        assert_eq!(ledger.len(), MAX_ROWS);
    }

    #[test]
    fn aggregates_by_day_and_model_and_filters_by_user() {
        let day1 = 1_767_225_600_000_000_000; // 2026-01-01
        let day2 = day1 + 86_400_000_000_000;
        let ledger = UsageLedger::default();
        ledger.add(&record("alice", "m1", day1, 10));
        ledger.add(&record("bob", "m1", day1, 5));
        ledger.add(&record("alice", "m1", day2, 1));
        let all = ledger.query("2026-01-01", "2026-01-01", None);
        assert_eq!(all.len(), 1);
        assert_eq!(
            (
                all[0].totals.requests,
                all[0].totals.input_tokens,
                all[0].totals.cost_usd
            ),
            (2, 15, 1.0)
        );
        let alice = ledger.query("2026-01-01", "2026-12-31", Some("alice"));
        assert_eq!(
            alice.iter().map(|row| row.day.as_str()).collect::<Vec<_>>(),
            ["2026-01-01", "2026-01-02"]
        );
        assert_eq!(alice[0].totals.input_tokens, 10);
    }
}
