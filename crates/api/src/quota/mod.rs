//! Quotas: per-user (and per-role, per-model) request, token, concurrency and spend limits.
//!
//! The limits come from the policy ([`bff_auth::Policy::limits_for`]); this module counts.
//! Before LiteLLM is called, [`Quota::admit`] checks every window of every scope that applies
//! (the account, and the model pattern when the role limits it) and, when all pass, counts the
//! request and takes a concurrency slot: a [`Ticket`]. After the call — or the stream's end, or
//! a disconnect — [`Ticket::settle`] adds the real tokens and cost and frees the slot; a ticket
//! dropped unsettled (the caller went away mid-call) frees its slot too.
//!
//! Token and spend limits are checked against what is already used (the way LiteLLM and OpenAI
//! do): requests admitted together are not held back by each other's unknown cost, so a burst
//! can overshoot a token or spend limit by what those concurrent requests use, at most
//! `concurrent_requests` × the largest answer.
//!
//! Counters live in process by default ([`local`], spend persisted in a `redb` file so it
//! survives a restart), or in Redis with `QUOTA_REDIS_URL` ([`redis`]), updated atomically by
//! Lua scripts so every replica enforces one limit.

pub mod calendar;
pub mod local;
pub mod redis;

use crate::metrics::Metrics;
use crate::quota::calendar::Windows;
use async_trait::async_trait;
use bff_auth::{Limits, QuotaLimits};
use serde::Serialize;
use std::sync::Arc;
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

/// One set of counters: the account (`<user>`) or a model pattern (`<user>|model:<pattern>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// The counting key.
    pub key: String,
    /// Its limits.
    pub limits: Limits,
}

/// The scopes of one request.
pub fn scopes(user_id: &str, limits: &QuotaLimits) -> Vec<Scope> {
    let mut scopes = Vec::new();
    if !limits.account.is_empty() {
        scopes.push(Scope {
            key: user_id.to_owned(),
            limits: limits.account.clone(),
        });
    }
    if let Some((pattern, model)) = &limits.model
        && !model.is_empty()
    {
        scopes.push(Scope {
            key: format!("{user_id}|model:{pattern}"),
            limits: model.clone(),
        });
    }
    scopes
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuotaError {
    /// A per-minute or concurrency limit: try again after `retry_after`.
    #[error("rate limit reached: {limit} {kind} for {scope}; try again in {}s", retry_after.as_secs().max(1))]
    RateLimited {
        /// `requests per minute`, `tokens per minute` or `concurrent requests`.
        kind: &'static str,
        /// The limit.
        limit: u64,
        /// `your account` or `model pattern <p>`.
        scope: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// A daily or monthly budget is spent.
    #[error("the {period} budget of ${budget:.2} for {scope} is spent; it resets at {resets_at}")]
    BudgetSpent {
        /// `daily` or `monthly`.
        period: &'static str,
        /// The budget in USD.
        budget: f64,
        /// `your account` or `model pattern <p>`.
        scope: String,
        /// RFC 3339.
        resets_at: String,
        /// Seconds until then.
        retry_after: Duration,
    },
    /// The counters could not be reached and the fail mode is closed.
    #[error("usage limits cannot be checked right now; try again shortly")]
    Unavailable(String),
}

impl QuotaError {
    /// A metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { kind, .. } => match *kind {
                "requests per minute" => "requests",
                "tokens per minute" => "tokens",
                _ => "concurrency",
            },
            Self::BudgetSpent { period, .. } => match *period {
                "daily" => "daily_budget",
                _ => "monthly_budget",
            },
            Self::Unavailable(_) => "unavailable",
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
    /// Tokens this minute.
    Tokens,
    /// Requests in flight.
    Concurrency,
    /// Spend today.
    Daily,
    /// Spend this month.
    Monthly,
}

/// Usage of one scope in its current windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Used {
    /// Requests started this minute.
    pub requests_this_minute: u64,
    /// Tokens used this minute.
    pub tokens_this_minute: u64,
    /// Requests in flight.
    pub concurrent_requests: u64,
    /// USD spent today (UTC).
    pub spent_today_usd: f64,
    /// USD spent this month (UTC).
    pub spent_this_month_usd: f64,
}

/// What an admission decided, per scope.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Admitted; the usage of each scope after counting this request.
    Admitted(Vec<Used>),
    /// Refused by scope `index` for `exceeded`.
    Refused {
        /// Which scope.
        index: usize,
        /// Which limit.
        exceeded: Exceeded,
    },
}

/// Where counters live.
#[async_trait]
pub trait Counters: Send + Sync {
    /// `local` or `redis`.
    fn name(&self) -> &'static str;
    /// Checks every limit of every scope; if all pass, counts the request and takes a
    /// concurrency slot named `lease` until `lease_expires` (a crashed replica's slots lapse).
    async fn admit(
        &self,
        scopes: &[Scope],
        lease: &str,
        windows: &Windows,
        lease_expires: SystemTime,
    ) -> Result<Verdict, BackendError>;
    /// Adds tokens and cost, and frees the slot.
    async fn settle(
        &self,
        scopes: &[Scope],
        lease: &str,
        windows: &Windows,
        spend: Spend,
    ) -> Result<(), BackendError>;
    /// Current usage of one scope.
    async fn used(&self, scope: &str, windows: &Windows) -> Result<Used, BackendError>;
    /// Whether the backend answers.
    async fn ping(&self) -> Result<(), BackendError>;
    /// Persists what is pending (at shutdown).
    async fn flush(&self, _windows: &Windows) {}
}

/// What a finished request used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    /// Prompt + completion tokens.
    pub tokens: u64,
    /// USD.
    pub cost_usd: f64,
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
}

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

/// The quota engine: one per process.
pub struct Quota {
    counters: Arc<dyn Counters>,
    clock: Arc<dyn Clock>,
    fail_mode: FailMode,
    /// How long a concurrency slot is held at most (a crashed replica's lapse then).
    lease: Duration,
    metrics: Arc<Metrics>,
}

impl Quota {
    /// An engine over `counters`.
    pub fn new(
        counters: Arc<dyn Counters>,
        clock: Arc<dyn Clock>,
        fail_mode: FailMode,
        lease: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            counters,
            clock,
            fail_mode,
            lease,
            metrics,
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

    /// The windows of now.
    pub fn windows(&self) -> Windows {
        Windows::at(self.clock.now())
    }

    /// Admits one request of `user_id` under `limits`, or says why not. `request_id` names
    /// its concurrency slot. No limits: admitted at once, nothing counted.
    pub async fn admit(
        self: &Arc<Self>,
        user_id: &str,
        limits: &QuotaLimits,
        request_id: &str,
    ) -> Result<Ticket, QuotaError> {
        let scopes = scopes(user_id, limits);
        if scopes.is_empty() {
            return Ok(Ticket::unlimited());
        }
        let now = self.clock.now();
        let windows = Windows::at(now);
        let expires = now.checked_add(self.lease).unwrap_or(now);
        let started = tokio::time::Instant::now();
        let verdict = self
            .counters
            .admit(&scopes, request_id, &windows, expires)
            .await;
        let result = self.decide(verdict, scopes, request_id, &windows);
        let refused = result.as_ref().err().map(QuotaError::kind);
        self.metrics.quota_admission(started.elapsed(), refused);
        result
    }

    fn decide(
        self: &Arc<Self>,
        verdict: Result<Verdict, BackendError>,
        scopes: Vec<Scope>,
        request_id: &str,
        windows: &Windows,
    ) -> Result<Ticket, QuotaError> {
        match verdict {
            Ok(Verdict::Admitted(used)) => Ok(Ticket {
                headers: headers(&scopes, &used, windows),
                pending: Some((Arc::clone(self), scopes, request_id.to_owned())),
            }),
            Ok(Verdict::Refused { index, exceeded }) => {
                Err(refusal(scopes.get(index), exceeded, windows))
            }
            Err(error) => {
                self.metrics.quota_backend_error("admit");
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

    async fn settle(&self, scopes: &[Scope], lease: &str, spend: Spend) {
        let windows = self.windows();
        if let Err(error) = self.counters.settle(scopes, lease, &windows, spend).await {
            self.metrics.quota_backend_error("settle");
            tracing::warn!(%error, tokens = spend.tokens, cost_usd = spend.cost_usd, "quota usage could not be recorded");
        }
    }
}

fn headers(scopes: &[Scope], used: &[Used], windows: &Windows) -> RateHeaders {
    let tightest = |limit: fn(&Limits) -> Option<u64>, count: fn(&Used) -> u64| {
        scopes
            .iter()
            .zip(used)
            .filter_map(|(scope, used)| {
                limit(&scope.limits).map(|limit| (limit, limit.saturating_sub(count(used))))
            })
            .min_by_key(|(_, remaining)| *remaining)
            .map(|(limit, remaining)| (limit, remaining, windows.minute_left))
    };
    RateHeaders {
        requests: tightest(|l| l.requests_per_minute, |u| u.requests_this_minute),
        tokens: tightest(|l| l.tokens_per_minute, |u| u.tokens_this_minute),
    }
}

fn refusal(scope: Option<&Scope>, exceeded: Exceeded, windows: &Windows) -> QuotaError {
    let limits = scope.map(|scope| scope.limits.clone()).unwrap_or_default();
    let name = scope
        .and_then(|scope| scope.key.split_once("|model:"))
        .map_or_else(
            || "your account".to_owned(),
            |(_, p)| format!("model pattern `{p}`"),
        );
    let now = windows.now;
    let rate = |kind, limit: Option<u64>, retry_after| QuotaError::RateLimited {
        kind,
        limit: limit.unwrap_or(0),
        scope: name.clone(),
        retry_after,
    };
    let budget = |period, budget: Option<f64>, ends: u64| QuotaError::BudgetSpent {
        period,
        budget: budget.unwrap_or(0.0),
        scope: name.clone(),
        resets_at: calendar::rfc3339(ends),
        retry_after: Duration::from_secs(ends.saturating_sub(now)),
    };
    match exceeded {
        Exceeded::Requests => rate(
            "requests per minute",
            limits.requests_per_minute,
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
        Exceeded::Daily => budget("daily", limits.daily_budget_usd, windows.day_ends),
        Exceeded::Monthly => budget("monthly", limits.monthly_budget_usd, windows.month_ends),
    }
}

/// An admitted request's hold on its quota: settle it with what it used; dropped unsettled,
/// it frees its concurrency slot (and counts no tokens).
pub struct Ticket {
    headers: RateHeaders,
    pending: Option<(Arc<Quota>, Vec<Scope>, String)>,
}

impl Ticket {
    fn unlimited() -> Self {
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
        let Some((quota, scopes, lease)) = self.pending.take() else {
            return;
        };
        // Outside a runtime (a process tearing down) there is nothing left to count for; a
        // slot then lapses with its lease.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { quota.settle(&scopes, &lease, spend).await });
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
    use crate::quota::local::LocalCounters;
    use std::sync::Mutex;
    use std::time::UNIX_EPOCH;

    /// A clock the test moves.
    struct ManualClock(Mutex<SystemTime>);

    impl ManualClock {
        fn at(seconds: u64) -> Arc<Self> {
            Arc::new(Self(Mutex::new(UNIX_EPOCH + Duration::from_secs(seconds))))
        }

        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    /// 2026-01-31T23:59:00Z: a minute before a day and a month end.
    const T0: u64 = 1_769_903_940;

    fn engine(counters: Arc<dyn Counters>, clock: Arc<ManualClock>) -> Arc<Quota> {
        Arc::new(Quota::new(
            counters,
            clock,
            FailMode::Closed,
            Duration::from_secs(660),
            Arc::new(Metrics::default()),
        ))
    }

    fn account(limits: Limits) -> QuotaLimits {
        QuotaLimits {
            account: limits,
            model: None,
        }
    }

    /// Lets spawned settlements run.
    async fn settle_tasks() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn requests_per_minute_refuse_then_the_next_minute_admits() {
        let clock = ManualClock::at(T0);
        let quota = engine(Arc::new(LocalCounters::in_memory()), Arc::clone(&clock));
        let limits = account(Limits {
            requests_per_minute: Some(2),
            ..Limits::default()
        });
        let first = quota.admit("u", &limits, "r1").await.unwrap();
        assert_eq!(
            first.headers().requests.map(|(l, r, _)| (l, r)),
            Some((2, 1))
        );
        drop(first);
        drop(quota.admit("u", &limits, "r2").await.unwrap());
        let refused = quota.admit("u", &limits, "r3").await.err().unwrap();
        assert!(
            matches!(&refused, QuotaError::RateLimited { kind: "requests per minute", retry_after, .. } if *retry_after == Duration::from_secs(60)),
            "{refused:?}"
        );
        assert!(quota.admit("someone-else", &limits, "r4").await.is_ok());
        clock.advance(Duration::from_secs(60));
        assert!(quota.admit("u", &limits, "r5").await.is_ok());
    }

    #[tokio::test]
    async fn tokens_count_after_the_call_and_refuse_for_the_rest_of_the_minute() {
        let clock = ManualClock::at(T0);
        let quota = engine(Arc::new(LocalCounters::in_memory()), Arc::clone(&clock));
        let limits = account(Limits {
            tokens_per_minute: Some(100),
            ..Limits::default()
        });
        let ticket = quota.admit("u", &limits, "r1").await.unwrap();
        ticket.settle(Spend {
            tokens: 150,
            cost_usd: 0.0,
        });
        settle_tasks().await;
        let refused = quota.admit("u", &limits, "r2").await.err().unwrap();
        assert_eq!(refused.kind(), "tokens");
        clock.advance(Duration::from_secs(60));
        let ticket = quota.admit("u", &limits, "r3").await.unwrap();
        assert_eq!(
            ticket.headers().tokens.map(|(l, r, _)| (l, r)),
            Some((100, 100))
        );
    }

    #[tokio::test]
    async fn concurrency_is_released_when_settled_or_dropped() {
        let quota = engine(Arc::new(LocalCounters::in_memory()), ManualClock::at(T0));
        let limits = account(Limits {
            concurrent_requests: Some(1),
            ..Limits::default()
        });
        let held = quota.admit("u", &limits, "r1").await.unwrap();
        assert_eq!(
            quota.admit("u", &limits, "r2").await.err().unwrap().kind(),
            "concurrency"
        );
        held.settle(Spend::default());
        settle_tasks().await;
        let dropped = quota.admit("u", &limits, "r3").await.unwrap();
        drop(dropped); // the caller went away mid-call
        settle_tasks().await;
        assert!(quota.admit("u", &limits, "r4").await.is_ok());
    }

    #[tokio::test]
    async fn a_crashed_holders_slot_lapses_after_the_lease() {
        let clock = ManualClock::at(T0);
        let quota = engine(Arc::new(LocalCounters::in_memory()), Arc::clone(&clock));
        let limits = account(Limits {
            concurrent_requests: Some(1),
            ..Limits::default()
        });
        let held = quota.admit("u", &limits, "r1").await.unwrap();
        std::mem::forget(held); // never settled, never dropped: as if the replica died
        assert!(quota.admit("u", &limits, "r2").await.is_err());
        clock.advance(Duration::from_secs(661));
        assert!(quota.admit("u", &limits, "r3").await.is_ok());
    }

    #[tokio::test]
    async fn budgets_are_spent_then_reset_with_the_day_and_the_month() {
        let clock = ManualClock::at(T0);
        let quota = engine(Arc::new(LocalCounters::in_memory()), Arc::clone(&clock));
        let daily = account(Limits {
            daily_budget_usd: Some(1.0),
            ..Limits::default()
        });
        quota.admit("u", &daily, "r1").await.unwrap().settle(Spend {
            tokens: 10,
            cost_usd: 1.25,
        });
        settle_tasks().await;
        let refused = quota.admit("u", &daily, "r2").await.err().unwrap();
        assert!(
            matches!(&refused, QuotaError::BudgetSpent { period: "daily", resets_at, retry_after, .. }
                if resets_at == "2026-02-01T00:00:00Z" && *retry_after == Duration::from_secs(60)),
            "{refused:?}"
        );
        let monthly = account(Limits {
            monthly_budget_usd: Some(1.0),
            ..Limits::default()
        });
        assert_eq!(
            quota.admit("u", &monthly, "r3").await.err().unwrap().kind(),
            "monthly_budget"
        );
        clock.advance(Duration::from_secs(60)); // 2026-02-01: a new day and a new month
        assert!(quota.admit("u", &daily, "r4").await.is_ok());
        assert!(quota.admit("u", &monthly, "r5").await.is_ok());
    }

    #[tokio::test]
    async fn a_model_scope_counts_apart_from_the_account() {
        let quota = engine(Arc::new(LocalCounters::in_memory()), ManualClock::at(T0));
        let one = Limits {
            requests_per_minute: Some(1),
            ..Limits::default()
        };
        let limits = QuotaLimits {
            account: Limits {
                requests_per_minute: Some(10),
                ..Limits::default()
            },
            model: Some(("big-*".into(), one)),
        };
        drop(quota.admit("u", &limits, "r1").await.unwrap());
        let refused = quota.admit("u", &limits, "r2").await.err().unwrap();
        assert!(
            refused.to_string().contains("model pattern `big-*`"),
            "{refused}"
        );
        // The refused request was not counted against the account.
        let used = quota.counters().used("u", &quota.windows()).await.unwrap();
        assert_eq!(used.requests_this_minute, 1);
    }

    #[tokio::test]
    async fn spend_survives_a_restart_of_the_embedded_store() {
        let path = std::env::temp_dir().join(format!("bff-quota-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let clock = ManualClock::at(T0);
        let limits = account(Limits {
            monthly_budget_usd: Some(2.0),
            ..Limits::default()
        });
        {
            let counters = Arc::new(LocalCounters::persistent(&path).unwrap());
            let quota = engine(counters.clone(), Arc::clone(&clock));
            quota
                .admit("u", &limits, "r1")
                .await
                .unwrap()
                .settle(Spend {
                    tokens: 1,
                    cost_usd: 2.5,
                });
            settle_tasks().await;
            quota.flush().await;
        }
        let reopened = Arc::new(LocalCounters::persistent(&path).unwrap());
        let quota = engine(reopened, clock);
        let used = quota.counters().used("u", &quota.windows()).await.unwrap();
        assert_eq!(used.spent_this_month_usd, 2.5);
        assert_eq!(
            quota.admit("u", &limits, "r2").await.err().unwrap().kind(),
            "monthly_budget"
        );
        let _ = std::fs::remove_file(&path);
    }

    /// Counters that are down.
    struct Down;

    #[async_trait]
    impl Counters for Down {
        fn name(&self) -> &'static str {
            "redis"
        }
        async fn admit(
            &self,
            _: &[Scope],
            _: &str,
            _: &Windows,
            _: SystemTime,
        ) -> Result<Verdict, BackendError> {
            Err(BackendError("connection refused".into()))
        }
        async fn settle(
            &self,
            _: &[Scope],
            _: &str,
            _: &Windows,
            _: Spend,
        ) -> Result<(), BackendError> {
            Err(BackendError("connection refused".into()))
        }
        async fn used(&self, _: &str, _: &Windows) -> Result<Used, BackendError> {
            Err(BackendError("connection refused".into()))
        }
        async fn ping(&self) -> Result<(), BackendError> {
            Err(BackendError("connection refused".into()))
        }
    }

    #[tokio::test]
    async fn the_fail_mode_decides_when_the_counters_are_down() {
        let limits = account(Limits {
            requests_per_minute: Some(1),
            ..Limits::default()
        });
        let closed = engine(Arc::new(Down), ManualClock::at(T0));
        assert_eq!(
            closed.admit("u", &limits, "r").await.err().unwrap().kind(),
            "unavailable"
        );
        let open = Arc::new(Quota::new(
            Arc::new(Down),
            ManualClock::at(T0),
            FailMode::Open,
            Duration::from_secs(60),
            Arc::new(Metrics::default()),
        ));
        assert!(open.admit("u", &limits, "r").await.is_ok());
    }

    #[test]
    fn resets_are_written_the_way_openai_writes_them() {
        assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(openai_duration(Duration::from_millis(5200)), "6s");
        assert_eq!(openai_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(openai_duration(Duration::from_secs(61)), "1m1s");
    }

    #[test]
    fn scopes_are_the_account_and_a_limited_model_only() {
        let limited = Limits {
            requests_per_minute: Some(1),
            ..Limits::default()
        };
        let none = QuotaLimits::default();
        assert!(scopes("u", &none).is_empty());
        let both = QuotaLimits {
            account: limited.clone(),
            model: Some(("gpt-*".into(), limited)),
        };
        let keys: Vec<String> = scopes("u", &both).into_iter().map(|s| s.key).collect();
        assert_eq!(keys, ["u", "u|model:gpt-*"]);
    }
}
