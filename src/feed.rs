//! Records shared by every instance through Redis: each record is stored
//! under `<prefix>:<kind>:<name>` and announced on the `<prefix>:<kind>`
//! channel. An instance follows a kind by subscribing to its channel and
//! then reading every stored record, again after each broken subscription,
//! so it misses nothing that was stored while it was away.
//!
//! Revocations and API keys travel this way.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::AsyncCommands;

use crate::ratelimit::config::RedisConfig;

/// The Redis location of one kind of record: its keys and its channel.
#[derive(Clone)]
pub struct Feed {
    client: redis::Client,
    config: Arc<RedisConfig>,
    kind: &'static str,
}

/// A receiver of a feed: takes every record read or announced.
pub trait Follower: Send + Sync + 'static {
    /// Takes one record, read from the store or announced on the channel.
    fn record(&self, value: &[u8]);

    /// Learns that every stored record has been read.
    fn loaded(&self) {}
}

impl Feed {
    pub fn new(config: &Arc<RedisConfig>, kind: &'static str) -> Result<Feed, String> {
        let client = crate::ratelimit::redis::client(config)
            .map_err(|error| format!("cannot set up the shared {kind} store: {error}"))?;
        Ok(Feed {
            client,
            config: config.clone(),
            kind,
        })
    }

    fn channel(&self) -> String {
        format!("{}:{}", self.config.key_prefix, self.kind)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{}:{name}", self.config.key_prefix, self.kind)
    }

    /// Bound on one write: the store's timeout, at least 2 s, since writes
    /// come from commands and rare events, not from requests.
    fn write_bound(&self) -> Duration {
        self.config.timeout.max(Duration::from_secs(2))
    }

    /// Stores a record (until `expire_at`, Unix seconds, when given), then
    /// announces it.
    pub async fn publish(
        &self,
        name: &str,
        value: &str,
        expire_at: Option<u64>,
    ) -> Result<(), String> {
        let work = async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            let mut set = redis::cmd("SET");
            set.arg(self.key(name)).arg(value);
            if let Some(at) = expire_at {
                set.arg("EXAT").arg(at.clamp(1, i64::MAX as u64));
            }
            set.exec_async(&mut conn).await?;
            conn.publish::<_, _, i64>(self.channel(), value)
                .await
                .map(|_| ())
        };
        self.bounded(work).await
    }

    /// Reads one stored record.
    pub async fn get(&self, name: &str) -> Result<Option<String>, String> {
        let work = async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            conn.get::<_, Option<String>>(self.key(name)).await
        };
        self.bounded(work).await
    }

    /// Reads every stored record.
    pub async fn all(&self) -> Result<Vec<String>, String> {
        self.bounded(self.read_all()).await
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.write_bound(), work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(format!("the shared {} store failed: {error}", self.kind)),
            Err(_) => Err(format!("the shared {} store timed out", self.kind)),
        }
    }

    async fn read_all(&self) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let pattern = format!("{}:{}:*", self.config.key_prefix, self.kind);
        let mut keys = Vec::new();
        {
            let mut iter: redis::AsyncIter<String> = conn.scan_match(&pattern).await?;
            while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
        }
        let mut values = Vec::with_capacity(keys.len());
        for batch in keys.chunks(500) {
            let found: Vec<Option<String>> = conn.mget(batch).await?;
            values.extend(found.into_iter().flatten());
        }
        Ok(values)
    }

    /// Follows the feed until the follower is dropped.
    pub fn follow(&self, follower: Weak<dyn Follower>) {
        tokio::spawn(follow(self.clone(), follower));
    }
}

async fn follow(feed: Feed, follower: Weak<dyn Follower>) {
    let mut wait = Duration::from_millis(200);
    while follower.strong_count() > 0 {
        match subscribe(&feed, &follower).await {
            Ok(()) => wait = Duration::from_millis(200),
            Err(error) => tracing::warn!(
                feed = feed.kind,
                error = %error,
                retry_in_ms = wait.as_millis() as u64,
                "shared store channel unavailable; changes made by other instances arrive once it returns"
            ),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(feed.config.circuit.max_open_for);
    }
}

/// One subscription: returns when it breaks or the follower is dropped.
async fn subscribe(feed: &Feed, follower: &Weak<dyn Follower>) -> redis::RedisResult<()> {
    use futures_util::StreamExt;

    let mut pubsub = feed.client.get_async_pubsub().await?;
    pubsub.subscribe(feed.channel()).await?;
    // Read after subscribing, so nothing announced in between is missed.
    let stored = feed.read_all().await?;
    match follower.upgrade() {
        Some(follower) => {
            stored
                .iter()
                .for_each(|value| follower.record(value.as_bytes()));
            follower.loaded();
        }
        None => return Ok(()),
    }
    tracing::info!(
        feed = feed.kind,
        records = stored.len(),
        "following the shared store"
    );

    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let Some(follower) = follower.upgrade() else {
            return Ok(());
        };
        follower.record(message.get_payload_bytes());
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Io,
        "the subscription ended",
    )))
}
