//! What bff itself saw since start, in memory and bounded: tokens and cost per day, model and
//! user ([`UsageLedger`]), and the latest requests ([`RecentRequests`]). The observability routes
//! answer from these when Langfuse is not configured; the top users by spend always come from here
//! (Langfuse's metrics API cannot group by user).

use crate::observability::TraceItem;
use bff_telemetry::{GENERATION_NAME, LlmRecord, Outcome, UnixNanos};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
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

/// One user's totals over a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserUsage {
    /// The user (empty for service callers without a user).
    pub user_id: String,
    /// Totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

impl UsageLedger {
    /// The `limit` users who spent most in `[from, to]`, by cost, then tokens.
    pub fn top_users(&self, from: &str, to: &str, limit: usize) -> Vec<UserUsage> {
        let mut users: HashMap<String, UsageTotals> = HashMap::new();
        for ((day, _, user), totals) in self
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if day.as_str() >= from && day.as_str() <= to {
                users.entry(user.clone()).or_default().add(totals);
            }
        }
        let mut ranked: Vec<UserUsage> = users
            .into_iter()
            .map(|(user_id, totals)| UserUsage { user_id, totals })
            .collect();
        ranked.sort_by(|a, b| {
            b.totals
                .cost_usd
                .total_cmp(&a.totals.cost_usd)
                .then(b.totals.total_tokens.cmp(&a.totals.total_tokens))
                .then_with(|| a.user_id.cmp(&b.user_id))
        });
        ranked.truncate(limit);
        ranked
    }
}

/// Most requests [`RecentRequests`] keeps.
pub const MAX_RECENT: usize = 1_000;

/// The latest finished chat requests, newest last, at most [`MAX_RECENT`].
#[derive(Debug, Default)]
pub struct RecentRequests {
    items: Mutex<VecDeque<TraceItem>>,
}

impl RecentRequests {
    /// Adds one finished request, forgetting the oldest past [`MAX_RECENT`].
    pub fn add(&self, record: &LlmRecord) {
        let item = trace_item(record);
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if items.len() >= MAX_RECENT {
            items.pop_front();
        }
        items.push_back(item);
    }

    /// Up to `limit` of the latest, newest first, for one user or all.
    pub fn latest(&self, user: Option<&str>, limit: usize) -> Vec<TraceItem> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .filter(|item| user.is_none_or(|user| item.user_id.as_deref() == Some(user)))
            .take(limit)
            .cloned()
            .collect()
    }
}

fn millis_between(start: UnixNanos, end: UnixNanos) -> f64 {
    end.0.saturating_sub(start.0) as f64 / 1e6
}

/// A record as the traces panel shows it: the same level and status message as the Langfuse
/// generation bff exports for it.
fn trace_item(record: &LlmRecord) -> TraceItem {
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
        Outcome::Cancelled => ("WARNING", Some("cancelled: the client disconnected".into())),
    };
    TraceItem {
        trace_id: Some(record.trace_id.clone()),
        observation_id: None,
        name: Some(GENERATION_NAME.into()),
        user_id: record.user_id.clone(),
        session_id: record.session_id.clone(),
        model: Some(
            record
                .model_served
                .clone()
                .unwrap_or_else(|| record.model_requested.clone()),
        ),
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
        url: None,
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
    fn top_users_rank_by_cost_within_the_range() {
        let day1 = 1_767_225_600_000_000_000; // 2026-01-01
        let ledger = UsageLedger::default();
        ledger.add(&record("alice", "m1", day1, 10));
        ledger.add(&record("bob", "m1", day1, 5));
        ledger.add(&record("bob", "m2", day1, 5));
        ledger.add(&record("carol", "m1", day1 + 86_400_000_000_000, 99));
        let top = ledger.top_users("2026-01-01", "2026-01-01", 10);
        let ranked: Vec<_> = top
            .iter()
            .map(|u| (u.user_id.as_str(), u.totals.cost_usd))
            .collect();
        assert_eq!(ranked, [("bob", 1.0), ("alice", 0.5)]);
        assert_eq!(
            ledger.top_users("2026-01-01", "2026-01-02", 1)[0].user_id,
            "bob"
        );
    }

    #[test]
    fn recent_requests_are_bounded_newest_first_and_filtered_by_user() {
        let recent = RecentRequests::default();
        for n in 0..MAX_RECENT + 10 {
            let user = if n % 2 == 0 { "alice" } else { "bob" };
            recent.add(&record(user, &format!("m{n}"), 0, 1));
        }
        assert_eq!(recent.latest(None, usize::MAX).len(), MAX_RECENT);
        let alice = recent.latest(Some("alice"), 2);
        let models: Vec<_> = alice.iter().map(|item| item.model.as_deref()).collect();
        assert_eq!(models, [Some("m1008"), Some("m1006")]);
    }

    #[test]
    fn a_failed_request_shows_its_error_code_first() {
        let mut failed = record("alice", "m", 0, 1);
        failed.outcome = Outcome::Error;
        failed.error = Some(bff_telemetry::RecordError {
            kind: "rate_limited".into(),
            message: "slow down".into(),
            status: Some(429),
        });
        let item = trace_item(&failed);
        assert_eq!(item.level.as_deref(), Some("ERROR"));
        assert_eq!(
            item.status_message.as_deref(),
            Some("rate_limited: slow down")
        );
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
