//! Fair waiters on the lease table: each key's queue of waiters in arrival
//! order, every place a lease of its waiter (decision 0033).

use std::time::Duration;

use coord_api::{
    Instant, Namespace, Result,
    spi::{Acquire, Busy, LeaseId, locks::check_fair_kind},
};

use super::{Entry, Freed, KeyRef, LeaseTable, check_permits, check_ttl};

impl LeaseTable {
    /// [`LockBackend::acquire_queued`](coord_api::spi::LockBackend::acquire_queued)
    /// on `ns`; [`Freed::Yes`] when the key's waiters should look again (a
    /// dead head was dropped, or a semaphore's head went in with others
    /// behind it).
    pub fn acquire_queued(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        ttl: Duration,
        waiter_ttl: Duration,
        enqueue: bool,
        now: Instant,
    ) -> Result<(Acquire, Freed)> {
        check_ttl(id, ttl)?;
        check_permits(id)?;
        check_fair(id, waiter_ttl)?;
        let key = KeyRef {
            ns,
            space: id.kind.space(),
            key: &id.key,
        };
        self.entries.update(&key, Entry::is_empty, |e, last| {
            let head_before = e.queue.first().map(|(h, _)| h.clone());
            e.purge(now);
            // Another N is refused before the queue: it takes no place and
            // never waits (the limit is fixed while permits are live).
            e.check_limit(id)?;
            // So is a re-entry past the holds' limit (the grant would
            // refuse it, after the place was taken).
            e.check_holds(id)?;
            if enqueue {
                let until = now + waiter_ttl;
                match e.queue.iter_mut().find(|(h, _)| *h == id.holder) {
                    Some((_, u)) => *u = until,
                    None => e.queue.push((id.holder.clone(), until)),
                }
            }
            match e.queue.first() {
                Some((head, until)) if *head != id.holder => {
                    // Someone is ahead: look again by its place's end at the
                    // latest (it is skipped then unless renewed).
                    let head_changed = head_before.as_ref() != Some(head);
                    let busy = Busy::new(Some(until.saturating_duration_since(now)));
                    return Ok((Acquire::Busy(busy), freed(head_changed)));
                }
                _ => {}
            }
            let answer = self.grant(ns, e, last, id, ttl, now)?;
            let mut wake = false;
            if let Acquire::Granted(_) = answer {
                let before = e.queue.len();
                e.queue.retain(|(h, _)| *h != id.holder);
                // A semaphore may have room for the next in line too.
                wake = e.queue.len() < before
                    && !e.queue.is_empty()
                    && id.kind.space() == coord_api::LockSpace::Semaphore;
            }
            Ok((answer, freed(wake)))
        })
    }

    /// [`LockBackend::leave_queue`](coord_api::spi::LockBackend::leave_queue)
    /// on `ns`: whether the holder had a place; [`Freed::Yes`] when the
    /// queue has a new head (the next in line may go).
    /// `InvalidArgument` for a read-write lock's kinds (nothing queues).
    pub fn leave_queue(&self, ns: &Namespace, id: &LeaseId, now: Instant) -> Result<(bool, Freed)> {
        check_fair_kind(id)?;
        let key = KeyRef {
            ns,
            space: id.kind.space(),
            key: &id.key,
        };
        Ok(self.entries.update(&key, Entry::is_empty, |e, _| {
            let head_before = e.queue.first().map(|(h, _)| h.clone());
            e.purge(now);
            let had = match e.queue.iter().position(|(h, _)| *h == id.holder) {
                Some(i) => {
                    e.queue.remove(i);
                    true
                }
                None => false,
            };
            let head = e.queue.first().map(|(h, _)| h);
            (had, freed(head.is_some() && head != head_before.as_ref()))
        }))
    }
}

fn freed(wake: bool) -> Freed {
    if wake { Freed::Yes } else { Freed::No }
}

/// `InvalidArgument` for a kind that has no fair mode (a read-write lock's)
/// or a waiter TTL out of the TTL range.
fn check_fair(id: &LeaseId, waiter_ttl: Duration) -> Result<()> {
    check_fair_kind(id)?;
    coord_api::validate_ttl(&id.key, waiter_ttl)
}
