//! Release notifications: one pub/sub connection per backend, shared by all
//! of its waiters.
//!
//! The connection is a RESP3 `ConnectionManager` (it reconnects by itself,
//! for a while). A keyed map holds the watches of each channel: the first
//! watch subscribes, the last one to go unsubscribes. Subscribe and
//! unsubscribe commands are serialized so that a late unsubscribe never
//! undoes a newer subscribe. A lost connection wakes every watch (a
//! spurious wake-up is allowed; a missed one is not), and the hub then
//! subscribes every channel again itself, retrying for as long as it takes,
//! and wakes every watch again once that is done: what was published
//! before the subscriptions were in effect again reached no one (the
//! crate's own resubscription says nothing, and ends with its retries).
//! When
//! the master moves (Sentinel), the backend hands the hub a connection to
//! the new one ([`Hub::switch`]): every channel is subscribed again there,
//! then every watch is woken. On a Redis Cluster, a node lost by the
//! pub/sub connection makes the hub build a new one through the seed nodes
//! (the old one would keep redialling a dead master: a failover's promoted
//! replica is learnt only from fresh slots) and subscribe every channel
//! again on it, retrying until that succeeds ([`Hub::keep_subscribed`]).
//!
//! Wake-ups: a watch made with [`Wake::All`] is woken by every message on
//! its channel. Watches made with [`Wake::One`] (waiters for an exclusive
//! lock or a semaphore permit, where one release lets at most one more
//! waiter in) share each `released` message: it wakes only the oldest of
//! them that has no wake-up pending, so a release costs one more attempt
//! instead of one per waiter, and waiters are served in the order they
//! started waiting. A watch dropped with its wake-up unused (pending, or
//! returned by `changed()` to an owner that went away before its attempt
//! was answered: [`Watch::used`]) hands it on to the next one. Any other message (`forced`, a semaphore's `freed`: a
//! release of several permits, or one while a waiter for several may be
//! waiting, which could take a `released` wake-up it cannot use) and a lost
//! connection wake every watch. A woken waiter that finds the key taken
//! again needs no hand-on: whoever took it publishes when releasing, and a
//! lease that expires instead wakes every waiter at the expiry instant the
//! refusal carried.
//!
//! A fair waiter's watch ([`Wake::Queued`]) is woken by name: the release
//! of a lease granted from a fair queue publishes `next <holder>` for the
//! first live waiter in line (decision 0041), which wakes that waiter's
//! watches and no other fair waiter's (to the `One` watches it is a
//! `released`); a plain `released` wakes every fair waiter (no one was
//! named: whoever heads the queue must look).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use coord_api::{Result, spi::Watch};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::Notify;

use crate::{RedisConfig, cluster::Conn, error};

/// The subscriptions of one backend.
pub(crate) struct Hub {
    config: RedisConfig,
    /// Replaced when the master moves (Sentinel) or a cluster's
    /// connection lost a node.
    conn: std::sync::RwLock<Conn>,
    /// `SSUBSCRIBE` rather than `SUBSCRIBE` (a cluster with sharded pub/sub).
    sharded: bool,
    channels: Arc<Channels>,
    /// Serializes SUBSCRIBE / UNSUBSCRIBE.
    commands: tokio::sync::Mutex<()>,
}

/// Which messages wake a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Every message on the channel.
    All,
    /// One `released` (or `next …`) message per waiter (shared with the
    /// channel's other `One` watches, oldest first); every other message.
    One,
    /// A fair waiter, the holder named (as scripts spell it): `next` and
    /// this holder; every other message except `next` naming another.
    Queued(Box<[u8]>),
}

/// What a message on a lock channel asks of the watches.
enum Message<'a> {
    /// `released`: one `One` watch, every `Queued` one.
    Released,
    /// `next <holder>`: one `One` watch, the `Queued` ones of `holder`.
    Next(&'a [u8]),
    /// Anything else: every watch.
    Other,
}

impl Message<'_> {
    fn read(msg: Option<&Value>) -> Message<'_> {
        match msg {
            Some(Value::BulkString(m)) if m.as_slice() == b"released" => Message::Released,
            Some(Value::BulkString(m)) => match m.strip_prefix(b"next ") {
                Some(holder) => Message::Next(holder),
                None => Message::Other,
            },
            _ => Message::Other,
        }
    }
}

/// Channel name → its watches.
#[derive(Default)]
pub(crate) struct Channels(Mutex<State>);

#[derive(Default)]
pub(crate) struct State {
    channels: HashMap<String, Entry>,
    /// Orders the watches by creation.
    next_id: u64,
    /// What the hub must subscribe again ([`Hub::keep_subscribed`]).
    dropped: Option<tokio::sync::mpsc::UnboundedSender<Again>>,
    /// The pub/sub connection in use, counted from 0 (a cluster's hub
    /// replaces its connection when it lost a node): what an earlier one
    /// says is past.
    connection: u64,
}

/// What the hub must subscribe again.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Again {
    /// A channel the server unsubscribed while watched (its slot moved).
    Channel(String),
    /// Every channel: connection number `.0` was lost (one server: the
    /// crate reconnects it) or lost a node (a cluster: on a new connection;
    /// nothing to do once it has been replaced).
    All(u64),
}

struct Entry {
    /// SUBSCRIBE for this entry was confirmed by the server.
    confirmed: bool,
    /// The watches, oldest first.
    watches: BTreeMap<u64, Arc<Slot>>,
}

/// One watch's wake-up state.
pub(crate) struct Slot {
    wake: Wake,
    /// A wake-up was delivered and `changed()` has not returned it yet.
    pending: AtomicBool,
    /// `changed()` returned a wake-up its owner has not used yet
    /// ([`Watch::used`], or waiting again): dropped so, it is handed on.
    taken: AtomicBool,
    notify: Notify,
    /// A listener's: the messages themselves (ephemeral events).
    feed: Option<Feed>,
}

/// Where a listener's messages go: a bounded buffer, and whether any was
/// lost (a full buffer, a lost connection) since the listener last looked.
pub(crate) struct Feed {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    lost: AtomicBool,
}

impl Slot {
    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }
}

impl Entry {
    /// Wakes the oldest `One` watch that has no wake-up pending, if any.
    fn wake_one(&self) {
        if let Some(slot) = self
            .watches
            .values()
            .find(|s| s.wake == Wake::One && !s.is_pending())
        {
            slot.wake();
        }
    }

    fn wake_all(&self) {
        for slot in self.watches.values() {
            slot.wake();
        }
    }

    /// Wakes the watches `msg` asks for.
    fn deliver(&self, msg: Message<'_>) {
        let named = match msg {
            Message::Other => return self.wake_all(),
            Message::Released => None,
            Message::Next(holder) => Some(holder),
        };
        for slot in self.watches.values() {
            match &slot.wake {
                Wake::All => slot.wake(),
                Wake::Queued(h) if named.is_none_or(|n| n == &h[..]) => slot.wake(),
                Wake::Queued(_) | Wake::One => {}
            }
        }
        self.wake_one();
    }
}

impl Channels {
    /// The number of the pub/sub connection in use.
    fn connection(&self) -> u64 {
        self.0.lock().unwrap().connection
    }

    /// Handles a push from pub/sub connection number `from` (0 but on a
    /// cluster whose connection was replaced). A replaced connection's
    /// lost nodes and ended subscriptions are past: its channels were
    /// subscribed again on the new one, their watches woken then.
    pub(crate) fn dispatch(&self, push: PushInfo, from: u64) {
        let mut state = self.0.lock().unwrap();
        let past = from < state.connection;
        match push.kind {
            PushKind::SUnsubscribe | PushKind::Disconnection if past => {}
            // The server ends a sharded subscription when the channel's
            // slot leaves its shard (a resharding): what was published
            // meanwhile is lost, so every watch is woken and listeners
            // told, and the channel is subscribed again where it lives.
            // (An SUNSUBSCRIBE of ours comes for a channel nobody
            // watches any more.)
            PushKind::SUnsubscribe => {
                let State {
                    channels, dropped, ..
                } = &mut *state;
                if let Some(Value::BulkString(name)) = push.data.first()
                    && let Ok(name) = std::str::from_utf8(name)
                    && let Some(entry) = channels.get_mut(name)
                {
                    entry.confirmed = false;
                    for f in entry.watches.values().filter_map(|s| s.feed.as_ref()) {
                        f.lost.store(true, Ordering::Release);
                    }
                    entry.wake_all();
                    if let Some(tx) = dropped {
                        let _ = tx.send(Again::Channel(name.to_owned()));
                    }
                }
            }
            PushKind::Message | PushKind::SMessage => {
                if let Some(Value::BulkString(name)) = push.data.first()
                    && let Ok(name) = std::str::from_utf8(name)
                    && let Some(entry) = state.channels.get(name)
                {
                    if let Some(msg) = push.data.get(1) {
                        feed(entry, msg);
                    }
                    entry.deliver(Message::read(push.data.get(1)));
                }
            }
            // Woken now (a re-read may find what changed before the
            // drop), and again once every channel is subscribed again
            // ([`Hub::subscribe_all_again`]): what is published before that
            // reaches no one.
            PushKind::Disconnection => {
                for entry in state.channels.values_mut() {
                    entry.confirmed = false;
                    for f in entry.watches.values().filter_map(|s| s.feed.as_ref()) {
                        f.lost.store(true, Ordering::Release);
                    }
                    entry.wake_all();
                }
                if let Some(tx) = &state.dropped {
                    let _ = tx.send(Again::All(from));
                }
            }
            _ => {}
        }
    }
}

/// Hands `msg` to the listeners of `entry` (a full buffer loses it, and
/// the listener is told).
fn feed(entry: &Entry, msg: &Value) {
    let Value::BulkString(bytes) = msg else {
        return;
    };
    for slot in entry.watches.values() {
        if let Some(f) = &slot.feed
            && f.tx.try_send(bytes.clone()).is_err()
        {
            f.lost.store(true, Ordering::Release);
            slot.notify.notify_one();
        }
    }
}

impl Hub {
    pub(crate) fn new(
        config: RedisConfig,
        conn: Conn,
        channels: Arc<Channels>,
        sharded: bool,
    ) -> Hub {
        Hub {
            config,
            conn: std::sync::RwLock::new(conn),
            sharded,
            channels,
            commands: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the pub/sub connection's pushes go.
    pub(crate) fn channels(&self) -> &Arc<Channels> {
        &self.channels
    }

    fn conn(&self) -> Conn {
        self.conn.read().unwrap().clone()
    }

    /// A watch on `channel` woken by every message, effective on the server
    /// when this returns.
    pub(crate) async fn subscribe(self: &Arc<Self>, channel: String) -> Result<RedisWatch> {
        self.subscribe_with(channel, Wake::All).await
    }

    /// A watch on `channel` woken as `wake` says, effective on the server
    /// when this returns.
    pub(crate) async fn subscribe_with(
        self: &Arc<Self>,
        channel: String,
        wake: Wake,
    ) -> Result<RedisWatch> {
        self.subscribe_slot(channel, wake, None).await
    }

    /// A listener on `channel`: its messages, `buffer` at most waiting, and
    /// notice of any lost; effective on the server when this returns.
    pub(crate) async fn listen(
        self: &Arc<Self>,
        channel: String,
        buffer: usize,
    ) -> Result<RedisListener> {
        let (tx, rx) = tokio::sync::mpsc::channel(buffer);
        let feed = Feed {
            tx,
            lost: AtomicBool::new(false),
        };
        let watch = self.subscribe_slot(channel, Wake::All, Some(feed)).await?;
        Ok(RedisListener { watch, rx })
    }

    async fn subscribe_slot(
        self: &Arc<Self>,
        channel: String,
        wake: Wake,
        feed: Option<Feed>,
    ) -> Result<RedisWatch> {
        let slot = Arc::new(Slot {
            wake,
            pending: AtomicBool::new(false),
            taken: AtomicBool::new(false),
            notify: Notify::new(),
            feed,
        });
        let (id, confirmed) = {
            let mut state = self.channels.0.lock().unwrap();
            let id = state.next_id;
            state.next_id += 1;
            let entry = state
                .channels
                .entry(channel.clone())
                .or_insert_with(|| Entry {
                    confirmed: false,
                    watches: BTreeMap::new(),
                });
            entry.watches.insert(id, slot.clone());
            (id, entry.confirmed)
        };
        // From here on, dropping `watch` gives the reference back.
        let watch = RedisWatch {
            slot,
            id,
            hub: self.clone(),
            channel,
        };
        if !confirmed {
            let what = format!("subscribe to {}", watch.channel);
            // One deadline for the wait for the other commands (a frozen
            // server makes each take the whole timeout) and our own.
            let subscribe = async {
                let serial = self.commands.lock().await;
                let mut conn = self.conn();
                let r = conn.subscribe(&watch.channel, self.sharded).await;
                (serial, r)
            };
            let _serial = match tokio::time::timeout(self.config.timeout(), subscribe).await {
                Ok((serial, Ok(()))) => serial,
                Ok((_, Err(e))) => return Err(error::from_redis(&self.config, &what, e)),
                Err(_) => return Err(error::timed_out(&self.config, &what, self.config.timeout())),
            };
            if let Some(entry) = self
                .channels
                .0
                .lock()
                .unwrap()
                .channels
                .get_mut(&watch.channel)
            {
                entry.confirmed = true;
            }
        }
        Ok(watch)
    }

    /// Takes watch `id` off `channel`, handing an unused wake-up on.
    fn release(self: &Arc<Self>, channel: &str, id: u64) {
        let last = {
            let mut state = self.channels.0.lock().unwrap();
            match state.channels.get_mut(channel) {
                Some(entry) => {
                    if let Some(slot) = entry.watches.remove(&id)
                        && slot.wake == Wake::One
                        && (slot.is_pending() || slot.taken.load(Ordering::Acquire))
                    {
                        entry.wake_one();
                    }
                    if entry.watches.is_empty() {
                        state.channels.remove(channel);
                        true
                    } else {
                        false
                    }
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
        if self
            .channels
            .0
            .lock()
            .unwrap()
            .channels
            .contains_key(&channel)
        {
            return; // watched again meanwhile
        }
        let mut conn = self.conn();
        let unsubscribe = conn.unsubscribe(&channel, self.sharded);
        let _ = tokio::time::timeout(self.config.timeout(), unsubscribe).await;
    }
}

/// A [`Watch`] on one key's channel.
pub(crate) struct RedisWatch {
    slot: Arc<Slot>,
    id: u64,
    hub: Arc<Hub>,
    channel: String,
}

#[async_trait]
impl Watch for RedisWatch {
    /// Completes at the next wake-up (at once if one is pending). Cancel
    /// safe: a wake-up is only taken when this returns.
    async fn changed(&mut self) -> Result<()> {
        // Waiting again: the wake-up returned last was used.
        self.slot.taken.store(false, Ordering::Release);
        loop {
            let notified = self.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.slot.pending.swap(false, Ordering::AcqRel) {
                self.slot.taken.store(true, Ordering::Release);
                return Ok(());
            }
            notified.await;
        }
    }

    fn used(&mut self) {
        self.slot.taken.store(false, Ordering::Release);
    }
}

/// A listener on one channel: its messages as they come (at most once).
pub(crate) struct RedisListener {
    watch: RedisWatch,
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
}

impl RedisListener {
    /// The next message, or `None` when some may have been lost since the
    /// last call (a full buffer, a lost connection). Cancel safe.
    pub(crate) async fn next(&mut self) -> Option<Vec<u8>> {
        let slot = self.watch.slot.clone();
        let feed = slot.feed.as_ref().expect("a listener's slot has a feed");
        loop {
            let notified = slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if feed.lost.swap(false, Ordering::AcqRel) {
                return None;
            }
            tokio::select! {
                biased;
                msg = self.rx.recv() => match msg {
                    Some(m) => return Some(m),
                    None => std::future::pending::<()>().await,
                },
                _ = notified => {}
            }
        }
    }
}

impl Drop for RedisWatch {
    fn drop(&mut self) {
        self.hub.release(&self.channel, self.id);
    }
}

mod again;
#[cfg(test)]
mod tests;
