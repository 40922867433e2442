//! The conformance suite on a backend whose lock family has no
//! notifications: it says it sends none (`release_notifications` and
//! `expiry_notifications` off) and answers every lock subscription with a
//! watch that never fires, as such a backend does (`spi::Watch`). The
//! client must stay correct, only slower: waiters fall back on the expiry a
//! refusal tells and on their retry delay. The in-memory store behind a
//! decorator; the cases that need notifications say so and are ignored.
//!
//! `cargo test -p coord-conformance --test no_notifications`

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use coord_api::{
    Namespace, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply, Watch},
};
use coord_conformance::Harness;
use coord_memory::MemoryStore;

/// A watch that never fires.
struct Never;

#[async_trait]
impl Watch for Never {
    async fn changed(&mut self) -> Result<()> {
        std::future::pending().await
    }
}

#[derive(Debug)]
struct Deaf {
    inner: DynBackend,
}

impl fmt::Display for Deaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deaf({})", self.inner)
    }
}

#[async_trait]
impl Dispatch for Deaf {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> Families {
        let mut families = Families::of(&*self.inner);
        if let Some(locks) = families.locks.as_mut() {
            locks.release_notifications = false;
            locks.expiry_notifications = false;
        }
        families
    }
    async fn dispatch(&self, call: Call) -> Result<Reply> {
        let op = call.op();
        if op.family == "locks" && op.name.starts_with("subscribe") {
            let never: Box<dyn Watch> = Box::new(Never);
            return Ok(Box::new(never));
        }
        call.run(self.inner.clone()).await
    }
}

struct DeafHarness {
    store: MemoryStore,
}

#[async_trait]
impl Harness for DeafHarness {
    async fn open(&self, ns: &Namespace) -> Result<DynBackend> {
        let deaf = Deaf {
            inner: Arc::new(self.store.backend(ns.clone())),
        };
        Ok(Arc::new(Dispatched::new(deaf)))
    }
}

fn main() -> std::process::ExitCode {
    coord_conformance::main(DeafHarness {
        store: MemoryStore::default(),
    })
}
