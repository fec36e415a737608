//! # bff-quota
//!
//! Usage limits for a service that calls language models on behalf of people: requests, tasks
//! and tokens per minute, requests in flight, and spend and tokens per UTC day and month — per
//! user, per model pattern, and per shared team budget that every member draws from.
//!
//! - [`LimitPolicy`] decides which limits apply to whom (the combination rule is in [`table`]);
//!   its parts are read from TOML with file positions ([`LimitsFile`], [`BudgetFile`]).
//! - [`Quota`] admits a request against every [`Scope`] that applies and returns a [`Ticket`];
//!   settle the ticket with what the request used.
//! - [`Counters`] is where counts live: [`LocalCounters`] in process (spend and tokens kept in a
//!   `redb` file across restarts), or `RedisCounters` (feature `redis`) shared by a fleet,
//!   where each admission is one atomic Lua script.
//!
//! ```
//! use bff_quota::{FailMode, Kind, Limits, LimitPolicy, LocalCounters, Quota, Spend, Subject, SystemClock};
//! use std::{sync::Arc, time::Duration};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut policy = LimitPolicy::default();
//! policy.set_role("user", Limits { requests_per_minute: Some(1), ..Limits::default() }, vec![]);
//! let quota = Arc::new(Quota::new(
//!     Arc::new(LocalCounters::in_memory()),
//!     Arc::new(SystemClock),
//!     FailMode::Closed,
//!     Duration::from_secs(660), // a slot lapses after this, should its holder crash
//! ));
//! let alice = Subject { user_id: "alice", role: Some("user"), groups: &[] };
//!
//! let ticket = quota.admit(policy.scopes(&alice, "gpt-4o-mini"), Kind::Chat, "req-1").await.unwrap();
//! ticket.settle(Spend { tokens: 42, cost_usd: 0.001 }); // off the request path
//! let refused = quota.admit(policy.scopes(&alice, "gpt-4o-mini"), Kind::Chat, "req-2").await;
//! assert!(refused.is_err()); // 429: one request per minute
//! # }
//! ```

#![deny(missing_docs)]

pub mod calendar;
#[cfg(feature = "redis")]
mod connection;
mod engine;
mod limits;
mod local;
#[cfg(feature = "redis")]
mod redis;
pub mod table;
#[cfg(feature = "test-support")]
pub mod test_support;

#[cfg(feature = "redis")]
pub use connection::{RedisConnection, RedisFailure};
pub use engine::Quota;
pub use engine::{
    BackendError, BackendErrors, Clock, Counters, Exceeded, FailMode, Kind, QuotaError,
    RateHeaders, Settlement, Spend, SystemClock, Ticket, Used, Verdict, counts_as_task,
    retry_seconds,
};
pub use limits::{BudgetFile, Invalid, Limits, LimitsFile};
pub use local::{LocalCounters, run_writer};
#[cfg(feature = "redis")]
pub use redis::RedisCounters;
pub use table::{LimitPolicy, Scope, ScopeKey, Subject};

/// Glob match of model names: `*` any run of characters, `?` one character.
pub(crate) fn matches(pattern: &str, model: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(model)
}
