//! Release notifications: one pub/sub connection per backend, shared by all
//! of its waiters.
//!
//! The connection is a RESP3 `ConnectionManager` (it reconnects by itself and
//! subscribes again to every channel it had). A keyed map counts the watches
//! of each channel: the first watch subscribes, the last one to go
//! unsubscribes. Subscribe and unsubscribe commands are serialized so that a
//! late unsubscribe never undoes a newer subscribe. A lost connection wakes
//! every watch (a spurious wake-up is allowed; a missed one is not).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use coord_api::{Error, LeaseWatch, Result};
use redis::{PushInfo, PushKind, Value, aio::ConnectionManager};
use tokio::sync::watch;

use crate::{RedisConfig, error};

/// The subscriptions of one backend.
pub(crate) struct Hub {
    config: RedisConfig,
    conn: ConnectionManager,
    channels: Arc<Channels>,
    /// Serializes SUBSCRIBE / UNSUBSCRIBE.
    commands: tokio::sync::Mutex<()>,
}

/// Channel name → its watches.
#[derive(Default)]
pub(crate) struct Channels(Mutex<HashMap<String, Entry>>);

struct Entry {
    watches: usize,
    /// SUBSCRIBE for this entry was confirmed by the server.
    confirmed: bool,
    /// Bumped on every notification.
    tx: watch::Sender<u64>,
}

impl Channels {
    /// Handles a push from the pub/sub connection.
    pub(crate) fn dispatch(&self, push: PushInfo) {
        let map = self.0.lock().unwrap();
        match push.kind {
            PushKind::Message => {
                if let Some(Value::BulkString(name)) = push.data.first()
                    && let Ok(name) = std::str::from_utf8(name)
                    && let Some(entry) = map.get(name)
                {
                    entry.tx.send_modify(|n| *n += 1);
                }
            }
            PushKind::Disconnection => {
                for entry in map.values() {
                    entry.tx.send_modify(|n| *n += 1);
                }
            }
            _ => {}
        }
    }
}

impl Hub {
    pub(crate) fn new(
        config: RedisConfig,
        conn: ConnectionManager,
        channels: Arc<Channels>,
    ) -> Hub {
        Hub {
            config,
            conn,
            channels,
            commands: tokio::sync::Mutex::new(()),
        }
    }

    /// A watch on `channel`, effective on the server when this returns.
    pub(crate) async fn subscribe(self: &Arc<Self>, channel: String) -> Result<RedisWatch> {
        let (rx, confirmed) = {
            let mut map = self.channels.0.lock().unwrap();
            let entry = map.entry(channel.clone()).or_insert_with(|| Entry {
                watches: 0,
                confirmed: false,
                tx: watch::channel(0).0,
            });
            entry.watches += 1;
            (entry.tx.subscribe(), entry.confirmed)
        };
        // From here on, dropping `watch` gives the reference back.
        let watch = RedisWatch {
            rx,
            hub: self.clone(),
            channel,
        };
        if !confirmed {
            let _serial = self.commands.lock().await;
            let what = format!("subscribe to {}", watch.channel);
            let mut conn = self.conn.clone();
            match tokio::time::timeout(self.config.timeout(), conn.subscribe(&watch.channel)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(error::from_redis(&self.config, &what, e)),
                Err(_) => return Err(error::timed_out(&self.config, &what, self.config.timeout())),
            }
            if let Some(entry) = self.channels.0.lock().unwrap().get_mut(&watch.channel) {
                entry.confirmed = true;
            }
        }
        Ok(watch)
    }

    fn release(self: &Arc<Self>, channel: &str) {
        let last = {
            let mut map = self.channels.0.lock().unwrap();
            match map.get_mut(channel) {
                Some(entry) if entry.watches > 1 => {
                    entry.watches -= 1;
                    false
                }
                Some(_) => {
                    map.remove(channel);
                    true
                }
                None => false,
            }
        };
        if !last {
            return;
        }
        // Without a runtime the subscription stays until the connection
        // closes; it only costs a few ignored messages.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let hub = self.clone();
            let channel = channel.to_owned();
            drop(rt.spawn(async move { hub.unsubscribe(channel).await }));
        }
    }

    async fn unsubscribe(&self, channel: String) {
        let _serial = self.commands.lock().await;
        if self.channels.0.lock().unwrap().contains_key(&channel) {
            return; // watched again meanwhile
        }
        let mut conn = self.conn.clone();
        let _ = tokio::time::timeout(self.config.timeout(), conn.unsubscribe(&channel)).await;
    }
}

/// A [`LeaseWatch`] on one key's channel.
pub(crate) struct RedisWatch {
    rx: watch::Receiver<u64>,
    hub: Arc<Hub>,
    channel: String,
}

#[async_trait]
impl LeaseWatch for RedisWatch {
    async fn changed(&mut self) -> Result<()> {
        self.rx
            .changed()
            .await
            .map_err(|_| Error::unavailable(&self.hub.config, "the notification channel closed"))
    }
}

impl Drop for RedisWatch {
    fn drop(&mut self) {
        self.hub.release(&self.channel);
    }
}
