//! Counters in Redis (feature `redis`), shared by every replica. Each admission and each
//! settlement is one Lua script, so the check and the count happen atomically: N replicas
//! enforce one limit together. Every call is bounded by a short timeout; past it the engine
//! applies its [`crate::FailMode`].
//!
//! Keys, per scope (`bff:quota:<scope>`, the scope as [`ScopeKey`] writes it): `…:req:<minute>`,
//! `…:task:<minute>` and `…:tok:<minute>` (counters that expire after two minutes), `…:inflight`
//! (a sorted set of request ids scored by when their slot lapses, so a crashed replica's slots
//! free themselves), `…:day:<YYYY-MM-DD>` and `…:month:<YYYY-MM>` (USD), `…:daytok:<day>` and
//! `…:monthtok:<month>` (tokens), expiring after their period. Spend lasts as long as Redis
//! keeps its data: run it with persistence (AOF or RDB) for budgets to survive a Redis restart.

use crate::calendar::Windows;
use crate::connection::RedisConnection;
use crate::engine::{
    BackendError, Counters, Exceeded, Kind, Settlement, Used, Verdict, counts_as_task,
};
use crate::table::{Scope, ScopeKey};
use async_trait::async_trait;
use redis::Script;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keys per scope, in the order the scripts use them.
const KEYS_PER_SCOPE: usize = 8;

/// Checks every limit of every scope; counts the request and takes a slot only if all pass.
/// KEYS: eight per scope (req, task, tok, inflight, day, month, daytok, monthtok). ARGV: n, now
/// (ms), lease, lease expiry (ms), then per scope its request counter (1 requests, 2 tasks) and
/// eight limits (requests, tasks, tokens per minute, concurrency, day and month USD, day and
/// month tokens; -1: none). Answers `ok` or `refused, index, kind`, then every scope's usage.
const ADMIT: &str = r"
local n, now, lease, expiry = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local function num(key) return tonumber(redis.call('GET', key) or '0') or 0 end
local function usage(k)
  redis.call('ZREMRANGEBYSCORE', KEYS[k + 4], '-inf', now)
  return {num(KEYS[k + 1]), num(KEYS[k + 2]), num(KEYS[k + 3]), redis.call('ZCARD', KEYS[k + 4]),
          num(KEYS[k + 5]), num(KEYS[k + 6]), num(KEYS[k + 7]), num(KEYS[k + 8])}
end
local function answer(head)
  for i = 0, n - 1 do
    for _, v in ipairs(usage(i * 8)) do table.insert(head, tostring(v)) end
  end
  return head
end
local checks = {{3, 'tokens'}, {4, 'concurrency'}, {5, 'daily'}, {6, 'monthly'},
                {7, 'daily_tokens'}, {8, 'monthly_tokens'}}
for i = 0, n - 1 do
  local k, a = i * 8, 4 + i * 9
  local used, counter = usage(k), tonumber(ARGV[a + 1])
  local limits = {}
  for j = 1, 8 do limits[j] = tonumber(ARGV[a + 1 + j]) end
  local kind = counter == 2 and 'tasks' or 'requests'
  if limits[counter] >= 0 and used[counter] >= limits[counter] then
    return answer({'refused', tostring(i), kind})
  end
  for _, check in ipairs(checks) do
    local j = check[1]
    if limits[j] >= 0 and used[j] >= limits[j] then return answer({'refused', tostring(i), check[2]}) end
  end
end
for i = 0, n - 1 do
  local k, counter = i * 8, tonumber(ARGV[4 + i * 9 + 1])
  if redis.call('INCR', KEYS[k + counter]) == 1 then redis.call('PEXPIRE', KEYS[k + counter], 120000) end
  redis.call('ZADD', KEYS[k + 4], expiry, lease)
  redis.call('PEXPIRE', KEYS[k + 4], expiry - now + 60000)
end
return answer({'ok'})
";

/// Frees the admitted scopes' slot, counts the request in the counted scopes, adds tokens and
/// cost to all. KEYS: eight per scope, admitted scopes first. ARGV: admitted count, counted
/// count, lease, tokens, cost, then each counted scope's request counter (1 or 2).
const SETTLE: &str = r"
local admitted, counted, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local tokens, cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local function add(key, amount, ttl)
  if redis.call('INCRBY', key, amount) == amount then redis.call('PEXPIRE', key, ttl) end
end
for i = 0, admitted + counted - 1 do
  local k = i * 8
  if i < admitted then
    redis.call('ZREM', KEYS[k + 4], lease)
  else
    add(KEYS[k + tonumber(ARGV[6 + i - admitted])], 1, 120000)
  end
  if tokens > 0 then
    add(KEYS[k + 3], tokens, 120000)
    add(KEYS[k + 7], tokens, 259200000)
    add(KEYS[k + 8], tokens, 3456000000)
  end
  if cost > 0 then
    redis.call('INCRBYFLOAT', KEYS[k + 5], ARGV[5])
    redis.call('EXPIRE', KEYS[k + 5], 259200)
    redis.call('INCRBYFLOAT', KEYS[k + 6], ARGV[5])
    redis.call('EXPIRE', KEYS[k + 6], 3456000)
  end
end
return 1
";

/// Reads one scope's usage. KEYS as for one scope of ADMIT. ARGV: now (ms).
const USED: &str = r"
local function get(key) return redis.call('GET', key) or '0' end
return {get(KEYS[1]), get(KEYS[2]), get(KEYS[3]),
        tostring(redis.call('ZCOUNT', KEYS[4], ARGV[1], '+inf')),
        get(KEYS[5]), get(KEYS[6]), get(KEYS[7]), get(KEYS[8])}
";

/// Counters in Redis.
pub struct RedisCounters {
    connection: Arc<RedisConnection>,
    timeout: Duration,
    admit: Script,
    settle: Script,
    used: Script,
}

impl RedisCounters {
    /// Counters on `connection` (which may be shared); every call is cut off after `timeout`,
    /// past which the engine applies its fail mode.
    pub fn new(connection: Arc<RedisConnection>, timeout: Duration) -> Self {
        Self {
            connection,
            timeout,
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            used: Script::new(USED),
        }
    }

    /// Runs `invocation` within the timeout.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        self.connection
            .query(self.timeout, async |connection| {
                invocation.invoke_async(connection).await
            })
            .await
            .map_err(BackendError)
    }
}

fn keys(scope: &ScopeKey, windows: &Windows) -> [String; KEYS_PER_SCOPE] {
    let prefix = format!("bff:quota:{scope}");
    [
        format!("{prefix}:req:{}", windows.minute),
        format!("{prefix}:task:{}", windows.minute),
        format!("{prefix}:tok:{}", windows.minute),
        format!("{prefix}:inflight"),
        format!("{prefix}:day:{}", windows.day),
        format!("{prefix}:month:{}", windows.month),
        format!("{prefix}:daytok:{}", windows.day),
        format!("{prefix}:monthtok:{}", windows.month),
    ]
}

/// The script's request counter of a scope: 1 (requests) or 2 (tasks).
fn counter(kind: Kind, scope: &Scope) -> u8 {
    if counts_as_task(kind, &scope.limits) {
        2
    } else {
        1
    }
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn limit(value: Option<u64>) -> String {
    value.map_or_else(|| "-1".to_owned(), |value| value.to_string())
}

fn budget(value: Option<f64>) -> String {
    value.map_or_else(|| "-1".to_owned(), |value| value.to_string())
}

fn used_from(values: &[String]) -> Used {
    let float = |index: usize| {
        values
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .filter(|value| value.is_finite())
            .unwrap_or(0.0)
    };
    let int = |index: usize| float(index).max(0.0) as u64;
    Used {
        requests_this_minute: int(0),
        tasks_this_minute: int(1),
        tokens_this_minute: int(2),
        concurrent_requests: int(3),
        spent_today_usd: float(4),
        spent_this_month_usd: float(5),
        tokens_today: int(6),
        tokens_this_month: int(7),
    }
}

fn usages(values: &[String]) -> Vec<Used> {
    values.chunks(KEYS_PER_SCOPE).map(used_from).collect()
}

#[async_trait]
impl Counters for RedisCounters {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn admit(
        &self,
        scopes: &[Scope],
        kind: Kind,
        lease: &str,
        windows: &Windows,
        lease_expires: SystemTime,
    ) -> Result<Verdict, BackendError> {
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .arg(scopes.len())
            .arg(windows.now.saturating_mul(1000))
            .arg(lease)
            .arg(millis(lease_expires));
        for scope in scopes {
            for key in keys(&scope.key, windows) {
                invocation.key(key);
            }
            let limits = &scope.limits;
            invocation
                .arg(counter(kind, scope))
                .arg(limit(limits.requests_per_minute))
                .arg(limit(limits.tasks_per_minute))
                .arg(limit(limits.tokens_per_minute))
                .arg(limit(limits.concurrent_requests))
                .arg(budget(limits.daily_budget_usd))
                .arg(budget(limits.monthly_budget_usd))
                .arg(limit(limits.daily_tokens))
                .arg(limit(limits.monthly_tokens));
        }
        let reply: Vec<String> = self.run(invocation).await?;
        let unexpected = || BackendError(format!("Redis: unexpected answer {reply:?}"));
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Verdict::Admitted(usages(
                reply.get(1..).unwrap_or_default(),
            ))),
            Some("refused") => Ok(Verdict::Refused {
                index: reply.get(1).and_then(|i| i.parse().ok()).unwrap_or(0),
                exceeded: reply
                    .get(2)
                    .and_then(|kind| Exceeded::parse(kind))
                    .ok_or_else(unexpected)?,
                used: usages(reply.get(3..).unwrap_or_default()),
            }),
            _ => Err(unexpected()),
        }
    }

    async fn settle(
        &self,
        settlement: &Settlement<'_>,
        windows: &Windows,
    ) -> Result<(), BackendError> {
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .arg(settlement.admitted.len())
            .arg(settlement.counted.len())
            .arg(settlement.lease)
            .arg(settlement.spend.tokens)
            .arg(settlement.spend.cost_usd.max(0.0).to_string());
        for scope in settlement.admitted.iter().chain(settlement.counted) {
            for key in keys(&scope.key, windows) {
                invocation.key(key);
            }
        }
        for scope in settlement.counted {
            invocation.arg(counter(settlement.kind, scope));
        }
        self.run::<i64>(invocation).await.map(|_| ())
    }

    async fn used(&self, scope: &ScopeKey, windows: &Windows) -> Result<Used, BackendError> {
        let mut invocation = self.used.prepare_invoke();
        for key in keys(scope, windows) {
            invocation.key(key);
        }
        invocation.arg(windows.now.saturating_mul(1000));
        let reply: Vec<String> = self.run(invocation).await?;
        Ok(used_from(&reply))
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.connection
            .query(self.timeout, async |connection| {
                redis::cmd("PING").query_async::<String>(connection).await
            })
            .await
            .map(|_| ())
            .map_err(BackendError)
    }
}
