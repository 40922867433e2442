//! The conformance suite on the in-memory backend: once directly, once with
//! the backend behind `Box<dyn LeaseBackend>` inside the `Arc` (the forwarding
//! impls every decorator and facade relies on), and once behind a decorator
//! that hides its in-process face, so that the client types treat it as they
//! treat a remote backend (their own lease state, renewal rounds) — the path
//! every other backend takes, checked here without a server.

use std::sync::Arc;

use coord_api::{
    DynLeadershipBackend, DynLeaseBackend, LeadershipBackend, LeaseBackend, Namespace,
};
use coord_conformance::{Harness, faults::Switch};
use coord_memory::MemoryStore;

/// Every `open` is a new connection to one shared store.
#[derive(Default)]
struct Memory {
    store: MemoryStore,
}

#[async_trait::async_trait]
impl Harness for Memory {
    async fn open(&self, ns: &Namespace) -> coord_api::Result<DynLeaseBackend> {
        Ok(Arc::new(self.store.backend(ns.clone())))
    }

    async fn open_leadership(
        &self,
        ns: &Namespace,
    ) -> coord_api::Result<Option<DynLeadershipBackend>> {
        Ok(Some(Arc::new(self.store.backend(ns.clone()))))
    }
}

/// The same store, reached through `Arc<Box<dyn LeaseBackend>>`.
#[derive(Default)]
struct MemoryBoxed {
    store: MemoryStore,
}

#[async_trait::async_trait]
impl Harness for MemoryBoxed {
    async fn open(&self, ns: &Namespace) -> coord_api::Result<DynLeaseBackend> {
        let boxed: Box<dyn LeaseBackend> = Box::new(self.store.backend(ns.clone()));
        Ok(Arc::new(boxed))
    }

    async fn open_leadership(
        &self,
        ns: &Namespace,
    ) -> coord_api::Result<Option<DynLeadershipBackend>> {
        let boxed: Box<dyn LeadershipBackend> = Box::new(self.store.backend(ns.clone()));
        Ok(Some(Arc::new(boxed)))
    }
}

/// The same store behind a [`Switch`] left on: no in-process face.
#[derive(Default)]
struct MemoryRemote {
    store: MemoryStore,
}

impl MemoryRemote {
    fn switch(&self, ns: &Namespace) -> Switch {
        let backend = Arc::new(self.store.backend(ns.clone()));
        Switch::with_leadership(backend.clone(), Some(backend))
    }
}

#[async_trait::async_trait]
impl Harness for MemoryRemote {
    async fn open(&self, ns: &Namespace) -> coord_api::Result<DynLeaseBackend> {
        Ok(Arc::new(self.switch(ns)))
    }

    async fn open_leadership(
        &self,
        ns: &Namespace,
    ) -> coord_api::Result<Option<DynLeadershipBackend>> {
        Ok(Some(Arc::new(self.switch(ns))))
    }
}

mod direct {
    coord_conformance::suite!(super::Memory::default());
}

mod through_dyn {
    coord_conformance::suite!(super::MemoryBoxed::default());
}

mod as_remote {
    coord_conformance::suite!(super::MemoryRemote::default());
}
