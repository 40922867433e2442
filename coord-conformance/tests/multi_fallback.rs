//! The multi-lock cases on a backend that cannot take a set in one step:
//! the client's fallback (one lock at a time in key order, releasing those
//! taken when one is busy) must keep every promise the one-step path keeps.
//! The in-memory store behind a decorator either hides the `acquire_all`
//! capability or, offering it, answers `NotSupported` for every set (as a
//! Redis Cluster does for keys of several slots); either way no set is
//! ever taken by `acquire_all`.
//!
//! `cargo test -p coord-conformance --test multi_fallback`

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use coord_api::{
    Error, Namespace, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply},
};
use coord_conformance::{Harness, Need};
use coord_memory::MemoryStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `acquire_all` is not offered.
    Hidden,
    /// `acquire_all` is offered but refuses every set before any I/O.
    Refused,
}

#[derive(Debug)]
struct OneByOne {
    inner: DynBackend,
    mode: Mode,
    /// `acquire_all` calls that reached the decorator.
    asked: Arc<AtomicUsize>,
}

impl fmt::Display for OneByOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OneByOne({:?}, {})", self.mode, self.inner)
    }
}

#[async_trait]
impl Dispatch for OneByOne {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> Families {
        let mut families = Families::of(&*self.inner);
        if let Some(locks) = families.locks.as_mut() {
            locks.acquire_all = self.mode == Mode::Refused;
        }
        families
    }
    async fn dispatch(&self, call: Call) -> Result<Reply> {
        if call.op().name == "acquire_all" {
            self.asked.fetch_add(1, Ordering::SeqCst);
            return Err(Error::NotSupported {
                operation: "acquire_all",
                backend: self.to_string(),
            });
        }
        call.run(self.inner.clone()).await
    }
}

struct OneByOneHarness {
    store: MemoryStore,
    mode: Mode,
    asked: Arc<AtomicUsize>,
}

#[async_trait]
impl Harness for OneByOneHarness {
    async fn open(&self, ns: &Namespace) -> Result<DynBackend> {
        let one = OneByOne {
            inner: Arc::new(self.store.backend(ns.clone())),
            mode: self.mode,
            asked: self.asked.clone(),
        };
        Ok(Arc::new(Dispatched::new(one)))
    }
}

/// Runs every multi-lock case the decorated store can run; returns how many
/// ran and how many `acquire_all` calls the decorator saw.
fn run_all(mode: Mode) -> (usize, usize) {
    let asked = Arc::new(AtomicUsize::new(0));
    let harness = OneByOneHarness {
        store: MemoryStore::default(),
        mode,
        asked: asked.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ran = runtime.block_on(async {
        let ns = Namespace::new("families").unwrap();
        let families = Families::of(&*harness.open(&ns).await.unwrap());
        let mut ran = 0;
        for case in coord_conformance::cases::all() {
            if case.family != "locks" || !case.name.starts_with("multi_") {
                continue;
            }
            // The SPI's own case checks the one step this decorator lacks.
            if case.missing(&families).is_some() || case.needs.contains(&Need::AcquireAll) {
                continue;
            }
            eprintln!("{mode:?}: {}", case.name);
            (case.run)(&harness).await;
            ran += 1;
        }
        ran
    });
    (ran, asked.load(Ordering::SeqCst))
}

#[test]
fn multi_lock_cases_pass_without_acquire_all() {
    let (ran, asked) = run_all(Mode::Hidden);
    assert!(ran >= 8, "only {ran} multi-lock cases ran");
    assert_eq!(
        asked, 0,
        "the client asked for a capability it was not offered"
    );
}

#[test]
fn multi_lock_cases_pass_when_acquire_all_refuses_the_set() {
    let (ran, asked) = run_all(Mode::Refused);
    assert!(ran >= 8, "only {ran} multi-lock cases ran");
    assert!(asked > 0, "the client never tried the one-step path");
}
