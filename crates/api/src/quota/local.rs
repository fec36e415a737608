//! In-process counters (one replica): minute windows and concurrency in memory; spend per day
//! and month in memory and in a `redb` file, so budgets survive a restart.
//!
//! Why `redb`: an embedded, pure-Rust, ACID key-value file — no server, no C toolchain (SQLite
//! through `rusqlite` would compile C), crash-safe commits. Spend is written by a background
//! task once a second (and at shutdown), never on the request path.

use crate::quota::calendar::Windows;
use crate::quota::{BackendError, Clock, Counters, Exceeded, Scope, Spend, Used, Verdict};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Scopes kept before idle ones (no slot held, no request this minute) are forgotten.
const MAX_IDLE_SCOPES: usize = 100_000;

/// `scope \0 period` → USD spent.
const SPEND: TableDefinition<&str, f64> = TableDefinition::new("spend");

/// Minute windows and slots of one scope.
#[derive(Debug, Default)]
struct Window {
    minute: u64,
    requests: u64,
    tokens: u64,
    /// Lease → when it lapses.
    leases: HashMap<String, SystemTime>,
}

impl Window {
    fn roll(&mut self, minute: u64, now: SystemTime) {
        if self.minute != minute {
            self.minute = minute;
            self.requests = 0;
            self.tokens = 0;
        }
        self.leases.retain(|_, expires| *expires > now);
    }
}

#[derive(Debug, Default)]
struct State {
    windows: HashMap<String, Window>,
    /// (scope, `YYYY-MM-DD` or `YYYY-MM`) → USD.
    spend: HashMap<(String, String), f64>,
    /// Spend keys changed since the last write to disk.
    dirty: HashSet<(String, String)>,
}

/// In-process counters, optionally persisting spend to a `redb` file.
pub struct LocalCounters {
    state: Mutex<State>,
    store: Option<Arc<Database>>,
}

impl LocalCounters {
    /// Counters that forget everything at exit (tests, or no data directory).
    pub fn in_memory() -> Self {
        Self {
            state: Mutex::new(State::default()),
            store: None,
        }
    }

    /// Counters whose spend lives in `path` (created if missing); loads what is there.
    pub fn persistent(path: &Path) -> Result<Self, BackendError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|error| BackendError(format!("{}: {error}", dir.display())))?;
        }
        let database = Database::create(path)
            .map_err(|error| BackendError(format!("{}: {error}", path.display())))?;
        let spend = load(&database)?;
        Ok(Self {
            state: Mutex::new(State {
                spend,
                ..State::default()
            }),
            store: Some(Arc::new(database)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets spend of days and months that are over (in memory and on disk), then writes
    /// changed spend to disk. Called every second by [`run_writer`] and at shutdown.
    pub async fn persist(&self, windows: &Windows) -> Result<(), BackendError> {
        let (changes, stale) = {
            let mut state = self.lock();
            let current = |period: &str| period == windows.day || period == windows.month;
            let stale: Vec<String> = state
                .spend
                .keys()
                .filter(|(_, period)| !current(period))
                .map(|(scope, period)| format!("{scope}\0{period}"))
                .collect();
            state.spend.retain(|(_, period), _| current(period));
            state.dirty.retain(|(_, period)| current(period));
            let dirty: Vec<(String, String)> = state.dirty.drain().collect();
            let changes: Vec<(String, f64)> = dirty
                .into_iter()
                .map(|key| {
                    let value = state.spend.get(&key).copied().unwrap_or(0.0);
                    (format!("{}\0{}", key.0, key.1), value)
                })
                .collect();
            (changes, stale)
        };
        let Some(database) = self.store.clone() else {
            return Ok(());
        };
        if changes.is_empty() && stale.is_empty() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || write(&database, &changes, &stale))
            .await
            .map_err(|error| BackendError(error.to_string()))?
    }
}

fn load(database: &Database) -> Result<HashMap<(String, String), f64>, BackendError> {
    let failed = |error: &dyn std::fmt::Display| BackendError(format!("quota store: {error}"));
    let read = database.begin_read().map_err(|e| failed(&e))?;
    let table = match read.open_table(SPEND) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
        Err(error) => return Err(failed(&error)),
    };
    let mut spend = HashMap::new();
    for entry in table.iter().map_err(|e| failed(&e))? {
        let (key, value) = entry.map_err(|e| failed(&e))?;
        if let Some((scope, period)) = key.value().split_once('\0') {
            spend.insert((scope.to_owned(), period.to_owned()), value.value());
        }
    }
    Ok(spend)
}

fn write(
    database: &Database,
    changes: &[(String, f64)],
    stale: &[String],
) -> Result<(), BackendError> {
    let failed = |error: &dyn std::fmt::Display| BackendError(format!("quota store: {error}"));
    let transaction = database.begin_write().map_err(|e| failed(&e))?;
    {
        let mut table = transaction.open_table(SPEND).map_err(|e| failed(&e))?;
        for (key, value) in changes {
            table.insert(key.as_str(), value).map_err(|e| failed(&e))?;
        }
        for key in stale {
            table.remove(key.as_str()).map_err(|e| failed(&e))?;
        }
    }
    transaction.commit().map_err(|e| failed(&e))
}

/// Persists spend every second until the counters are dropped.
pub async fn run_writer(counters: std::sync::Weak<LocalCounters>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(counters) = counters.upgrade() else {
            return;
        };
        if let Err(error) = counters.persist(&Windows::at(clock.now())).await {
            tracing::error!(%error, "quota spend could not be written to disk");
        }
    }
}

fn spent(state: &State, scope: &str, period: &str) -> f64 {
    state
        .spend
        .get(&(scope.to_owned(), period.to_owned()))
        .copied()
        .unwrap_or(0.0)
}

fn used_of(state: &State, scope: &str, windows: &Windows) -> Used {
    let window = state
        .windows
        .get(scope)
        .filter(|window| window.minute == windows.minute);
    Used {
        requests_this_minute: window.map_or(0, |w| w.requests),
        tokens_this_minute: window.map_or(0, |w| w.tokens),
        concurrent_requests: state
            .windows
            .get(scope)
            .map_or(0, |w| w.leases.len() as u64),
        spent_today_usd: spent(state, scope, &windows.day),
        spent_this_month_usd: spent(state, scope, &windows.month),
    }
}

/// The first limit `scope` has reached, if any.
fn exceeded(state: &State, scope: &Scope, windows: &Windows) -> Option<Exceeded> {
    let used = used_of(state, &scope.key, windows);
    let limits = &scope.limits;
    let reached = |limit: Option<u64>, count: u64| limit.is_some_and(|limit| count >= limit);
    let spent = |budget: Option<f64>, spent: f64| budget.is_some_and(|budget| spent >= budget);
    if reached(limits.requests_per_minute, used.requests_this_minute) {
        Some(Exceeded::Requests)
    } else if reached(limits.tokens_per_minute, used.tokens_this_minute) {
        Some(Exceeded::Tokens)
    } else if reached(limits.concurrent_requests, used.concurrent_requests) {
        Some(Exceeded::Concurrency)
    } else if spent(limits.daily_budget_usd, used.spent_today_usd) {
        Some(Exceeded::Daily)
    } else if spent(limits.monthly_budget_usd, used.spent_this_month_usd) {
        Some(Exceeded::Monthly)
    } else {
        None
    }
}

#[async_trait]
impl Counters for LocalCounters {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn admit(
        &self,
        scopes: &[Scope],
        lease: &str,
        windows: &Windows,
        lease_expires: SystemTime,
    ) -> Result<Verdict, BackendError> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(windows.now);
        let mut state = self.lock();
        if state.windows.len() > MAX_IDLE_SCOPES {
            // Scopes come from authenticated users only; still, forget idle ones past a bound.
            state
                .windows
                .retain(|_, window| !window.leases.is_empty() || window.minute == windows.minute);
        }
        for scope in scopes {
            state
                .windows
                .entry(scope.key.clone())
                .or_default()
                .roll(windows.minute, now);
        }
        for (index, scope) in scopes.iter().enumerate() {
            if let Some(exceeded) = exceeded(&state, scope, windows) {
                return Ok(Verdict::Refused { index, exceeded });
            }
        }
        let mut used = Vec::with_capacity(scopes.len());
        for scope in scopes {
            if let Some(window) = state.windows.get_mut(&scope.key) {
                window.requests += 1;
                window.leases.insert(lease.to_owned(), lease_expires);
            }
            used.push(used_of(&state, &scope.key, windows));
        }
        Ok(Verdict::Admitted(used))
    }

    async fn settle(
        &self,
        scopes: &[Scope],
        lease: &str,
        windows: &Windows,
        spend: Spend,
    ) -> Result<(), BackendError> {
        let mut state = self.lock();
        for scope in scopes {
            if let Some(window) = state.windows.get_mut(&scope.key) {
                window.leases.remove(lease);
                if window.minute == windows.minute {
                    window.tokens = window.tokens.saturating_add(spend.tokens);
                }
            }
            if spend.cost_usd > 0.0 {
                for period in [&windows.day, &windows.month] {
                    let key = (scope.key.clone(), period.clone());
                    *state.spend.entry(key.clone()).or_default() += spend.cost_usd;
                    state.dirty.insert(key);
                }
            }
        }
        Ok(())
    }

    async fn used(&self, scope: &str, windows: &Windows) -> Result<Used, BackendError> {
        Ok(used_of(&self.lock(), scope, windows))
    }

    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn flush(&self, windows: &Windows) {
        if let Err(error) = self.persist(windows).await {
            tracing::error!(%error, "quota spend could not be written to disk at shutdown");
        }
    }
}
