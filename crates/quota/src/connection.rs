//! One lazily opened Redis connection (feature `redis`), shared by the quota counters and any
//! other part of a service that uses the same Redis: every call has its own time bound.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};
use std::time::Duration;
use tokio::sync::OnceCell;

/// A Redis connection, opened on first use, so a service starts even while Redis is down;
/// it reconnects by itself afterwards. Cheap to share behind an `Arc`.
pub struct RedisConnection {
    client: Client,
    manager: OnceCell<ConnectionManager>,
    connect_timeout: Duration,
}

/// Why a Redis call gave no answer, in words (never the URL's password).
pub type RedisFailure = String;

impl RedisConnection {
    /// A connection to `url` (`redis://host:port/db`); opening it may take `connect_timeout`.
    pub fn new(url: &str, connect_timeout: Duration) -> Result<Self, RedisFailure> {
        Ok(Self {
            client: Client::open(url).map_err(|error| format!("Redis: {error}"))?,
            manager: OnceCell::new(),
            connect_timeout,
        })
    }

    async fn manager(&self) -> Result<ConnectionManager, RedisFailure> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(self.client.clone(), config);
        self.manager
            .get_or_try_init(|| async {
                tokio::time::timeout(self.connect_timeout, connect)
                    .await
                    .map_err(|_| "Redis: connection timed out".to_owned())?
                    .map_err(|error| format!("Redis: {error}"))
            })
            .await
            .cloned()
    }

    /// Runs `command` on the connection, cut off after `timeout`.
    pub async fn query<T>(
        &self,
        timeout: Duration,
        command: impl AsyncFnOnce(&mut ConnectionManager) -> RedisResult<T>,
    ) -> Result<T, RedisFailure> {
        let mut connection = self.manager().await?;
        tokio::time::timeout(timeout, command(&mut connection))
            .await
            .map_err(|_| "Redis: no answer in time".to_owned())?
            .map_err(|error| format!("Redis: {error}"))
    }
}
