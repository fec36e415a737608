//! In-process counters (one replica): minute windows and concurrency in memory; spend and tokens
//! per day and month in memory and in a `redb` file, so budgets survive a restart.
//!
//! Why `redb`: an embedded, pure-Rust, ACID key-value file — no server, no C toolchain (SQLite
//! through `rusqlite` would compile C), crash-safe commits. Periods are written by a background
//! task once a second ([`run_writer`]) and at shutdown, never on the request path.

use crate::calendar::Windows;
use crate::engine::{
    BackendError, Clock, Counters, Kind, Settlement, Spend, Used, Verdict, counts_as_task,
};
use crate::table::{Scope, ScopeKey};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Scopes kept before idle ones (no slot held, no request this minute) are forgotten.
const MAX_IDLE_SCOPES: usize = 100_000;

/// `scope \0 period` → (USD, tokens) used in that day (`YYYY-MM-DD`) or month (`YYYY-MM`).
const PERIODS: TableDefinition<&str, (f64, u64)> = TableDefinition::new("periods");

/// Minute windows and slots of one scope.
#[derive(Debug, Default)]
struct Window {
    minute: u64,
    requests: u64,
    tasks: u64,
    tokens: u64,
    /// Lease → when it lapses.
    leases: HashMap<String, SystemTime>,
}

impl Window {
    fn roll(&mut self, minute: u64, now: SystemTime) {
        if self.minute != minute {
            self.minute = minute;
            self.requests = 0;
            self.tasks = 0;
            self.tokens = 0;
        }
        self.leases.retain(|_, expires| *expires > now);
    }

    /// Counts one request of `kind` under `limits`.
    fn count(&mut self, kind: Kind, scope: &Scope) {
        if counts_as_task(kind, &scope.limits) {
            self.tasks += 1;
        } else {
            self.requests += 1;
        }
    }
}

type PeriodKey = (String, String);

#[derive(Debug, Default)]
struct State {
    windows: HashMap<String, Window>,
    /// (scope, `YYYY-MM-DD` or `YYYY-MM`) → (USD, tokens).
    periods: HashMap<PeriodKey, (f64, u64)>,
    /// Period keys changed since the last write to disk.
    dirty: HashSet<PeriodKey>,
}

impl State {
    fn period(&self, scope: &str, period: &str) -> (f64, u64) {
        self.periods
            .get(&(scope.to_owned(), period.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    fn used(&self, scope: &str, windows: &Windows) -> Used {
        let window = self.windows.get(scope);
        let current = window.filter(|window| window.minute == windows.minute);
        let (spent_today_usd, tokens_today) = self.period(scope, &windows.day);
        let (spent_this_month_usd, tokens_this_month) = self.period(scope, &windows.month);
        Used {
            requests_this_minute: current.map_or(0, |w| w.requests),
            tasks_this_minute: current.map_or(0, |w| w.tasks),
            tokens_this_minute: current.map_or(0, |w| w.tokens),
            concurrent_requests: window.map_or(0, |w| w.leases.len() as u64),
            spent_today_usd,
            spent_this_month_usd,
            tokens_today,
            tokens_this_month,
        }
    }

    /// Adds tokens and spend of one scope to its minute and its periods.
    fn add(&mut self, scope: &str, windows: &Windows, spend: Spend) {
        if let Some(window) = self.windows.get_mut(scope)
            && window.minute == windows.minute
        {
            window.tokens = window.tokens.saturating_add(spend.tokens);
        }
        if spend.tokens == 0 && spend.cost_usd <= 0.0 {
            return;
        }
        for period in [&windows.day, &windows.month] {
            let key = (scope.to_owned(), period.clone());
            let entry = self.periods.entry(key.clone()).or_default();
            entry.0 += spend.cost_usd.max(0.0);
            entry.1 = entry.1.saturating_add(spend.tokens);
            self.dirty.insert(key);
        }
    }
}

/// In-process counters, optionally persisting periods to a `redb` file.
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

    /// Counters whose periods live in `path` (created if missing); loads what is there.
    pub fn persistent(path: &Path) -> Result<Self, BackendError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|error| BackendError(format!("{}: {error}", dir.display())))?;
        }
        let database = Database::create(path)
            .map_err(|error| BackendError(format!("{}: {error}", path.display())))?;
        let periods = load(&database)?;
        Ok(Self {
            state: Mutex::new(State {
                periods,
                ..State::default()
            }),
            store: Some(Arc::new(database)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets days and months that are over (in memory and on disk), then writes changed
    /// periods to disk. Called every second by [`run_writer`] and at shutdown.
    pub async fn persist(&self, windows: &Windows) -> Result<(), BackendError> {
        let (changes, stale) = {
            let mut state = self.lock();
            let current = |period: &str| period == windows.day || period == windows.month;
            let stale: Vec<String> = state
                .periods
                .keys()
                .filter(|(_, period)| !current(period))
                .map(|(scope, period)| format!("{scope}\0{period}"))
                .collect();
            state.periods.retain(|(_, period), _| current(period));
            state.dirty.retain(|(_, period)| current(period));
            let dirty: Vec<PeriodKey> = state.dirty.drain().collect();
            let changes: Vec<(String, (f64, u64))> = dirty
                .into_iter()
                .map(|key| {
                    let value = state.periods.get(&key).copied().unwrap_or_default();
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

fn store_error(error: &dyn std::fmt::Display) -> BackendError {
    BackendError(format!("quota store: {error}"))
}

fn load(database: &Database) -> Result<HashMap<PeriodKey, (f64, u64)>, BackendError> {
    let read = database.begin_read().map_err(|e| store_error(&e))?;
    let table = match read.open_table(PERIODS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
        Err(error) => return Err(store_error(&error)),
    };
    let mut periods = HashMap::new();
    for entry in table.iter().map_err(|e| store_error(&e))? {
        let (key, value) = entry.map_err(|e| store_error(&e))?;
        if let Some((scope, period)) = key.value().rsplit_once('\0') {
            periods.insert((scope.to_owned(), period.to_owned()), value.value());
        }
    }
    Ok(periods)
}

fn write(
    database: &Database,
    changes: &[(String, (f64, u64))],
    stale: &[String],
) -> Result<(), BackendError> {
    let transaction = database.begin_write().map_err(|e| store_error(&e))?;
    {
        let mut table = transaction
            .open_table(PERIODS)
            .map_err(|e| store_error(&e))?;
        for (key, value) in changes {
            table
                .insert(key.as_str(), value)
                .map_err(|e| store_error(&e))?;
        }
        for key in stale {
            table.remove(key.as_str()).map_err(|e| store_error(&e))?;
        }
    }
    transaction.commit().map_err(|e| store_error(&e))
}

/// Persists periods every second until the counters are dropped.
pub async fn run_writer(counters: std::sync::Weak<LocalCounters>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(counters) = counters.upgrade() else {
            return;
        };
        if let Err(error) = counters.persist(&Windows::at(clock.now())).await {
            tracing::error!(%error, "quota usage could not be written to disk");
        }
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
        kind: Kind,
        lease: &str,
        windows: &Windows,
        lease_expires: SystemTime,
    ) -> Result<Verdict, BackendError> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(windows.now);
        let mut state = self.lock();
        if state.windows.len() > MAX_IDLE_SCOPES {
            // Scopes come from verified users only; still, forget idle ones past a bound.
            state
                .windows
                .retain(|_, window| !window.leases.is_empty() || window.minute == windows.minute);
        }
        let keys: Vec<String> = scopes.iter().map(|scope| scope.key.to_string()).collect();
        for key in &keys {
            state
                .windows
                .entry(key.clone())
                .or_default()
                .roll(windows.minute, now);
        }
        let used: Vec<Used> = keys.iter().map(|key| state.used(key, windows)).collect();
        for (index, (scope, found)) in scopes.iter().zip(&used).enumerate() {
            if let Some(exceeded) = found.exceeded(&scope.limits, kind) {
                return Ok(Verdict::Refused {
                    index,
                    exceeded,
                    used,
                });
            }
        }
        for (scope, key) in scopes.iter().zip(&keys) {
            if let Some(window) = state.windows.get_mut(key) {
                window.count(kind, scope);
                window.leases.insert(lease.to_owned(), lease_expires);
            }
        }
        Ok(Verdict::Admitted(
            keys.iter().map(|key| state.used(key, windows)).collect(),
        ))
    }

    async fn settle(
        &self,
        settlement: &Settlement<'_>,
        windows: &Windows,
    ) -> Result<(), BackendError> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(windows.now);
        let mut state = self.lock();
        for scope in settlement.admitted {
            let key = scope.key.to_string();
            if let Some(window) = state.windows.get_mut(&key) {
                window.leases.remove(settlement.lease);
            }
            state.add(&key, windows, settlement.spend);
        }
        for scope in settlement.counted {
            let key = scope.key.to_string();
            let window = state.windows.entry(key.clone()).or_default();
            window.roll(windows.minute, now);
            window.count(settlement.kind, scope);
            state.add(&key, windows, settlement.spend);
        }
        Ok(())
    }

    async fn used(&self, scope: &ScopeKey, windows: &Windows) -> Result<Used, BackendError> {
        Ok(self.lock().used(&scope.to_string(), windows))
    }

    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn flush(&self, windows: &Windows) {
        if let Err(error) = self.persist(windows).await {
            tracing::error!(%error, "quota usage could not be written to disk at shutdown");
        }
    }
}
