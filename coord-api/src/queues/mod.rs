//! Work queues: typed items pushed by any instance and delivered to
//! consumers as fenced leases, at least once; dead letters; work stealing.
//!
//! | type | what it is |
//! |---|---|
//! | [`Queue`] (from [`Client::queue`]) | push (one, many, with [`PushOptions`]), counts, dead letters |
//! | [`Consumer`] (`consumer.rs`) | receives [`Delivery`]s (waiting without polling), keeps its presence, prefetches and steals when asked, dead-letters what does not decode, `ack_and_next`, `run`, `leave` |
//! | [`Delivery`], [`ItemContext`] (`delivery.rs`) | one item under a lease (renewed, inside the consumer's presence, given back when dropped): ack, nack, dead-letter, lost signal |
//! | `metrics.rs` | what the family counts |
//!
//! The contract is [`contract::queues`](crate::contract::queues); the
//! backend's rules are in [`spi::queues`](crate::spi::queues).

mod consumer;
mod delivery;
pub(crate) mod metrics;

use std::{marker::PhantomData, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Client, Error, Key, Result, codec,
    spi::{
        DeadItem, NewItem, Pushed, QueueStats,
        queues::{check_dead_page, check_push},
    },
    trace::{self, Outcome, Site},
};

pub use consumer::Consumer;
pub use delivery::{Delivery, ItemContext};

/// How one item is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushOptions {
    delay: Option<Duration>,
    priority: u8,
    dedup: Option<(String, Duration)>,
    max_attempts: Option<u32>,
}

impl PushOptions {
    /// No delay, priority 0, no dedup id, the queue's attempts.
    pub fn new() -> PushOptions {
        PushOptions::default()
    }

    /// Ready only after `delay`.
    pub fn delay(mut self, delay: Duration) -> PushOptions {
        self.delay = Some(delay);
        self
    }

    /// Priority 0 ..= 9: higher is delivered first.
    pub fn priority(mut self, priority: u8) -> PushOptions {
        self.priority = priority;
        self
    }

    /// A dedup id: pushing the same id again within `window` is a no-op
    /// (the push returns the first item's id as a duplicate).
    pub fn dedup(mut self, id: &str, window: Duration) -> PushOptions {
        self.dedup = Some((id.to_owned(), window));
        self
    }

    /// Attempts the item is given (1 ..= 1,000).
    pub fn max_attempts(mut self, n: u32) -> PushOptions {
        self.max_attempts = Some(n);
        self
    }
}

/// What a push did with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Pushed with this id.
    Pushed(u64),
    /// Not pushed: its dedup id was pushed within the window, as this id.
    Duplicate(u64),
}

impl PushOutcome {
    /// The item's id (the first one's, for a duplicate).
    pub fn id(self) -> u64 {
        match self {
            PushOutcome::Pushed(id) | PushOutcome::Duplicate(id) => id,
        }
    }
}

/// A dead item: its value if it decodes, or the decode error.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter<T> {
    /// The item's id.
    pub id: u64,
    /// Its value, or why it does not decode as the queue's type.
    pub item: std::result::Result<T, String>,
    /// The attempts it had.
    pub attempts: u32,
    /// Why it died.
    pub reason: String,
    /// When (the backend's clock).
    pub died_at: std::time::SystemTime,
}

/// A typed work queue. Cheap to clone.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use std::time::Duration;
/// use coord_api::PushOptions;
///
/// let orders = client.queue::<u64>("orders");
/// orders.push(&42).await?;
/// // The same dedup id within the window: not pushed again.
/// let opts = PushOptions::new().dedup("order-7", Duration::from_secs(60));
/// let first = orders.push_with(&7, opts.clone()).await?;
/// assert_eq!(orders.push_with(&7, opts).await?.id(), first.id());
///
/// let mut consumer = orders.consumer();
/// let delivery = consumer.receive().await?;
/// println!("order {} (attempt {}, token {})", delivery.item(), delivery.attempt(), delivery.token());
/// delivery.ack().await?;
/// # Ok(()) }
/// ```
pub struct Queue<T> {
    client: Client,
    name: std::result::Result<Key, String>,
    max_attempts: u32,
    _item: PhantomData<fn() -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Queue<T> {
        Queue {
            client: self.client.clone(),
            name: self.name.clone(),
            max_attempts: self.max_attempts,
            _item: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name_str())
            .field("item", &std::any::type_name::<T>())
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl<T> Queue<T> {
    pub(crate) fn name_str(&self) -> &str {
        match &self.name {
            Ok(k) => k.as_str(),
            Err(raw) => raw,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Queue<T> {
    /// Attempts an item is given unless its push says otherwise.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

    pub(crate) fn new(client: Client, name: &str) -> Queue<T> {
        Queue {
            client,
            name: Key::new(name).map_err(|_| name.to_owned()),
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            _item: PhantomData,
        }
    }

    /// Sets the attempts an item is given by default (1 ..= 1,000).
    pub fn max_attempts(mut self, n: u32) -> Queue<T> {
        self.max_attempts = n;
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        self.name_str()
    }

    pub(crate) fn key(&self) -> Result<&Key> {
        match &self.name {
            Ok(k) => Ok(k),
            Err(raw) => Err(Key::new(raw).expect_err("validated before")),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn site<'a>(&self, op: &'static str, key: &'a Key) -> Site<'a> {
        Site {
            op,
            family: "queue",
            kind: "item",
            key,
            holder: None,
            token: None,
        }
    }

    /// Pushes `item` now, priority 0, no dedup id.
    pub async fn push(&self, item: &T) -> Result<PushOutcome> {
        self.push_with(item, PushOptions::new()).await
    }

    /// Pushes `item` with `opts`.
    pub async fn push_with(&self, item: &T, opts: PushOptions) -> Result<PushOutcome> {
        let mut out = self.push_many_with(vec![(item, opts)]).await?;
        Ok(out.remove(0))
    }

    /// Pushes `items` in order, in one round trip, with default options.
    pub async fn push_many<'a>(
        &self,
        items: impl IntoIterator<Item = &'a T>,
    ) -> Result<Vec<PushOutcome>>
    where
        T: 'a,
    {
        let items = items.into_iter().map(|i| (i, PushOptions::new())).collect();
        self.push_many_with(items).await
    }

    /// Pushes `items`, each with its options, in order, in one round trip
    /// (at most 1,000). Every item is checked (size, priority, attempts,
    /// dedup id, delay) before any I/O, with the backends' checks
    /// ([`check_push`]).
    pub async fn push_many_with(&self, items: Vec<(&T, PushOptions)>) -> Result<Vec<PushOutcome>> {
        let key = self.key()?;
        let batch = (items.into_iter())
            .map(|(item, opts)| self.encode(key, item, opts))
            .collect::<Result<Vec<_>>>()?;
        check_push(key, &batch)?;
        // Closed (or without queues) even with nothing to push.
        let queues = self.client.queues()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len() as u64;
        let push = queues.push(key, batch);
        let pushed = trace::call(
            &self.client,
            || self.site("push", key),
            push,
            |_| Outcome::Ok,
        );
        let pushed = pushed.await?;
        metrics::pushed(n);
        Ok(pushed
            .into_iter()
            .map(|p| match p {
                Pushed::Pushed(id) => PushOutcome::Pushed(id),
                Pushed::Duplicate(id) => PushOutcome::Duplicate(id),
            })
            .collect())
    }

    fn encode(&self, key: &Key, item: &T, opts: PushOptions) -> Result<NewItem> {
        // (An item that does not read back would be dead-lettered by its
        // first consumer as undecodable, its producer told it was pushed.)
        let payload = codec::encode(item)
            .map_err(|why| Error::invalid(format!("queue \"{key}\": an item {why}")))?;
        let dedup = match opts.dedup {
            Some((id, window)) => {
                let id = Key::new(&id)
                    .map_err(|e| Error::invalid(format!("queue \"{key}\": dedup id: {e}")))?;
                Some((id, window))
            }
            None => None,
        };
        let attempts = opts.max_attempts.unwrap_or(self.max_attempts);
        Ok(NewItem::new(payload, attempts)
            .delay(opts.delay.filter(|d| !d.is_zero()))
            .priority(opts.priority)
            .dedup(dedup))
    }

    /// A consumer of this queue, with the client's lease options for its
    /// deliveries (TTL, renewal, retry delay).
    pub fn consumer(&self) -> Consumer<T> {
        Consumer::new(self.clone())
    }

    /// The queue's counts: ready, delayed, in flight, dead, live consumers,
    /// and the deliveries, redeliveries, steals and dead letters so far.
    pub async fn stats(&self) -> Result<QueueStats> {
        let key = self.key()?;
        let stats = self.client.queues()?.stats(key);
        trace::call(
            &self.client,
            || self.site("stats", key),
            stats,
            |_| Outcome::Ok,
        )
        .await
    }

    /// Dead items with ids above `after`, lowest first, at most `limit`
    /// (1 ..= 1,000), each decoded if it can be.
    pub async fn dead_letters(&self, after: u64, limit: u32) -> Result<Vec<DeadLetter<T>>> {
        let key = self.key()?;
        check_dead_page(key, limit)?;
        let list = self.client.queues()?.dead_items(key, after, limit);
        let list = trace::call(
            &self.client,
            || self.site("dead_items", key),
            list,
            |_| Outcome::Ok,
        );
        Ok(list.await?.into_iter().map(decode_dead).collect())
    }

    /// Makes dead item `id` ready again, with a fresh attempt count; `false`
    /// if there is no such dead item.
    pub async fn requeue_dead(&self, id: u64) -> Result<bool> {
        let key = self.key()?;
        let requeue = self.client.queues()?.requeue_dead(key, id);
        trace::call(
            &self.client,
            || self.site("requeue_dead", key),
            requeue,
            |_| Outcome::Ok,
        )
        .await
    }

    /// Removes dead item `id`; `false` if there is no such dead item.
    pub async fn remove_dead(&self, id: u64) -> Result<bool> {
        let key = self.key()?;
        let remove = self.client.queues()?.remove_dead(key, id);
        trace::call(
            &self.client,
            || self.site("remove_dead", key),
            remove,
            |_| Outcome::Ok,
        )
        .await
    }
}

fn decode_dead<T: DeserializeOwned>(d: DeadItem) -> DeadLetter<T> {
    DeadLetter {
        id: d.id,
        item: serde_json::from_slice(&d.payload).map_err(|e| e.to_string()),
        attempts: d.attempts,
        reason: d.reason,
        died_at: d.died_at,
    }
}

#[cfg(test)]
mod tests;
