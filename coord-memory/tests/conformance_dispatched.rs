//! The conformance suite on the in-memory backend reached through
//! `spi::Dispatched` (a [`Switch`] left on): every call of every family is
//! carried as a `Call` value and run on the backend behind it, as the kill
//! switch, the fault layer and the simulator's transport carry them.

use std::sync::Arc;

use coord_api::{
    Namespace, Result,
    spi::{Dispatched, DynBackend},
};
use coord_conformance::{Harness, switch::Switch};
use coord_memory::MemoryStore;

#[derive(Default)]
struct Carried {
    store: MemoryStore,
}

#[async_trait::async_trait]
impl Harness for Carried {
    async fn open(&self, ns: &Namespace) -> Result<DynBackend> {
        let switch = Switch::new(Arc::new(self.store.backend(ns.clone())));
        Ok(Arc::new(Dispatched::new(switch)))
    }
}

fn main() -> std::process::ExitCode {
    coord_conformance::main(Carried::default())
}
