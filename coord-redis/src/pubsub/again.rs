//! Subscribing again: after a lost connection (the hub's own
//! resubscription, whatever the redis crate does), a master that moved
//! (Sentinel), a cluster node lost or a channel whose slot moved.

use std::sync::{Arc, atomic::Ordering};

use crate::{
    Endpoint,
    cluster::{self, Conn},
};

use super::{Again, Hub};

impl Hub {
    /// Keeps the subscriptions alive, in a task that lives as long as the
    /// hub: when the connection is lost, subscribes every channel watched
    /// again ([`subscribe_all_again`](Self::subscribe_all_again); on a
    /// cluster, on a new connection: [`reconnect`](Self::reconnect)); on a
    /// cluster, also subscribes again, as long as it is watched, every
    /// channel the server unsubscribed. See [`Channels::dispatch`].
    pub(crate) fn keep_subscribed(self: &Arc<Self>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Again>();
        self.channels.0.lock().unwrap().dropped = Some(tx);
        let weak = Arc::downgrade(self);
        drop(tokio::spawn(async move {
            while let Some(again) = rx.recv().await {
                match again {
                    Again::Channel(name) => {
                        let weak = weak.clone();
                        // (On its own: a channel on a dead node waits for
                        // the reconnection, which must not wait for it.)
                        drop(tokio::spawn(async move {
                            if let Some(hub) = weak.upgrade() {
                                hub.subscribe_again(name).await;
                            }
                        }));
                    }
                    // (Lost nodes of one connection are told one by one:
                    // one new connection answers them all.)
                    Again::All(from) => {
                        let Some(hub) = weak.upgrade() else { return };
                        if from < hub.channels.connection() {
                            continue;
                        }
                        let cluster = matches!(hub.config.endpoint(), Endpoint::Cluster { .. });
                        drop(hub);
                        if cluster {
                            Hub::reconnect(&weak).await;
                        } else {
                            Hub::subscribe_all_again(&weak).await;
                        }
                    }
                }
            }
        }));
    }

    /// Subscribes every channel watched again on the connection in use
    /// (one server: the redis crate reconnects it), then wakes its watches
    /// and tells its listeners that messages may have been lost; tried
    /// again, pausing (up to a second), until every subscription succeeds,
    /// nothing is watched any more or the hub is gone. The watches were
    /// woken when the connection dropped, but what was published between
    /// their re-reads and the subscriptions being in effect again would
    /// have woken nobody: the redis crate subscribes again on its own,
    /// after its reconnection back-off and without a word, and stops
    /// reconnecting once its retries are spent (a request sent on the
    /// connection, such as this SUBSCRIBE, starts it again).
    async fn subscribe_all_again(weak: &std::sync::Weak<Hub>) {
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let Some(hub) = weak.upgrade() else { return };
            let done = {
                let _serial = hub.commands.lock().await;
                hub.resubscribe_serialized(false).await
            };
            if done {
                tracing::info!(backend = %hub.config, "pub/sub: subscribed again");
                return;
            }
            drop(hub);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// Replaces a cluster's pub/sub connection by a new one through the
    /// seed nodes and subscribes every channel watched again on it, then
    /// wakes every watch and tells every listener that messages may have
    /// been lost; tried again, pausing (up to a second), until every
    /// subscription succeeds or the hub is gone. The old connection kept
    /// redialling a lost node for as long as its slots named it: a master
    /// killed and replaced by its replica would have taken its shard's
    /// subscriptions with it for good.
    async fn reconnect(weak: &std::sync::Weak<Hub>) {
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let Some(hub) = weak.upgrade() else { return };
            let Endpoint::Cluster { nodes } = hub.config.endpoint() else {
                return;
            };
            let span =
                tracing::info_span!("coord.redis.pubsub", backend = %hub.config, op = "reconnect");
            let done = {
                let _serial = hub.commands.lock().await;
                let number = hub.channels.connection() + 1;
                let conn = cluster::connect(
                    &hub.config,
                    nodes,
                    redis::ProtocolVersion::RESP3,
                    Some((&hub.channels, number)),
                );
                match tracing::Instrument::instrument(conn, span.clone()).await {
                    Ok(conn) => {
                        *hub.conn.write().unwrap() = Conn::Cluster(conn);
                        hub.channels.0.lock().unwrap().connection = number;
                        hub.resubscribe_serialized(true).await
                    }
                    Err(e) => {
                        span.in_scope(|| tracing::warn!(error = %e, "cannot reconnect"));
                        false
                    }
                }
            };
            if done {
                span.in_scope(|| tracing::info!("subscribed again on a new connection"));
                return;
            }
            drop(hub);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// Subscribes to `name` again while it is watched and not confirmed,
    /// pausing between tries (up to a second); wakes its watches once it
    /// is (messages may have been lost meanwhile).
    async fn subscribe_again(&self, name: String) {
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            {
                let _serial = self.commands.lock().await;
                let watched = matches!(
                    self.channels.0.lock().unwrap().channels.get(&name),
                    Some(e) if !e.confirmed
                );
                if !watched {
                    return;
                }
                let mut conn = self.conn();
                let subscribe = conn.subscribe(&name, self.sharded);
                if let Ok(Ok(())) = tokio::time::timeout(self.config.timeout(), subscribe).await {
                    if let Some(entry) = self.channels.0.lock().unwrap().channels.get_mut(&name) {
                        entry.confirmed = true;
                        entry.wake_all();
                    }
                    return;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// Uses `conn` (to the server the master moved to) from now on: every
    /// channel watched is subscribed on it, then every watch is woken and
    /// every listener told that messages may have been lost (whether the
    /// subscriptions succeeded or not: a wake-up is a hint, waiters read
    /// again). Subscriptions that failed are tried again, as after a lost
    /// connection ([`subscribe_all_again`](Self::subscribe_all_again)):
    /// tried once only, one refused at the switch stayed unsubscribed for
    /// good (its listeners deaf, its waiters polling).
    pub(crate) fn switch(self: &Arc<Self>, conn: Conn) {
        *self.conn.write().unwrap() = conn;
        let weak = Arc::downgrade(self);
        drop(tokio::spawn(async move {
            let Some(hub) = weak.upgrade() else { return };
            let done = {
                let _serial = hub.commands.lock().await;
                hub.resubscribe_serialized(true).await
            };
            drop(hub);
            if !done {
                Hub::subscribe_all_again(&weak).await;
            }
        }));
    }

    /// [`resubscribe`](Self::resubscribe)'s work, `commands` held: whether
    /// every channel watched is subscribed (true when there are none). The
    /// watches of every channel subscribed are woken and its listeners
    /// told that messages may have been lost; so are those of the others
    /// if `wake_failed`.
    async fn resubscribe_serialized(&self, wake_failed: bool) -> bool {
        let names: Vec<String> = {
            let mut state = self.channels.0.lock().unwrap();
            for entry in state.channels.values_mut() {
                entry.confirmed = false;
            }
            state.channels.keys().cloned().collect()
        };
        let mut conn = self.conn();
        let timeout = self.config.timeout();
        let mut subscribed = std::collections::HashSet::new();
        // Sharded subscriptions one channel at a time (one SSUBSCRIBE names
        // channels of one slot only), others all at once.
        let per_command = if self.sharded { 1 } else { names.len().max(1) };
        for group in names.chunks(per_command) {
            let subscribe = conn.subscribe(group, self.sharded);
            if let Ok(Ok(())) = tokio::time::timeout(timeout, subscribe).await {
                subscribed.extend(group);
            }
        }
        let mut state = self.channels.0.lock().unwrap();
        for (name, entry) in state.channels.iter_mut() {
            // (A channel watched since is being subscribed by its watch.)
            entry.confirmed = subscribed.contains(name);
            if !entry.confirmed && !wake_failed {
                continue;
            }
            for f in entry.watches.values().filter_map(|s| s.feed.as_ref()) {
                f.lost.store(true, Ordering::Release);
            }
            entry.wake_all();
        }
        subscribed.len() == names.len()
    }
}
