//! The lock family on the store's lease table: every operation one table
//! step at the server's instant, then the notification of what it freed.

use std::time::Duration;

use async_trait::async_trait;
use coord_api::{
    Key, LeaseInfo, LeaseKind, LockSpace, Result,
    spi::{Acquire, AcquireAll, Grant, LeaseId, LockBackend, LockCapabilities, Release, Watch},
};

use crate::{
    Event, Leased, MemoryBackend,
    table::{Freed, table_key},
    watch::Topic,
};

impl MemoryBackend {
    pub(crate) fn notify_lock(&self, space: LockSpace, key: &Key) {
        self.store
            .notify(|| Topic::Lock(table_key(&self.ns, space, key)));
    }
}

fn leased(id: &LeaseId) -> Leased<'_> {
    Leased::Lock {
        kind: id.kind,
        key: &id.key,
    }
}

#[async_trait]
impl LockBackend for MemoryBackend {
    fn capabilities(&self) -> LockCapabilities {
        LockCapabilities::all()
    }

    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
        let now = self.store.now();
        let answer = self.store.inner.table.acquire(&self.ns, lease, ttl, now)?;
        if let (Some(j), Acquire::Granted(g)) = (self.store.journal(), &answer) {
            j.record(Event::Granted {
                lease: leased(lease),
                holder: &lease.holder,
                token: g.token,
            });
        }
        Ok(answer)
    }

    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
        let now = self.store.now();
        let held = self.store.inner.table.extend(&self.ns, lease, ttl, now)?;
        if let Some(j) = self.store.journal() {
            j.record(Event::Renewed {
                lease: leased(lease),
                holder: &lease.holder,
                held,
            });
        }
        Ok(held)
    }

    async fn release(&self, lease: &LeaseId) -> Result<Release> {
        let now = self.store.now();
        let (release, freed) = self.store.inner.table.release(&self.ns, lease, now);
        if let Some(j) = self.store.journal() {
            j.record(Event::Released {
                lease: leased(lease),
                holder: &lease.holder,
                released: matches!(release, Release::Released { .. }),
                finished: false,
            });
        }
        if freed == Freed::Yes {
            self.notify_lock(lease.kind.space(), &lease.key);
        }
        Ok(release)
    }

    async fn downgrade(&self, lease: &LeaseId, ttl: Duration) -> Result<Option<Grant>> {
        let now = self.store.now();
        let (grant, freed) = (self.store.inner.table).downgrade(&self.ns, lease, ttl, now)?;
        if let (Some(j), Some(g)) = (self.store.journal(), &grant) {
            // The write lease ended and the read lease began at one instant.
            j.record(Event::Released {
                lease: leased(lease),
                holder: &lease.holder,
                released: true,
                finished: false,
            });
            let read = LeaseId {
                kind: LeaseKind::Read,
                ..lease.clone()
            };
            j.record(Event::Granted {
                lease: leased(&read),
                holder: &lease.holder,
                token: g.token,
            });
        }
        if freed == Freed::Yes {
            self.notify_lock(LockSpace::RwLock, &lease.key);
        }
        Ok(grant)
    }

    async fn acquire_queued(
        &self,
        lease: &LeaseId,
        ttl: Duration,
        waiter_ttl: Duration,
        enqueue: bool,
    ) -> Result<Acquire> {
        let now = self.store.now();
        let (answer, freed) = (self.store.inner.table)
            .acquire_queued(&self.ns, lease, ttl, waiter_ttl, enqueue, now)?;
        if let (Some(j), Acquire::Granted(g)) = (self.store.journal(), &answer) {
            j.record(Event::Granted {
                lease: leased(lease),
                holder: &lease.holder,
                token: g.token,
            });
        }
        if freed == Freed::Yes {
            self.notify_lock(lease.kind.space(), &lease.key);
        }
        Ok(answer)
    }

    async fn leave_queue(&self, lease: &LeaseId) -> Result<bool> {
        let now = self.store.now();
        let (left, freed) = (self.store.inner.table).leave_queue(&self.ns, lease, now)?;
        if freed == Freed::Yes {
            self.notify_lock(lease.kind.space(), &lease.key);
        }
        Ok(left)
    }

    async fn force_release(&self, space: LockSpace, key: &Key) -> Result<usize> {
        let now = self.store.now();
        let n = (self.store.inner.table).force_release(&self.ns, space, key, now);
        self.notify_lock(space, key);
        Ok(n)
    }

    async fn inspect(&self, space: LockSpace, key: &Key) -> Result<Vec<LeaseInfo>> {
        let now = self.store.now();
        Ok(self.store.inner.table.inspect(&self.ns, space, key, now))
    }

    async fn subscribe(&self, space: LockSpace, key: &Key) -> Result<Box<dyn Watch>> {
        Ok(self
            .store
            .watch(Topic::Lock(table_key(&self.ns, space, key))))
    }

    async fn acquire_all(&self, leases: &[LeaseId], ttl: Duration) -> Result<AcquireAll> {
        self.acquire_all_leases(leases, ttl)
    }
}

impl MemoryBackend {
    /// [`LockBackend::acquire_all`]: one step of the table over every key's
    /// shard, each grant journaled as a grant of its own key.
    fn acquire_all_leases(&self, leases: &[LeaseId], ttl: Duration) -> Result<AcquireAll> {
        let now = self.store.now();
        let answer = (self.store.inner.table).acquire_all(&self.ns, leases, ttl, now)?;
        if let (Some(j), AcquireAll::Granted(grants)) = (self.store.journal(), &answer) {
            for (lease, g) in leases.iter().zip(grants) {
                j.record(Event::Granted {
                    lease: leased(lease),
                    holder: &lease.holder,
                    token: g.token,
                });
            }
        }
        Ok(answer)
    }
}
