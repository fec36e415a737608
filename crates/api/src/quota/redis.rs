//! Counters in Redis (`QUOTA_REDIS_URL`), shared by every replica. Each admission and each
//! settlement is one Lua script, so the check and the count happen atomically: N replicas
//! behind Kong enforce one limit together. Every call is bounded by a short timeout; past it
//! the engine applies `QUOTA_FAIL_MODE`.
//!
//! Keys, per scope: `bff:quota:<scope>:req:<minute>` and `…:tok:<minute>` (counters that expire
//! after two minutes), `…:inflight` (a sorted set of request ids scored by when their slot
//! lapses, so a crashed replica's slots free themselves), `…:day:<YYYY-MM-DD>` and
//! `…:month:<YYYY-MM>` (USD, expiring after the period). Spend lasts as long as Redis keeps
//! its data: run it with persistence (AOF or RDB) for budgets to survive a Redis restart.

use crate::quota::calendar::Windows;
use crate::quota::{BackendError, Counters, Exceeded, Scope, Spend, Used, Verdict};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

/// Checks every limit of every scope; counts the request and takes a slot only if all pass.
/// KEYS: five per scope (req, tok, inflight, day, month). ARGV: n, now (ms), lease, lease
/// expiry (ms), then five limits per scope (-1: none).
const ADMIT: &str = r"
local n, now, lease, expiry = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local function num(key) return tonumber(redis.call('GET', key) or '0') or 0 end
local kinds = {'requests', 'tokens', 'concurrency', 'daily', 'monthly'}
for i = 0, n - 1 do
  local k, a = i * 5, 4 + i * 5
  redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
  local used = {num(KEYS[k + 1]), num(KEYS[k + 2]), redis.call('ZCARD', KEYS[k + 3]),
                num(KEYS[k + 4]), num(KEYS[k + 5])}
  for j = 1, 5 do
    local limit = tonumber(ARGV[a + j])
    if limit >= 0 and used[j] >= limit then return {'refused', tostring(i), kinds[j]} end
  end
end
local out = {'ok'}
for i = 0, n - 1 do
  local k = i * 5
  local requests = redis.call('INCR', KEYS[k + 1])
  if requests == 1 then redis.call('PEXPIRE', KEYS[k + 1], 120000) end
  redis.call('ZADD', KEYS[k + 3], expiry, lease)
  redis.call('PEXPIRE', KEYS[k + 3], expiry - now + 60000)
  table.insert(out, tostring(requests))
  table.insert(out, tostring(num(KEYS[k + 2])))
  table.insert(out, tostring(redis.call('ZCARD', KEYS[k + 3])))
  table.insert(out, redis.call('GET', KEYS[k + 4]) or '0')
  table.insert(out, redis.call('GET', KEYS[k + 5]) or '0')
end
return out
";

/// Adds tokens and cost, frees the slot. KEYS as for ADMIT. ARGV: n, lease, tokens, cost.
const SETTLE: &str = r"
local n, lease, tokens, cost = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 0, n - 1 do
  local k = i * 5
  redis.call('ZREM', KEYS[k + 3], lease)
  if tokens > 0 then
    if redis.call('INCRBY', KEYS[k + 2], tokens) == tokens then redis.call('PEXPIRE', KEYS[k + 2], 120000) end
  end
  if cost > 0 then
    redis.call('INCRBYFLOAT', KEYS[k + 4], ARGV[4])
    redis.call('EXPIRE', KEYS[k + 4], 259200)
    redis.call('INCRBYFLOAT', KEYS[k + 5], ARGV[4])
    redis.call('EXPIRE', KEYS[k + 5], 3456000)
  end
end
return 1
";

/// Reads one scope's usage. KEYS as for one scope of ADMIT. ARGV: now (ms).
const USED: &str = r"
return {redis.call('GET', KEYS[1]) or '0', redis.call('GET', KEYS[2]) or '0',
        tostring(redis.call('ZCOUNT', KEYS[3], ARGV[1], '+inf')),
        redis.call('GET', KEYS[4]) or '0', redis.call('GET', KEYS[5]) or '0'}
";

/// Counters in Redis.
pub struct RedisCounters {
    client: Client,
    connection: OnceCell<ConnectionManager>,
    timeout: Duration,
    admit: Script,
    settle: Script,
    used: Script,
}

impl RedisCounters {
    /// Counters at `url` (`redis://host:port/db`); connects on first use, so bff starts even
    /// while Redis is down (the fail mode then applies). Every call is cut off after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, BackendError> {
        let client = Client::open(url).map_err(|error| BackendError(error.to_string()))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            timeout,
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            used: Script::new(USED),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(self.client.clone(), config);
        self.connection
            .get_or_try_init(|| async {
                tokio::time::timeout(self.timeout, connect)
                    .await
                    .map_err(|_| BackendError("Redis: connection timed out".into()))?
                    .map_err(|error| BackendError(format!("Redis: {error}")))
            })
            .await
            .cloned()
    }

    /// Runs `invocation` on a connection within the timeout.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let mut connection = self.connection().await?;
        tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| BackendError("Redis: no answer in time".into()))?
            .map_err(|error| BackendError(format!("Redis: {error}")))
    }
}

fn keys(scope: &str, windows: &Windows) -> [String; 5] {
    let prefix = format!("bff:quota:{scope}");
    [
        format!("{prefix}:req:{}", windows.minute),
        format!("{prefix}:tok:{}", windows.minute),
        format!("{prefix}:inflight"),
        format!("{prefix}:day:{}", windows.day),
        format!("{prefix}:month:{}", windows.month),
    ]
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
    let int = |index: usize| {
        values
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .map_or(0, |value| value.max(0.0) as u64)
    };
    let float = |index: usize| {
        values
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Used {
        requests_this_minute: int(0),
        tokens_this_minute: int(1),
        concurrent_requests: int(2),
        spent_today_usd: float(3),
        spent_this_month_usd: float(4),
    }
}

fn exceeded(kind: &str) -> Exceeded {
    match kind {
        "requests" => Exceeded::Requests,
        "tokens" => Exceeded::Tokens,
        "concurrency" => Exceeded::Concurrency,
        "daily" => Exceeded::Daily,
        _ => Exceeded::Monthly,
    }
}

#[async_trait]
impl Counters for RedisCounters {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn admit(
        &self,
        scopes: &[Scope],
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
                .arg(limit(limits.requests_per_minute))
                .arg(limit(limits.tokens_per_minute))
                .arg(limit(limits.concurrent_requests))
                .arg(budget(limits.daily_budget_usd))
                .arg(budget(limits.monthly_budget_usd));
        }
        let reply: Vec<String> = self.run(invocation).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Verdict::Admitted(
                reply
                    .get(1..)
                    .unwrap_or_default()
                    .chunks(5)
                    .map(used_from)
                    .collect(),
            )),
            Some("refused") => Ok(Verdict::Refused {
                index: reply.get(1).and_then(|i| i.parse().ok()).unwrap_or(0),
                exceeded: exceeded(reply.get(2).map_or("", String::as_str)),
            }),
            _ => Err(BackendError(format!("Redis: unexpected answer {reply:?}"))),
        }
    }

    async fn settle(
        &self,
        scopes: &[Scope],
        lease: &str,
        windows: &Windows,
        spend: Spend,
    ) -> Result<(), BackendError> {
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .arg(scopes.len())
            .arg(lease)
            .arg(spend.tokens)
            .arg(spend.cost_usd.max(0.0).to_string());
        for scope in scopes {
            for key in keys(&scope.key, windows) {
                invocation.key(key);
            }
        }
        self.run::<i64>(invocation).await.map(|_| ())
    }

    async fn used(&self, scope: &str, windows: &Windows) -> Result<Used, BackendError> {
        let mut invocation = self.used.prepare_invoke();
        for key in keys(scope, windows) {
            invocation.key(key);
        }
        invocation.arg(windows.now.saturating_mul(1000));
        let reply: Vec<String> = self.run(invocation).await?;
        Ok(used_from(&reply))
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let mut connection = self.connection().await?;
        tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await
        .map_err(|_| BackendError("Redis: no answer in time".into()))?
        .map(|_| ())
        .map_err(|error| BackendError(format!("Redis: {error}")))
    }
}
