//! The embedded usage store: a `redb` file (`BFF_DATA_DIR/usage.redb`), for one replica. Usage
//! rows, people and recent requests survive a restart; every batch is one ACID transaction.
//! `redb` as for quota spend: embedded, pure Rust, crash-safe commits, no server.

use crate::reporting::model::{Person, RowKey, Subject, TraceItem, UsageTotals};
use crate::reporting::store::{Batch, StoreError, UsageStore};
use async_trait::async_trait;
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Totals as stored: requests, errors, input, output and total tokens, USD.
type Stored = (u64, u64, u64, u64, u64, f64);

/// (day, subject, model, task) → totals.
const USAGE: TableDefinition<(&str, &str, &str, &str), Stored> = TableDefinition::new("usage");
/// User id → their [`Person`] as JSON.
const PEOPLE: TableDefinition<&str, &str> = TableDefinition::new("people");
/// Sequence → a [`TraceItem`] as JSON.
const RECENT: TableDefinition<u64, &str> = TableDefinition::new("recent");

/// The store.
pub struct EmbeddedStore {
    database: Arc<Database>,
    max_recent: u64,
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError(format!("usage store: {error}"))
}

impl EmbeddedStore {
    /// The store in `path` (created if missing), keeping the latest `max_recent` requests.
    pub fn open(path: &Path, max_recent: usize) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|error| StoreError(format!("{}: {error}", dir.display())))?;
        }
        let database = Database::create(path)
            .map_err(|error| StoreError(format!("{}: {error}", path.display())))?;
        Ok(Self::with(database, max_recent))
    }

    /// A store that lives in memory only (`USAGE_STORE_PATH=off`).
    pub fn in_memory(max_recent: usize) -> Result<Self, StoreError> {
        let database = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(failed)?;
        Ok(Self::with(database, max_recent))
    }

    fn with(database: Database, max_recent: usize) -> Self {
        Self {
            database: Arc::new(database),
            max_recent: u64::try_from(max_recent).unwrap_or(u64::MAX),
        }
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let database = Arc::clone(&self.database);
        tokio::task::spawn_blocking(move || work(&database))
            .await
            .map_err(failed)?
    }
}

fn write(database: &Database, batch: &Batch, max_recent: u64) -> Result<(), StoreError> {
    let transaction = database.begin_write().map_err(failed)?;
    {
        let mut usage = transaction.open_table(USAGE).map_err(failed)?;
        for (key, add) in &batch.rows {
            let subject = key.subject.to_string();
            let id = (
                key.day.as_str(),
                subject.as_str(),
                key.model.as_str(),
                key.task.as_str(),
            );
            let mut totals = usage
                .get(id)
                .map_err(failed)?
                .map(|stored| totals(stored.value()))
                .unwrap_or_default();
            totals.add(add);
            usage.insert(id, stored(&totals)).map_err(failed)?;
        }
        let mut people = transaction.open_table(PEOPLE).map_err(failed)?;
        for (id, person) in &batch.people {
            let json = serde_json::to_string(person).map_err(failed)?;
            people.insert(id.as_str(), json.as_str()).map_err(failed)?;
        }
        let mut recent = transaction.open_table(RECENT).map_err(failed)?;
        let mut next = recent
            .last()
            .map_err(failed)?
            .map_or(0, |(sequence, _)| sequence.value() + 1);
        for item in &batch.recent {
            let json = serde_json::to_string(item).map_err(failed)?;
            recent.insert(next, json.as_str()).map_err(failed)?;
            next += 1;
        }
        let oldest_kept = next.saturating_sub(max_recent);
        recent
            .retain_in(..oldest_kept, |_, _| false)
            .map_err(failed)?;
    }
    transaction.commit().map_err(failed)
}

fn totals((requests, errors, input, output, total, cost): Stored) -> UsageTotals {
    UsageTotals {
        requests,
        errors: Some(errors),
        input_tokens: input,
        output_tokens: output,
        total_tokens: total,
        cost_usd: cost,
    }
}

fn stored(totals: &UsageTotals) -> Stored {
    (
        totals.requests,
        totals.errors.unwrap_or(0),
        totals.input_tokens,
        totals.output_tokens,
        totals.total_tokens,
        totals.cost_usd,
    )
}

fn rows(
    database: &Database,
    from: &str,
    to: &str,
    subject: Option<&str>,
) -> Result<Vec<(RowKey, UsageTotals)>, StoreError> {
    let read = database.begin_read().map_err(failed)?;
    let table = match read.open_table(USAGE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(failed(error)),
    };
    let mut found = Vec::new();
    for entry in table.range((from, "", "", "")..).map_err(failed)? {
        let (key, value) = entry.map_err(failed)?;
        let (day, who, model, task) = key.value();
        if day > to {
            break;
        }
        if subject.is_some_and(|subject| subject != who) {
            continue;
        }
        let Some(who) = Subject::parse(who) else {
            continue;
        };
        let key = RowKey {
            day: day.to_owned(),
            subject: who,
            model: model.to_owned(),
            task: task.to_owned(),
        };
        found.push((key, totals(value.value())));
    }
    Ok(found)
}

#[async_trait]
impl UsageStore for EmbeddedStore {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        let batch = batch.clone();
        let max_recent = self.max_recent;
        self.blocking(move |database| write(database, &batch, max_recent))
            .await
    }

    async fn rows(
        &self,
        from: &str,
        to: &str,
        subject: Option<&Subject>,
    ) -> Result<Vec<(RowKey, UsageTotals)>, StoreError> {
        let (from, to) = (from.to_owned(), to.to_owned());
        let subject = subject.map(ToString::to_string);
        self.blocking(move |database| rows(database, &from, &to, subject.as_deref()))
            .await
    }

    async fn recent(&self, user: Option<&str>, limit: usize) -> Result<Vec<TraceItem>, StoreError> {
        let user = user.map(str::to_owned);
        self.blocking(move |database| {
            let read = database.begin_read().map_err(failed)?;
            let table = match read.open_table(RECENT) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(error) => return Err(failed(error)),
            };
            let mut items = Vec::new();
            for entry in table.iter().map_err(failed)?.rev() {
                let (_, json) = entry.map_err(failed)?;
                let Ok(item) = serde_json::from_str::<TraceItem>(json.value()) else {
                    continue;
                };
                if user
                    .as_deref()
                    .is_none_or(|user| item.user_id.as_deref() == Some(user))
                {
                    items.push(item);
                }
                if items.len() >= limit {
                    break;
                }
            }
            Ok(items)
        })
        .await
    }

    async fn people(&self, ids: &[String]) -> Result<HashMap<String, Person>, StoreError> {
        let ids = ids.to_vec();
        self.blocking(move |database| {
            let read = database.begin_read().map_err(failed)?;
            let table = match read.open_table(PEOPLE) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
                Err(error) => return Err(failed(error)),
            };
            let mut people = HashMap::new();
            for id in ids {
                if let Some(json) = table.get(id.as_str()).map_err(failed)?
                    && let Ok(person) = serde_json::from_str(json.value())
                {
                    people.insert(id, person);
                }
            }
            Ok(people)
        })
        .await
    }

    async fn traffic(&self, _from: u64) -> Result<Option<Vec<(String, String)>>, StoreError> {
        Ok(None)
    }

    async fn prune(&self, day: &str) -> Result<(), StoreError> {
        let day = day.to_owned();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(failed)?;
            {
                let mut usage = transaction.open_table(USAGE).map_err(failed)?;
                usage
                    .retain_in(..(day.as_str(), "", "", ""), |_, _| false)
                    .map_err(failed)?;
            }
            transaction.commit().map_err(failed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(day: &str, recent: usize) -> Batch {
        let key = RowKey {
            day: day.into(),
            subject: Subject::Group("research".into()),
            model: "m".into(),
            task: "title_generation".into(),
        };
        Batch {
            id: format!("r:{day}"),
            rows: [(
                key,
                UsageTotals {
                    requests: 1,
                    ..UsageTotals::default()
                },
            )]
            .into(),
            recent: (0..recent)
                .map(|n| TraceItem {
                    trace_id: Some(format!("t{n}")),
                    ..TraceItem::default()
                })
                .collect(),
            ..Batch::default()
        }
    }

    #[tokio::test]
    async fn rows_add_up_old_days_are_pruned_and_the_recent_list_is_bounded() {
        let store = EmbeddedStore::in_memory(3).unwrap();
        store.write(&batch("2026-01-01", 2)).await.unwrap();
        store.write(&batch("2026-01-01", 2)).await.unwrap();
        store.write(&batch("2026-03-01", 0)).await.unwrap();
        let rows = store.rows("2026-01-01", "2026-12-31", None).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.requests, 2);
        assert_eq!(rows[0].0.task, "title_generation");
        let recent = store.recent(None, 10).await.unwrap();
        let ids: Vec<_> = recent
            .iter()
            .filter_map(|item| item.trace_id.as_deref())
            .collect();
        assert_eq!(ids, ["t1", "t0", "t1"], "newest first, at most three");
        store.prune("2026-02-01").await.unwrap();
        let rows = store.rows("2026-01-01", "2026-12-31", None).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0.day, "2026-03-01");
    }
}
