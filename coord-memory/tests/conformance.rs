//! The conformance suite on the in-memory backend: once directly, once with
//! the backend behind `Box<dyn LeaseBackend>` inside the `Arc` (the forwarding
//! impls every decorator and facade relies on).

use std::sync::Arc;

use coord_api::{
    DynLeadershipBackend, DynLeaseBackend, LeadershipBackend, LeaseBackend, Namespace,
};
use coord_conformance::Harness;
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

mod direct {
    coord_conformance::suite!(super::Memory::default());
}

mod through_dyn {
    coord_conformance::suite!(super::MemoryBoxed::default());
}
