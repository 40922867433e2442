//! A client whose notifications are all lost: every watch it opens (of any
//! family) never wakes. Waiters then learn of a change only by reading
//! again — at their renewal period, their retry delay — which is what the
//! third rule of every family (a wake-up is only a hint) must make enough.

use std::fmt;

use async_trait::async_trait;
use coord_api::{
    Namespace, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply, Watch},
};

/// `inner` with every watch replaced by one that never wakes.
pub(crate) fn without_notifications(inner: DynBackend) -> DynBackend {
    std::sync::Arc::new(Dispatched::new(Deaf { inner }))
}

#[derive(Debug)]
struct Deaf {
    inner: DynBackend,
}

impl fmt::Display for Deaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deaf({})", self.inner)
    }
}

/// A watch that never wakes.
struct Never;

#[async_trait]
impl Watch for Never {
    async fn changed(&mut self) -> Result<()> {
        std::future::pending().await
    }
}

#[async_trait]
impl Dispatch for Deaf {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        let watch = call.op().name.ends_with("watch");
        let reply = call.run(self.inner.clone()).await?;
        if watch && reply.is::<Box<dyn Watch>>() {
            return Ok(Box::new(Box::new(Never) as Box<dyn Watch>));
        }
        Ok(reply)
    }
}
