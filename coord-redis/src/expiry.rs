//! [`ExpiryWatch`]: the watch of an election, a group or a run-once
//! occurrence. Changes are PUBLISHed on its channel; expiry publishes
//! nothing, so the watch also wakes at the next expiry instant, which the
//! family's script reports (its `expiry` operation).

use std::time::Duration;

use async_trait::async_trait;
use coord_api::{Key, Result, spi::Watch};
use tracing::Instrument;

use crate::{
    RedisBackend,
    eval::{self, Eval, Traced, millis},
    pubsub::RedisWatch,
};

impl RedisBackend {
    /// A watch on `channel` of `key` in `family` that also wakes at the
    /// expiry `expiry` (the family's `expiry` operation) reports: milliseconds
    /// until the next expiry, or negative for none.
    pub(crate) async fn expiry_watch(
        &self,
        family: &'static str,
        key: &Key,
        channel: String,
        expiry: Eval,
    ) -> Result<Box<dyn Watch>> {
        let span = self.span(&Traced::new("subscribe", family, key));
        let inner = self.hub().subscribe(channel).instrument(span).await?;
        Ok(Box::new(ExpiryWatch {
            backend: self.clone(),
            family,
            key: key.clone(),
            expiry,
            inner,
        }))
    }
}

/// Wakes on the channel's notifications and at the next expiry instant of
/// what it watches (a term, the earliest member heartbeat, a run's lease),
/// read from the server when [`changed`](Watch::changed) starts: a change
/// after that read is published (and kept by the subscription until seen),
/// an expiry is waited for. Renewals and heartbeats publish nothing, so when
/// the instant comes the deadline is read again: if it moved, the watch
/// keeps waiting for the new one instead of waking for nothing.
struct ExpiryWatch {
    backend: RedisBackend,
    family: &'static str,
    key: Key,
    expiry: Eval,
    inner: RedisWatch,
}

impl ExpiryWatch {
    /// Milliseconds until the next expiry; negative when nothing expires.
    async fn expiry(&self) -> Result<i64> {
        let call = Traced::new("expiry", self.family, &self.key);
        self.backend.eval(call, &self.expiry, eval::ok).await
    }
}

#[async_trait]
impl Watch for ExpiryWatch {
    async fn changed(&mut self) -> Result<()> {
        let mut left = self.expiry().await?;
        if left < 0 {
            return self.inner.changed().await;
        }
        loop {
            // The server counts a key expired once its clock is past the
            // deadline: wait until 1 ms after it.
            let expiry = millis(left).unwrap_or_default() + Duration::from_millis(1);
            tokio::select! {
                biased;
                r = self.inner.changed() => return r,
                _ = tokio::time::sleep(expiry) => {}
            }
            left = self.expiry().await?;
            if left <= 0 {
                // Gone (expired, or ended with a notification we also
                // have), or expiring now.
                return Ok(());
            }
        }
    }
}
