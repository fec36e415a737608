//! The engine: admit a request against every scope that limits it, settle what it used.
//!
//! Before the model is called, [`Quota::admit`] checks every window of every scope with limits
//! and, when all pass, counts the request and takes a concurrency slot: a [`Ticket`]. Scopes
//! without limits cost nothing here; they are counted at settlement, so what a user used shows
//! whether or not anything limits it. [`Ticket::settle`] adds the real tokens and cost and frees
//! the slot, off the request path; a ticket dropped unsettled (the caller went away) frees its
//! slot too.
//!
//! Token and spend limits are checked against what is already used (the way LiteLLM and OpenAI
//! do): requests admitted together are not held back by each other's unknown cost, so a burst
//! can overshoot a token or spend limit by what those concurrent requests use, at most
//! `concurrent_requests` × the largest answer.

use crate::calendar::{self, Windows};
use crate::limits::Limits;
use crate::table::{Scope, ScopeKey};
use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// What to do when the counters cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Refuse (503): budgets are a promise to whoever pays.
    Closed,
    /// Let requests through uncounted, with a warning and a metric.
    Open,
}

/// The time quotas count by. Tests pass a manual clock.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// What a request counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A request a person made.
    #[default]
    Chat,
    /// A background task a front end made on their behalf (a title, tags, follow-ups).
    Task,
}

/// Which per-minute counter a request of `kind` counts in, under `limits`: tasks have their
/// own only where `tasks_per_minute` is set; otherwise they count as requests, so a caller who
/// claims to be a task only moves from one bounded bucket to another.
pub fn counts_as_task(kind: Kind, limits: &Limits) -> bool {
    kind == Kind::Task && limits.tasks_per_minute.is_some()
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuotaError {
    /// A per-minute or concurrency limit: try again after `retry_after`.
    #[error("rate limit reached: {limit} {what} for {scope}; try again in {}s", retry_seconds(*retry_after))]
    RateLimited {
        /// `requests per minute`, `tasks per minute`, `tokens per minute` or `concurrent requests`.
        what: &'static str,
        /// The limit.
        limit: u64,
        /// The scope, in words (`your account`, `model pattern `p``, …).
        scope: String,
        /// When to try again.
        retry_after: Duration,
        /// The rate-limit headers of the refusal.
        headers: Box<RateHeaders>,
    },
    /// A daily or monthly budget (in USD or tokens) is spent.
    #[error("the {period} {budget} for {scope} is spent; it resets at {resets_at}")]
    BudgetSpent {
        /// `daily` or `monthly`.
        period: &'static str,
        /// `budget of $5.00` or `token budget of 1000 tokens`.
        budget: String,
        /// The scope, in words.
        scope: String,
        /// RFC 3339.
        resets_at: String,
        /// Until then.
        retry_after: Duration,
        /// The rate-limit headers of the refusal.
        headers: Box<RateHeaders>,
    },
    /// The counters could not be reached and the fail mode is closed.
    #[error("usage limits cannot be checked right now; try again shortly")]
    Unavailable(String),
}

/// Whole seconds to wait, rounded up, at least one: the one number the body and `Retry-After`
/// both say.
pub fn retry_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

impl QuotaError {
    /// A metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { what, .. } => match *what {
                "requests per minute" => "requests",
                "tasks per minute" => "tasks",
                "tokens per minute" => "tokens",
                _ => "concurrency",
            },
            Self::BudgetSpent { period, budget, .. } => {
                match (*period, budget.starts_with("token")) {
                    ("daily", false) => "daily_budget",
                    ("daily", true) => "daily_tokens",
                    (_, false) => "monthly_budget",
                    (_, true) => "monthly_tokens",
                }
            }
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Whole seconds until a retry can succeed (`None` when unavailable).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::BudgetSpent { retry_after, .. } => {
                Some(retry_seconds(*retry_after))
            }
            Self::Unavailable(_) => None,
        }
    }

    /// The rate-limit headers a refusal carries, as an admission would.
    pub fn headers(&self) -> Option<&RateHeaders> {
        match self {
            Self::RateLimited { headers, .. } | Self::BudgetSpent { headers, .. } => Some(headers),
            Self::Unavailable(_) => None,
        }
    }
}

/// A counters backend failed (unreachable, slow, answered nonsense).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// What a refused admission found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// Requests this minute.
    Requests,
    /// Tasks this minute.
    Tasks,
    /// Tokens this minute.
    Tokens,
    /// Requests in flight.
    Concurrency,
    /// Spend today.
    DailyBudget,
    /// Spend this month.
    MonthlyBudget,
    /// Tokens today.
    DailyTokens,
    /// Tokens this month.
    MonthlyTokens,
}

impl Exceeded {
    /// Every kind, in the order limits are checked.
    pub const ALL: [Self; 8] = [
        Self::Requests,
        Self::Tasks,
        Self::Tokens,
        Self::Concurrency,
        Self::DailyBudget,
        Self::MonthlyBudget,
        Self::DailyTokens,
        Self::MonthlyTokens,
    ];

    /// A stable name (backends exchange it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tasks => "tasks",
            Self::Tokens => "tokens",
            Self::Concurrency => "concurrency",
            Self::DailyBudget => "daily",
            Self::MonthlyBudget => "monthly",
            Self::DailyTokens => "daily_tokens",
            Self::MonthlyTokens => "monthly_tokens",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Usage of one scope in its current windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Used {
    /// Requests started this minute (tasks included, unless counted apart).
    pub requests_this_minute: u64,
    /// Tasks started this minute, where `tasks_per_minute` counts them apart.
    pub tasks_this_minute: u64,
    /// Tokens used this minute.
    pub tokens_this_minute: u64,
    /// Requests in flight (counted only where a concurrency limit applies).
    pub concurrent_requests: u64,
    /// USD spent today (UTC).
    pub spent_today_usd: f64,
    /// USD spent this month (UTC).
    pub spent_this_month_usd: f64,
    /// Tokens used today (UTC).
    pub tokens_today: u64,
    /// Tokens used this month (UTC).
    pub tokens_this_month: u64,
}

impl Used {
    /// The first limit of `limits` this usage has reached for a request of `kind`, if any.
    pub fn exceeded(&self, limits: &Limits, kind: Kind) -> Option<Exceeded> {
        let reached = |limit: Option<u64>, count: u64| limit.is_some_and(|limit| count >= limit);
        let spent = |budget: Option<f64>, spent: f64| budget.is_some_and(|budget| spent >= budget);
        let requests = if counts_as_task(kind, limits) {
            (
                Exceeded::Tasks,
                limits.tasks_per_minute,
                self.tasks_this_minute,
            )
        } else {
            (
                Exceeded::Requests,
                limits.requests_per_minute,
                self.requests_this_minute,
            )
        };
        [
            (requests.0, reached(requests.1, requests.2)),
            (
                Exceeded::Tokens,
                reached(limits.tokens_per_minute, self.tokens_this_minute),
            ),
            (
                Exceeded::Concurrency,
                reached(limits.concurrent_requests, self.concurrent_requests),
            ),
            (
                Exceeded::DailyBudget,
                spent(limits.daily_budget_usd, self.spent_today_usd),
            ),
            (
                Exceeded::MonthlyBudget,
                spent(limits.monthly_budget_usd, self.spent_this_month_usd),
            ),
            (
                Exceeded::DailyTokens,
                reached(limits.daily_tokens, self.tokens_today),
            ),
            (
                Exceeded::MonthlyTokens,
                reached(limits.monthly_tokens, self.tokens_this_month),
            ),
        ]
        .into_iter()
        .find_map(|(kind, hit)| hit.then_some(kind))
    }
}

/// What an admission decided; the usage of every scope, after counting when admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Admitted.
    Admitted(Vec<Used>),
    /// Refused by scope `index` for `exceeded`; nothing was counted.
    Refused {
        /// Which scope.
        index: usize,
        /// Which limit.
        exceeded: Exceeded,
        /// Every scope's usage as found.
        used: Vec<Used>,
    },
}

/// What a finished request used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    /// Prompt + completion tokens.
    pub tokens: u64,
    /// USD.
    pub cost_usd: f64,
}

/// One settlement: what a request used, in the scopes that admitted it (their slot is freed)
/// and the scopes without limits (their request is counted now).
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement<'a> {
    /// Scopes that counted the request at admission and hold its slot.
    pub admitted: &'a [Scope],
    /// Scopes without limits: the request itself is counted here.
    pub counted: &'a [Scope],
    /// What the request counted as.
    pub kind: Kind,
    /// The slot's name.
    pub lease: &'a str,
    /// What it used.
    pub spend: Spend,
}

/// Where counters live.
#[async_trait]
pub trait Counters: Send + Sync {
    /// `local` or `redis`.
    fn name(&self) -> &'static str;
    /// Checks every limit of every scope; if all pass, counts the request of `kind` and takes a
    /// concurrency slot named `lease` until `lease_expires` (a crashed replica's slots lapse).
    async fn admit(
        &self,
        scopes: &[Scope],
        kind: Kind,
        lease: &str,
        windows: &Windows,
        lease_expires: SystemTime,
    ) -> Result<Verdict, BackendError>;
    /// Adds tokens and cost, counts the request where it was not counted yet, frees the slot.
    async fn settle(
        &self,
        settlement: &Settlement<'_>,
        windows: &Windows,
    ) -> Result<(), BackendError>;
    /// Current usage of one scope.
    async fn used(&self, scope: &ScopeKey, windows: &Windows) -> Result<Used, BackendError>;
    /// Whether the backend answers.
    async fn ping(&self) -> Result<(), BackendError>;
    /// Persists what is pending (at shutdown).
    async fn flush(&self, _windows: &Windows) {}
}

/// OpenAI's rate-limit response headers for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateHeaders {
    /// `(limit, remaining, reset)` of requests per minute, when limited.
    pub requests: Option<(u64, u64, Duration)>,
    /// `(limit, remaining, reset)` of tokens per minute, when limited.
    pub tokens: Option<(u64, u64, Duration)>,
}

impl RateHeaders {
    /// The header pairs to add to a response.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some((limit, remaining, reset)) = self.requests {
            pairs.push(("x-ratelimit-limit-requests", limit.to_string()));
            pairs.push(("x-ratelimit-remaining-requests", remaining.to_string()));
            pairs.push(("x-ratelimit-reset-requests", openai_duration(reset)));
        }
        if let Some((limit, remaining, reset)) = self.tokens {
            pairs.push(("x-ratelimit-limit-tokens", limit.to_string()));
            pairs.push(("x-ratelimit-remaining-tokens", remaining.to_string()));
            pairs.push(("x-ratelimit-reset-tokens", openai_duration(reset)));
        }
        pairs
    }

    /// The tightest scope's numbers of requests (or tasks, where counted apart) and tokens
    /// per minute.
    fn of(scopes: &[Scope], used: &[Used], kind: Kind, windows: &Windows) -> Self {
        let tightest = |pick: Pick<'_>| {
            scopes
                .iter()
                .zip(used)
                .filter_map(|(scope, used)| pick(&scope.limits, used))
                .map(|(limit, count)| (limit, limit.saturating_sub(count)))
                .min_by_key(|(_, remaining)| *remaining)
                .map(|(limit, remaining)| (limit, remaining, windows.minute_left))
        };
        Self {
            requests: tightest(&|limits, used| {
                if counts_as_task(kind, limits) {
                    limits.tasks_per_minute.map(|l| (l, used.tasks_this_minute))
                } else {
                    limits
                        .requests_per_minute
                        .map(|l| (l, used.requests_this_minute))
                }
            }),
            tokens: tightest(&|limits, used| {
                limits
                    .tokens_per_minute
                    .map(|l| (l, used.tokens_this_minute))
            }),
        }
    }
}

/// Picks a per-minute limit and its count from a scope's limits and usage.
type Pick<'a> = &'a dyn Fn(&Limits, &Used) -> Option<(u64, u64)>;

/// A duration the way OpenAI writes resets: `20ms`, `6s`, `1m0s`.
fn openai_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{}s", millis.div_ceil(1000))
    } else {
        let seconds = millis.div_ceil(1000);
        format!("{}m{}s", seconds / 60, seconds % 60)
    }
}

/// Backend calls that failed, for metrics.
#[derive(Debug, Default)]
pub struct BackendErrors {
    /// Admissions.
    pub admit: AtomicU64,
    /// Settlements.
    pub settle: AtomicU64,
}

/// The quota engine: one per process.
pub struct Quota {
    counters: Arc<dyn Counters>,
    clock: Arc<dyn Clock>,
    fail_mode: FailMode,
    /// How long a concurrency slot is held at most (a crashed replica's lapse then).
    lease: Duration,
    errors: BackendErrors,
}

impl Quota {
    /// An engine over `counters`; a slot is held for at most `lease`.
    pub fn new(
        counters: Arc<dyn Counters>,
        clock: Arc<dyn Clock>,
        fail_mode: FailMode,
        lease: Duration,
    ) -> Self {
        Self {
            counters,
            clock,
            fail_mode,
            lease,
            errors: BackendErrors::default(),
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.counters.name()
    }

    /// What happens when the counters cannot be reached.
    pub fn fail_mode(&self) -> FailMode {
        self.fail_mode
    }

    /// The counters, for health checks and reports.
    pub fn counters(&self) -> &Arc<dyn Counters> {
        &self.counters
    }

    /// Backend calls that failed so far.
    pub fn backend_errors(&self) -> &BackendErrors {
        &self.errors
    }

    /// The windows of now.
    pub fn windows(&self) -> Windows {
        Windows::at(self.clock.now())
    }

    /// Admits one request of `kind` counted in `scopes`, or says why not. `request_id` names
    /// its concurrency slot. Scopes without limits are counted at settlement, never refused.
    pub async fn admit(
        self: &Arc<Self>,
        scopes: Vec<Scope>,
        kind: Kind,
        request_id: &str,
    ) -> Result<Ticket, QuotaError> {
        let (checked, counted): (Vec<Scope>, Vec<Scope>) = scopes
            .into_iter()
            .partition(|scope| !scope.limits.is_empty());
        let ticket = |headers, admitted| Ticket {
            headers,
            pending: Some(Pending {
                quota: Arc::clone(self),
                admitted,
                counted: counted.clone(),
                kind,
                lease: request_id.to_owned(),
            }),
        };
        if checked.is_empty() {
            return Ok(ticket(RateHeaders::default(), Vec::new()));
        }
        let now = self.clock.now();
        let windows = Windows::at(now);
        let expires = now.checked_add(self.lease).unwrap_or(now);
        match self
            .counters
            .admit(&checked, kind, request_id, &windows, expires)
            .await
        {
            Ok(Verdict::Admitted(used)) => Ok(ticket(
                RateHeaders::of(&checked, &used, kind, &windows),
                checked,
            )),
            Ok(Verdict::Refused {
                index,
                exceeded,
                used,
            }) => {
                let headers = RateHeaders::of(&checked, &used, kind, &windows);
                Err(refusal(checked.get(index), exceeded, &windows, headers))
            }
            Err(error) => {
                self.errors.admit.fetch_add(1, Ordering::Relaxed);
                self.fail(error)
            }
        }
    }

    fn fail(&self, error: BackendError) -> Result<Ticket, QuotaError> {
        match self.fail_mode {
            FailMode::Closed => {
                tracing::warn!(%error, "quota backend unavailable; refusing (QUOTA_FAIL_MODE=closed)");
                Err(QuotaError::Unavailable(error.0))
            }
            FailMode::Open => {
                tracing::warn!(%error, "quota backend unavailable; letting the request through uncounted (QUOTA_FAIL_MODE=open)");
                Ok(Ticket::unlimited())
            }
        }
    }

    /// Persists what the counters hold in memory (at shutdown).
    pub async fn flush(&self) {
        self.counters.flush(&self.windows()).await;
    }

    async fn settle(&self, pending: &Pending, spend: Spend) {
        let settlement = Settlement {
            admitted: &pending.admitted,
            counted: &pending.counted,
            kind: pending.kind,
            lease: &pending.lease,
            spend,
        };
        if let Err(error) = self.counters.settle(&settlement, &self.windows()).await {
            self.errors.settle.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, tokens = spend.tokens, cost_usd = spend.cost_usd, "quota usage could not be recorded");
        }
    }
}

fn refusal(
    scope: Option<&Scope>,
    exceeded: Exceeded,
    windows: &Windows,
    headers: RateHeaders,
) -> QuotaError {
    let limits = scope.map(|scope| scope.limits.clone()).unwrap_or_default();
    let name = scope.map_or_else(|| "your account".to_owned(), |scope| scope.key.describe());
    let rate = |what, limit: Option<u64>, retry_after| QuotaError::RateLimited {
        what,
        limit: limit.unwrap_or(0),
        scope: name.clone(),
        retry_after,
        headers: Box::new(headers.clone()),
    };
    let budget = |period, budget: String, ends: u64| QuotaError::BudgetSpent {
        period,
        budget,
        scope: name.clone(),
        resets_at: calendar::rfc3339(ends),
        retry_after: Duration::from_secs(ends.saturating_sub(windows.now)),
        headers: Box::new(headers.clone()),
    };
    let usd = |amount: Option<f64>| format!("budget of ${:.2}", amount.unwrap_or(0.0));
    let tokens = |count: Option<u64>| format!("token budget of {} tokens", count.unwrap_or(0));
    match exceeded {
        Exceeded::Requests => rate(
            "requests per minute",
            limits.requests_per_minute,
            windows.minute_left,
        ),
        Exceeded::Tasks => rate(
            "tasks per minute",
            limits.tasks_per_minute,
            windows.minute_left,
        ),
        Exceeded::Tokens => rate(
            "tokens per minute",
            limits.tokens_per_minute,
            windows.minute_left,
        ),
        Exceeded::Concurrency => rate(
            "concurrent requests",
            limits.concurrent_requests,
            Duration::from_secs(1),
        ),
        Exceeded::DailyBudget => budget("daily", usd(limits.daily_budget_usd), windows.day_ends),
        Exceeded::MonthlyBudget => budget(
            "monthly",
            usd(limits.monthly_budget_usd),
            windows.month_ends,
        ),
        Exceeded::DailyTokens => budget("daily", tokens(limits.daily_tokens), windows.day_ends),
        Exceeded::MonthlyTokens => {
            budget("monthly", tokens(limits.monthly_tokens), windows.month_ends)
        }
    }
}

struct Pending {
    quota: Arc<Quota>,
    admitted: Vec<Scope>,
    counted: Vec<Scope>,
    kind: Kind,
    lease: String,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("admitted", &self.admitted)
            .field("counted", &self.counted)
            .field("kind", &self.kind)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// An admitted request's hold on its quota: settle it with what it used; dropped unsettled,
/// it frees its concurrency slot and counts the request with no tokens.
#[derive(Debug)]
pub struct Ticket {
    headers: RateHeaders,
    pending: Option<Pending>,
}

impl Ticket {
    /// A ticket that counts nothing (no limits, or the counters were down with fail-open).
    pub fn unlimited() -> Self {
        Self {
            headers: RateHeaders::default(),
            pending: None,
        }
    }

    /// The rate-limit headers for the response.
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// Records what the request used and frees its slot, off the request path.
    pub fn settle(mut self, spend: Spend) {
        self.finish(spend);
    }

    fn finish(&mut self, spend: Spend) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        // Outside a runtime (a process tearing down) there is nothing left to count for; a
        // slot then lapses with its lease.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { pending.quota.settle(&pending, spend).await });
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.finish(Spend::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_written_the_way_openai_writes_them() {
        assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(openai_duration(Duration::from_millis(5200)), "6s");
        assert_eq!(openai_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(openai_duration(Duration::from_secs(61)), "1m1s");
    }

    #[test]
    fn the_body_and_retry_after_say_the_same_number_of_seconds() {
        let refused = QuotaError::RateLimited {
            what: "requests per minute",
            limit: 2,
            scope: "your account".into(),
            retry_after: Duration::from_millis(58_300),
            headers: Box::default(),
        };
        assert_eq!(refused.retry_after_seconds(), Some(59));
        assert!(
            refused.to_string().ends_with("try again in 59s"),
            "{refused}"
        );
        assert_eq!(retry_seconds(Duration::ZERO), 1);
        assert_eq!(retry_seconds(Duration::from_secs(60)), 60);
    }

    #[test]
    fn a_task_counts_apart_only_where_tasks_have_a_limit() {
        let shared = Limits {
            requests_per_minute: Some(2),
            ..Limits::default()
        };
        let used = Used {
            requests_this_minute: 2,
            ..Used::default()
        };
        // Without tasks_per_minute a task is bounded by the requests limit.
        assert_eq!(used.exceeded(&shared, Kind::Task), Some(Exceeded::Requests));
        let apart = Limits {
            tasks_per_minute: Some(5),
            ..shared
        };
        assert_eq!(used.exceeded(&apart, Kind::Task), None);
        assert_eq!(used.exceeded(&apart, Kind::Chat), Some(Exceeded::Requests));
    }
}
