//! A bounded, TTL-based cache in front of any [`UserDirectory`].
//!
//! - Answers (a user, or a rejection) are kept for `ttl`; the TTL is the revocation lag: a
//!   session revoked in Open WebUI keeps working here for at most that long.
//! - A fresh answer always replaces the previous one, so a rejection observed is never hidden by
//!   an older positive entry.
//! - "Unavailable" is never cached: when Open WebUI is down, a still-fresh positive entry is
//!   served, and a stale or missing one fails closed.
//! - Concurrent misses for one credential make one upstream call; the others wait for its answer.
//! - Keys are SHA-256 digests of the credential, so the cache never holds the credential itself.
//! - At capacity, expired entries are evicted first, then arbitrary idle ones.

use crate::directory::{DirectoryCredential, DirectoryError, DirectoryUser, UserDirectory};
use crate::service_keys::sha256;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

type CacheKey = [u8; 32];

/// A remembered answer.
struct Entry {
    answer: Result<DirectoryUser, DirectoryError>,
    expires_at: Instant,
}

/// One credential's slot; its async lock is what coalesces concurrent misses.
#[derive(Default)]
struct Slot {
    entry: tokio::sync::Mutex<Option<Entry>>,
}

/// Caches a directory's answers. See the module docs for the rules.
pub struct CachedDirectory<D> {
    inner: D,
    ttl: Duration,
    capacity: usize,
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
}

impl<D: UserDirectory> CachedDirectory<D> {
    /// Wraps `inner`, keeping answers for `ttl` and at most `capacity` credentials.
    pub fn new(inner: D, ttl: Duration, capacity: usize) -> Self {
        Self {
            inner,
            ttl,
            capacity: capacity.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Number of credentials currently tracked.
    pub fn len(&self) -> usize {
        self.lock_slots().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Slot>>> {
        // The map holds no invariant a panicking holder could break; keep serving.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot_for(&self, key: CacheKey) -> Arc<Slot> {
        let mut slots = self.lock_slots();
        if let Some(slot) = slots.get(&key) {
            return Arc::clone(slot);
        }
        if slots.len() >= self.capacity {
            evict(&mut slots, self.capacity);
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key, Arc::clone(&slot));
        slot
    }
}

/// Frees room: drops expired or empty idle slots, then arbitrary idle ones until below capacity.
fn evict(slots: &mut HashMap<CacheKey, Arc<Slot>>, capacity: usize) {
    let now = Instant::now();
    slots.retain(|_, slot| match slot.entry.try_lock() {
        Ok(entry) => entry.as_ref().is_some_and(|entry| entry.expires_at > now),
        Err(_) => true, // a lookup is in flight: keep it
    });
    if slots.len() >= capacity {
        let excess = slots.len() + 1 - capacity;
        let idle: Vec<CacheKey> = slots
            .iter()
            .filter(|(_, slot)| slot.entry.try_lock().is_ok())
            .map(|(key, _)| *key)
            .take(excess)
            .collect();
        for key in idle {
            slots.remove(&key);
        }
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
        let slot = self.slot_for(cache_key(credential));
        // Holding the slot's lock across the upstream call makes concurrent misses wait for
        // this answer instead of asking again. If this future is dropped, the lock is released
        // and the next waiter asks.
        let mut entry = slot.entry.lock().await;
        if let Some(cached) = entry.as_ref()
            && cached.expires_at > Instant::now()
        {
            return cached.answer.clone();
        }
        let answer = self.inner.lookup(credential).await;
        match &answer {
            Ok(_) | Err(DirectoryError::Rejected { .. }) => {
                *entry = Some(Entry {
                    answer: answer.clone(),
                    expires_at: Instant::now() + self.ttl,
                });
            }
            // Never cache "unavailable"; an expired positive entry must not outlive its TTL.
            Err(DirectoryError::Unavailable(_)) => *entry = None,
        }
        answer
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
    async fn stays_within_capacity() {
        let mut inner = MockUserDirectory::new();
        inner.expect_lookup().returning(|_| Ok(user("user")));
        let cache = CachedDirectory::new(inner, Duration::from_secs(60), 8);
        for n in 0..50 {
            cache.lookup(&session(&format!("token-{n}"))).await.unwrap();
            assert!(cache.len() <= 8, "{} entries", cache.len());
        }
        // Expired entries go first.
        tokio::time::advance(Duration::from_secs(61)).await;
        cache.lookup(&session("fresh")).await.unwrap();
        assert_eq!(cache.len(), 1);
    }
}
