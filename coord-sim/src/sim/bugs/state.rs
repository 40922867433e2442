//! Broken shared-value servers: a decorator around the store's backend
//! that changes the few calls its bug is about, through the SPI alone.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Key, Namespace, Result,
    spi::{Call, Changes, Dispatch, Dispatched, DynBackend, Expect, Families, Reply},
};

use super::Bug;

/// `inner` under a state bug.
pub(super) fn around(inner: DynBackend, bug: Bug) -> DynBackend {
    Arc::new(Dispatched::new(BrokenState { inner, bug }))
}

#[derive(Debug)]
struct BrokenState {
    inner: DynBackend,
    bug: Bug,
}

impl fmt::Display for BrokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broken({:?}, {})", self.bug, self.inner)
    }
}

#[async_trait]
impl Dispatch for BrokenState {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, mut call: Call) -> Result<Reply> {
        let op = call.op();
        match (self.bug, op.family, op.name) {
            (Bug::CasIgnoresVersion, "state", "put") => {
                type Args = (Key, Key, Vec<u8>, Expect, Option<Duration>, u64);
                if let Some(a) = call.args_mut::<Args>() {
                    a.3 = Expect::Any;
                }
                call.run(self.inner.clone()).await
            }
            (Bug::LogSkipsChanges, "state", "changes") => {
                let reply = call.run(self.inner.clone()).await?;
                let mut page = *reply
                    .downcast::<Changes>()
                    .expect("changes answers Changes");
                page.changes.retain(|c| c.version % 5 != 0);
                Ok(Box::new(page))
            }
            _ => call.run(self.inner.clone()).await,
        }
    }
}
