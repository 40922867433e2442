//! A backend offering one family only (run-once jobs, here the in-memory
//! store behind a decorator that hides the others): the runner reports every
//! case it cannot run as *ignored*, naming what it needs, never as passed.
//! Run it to see: `cargo test -p coord-memory --test conformance_partial`.

use std::sync::Arc;

use coord_api::{
    Namespace, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply},
};
use coord_conformance::Harness;
use coord_memory::MemoryStore;

/// Offers the jobs of the backend it wraps, nothing else.
#[derive(Debug)]
struct JobsOnly(DynBackend);

impl std::fmt::Display for JobsOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobsOnly({})", self.0)
    }
}

#[async_trait::async_trait]
impl Dispatch for JobsOnly {
    fn namespace(&self) -> &Namespace {
        self.0.namespace()
    }
    fn families(&self) -> Families {
        let mut f = Families::default();
        f.jobs = true;
        f
    }
    async fn dispatch(&self, call: Call) -> Result<Reply> {
        call.run(self.0.clone()).await
    }
}

#[derive(Default)]
struct Partial {
    store: MemoryStore,
}

#[async_trait::async_trait]
impl Harness for Partial {
    async fn open(&self, ns: &Namespace) -> Result<DynBackend> {
        let inner = Arc::new(self.store.backend(ns.clone()));
        Ok(Arc::new(Dispatched::new(JobsOnly(inner))))
    }
}

fn main() -> std::process::ExitCode {
    // What the runner will do, checked before it runs: the cases that need
    // nothing but jobs run, every other one is skipped for a named need.
    let mut jobs_only = Families::default();
    jobs_only.jobs = true;
    let cases = coord_conformance::cases::all();
    let runnable: Vec<_> = cases
        .iter()
        .filter(|c| c.missing(&jobs_only).is_none())
        .map(|c| c.name)
        .collect();
    assert!(!runnable.is_empty(), "the jobs cases run");
    assert!(
        cases
            .iter()
            .all(|c| c.family == "jobs" || c.missing(&jobs_only).is_some()),
        "every case of another family is skipped"
    );
    assert!(
        runnable.len() < cases.len() / 4,
        "{} of {} cases run on a jobs-only backend",
        runnable.len(),
        cases.len()
    );
    coord_conformance::main(Partial::default())
}
