//! The usage store: one trait, an embedded backend on disk ([`super::embedded`]) and a shared one
//! in Redis ([`super::redis`]).

use crate::reporting::model::{Person, RowKey, Subject, TraceItem, UsageTotals};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};

/// What a store could not do (unreachable, slow, a file that cannot be written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// One write: what a replica counted since its last acknowledged write. The store applies it
/// whole, and exactly once: writing a batch again with the same `id` changes nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// `<replica>:<sequence>`.
    pub id: String,
    /// The replica that counted it.
    pub replica: String,
    /// Usage to add, per row.
    pub rows: BTreeMap<RowKey, UsageTotals>,
    /// Names and emails seen, by user id (the latest wins).
    pub people: BTreeMap<String, Person>,
    /// Requests to add to the recent list, oldest first.
    pub recent: Vec<TraceItem>,
    /// This replica's traffic seconds, encoded (each replaces what the replica wrote before
    /// for that second).
    pub traffic: Vec<(u64, String)>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.people.is_empty()
            && self.recent.is_empty()
            && self.traffic.is_empty()
    }
}

/// Where usage, people and recent requests are kept.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// `embedded` or `redis`.
    fn name(&self) -> &'static str;

    /// Applies a batch, once per batch id.
    async fn write(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Rows of days `from..=to` (`YYYY-MM-DD`), of one subject or all.
    async fn rows(
        &self,
        from: &str,
        to: &str,
        subject: Option<&Subject>,
    ) -> Result<Vec<(RowKey, UsageTotals)>, StoreError>;

    /// The latest requests, newest first, of one user or all, at most `limit`.
    async fn recent(&self, user: Option<&str>, limit: usize) -> Result<Vec<TraceItem>, StoreError>;

    /// The names and emails of `ids` that the store knows.
    async fn people(&self, ids: &[String]) -> Result<HashMap<String, Person>, StoreError>;

    /// Every replica's encoded traffic seconds from `from` on, as `(replica, encoded)`; `None`
    /// when the store is not shared (one replica: its own window is the whole truth).
    async fn traffic(&self, from: u64) -> Result<Option<Vec<(String, String)>>, StoreError>;

    /// Forgets rows of days before `day`.
    async fn prune(&self, day: &str) -> Result<(), StoreError>;
}
