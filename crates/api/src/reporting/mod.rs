//! What bff reports of itself: usage per day, user, group, model and task; the people behind the
//! ids; the latest requests; chat traffic now. Fed by finished exchanges (see [`writer`]), kept
//! in a [`store::UsageStore`]: embedded on disk for one replica ([`embedded`]), or in Redis for a
//! fleet ([`redis`]), where every replica's reports agree.
//!
//! This sits below the routes: the routes read it, it never reads them.

pub mod embedded;
pub mod model;
pub mod redis;
pub mod store;
pub mod traffic;
pub mod writer;

use crate::reporting::model::{
    GroupUsage, NOT_SERVED, Subject, TraceItem, UsageRow, UsageTotals, UserUsage,
};
use crate::reporting::store::{StoreError, UsageStore};
use crate::reporting::traffic::{Traffic, TrafficReport, WINDOW_SECONDS, now_second};
use crate::reporting::writer::{Started, Writer, WriterConfig, WriterStats};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The reports, over a store and this replica's writer.
pub struct Reporting {
    store: Arc<dyn UsageStore>,
    traffic: Arc<Mutex<Traffic>>,
    open_streams: Arc<dyn Fn() -> u64 + Send + Sync>,
    stats: Arc<WriterStats>,
    stop: mpsc::Sender<oneshot::Sender<()>>,
}

impl Reporting {
    /// Starts the writer over `store`; returns the reports and the subscriber to register.
    pub fn start(
        store: Arc<dyn UsageStore>,
        config: WriterConfig,
        open_streams: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> (Self, writer::Recorder) {
        let Started {
            recorder,
            traffic,
            stats,
            stop,
        } = Writer::start(Arc::clone(&store), config, Arc::clone(&open_streams));
        let reporting = Self {
            store,
            traffic,
            open_streams,
            stats,
            stop,
        };
        (reporting, recorder)
    }

    /// `embedded` or `redis`.
    pub fn backend(&self) -> &'static str {
        self.store.name()
    }

    /// Exchanges recorded, dropped (queue full), and counted but not yet written.
    pub fn stats(&self) -> (u64, u64, u64) {
        (
            self.stats.recorded.load(Ordering::Relaxed),
            self.stats.dropped.load(Ordering::Relaxed),
            self.stats.waiting.load(Ordering::Relaxed),
        )
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.people(&[]).await.map(|_| ())
    }

    /// Usage per day, model and task over `from..=to`, of one subject or everyone.
    pub async fn usage(
        &self,
        from: &str,
        to: &str,
        subject: Option<&Subject>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let mut merged: BTreeMap<(String, String, String), UsageTotals> = BTreeMap::new();
        for (key, totals) in self.store.rows(from, to, subject).await? {
            // Without a subject, users' rows are everyone's usage; group rows count it again.
            if subject.is_none() && matches!(key.subject, Subject::Group(_)) {
                continue;
            }
            merged
                .entry((key.day, key.model, key.task))
                .or_default()
                .add(&totals);
        }
        Ok(merged
            .into_iter()
            .map(|((day, model, task), totals)| UsageRow {
                day,
                model,
                task: (!task.is_empty()).then_some(task),
                totals,
            })
            .collect())
    }

    /// The `limit` users who spent most over `from..=to`, by cost then tokens, with their names.
    pub async fn top_users(
        &self,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<UserUsage>, StoreError> {
        let mut users: HashMap<String, UsageTotals> = HashMap::new();
        for (key, totals) in self.store.rows(from, to, None).await? {
            if let Subject::User(user) = key.subject {
                users.entry(user).or_default().add(&totals);
            }
        }
        let mut ranked: Vec<(String, UsageTotals)> = users.into_iter().collect();
        ranked.sort_by(|(a_id, a), (b_id, b)| {
            b.cost_usd
                .total_cmp(&a.cost_usd)
                .then(b.total_tokens.cmp(&a.total_tokens))
                .then_with(|| a_id.cmp(b_id))
        });
        ranked.truncate(limit);
        let ids: Vec<String> = ranked.iter().map(|(id, _)| id.clone()).collect();
        let mut people = self.store.people(&ids).await?;
        Ok(ranked
            .into_iter()
            .map(|(user_id, totals)| {
                let person = people.remove(&user_id).unwrap_or_default();
                UserUsage {
                    user_id,
                    name: person.name,
                    email: person.email,
                    totals,
                }
            })
            .collect())
    }

    /// Every group's totals over `from..=to`, by cost.
    pub async fn groups(&self, from: &str, to: &str) -> Result<Vec<GroupUsage>, StoreError> {
        let mut groups: BTreeMap<String, UsageTotals> = BTreeMap::new();
        for (key, totals) in self.store.rows(from, to, None).await? {
            if let Subject::Group(group) = key.subject {
                groups.entry(group).or_default().add(&totals);
            }
        }
        let mut ranked: Vec<GroupUsage> = groups
            .into_iter()
            .map(|(group, totals)| GroupUsage { group, totals })
            .collect();
        ranked.sort_by(|a, b| b.totals.cost_usd.total_cmp(&a.totals.cost_usd));
        Ok(ranked)
    }

    /// The latest requests, newest first, of one user or all, with names.
    pub async fn recent(
        &self,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TraceItem>, StoreError> {
        let mut items = self.store.recent(user, limit).await?;
        self.name(&mut items).await?;
        Ok(items)
    }

    /// Fills in the names and emails of the items' users.
    pub async fn name(&self, items: &mut [TraceItem]) -> Result<(), StoreError> {
        let mut ids: Vec<String> = items
            .iter()
            .filter_map(|item| item.user_id.clone())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let people = self.store.people(&ids).await?;
        for item in items {
            if let Some(person) = item.user_id.as_ref().and_then(|id| people.get(id)) {
                item.user_name.clone_from(&person.name);
                item.user_email.clone_from(&person.email);
            }
        }
        Ok(())
    }

    /// Chat traffic over the last minute: the fleet's when the store is shared and answers,
    /// else this replica's (with `replicas: 1`).
    pub async fn traffic(&self) -> TrafficReport {
        let now = now_second();
        let from = now.saturating_sub(WINDOW_SECONDS - 1);
        match self.store.traffic(from).await {
            Ok(Some(encoded)) => TrafficReport::merge(&encoded, now),
            Ok(None) => self.local_traffic(now),
            Err(error) => {
                tracing::warn!(%error, "the fleet's traffic could not be read; showing this replica's");
                self.local_traffic(now)
            }
        }
    }

    fn local_traffic(&self, now: u64) -> TrafficReport {
        self.traffic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .report(now, (self.open_streams)())
    }

    /// Writes what is counted and stops the writer, within `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let (done, stopped) = oneshot::channel();
        if self.stop.send(done).await.is_ok()
            && tokio::time::timeout(deadline, stopped).await.is_err()
        {
            tracing::error!("usage could not be written before the shutdown deadline");
        }
    }
}

/// Whether `model` is the bucket of what LiteLLM did not serve.
pub fn is_not_served(model: &str) -> bool {
    model == NOT_SERVED
}
