//! A bounded, TTL-based cache in front of any [`UserDirectory`], on [`moka`] (bounded
//! TinyLFU admission, O(1) eviction, coalesced loads) rather than a hand-written map.
//!
//! - Answers (a user with their role and groups, or a rejection) are kept for `ttl`; the TTL is
//!   the revocation lag: a session revoked, a role changed or a membership changed in Open WebUI
//!   keeps its previous effect here for at most that long. Forwarded users' groups
//!   ([`UserDirectory::groups_of`]) are kept the same way, by user id.
//! - A fresh answer always replaces the previous one, so a rejection observed is never hidden by
//!   an older positive entry.
//! - "Unavailable" is never cached: when Open WebUI is down, a still-fresh positive entry is
//!   served, and a stale or missing one fails closed.
//! - Concurrent misses for one credential make one upstream call and share its answer,
//!   failures included: 50 callers waiting on a down Open WebUI cost one call, not 50.
//! - Keys are SHA-256 digests of the credential, so the cache never holds the credential itself.
//! - At capacity, moka evicts by frequency and recency in constant time: a flood of one-off
//!   credentials does not push out the users who keep coming back.

use crate::directory::{DirectoryCredential, DirectoryError, DirectoryUser, UserDirectory};
use crate::identity::Group;
use crate::service_keys::sha256;
use async_trait::async_trait;
use moka::future::Cache;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

type CacheKey = [u8; 32];

/// A remembered answer: a value or a rejection, never "unavailable".
#[derive(Clone)]
struct Entry<T> {
    answer: Result<T, DirectoryError>,
    /// On tokio's clock, so tests can pause time; moka's own TTL only bounds memory.
    expires_at: Instant,
}

/// Answers of one kind, by key, under the rules in the module docs.
struct Remembered<T: Clone + Send + Sync + 'static> {
    ttl: Duration,
    entries: Cache<CacheKey, Entry<T>>,
}

impl<T: Clone + Send + Sync + 'static> Remembered<T> {
    fn new(ttl: Duration, capacity: usize) -> Self {
        let entries = Cache::builder()
            .max_capacity(u64::try_from(capacity.max(1)).unwrap_or(u64::MAX))
            .time_to_live(ttl.max(Duration::from_millis(1)))
            .build();
        Self { ttl, entries }
    }

    /// A fresh remembered answer for `key`, else `ask`'s (shared with concurrent callers).
    async fn get<F: Future<Output = Result<T, DirectoryError>>>(
        &self,
        key: CacheKey,
        ask: impl FnOnce() -> F,
    ) -> Result<T, DirectoryError> {
        if let Some(entry) = self.entries.get(&key).await {
            if entry.expires_at > Instant::now() {
                return entry.answer;
            }
            self.entries.invalidate(&key).await;
        }
        let load = async {
            match ask().await {
                Err(DirectoryError::Unavailable(reason)) => {
                    Err(DirectoryError::Unavailable(reason))
                }
                answer => Ok(Entry {
                    answer,
                    expires_at: Instant::now()
                        .checked_add(self.ttl)
                        .unwrap_or_else(Instant::now),
                }),
            }
        };
        // Concurrent callers for the same key share this one load, whatever it returns.
        match self.entries.try_get_with(key, load).await {
            Ok(entry) => entry.answer,
            Err(shared) => Err(DirectoryError::clone(&shared)),
        }
    }
}

/// Caches a directory's answers. See the module docs for the rules.
pub struct CachedDirectory<D> {
    inner: D,
    users: Remembered<DirectoryUser>,
    groups: Remembered<Vec<Group>>,
}

impl<D: UserDirectory> CachedDirectory<D> {
    /// Wraps `inner`, keeping answers for `ttl` and at most `capacity` credentials (and as
    /// many forwarded users' group lists).
    pub fn new(inner: D, ttl: Duration, capacity: usize) -> Self {
        Self {
            inner,
            users: Remembered::new(ttl, capacity),
            groups: Remembered::new(ttl, capacity),
        }
    }

    /// Number of credentials currently tracked (after pending evictions are applied).
    pub async fn entry_count(&self) -> u64 {
        self.users.entries.run_pending_tasks().await;
        self.users.entries.entry_count()
    }
}

fn cache_key(credential: &DirectoryCredential) -> CacheKey {
    let kind: &[u8] = match credential {
        DirectoryCredential::SessionToken(_) => b"session\0",
        DirectoryCredential::ApiKey(_) => b"api-key\0",
    };
    let mut input = kind.to_vec();
    input.extend_from_slice(credential.secret().expose().as_bytes());
    sha256(&input)
}

#[async_trait]
impl<D: UserDirectory> UserDirectory for CachedDirectory<D> {
    async fn lookup(
        &self,
        credential: &DirectoryCredential,
    ) -> Result<DirectoryUser, DirectoryError> {
        self.users
            .get(cache_key(credential), || self.inner.lookup(credential))
            .await
    }

    async fn groups_of(&self, user_id: &str) -> Result<Vec<Group>, DirectoryError> {
        self.groups
            .get(sha256(user_id.as_bytes()), || self.inner.groups_of(user_id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::MockUserDirectory;
    use crate::secret::Secret;

    fn user(role: &str) -> DirectoryUser {
        DirectoryUser {
            id: "u-1".into(),
            role: role.into(),
            email: None,
            name: None,
            groups: Vec::new(),
        }
    }

    fn session(token: &str) -> DirectoryCredential {
        DirectoryCredential::SessionToken(Secret::new(token))
    }

    #[tokio::test(start_paused = true)]
    async fn serves_a_fresh_answer_from_cache_and_asks_again_after_ttl() {
        let mut inner = MockUserDirectory::new();
        let mut calls = 0;
        inner.expect_lookup().times(2).returning(move |_| {
            calls += 1;
            Ok(user(if calls == 1 { "user" } else { "admin" }))
        });
        let cache = CachedDirectory::new(inner, Duration::from_secs(60), 100);
        assert_eq!(cache.lookup(&session("a")).await.unwrap().role, "user");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(cache.lookup(&session("a")).await.unwrap().role, "user");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.lookup(&session("a")).await.unwrap().role, "admin");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_after_expiry_replaces_the_positive_entry() {
        let mut inner = MockUserDirectory::new();
        let mut calls = 0;
        inner.expect_lookup().times(2).returning(move |_| {
            calls += 1;
            if calls == 1 {
                Ok(user("user"))
            } else {
                Err(DirectoryError::Rejected { status: 401 })
            }
        });
        let cache = CachedDirectory::new(inner, Duration::from_secs(60), 100);
        assert!(cache.lookup(&session("a")).await.is_ok());
        tokio::time::advance(Duration::from_secs(61)).await;
        let rejected = Err(DirectoryError::Rejected { status: 401 });
        assert_eq!(cache.lookup(&session("a")).await, rejected);
        // The rejection is what is remembered now.
        assert_eq!(cache.lookup(&session("a")).await, rejected);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailability_is_not_cached_and_does_not_extend_a_stale_entry() {
        let mut inner = MockUserDirectory::new();
        let mut calls = 0;
        inner.expect_lookup().times(3).returning(move |_| {
            calls += 1;
            match calls {
                1 => Ok(user("user")),
                2 => Err(DirectoryError::Unavailable("down".into())),
                _ => Ok(user("user")),
            }
        });
        let cache = CachedDirectory::new(inner, Duration::from_secs(60), 100);
        assert!(cache.lookup(&session("a")).await.is_ok());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(
            cache.lookup(&session("a")).await,
            Err(DirectoryError::Unavailable(_))
        ));
        // The failure was not remembered: the next call asks again.
        assert!(cache.lookup(&session("a")).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_positive_entry_is_served_while_the_directory_is_down_until_its_ttl() {
        let mut inner = MockUserDirectory::new();
        inner
            .expect_lookup()
            .times(1)
            .returning(|_| Ok(user("user")));
        let cache = CachedDirectory::new(inner, Duration::from_secs(60), 100);
        assert!(cache.lookup(&session("a")).await.is_ok());
        tokio::time::advance(Duration::from_secs(30)).await;
        // `times(1)` proves the directory was not asked: it could have been down.
        assert!(cache.lookup(&session("a")).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn session_tokens_and_api_keys_with_equal_text_do_not_share_an_entry() {
        let mut inner = MockUserDirectory::new();
        inner
            .expect_lookup()
            .times(2)
            .returning(|_| Ok(user("user")));
        let cache = CachedDirectory::new(inner, Duration::from_secs(60), 100);
        cache.lookup(&session("same")).await.unwrap();
        cache
            .lookup(&DirectoryCredential::ApiKey(Secret::new("same")))
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_forwarded_users_groups_are_kept_for_the_ttl_by_user_id() {
        let mut inner = MockUserDirectory::new();
        let mut calls = 0;
        inner.expect_groups_of().times(3).returning(move |user| {
            calls += 1;
            let name = if calls == 1 { "research" } else { "interns" };
            Ok(vec![Group::checked(&format!("{user}-g"), name).unwrap()])
        });
        let cache = CachedDirectory::new(inner, Duration::from_secs(60), 100);
        let names = |groups: Vec<Group>| groups.into_iter().map(|g| g.name).collect::<Vec<_>>();
        assert_eq!(names(cache.groups_of("u-1").await.unwrap()), ["research"]);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(names(cache.groups_of("u-1").await.unwrap()), ["research"]);
        // Another user is another entry.
        assert_eq!(names(cache.groups_of("u-2").await.unwrap()), ["interns"]);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(names(cache.groups_of("u-1").await.unwrap()), ["interns"]);
    }

    #[tokio::test(start_paused = true)]
    async fn stays_within_capacity() {
        let mut inner = MockUserDirectory::new();
        inner.expect_lookup().returning(|_| Ok(user("user")));
        let cache = CachedDirectory::new(inner, Duration::from_secs(60), 8);
        for n in 0..50 {
            cache.lookup(&session(&format!("token-{n}"))).await.unwrap();
            assert!(cache.entry_count().await <= 8);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_on_a_down_directory_share_one_call() {
        let mut inner = MockUserDirectory::new();
        inner
            .expect_lookup()
            .times(1)
            .returning(|_| Err(DirectoryError::Unavailable("connection refused".into())));
        let cache = std::sync::Arc::new(CachedDirectory::new(
            SlowDirectory(inner),
            Duration::from_secs(60),
            100,
        ));
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let cache = std::sync::Arc::clone(&cache);
                tokio::spawn(async move { cache.lookup(&session("a")).await })
            })
            .collect();
        for waiter in waiters {
            assert!(matches!(
                waiter.await.unwrap(),
                Err(DirectoryError::Unavailable(_))
            ));
        }
    }

    /// A directory that takes a second to answer, so every waiter arrives during the call.
    struct SlowDirectory(MockUserDirectory);

    #[async_trait]
    impl UserDirectory for SlowDirectory {
        async fn lookup(
            &self,
            credential: &DirectoryCredential,
        ) -> Result<DirectoryUser, DirectoryError> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.0.lookup(credential).await
        }

        async fn groups_of(&self, user_id: &str) -> Result<Vec<Group>, DirectoryError> {
            self.0.groups_of(user_id).await
        }
    }
}
