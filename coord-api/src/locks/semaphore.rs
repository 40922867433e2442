//! Counting semaphores.

use super::{request::Request, require};
use crate::{
    Client, Error, LeaseInfo, LeaseKind, LockSpace, Permit, Result,
    handle::{Handle, option_setters},
    lease::wait::Step,
};

/// A distributed counting semaphore: at most `permits` holders per key, each
/// permit its own lease, reclaimed at its TTL when its holder dies. The number
/// of permits is fixed while any permit is live: asking with another number
/// then is `InvalidArgument`.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// let slots = client.semaphore("exports/concurrent", 3);
/// let permit = slots.acquire().await?; // at most 3 instances export at once
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    handle: Handle,
    permits: u32,
}

impl Semaphore {
    pub(crate) fn new(client: Client, key: &str, permits: u32) -> Semaphore {
        Semaphore {
            handle: Handle::new(client, key),
            permits,
        }
    }

    option_setters!();

    /// The number of permits.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    fn kind(&self) -> Result<LeaseKind> {
        let caps = self.handle.client.locks()?.capabilities();
        require(&self.handle, caps.semaphore, "semaphore")?;
        if self.permits == 0 {
            return Err(Error::invalid(format!(
                "semaphore {:?} needs at least 1 permit, got 0",
                self.handle.key_str()
            )));
        }
        Ok(LeaseKind::Permit {
            limit: self.permits,
        })
    }

    /// A permit if one is free; `Ok(None)` otherwise.
    pub async fn try_acquire(&self) -> Result<Option<Permit>> {
        let kind = self.kind()?;
        match Request::new(&self.handle, kind, None)?.try_once().await? {
            Step::Done(g) => Ok(Some(g)),
            Step::Busy(_) => Ok(None),
        }
    }

    /// A permit, waiting until one frees.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait leaves nothing held.
    pub async fn acquire(&self) -> Result<Permit> {
        let kind = self.kind()?;
        Request::new(&self.handle, kind, None)?.wait().await
    }

    /// The live permits.
    pub async fn holders(&self) -> Result<Vec<LeaseInfo>> {
        super::holders(&self.handle, LockSpace::Semaphore).await
    }

    /// How many permits are free now (one read of the backend): the
    /// permits less the live ones.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let slots = client.semaphore("exports/concurrent", 3);
    /// let permit = slots.acquire().await?;
    /// assert_eq!(slots.available().await?, 2);
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub async fn available(&self) -> Result<u32> {
        let live = self.holders().await?.len();
        Ok(self
            .permits
            .saturating_sub(live.try_into().unwrap_or(u32::MAX)))
    }

    /// Frees every permit (an operator's tool).
    pub async fn force_release(&self) -> Result<usize> {
        super::force_release(&self.handle, LockSpace::Semaphore).await
    }
}
