//! The conformance suite on the in-memory backend, every family.
//!
//! `cargo test -p coord-memory --test conformance` (one test per case; the
//! usual filters and flags apply).

use std::sync::Arc;

use coord_api::{Namespace, Result, spi::DynBackend};
use coord_conformance::Harness;
use coord_memory::MemoryStore;

/// Every `open` is a new connection to one shared store.
#[derive(Default)]
struct Memory {
    store: MemoryStore,
}

#[async_trait::async_trait]
impl Harness for Memory {
    async fn open(&self, ns: &Namespace) -> Result<DynBackend> {
        Ok(Arc::new(self.store.backend(ns.clone())))
    }
}

fn main() -> std::process::ExitCode {
    coord_conformance::main(Memory::default())
}
