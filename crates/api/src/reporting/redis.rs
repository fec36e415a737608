//! The shared usage store in Redis (`REDIS_URL`): every replica writes its batches here and every
//! report reads the fleet's.
//!
//! Keys: `bff:usage:day:<YYYY-MM-DD>` (a hash per day: field `["<subject>","<model>","<task>"]|<m>`
//! for `m` in `req`, `err`, `in`, `out`, `tot`, `cost`; expires after the retention),
//! `bff:usage:people` (user id → `{"name","email"}`), `bff:usage:recent` (a list, newest first,
//! trimmed to the bound), `bff:usage:traffic:<second>` (replica → its encoded second; expires
//! after three minutes) and `bff:usage:batch:<id>` (a batch already applied; a day).
//!
//! Each batch is one Lua script, which first claims the batch id: a batch sent again after an
//! ambiguous failure (Redis applied it, the answer was lost) changes nothing, so every request
//! is counted exactly once.

use crate::reporting::model::{Person, RowKey, Subject, TraceItem, UsageTotals};
use crate::reporting::store::{Batch, StoreError, UsageStore};
use async_trait::async_trait;
use bff_quota::RedisConnection;
use redis::Script;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const WRITE: &str = r"
if not redis.call('SET', 'bff:usage:batch:' .. ARGV[1], '1', 'NX', 'EX', 86400) then return 0 end
local batch = cjson.decode(ARGV[2])
local retention, max_recent = tonumber(ARGV[3]), tonumber(ARGV[4])
for _, row in ipairs(batch.rows) do
  local key = 'bff:usage:day:' .. row[1]
  local metrics = {'req', 'err', 'in', 'out', 'tot'}
  for i, metric in ipairs(metrics) do
    if row[2 + i] > 0 then
      redis.call('HINCRBY', key, row[2] .. '|' .. metric, string.format('%d', row[2 + i]))
    end
  end
  if row[8] > 0 then
    redis.call('HINCRBYFLOAT', key, row[2] .. '|cost', string.format('%.17g', row[8]))
  end
  redis.call('EXPIRE', key, retention)
end
for _, person in ipairs(batch.people) do
  redis.call('HSET', 'bff:usage:people', person[1], person[2])
end
for _, item in ipairs(batch.recent) do
  redis.call('LPUSH', 'bff:usage:recent', item)
end
if #batch.recent > 0 then redis.call('LTRIM', 'bff:usage:recent', 0, max_recent - 1) end
for _, second in ipairs(batch.traffic) do
  local key = 'bff:usage:traffic:' .. second[1]
  redis.call('HSET', key, ARGV[5], second[2])
  redis.call('EXPIRE', key, 180)
end
return 1
";

/// The store.
pub struct RedisStore {
    connection: Arc<RedisConnection>,
    timeout: Duration,
    retention: Duration,
    max_recent: usize,
    write: Script,
}

impl RedisStore {
    /// The store on `connection` (shared with the quota counters); every call is cut off after
    /// `timeout`; day rows expire after `retention`.
    pub fn new(
        connection: Arc<RedisConnection>,
        timeout: Duration,
        retention: Duration,
        max_recent: usize,
    ) -> Self {
        Self {
            connection,
            timeout,
            retention,
            max_recent,
            write: Script::new(WRITE),
        }
    }

    /// Runs `command` within the timeout.
    async fn query<T>(
        &self,
        command: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.connection
            .query(self.timeout, command)
            .await
            .map_err(StoreError)
    }
}

/// A row's field prefix: `["<subject>","<model>","<task>"]`.
fn field(key: &RowKey) -> String {
    json!([key.subject.to_string(), key.model, key.task]).to_string()
}

fn payload(batch: &Batch) -> String {
    let rows: Vec<Value> = batch
        .rows
        .iter()
        .map(|(key, totals)| {
            json!([
                key.day,
                field(key),
                totals.requests,
                totals.errors.unwrap_or(0),
                totals.input_tokens,
                totals.output_tokens,
                totals.total_tokens,
                totals.cost_usd
            ])
        })
        .collect();
    let people: Vec<Value> = batch
        .people
        .iter()
        .map(|(id, person)| json!([id, serde_json::to_string(person).unwrap_or_default()]))
        .collect();
    let recent: Vec<String> = batch
        .recent
        .iter()
        .filter_map(|item| serde_json::to_string(item).ok())
        .collect();
    json!({"rows": rows, "people": people, "recent": recent, "traffic": batch.traffic}).to_string()
}

/// The rows of one day's hash, of one subject or all.
fn day_rows(
    day: &str,
    fields: HashMap<String, String>,
    subject: Option<&str>,
) -> Vec<(RowKey, UsageTotals)> {
    let mut rows: HashMap<RowKey, UsageTotals> = HashMap::new();
    for (field, value) in fields {
        let Some((prefix, metric)) = field.rsplit_once('|') else {
            continue;
        };
        let Ok([who, model, task]) = serde_json::from_str::<[String; 3]>(prefix) else {
            continue;
        };
        if subject.is_some_and(|subject| subject != who) {
            continue;
        }
        let Some(who) = Subject::parse(&who) else {
            continue;
        };
        let key = RowKey {
            day: day.to_owned(),
            subject: who,
            model,
            task,
        };
        let totals = rows.entry(key).or_default();
        let count = value.parse::<u64>().unwrap_or(0);
        match metric {
            "req" => totals.requests = count,
            "err" => totals.errors = Some(count),
            "in" => totals.input_tokens = count,
            "out" => totals.output_tokens = count,
            "tot" => totals.total_tokens = count,
            "cost" => totals.cost_usd = value.parse::<f64>().unwrap_or(0.0),
            _ => {}
        }
    }
    rows.into_iter().collect()
}

/// Every day from `from` to `to` (`YYYY-MM-DD`), at most 366.
fn days(from: &str, to: &str) -> Vec<String> {
    let parse = |day: &str| humantime::parse_rfc3339(&format!("{day}T00:00:00Z")).ok();
    let (Some(mut at), Some(end)) = (parse(from), parse(to)) else {
        return Vec::new();
    };
    let mut days = Vec::new();
    while at <= end && days.len() < 366 {
        days.push(
            humantime::format_rfc3339_seconds(at)
                .to_string()
                .chars()
                .take(10)
                .collect(),
        );
        at += Duration::from_secs(86_400);
    }
    days
}

#[async_trait]
impl UsageStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut invocation = self.write.prepare_invoke();
        invocation
            .arg(&batch.id)
            .arg(payload(batch))
            .arg(self.retention.as_secs().max(1))
            .arg(self.max_recent.max(1))
            .arg(&batch.replica);
        self.query(async |connection| invocation.invoke_async::<i64>(connection).await)
            .await
            .map(|_| ())
    }

    async fn rows(
        &self,
        from: &str,
        to: &str,
        subject: Option<&Subject>,
    ) -> Result<Vec<(RowKey, UsageTotals)>, StoreError> {
        let days = days(from, to);
        let mut pipeline = redis::pipe();
        for day in &days {
            pipeline.hgetall(format!("bff:usage:day:{day}"));
        }
        let hashes: Vec<HashMap<String, String>> = self
            .query(async |connection| pipeline.query_async(connection).await)
            .await?;
        let subject = subject.map(ToString::to_string);
        Ok(days
            .iter()
            .zip(hashes)
            .flat_map(|(day, fields)| day_rows(day, fields, subject.as_deref()))
            .collect())
    }

    async fn recent(&self, user: Option<&str>, limit: usize) -> Result<Vec<TraceItem>, StoreError> {
        let last = isize::try_from(self.max_recent).unwrap_or(isize::MAX) - 1;
        let items: Vec<String> = self
            .query(async |connection| {
                redis::cmd("LRANGE")
                    .arg("bff:usage:recent")
                    .arg(0)
                    .arg(last)
                    .query_async(connection)
                    .await
            })
            .await?;
        Ok(items
            .iter()
            .filter_map(|json| serde_json::from_str::<TraceItem>(json).ok())
            .filter(|item| user.is_none_or(|user| item.user_id.as_deref() == Some(user)))
            .take(limit)
            .collect())
    }

    async fn people(&self, ids: &[String]) -> Result<HashMap<String, Person>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let found: Vec<Option<String>> = self
            .query(async |connection| {
                redis::cmd("HMGET")
                    .arg("bff:usage:people")
                    .arg(ids)
                    .query_async(connection)
                    .await
            })
            .await?;
        Ok(ids
            .iter()
            .zip(found)
            .filter_map(|(id, json)| Some((id.clone(), serde_json::from_str(&json?).ok()?)))
            .collect())
    }

    async fn traffic(&self, from: u64) -> Result<Option<Vec<(String, String)>>, StoreError> {
        let now = crate::reporting::traffic::now_second();
        let mut pipeline = redis::pipe();
        for second in from..=now {
            pipeline.hgetall(format!("bff:usage:traffic:{second}"));
        }
        let seconds: Vec<HashMap<String, String>> = self
            .query(async |connection| pipeline.query_async(connection).await)
            .await?;
        Ok(Some(seconds.into_iter().flatten().collect()))
    }

    async fn prune(&self, _day: &str) -> Result<(), StoreError> {
        Ok(()) // day hashes expire by themselves
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff_quota::test_support::RedisServer;

    fn batch(id: &str) -> Batch {
        let key = RowKey {
            day: "2026-01-01".into(),
            subject: Subject::User("bob".into()),
            model: "m".into(),
            task: String::new(),
        };
        let totals = UsageTotals {
            requests: 2,
            total_tokens: 30,
            cost_usd: 0.5,
            ..UsageTotals::default()
        };
        Batch {
            id: id.into(),
            replica: "r1".into(),
            rows: [(key, totals)].into(),
            recent: vec![TraceItem {
                user_id: Some("bob".into()),
                ..TraceItem::default()
            }],
            ..Batch::default()
        }
    }

    #[tokio::test]
    async fn a_batch_sent_again_after_an_ambiguous_failure_counts_once() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let connection = RedisConnection::new(&redis.url, Duration::from_secs(2)).unwrap();
        let two = Duration::from_secs(2);
        let store = RedisStore::new(Arc::new(connection), two, Duration::from_secs(3600), 10);
        store.write(&batch("r1:1")).await.unwrap();
        store.write(&batch("r1:1")).await.unwrap(); // the same id: already applied
        let rows = store.rows("2026-01-01", "2026-01-01", None).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].1.requests, rows[0].1.total_tokens), (2, 30));
        assert_eq!(store.recent(None, 10).await.unwrap().len(), 1);
        store.write(&batch("r1:2")).await.unwrap(); // a new batch adds
        let rows = store
            .rows(
                "2026-01-01",
                "2026-01-01",
                Some(&Subject::User("bob".into())),
            )
            .await
            .unwrap();
        assert_eq!((rows[0].1.requests, rows[0].1.cost_usd), (4, 1.0));
    }
}
