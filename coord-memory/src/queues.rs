//! Work queues, under one lock of their own: every operation is one step on
//! one queue, following the rules of [`coord_api::spi::queues`] in their
//! order (the sweep of rule 1 first). A queue keeps its items, one id
//! counter (from 1) and one token counter (the fencing-token rule on the
//! store's wall clock), and its indexes: ready items by priority then id,
//! delayed items by due time, deliveries by deadline, prefetched deliveries
//! in the order they are stolen, consumers by presence deadline (each with
//! the set of its deliveries), dead items by id and by death, dedup keys by
//! the end of their window. A queue with no item and no dead item, idle for
//! a day, is forgotten by the store's sweep.
//!
//! The store checks every limit itself, with the SPI's checks (the limits
//! of [`coord_api::spi::queues`]; the client does too, and the store does
//! not rely on it): pushes, payloads, priorities, attempts, delays, dedup
//! windows, TTLs, receive and listing sizes are refused with
//! `InvalidArgument` naming the queue and the limit; errors and reasons
//! over [`MAX_REASON_BYTES`](coord_api::spi::MAX_REASON_BYTES) are cut at a
//! character boundary, and a retry delay over a day is cut to a day.
//!
//! Watches: the queue's topic, woken after the step let go of the lock when
//! the step made an item ready or delayed one (rule 9). Delays and
//! deadlines pass without
//! a wake-up: [`Received::next_in`](coord_api::spi::Received) tells when.

mod queue;

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use coord_api::{
    FencingToken, HolderId, Instant, Key, MAX_TTL, Namespace, Result,
    spi::{
        DeadItem, Nack, NewItem, Pushed, QueueBackend, QueueStats, ReceiveOptions, Received,
        ResourceKind, Role, Settle, Watch,
        queues::{check_dead_page, check_push, cut_reason},
    },
    validate_ttl,
};

use self::queue::{Queue, Step};
use crate::{
    MemoryBackend,
    ops::{Listed, Visit},
    watch::Topic,
};

/// Every queue of a store.
#[derive(Default)]
pub(crate) struct Queues {
    map: HashMap<(Namespace, Key), Queue>,
    /// The size at which stale queues are swept next.
    sweep_at: usize,
}

impl Queues {
    /// Forgets stale queues once the map doubled since the last sweep.
    fn sweep(&mut self, now: Instant) {
        if self.map.len() < self.sweep_at.max(256) {
            return;
        }
        self.map.retain(|_, q| !q.stale(now));
        self.sweep_at = self.map.len() * 2;
    }
}

impl MemoryBackend {
    fn queue_step(&self) -> Step {
        let now = self.store.now();
        Step {
            now,
            wall: self.store.wall(now),
            wall_us: self.store.inner.table.wall_us(now),
            wake: false,
        }
    }

    /// Runs `op` on the queue (made if missing when `create`, else `None`
    /// when it is), swept first, under the lock; then wakes the queue's
    /// watchers if the step made an item ready.
    fn on_queue<T>(
        &self,
        queue: &Key,
        create: bool,
        op: impl FnOnce(&mut Queue, &mut Step) -> T,
    ) -> Option<T> {
        let mut step = self.queue_step();
        let out = {
            let mut queues = self.store.queues();
            let key = (self.ns.clone(), queue.clone());
            let record = if create {
                queues.sweep(step.now);
                Some((queues.map.entry(key)).or_insert_with(|| Queue::new(step.now)))
            } else {
                queues.map.get_mut(&key)
            };
            record.map(|q| {
                q.sweep(&mut step);
                op(q, &mut step)
            })
        };
        if step.wake {
            self.store
                .notify(|| Topic::Queue(self.ns.clone(), queue.clone()));
        }
        out
    }
}

// What operations see and do: deliveries are leases.
impl Queues {
    /// Shows `visit` the live deliveries of namespace `ns`'s queues
    /// (`only`: of one queue, and of one item when it names one).
    pub(crate) fn visit(
        &self,
        ns: &Namespace,
        only: Option<(&Key, Option<u64>)>,
        now: Instant,
        visit: Visit<'_>,
    ) {
        let mut show = |name: &Key, q: &Queue, item: Option<u64>| {
            for d in q.live(item, now) {
                let role = if d.started {
                    Role::Delivery
                } else {
                    Role::Prefetched
                };
                let listed = Listed {
                    subscription: None,
                    name,
                    occurrence: None,
                    item: Some(d.id),
                    role,
                    holder: d.consumer,
                    token: Some(d.token.get()),
                    holds: 1,
                    since: None,
                    until: d.deadline,
                    waiters: None,
                };
                visit(ResourceKind::Queue, listed);
            }
        };
        match only {
            Some((name, item)) => {
                if let Some((key, q)) = self.map.get_key_value(&(ns.clone(), name.clone())) {
                    show(&key.1, q, item);
                }
            }
            None => {
                for ((n, name), q) in &self.map {
                    if n == ns {
                        show(name, q, None);
                    }
                }
            }
        }
    }
}

impl MemoryBackend {
    /// An operator's revocation of item `item`'s delivery `token` in
    /// `queue` (one step): whose it was, or the tokens of the item's live
    /// delivery.
    pub(crate) fn revoke_delivery(
        &self,
        queue: &Key,
        item: u64,
        token: FencingToken,
    ) -> std::result::Result<HolderId, Vec<FencingToken>> {
        let revoked = self.on_queue(queue, false, |q, step| q.revoke(item, token, step));
        revoked.unwrap_or(Err(Vec::new()))
    }
}

#[async_trait]
impl QueueBackend for MemoryBackend {
    async fn push(&self, queue: &Key, items: Vec<NewItem>) -> Result<Vec<Pushed>> {
        check_push(queue, &items)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let pushed = self.on_queue(queue, true, |q, step| q.push(items, step));
        Ok(pushed.expect("made"))
    }

    async fn receive(
        &self,
        queue: &Key,
        consumer: &HolderId,
        opts: ReceiveOptions,
    ) -> Result<Received> {
        opts.check(queue)?;
        let received = self.on_queue(queue, true, |q, step| q.receive(consumer, opts, step));
        Ok(received.expect("made"))
    }

    async fn extend(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Settle> {
        validate_ttl(queue, ttl)?;
        let extended = self.on_queue(queue, false, |q, step| q.extend(id, token, ttl, step.now));
        Ok(extended.unwrap_or(Settle::Stale))
    }

    async fn ack(&self, queue: &Key, id: u64, token: FencingToken) -> Result<Settle> {
        let acked = self.on_queue(queue, false, |q, step| q.ack(id, token, step.now));
        Ok(acked.unwrap_or(Settle::Stale))
    }

    async fn ack_and_receive(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        consumer: &HolderId,
        opts: ReceiveOptions,
    ) -> Result<(Settle, Received)> {
        opts.check(queue)?;
        let both = self.on_queue(queue, true, |q, step| {
            let acked = q.ack(id, token, step.now);
            (acked, q.receive(consumer, opts, step))
        });
        Ok(both.expect("made"))
    }

    async fn nack(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        error: &str,
        retry_in: Duration,
    ) -> Result<Nack> {
        let error = cut_reason(error.to_owned());
        let retry_in = retry_in.min(MAX_TTL);
        let nacked = self.on_queue(queue, false, |q, step| {
            q.nack(id, token, &error, retry_in, step)
        });
        Ok(nacked.unwrap_or(Nack::Stale))
    }

    async fn dead_letter(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        reason: &str,
    ) -> Result<Settle> {
        let reason = cut_reason(reason.to_owned());
        let dead = self.on_queue(queue, false, |q, step| {
            q.dead_letter(id, token, reason, step)
        });
        Ok(dead.unwrap_or(Settle::Stale))
    }

    async fn heartbeat(&self, queue: &Key, consumer: &HolderId, ttl: Duration) -> Result<()> {
        validate_ttl(queue, ttl)?;
        self.on_queue(queue, true, |q, step| q.heartbeat(consumer, ttl, step.now));
        Ok(())
    }

    async fn leave(&self, queue: &Key, consumer: &HolderId) -> Result<u32> {
        let left = self.on_queue(queue, false, |q, step| q.leave(consumer, step));
        Ok(left.unwrap_or(0))
    }

    async fn give_back(&self, queue: &Key, consumer: &HolderId, receive_id: u64) -> Result<u32> {
        let given = self.on_queue(queue, false, |q, step| {
            q.give_back_receive(consumer, receive_id, step)
        });
        Ok(given.unwrap_or(0))
    }

    async fn dead_items(&self, queue: &Key, after: u64, limit: u32) -> Result<Vec<DeadItem>> {
        check_dead_page(queue, limit)?;
        let listed = self.on_queue(queue, false, |q, _| q.dead_items(after, limit));
        Ok(listed.unwrap_or_default())
    }

    async fn requeue_dead(&self, queue: &Key, id: u64) -> Result<bool> {
        let requeued = self.on_queue(queue, false, |q, step| q.requeue_dead(id, step));
        Ok(requeued.unwrap_or(false))
    }

    async fn remove_dead(&self, queue: &Key, id: u64) -> Result<bool> {
        let removed = self.on_queue(queue, false, |q, _| q.remove_dead(id));
        Ok(removed.unwrap_or(false))
    }

    async fn stats(&self, queue: &Key) -> Result<QueueStats> {
        let stats = self.on_queue(queue, false, |q, _| q.stats());
        Ok(stats.unwrap_or_default())
    }

    async fn watch(&self, queue: &Key) -> Result<Box<dyn Watch>> {
        let topic = Topic::Queue(self.ns.clone(), queue.clone());
        Ok(self.store.watch(topic))
    }
}

#[cfg(test)]
mod tests;
