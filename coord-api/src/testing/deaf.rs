//! Notifications that never come: a watch that never wakes, and a group
//! and an election that change while their watches stay silent (a backend
//! that lost its notifications, or sends none), for the tests of waiters
//! that must read again after their retry delay.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::{
    Candidate, Error, FencingToken, HolderId, InstanceId, Key, LeaderInfo, Members, Namespace,
    Quorum, Result,
    spi::{Backend, Campaign, ElectionBackend, GroupBackend, Watch},
};

/// A watch that never wakes: what a backend that sends no notifications (or
/// loses them) hands out.
pub(crate) struct Never;

#[async_trait]
impl Watch for Never {
    async fn changed(&mut self) -> Result<()> {
        std::future::pending().await
    }
}

/// Every group and every election change half a second after it was made:
/// a group's counter goes from 0 to 1, an election vacant until then is led
/// in term 7 (the first term granted). Its watches never wake; it answers
/// nothing but reads.
#[derive(Debug)]
pub(crate) struct Deaf(Namespace, tokio::time::Instant);

impl Deaf {
    /// Made now (tokio's clock).
    pub(crate) fn new() -> Deaf {
        Deaf(Namespace::default(), tokio::time::Instant::now())
    }

    /// Whether the half second has passed.
    fn changed(&self) -> bool {
        self.1.elapsed() >= Duration::from_millis(500)
    }

    fn reads_only<T>(&self) -> Result<T> {
        Err(Error::unavailable(self, "reads only"))
    }
}

impl std::fmt::Display for Deaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deaf")
    }
}

impl Backend for Deaf {
    fn namespace(&self) -> &Namespace {
        &self.0
    }
    fn groups(&self) -> Option<&dyn GroupBackend> {
        Some(self)
    }
    fn elections(&self) -> Option<&dyn ElectionBackend> {
        Some(self)
    }
}

#[async_trait]
impl GroupBackend for Deaf {
    async fn join(&self, _: &Key, _: &HolderId, _: &str, _: Duration) -> Result<()> {
        self.reads_only()
    }
    async fn heartbeat(&self, _: &Key, _: &HolderId, _: Duration) -> Result<bool> {
        self.reads_only()
    }
    async fn leave(&self, _: &Key, _: &HolderId) -> Result<bool> {
        self.reads_only()
    }
    async fn members(&self, _: &Key) -> Result<Members> {
        Ok(Members::new(Vec::new(), u64::from(self.changed())))
    }
    async fn watch(&self, _: &Key) -> Result<Box<dyn Watch>> {
        Ok(Box::new(Never))
    }
}

#[async_trait]
impl ElectionBackend for Deaf {
    async fn campaign(
        &self,
        _: &Key,
        _: &HolderId,
        _: &str,
        _: Duration,
        _: Option<&Quorum>,
        _: bool,
    ) -> Result<Campaign> {
        self.reads_only()
    }
    async fn withdraw_candidacy(&self, _: &Key, _: &HolderId) -> Result<bool> {
        self.reads_only()
    }
    async fn candidates(&self, _: &Key) -> Result<Vec<Candidate>> {
        self.reads_only()
    }
    async fn proclaim(&self, _: &Key, _: &HolderId, _: FencingToken, _: &str) -> Result<bool> {
        self.reads_only()
    }
    async fn renew(
        &self,
        _: &Key,
        _: &HolderId,
        _: FencingToken,
        _: Duration,
        _: Option<&Quorum>,
    ) -> Result<bool> {
        self.reads_only()
    }
    async fn resign(&self, _: &Key, _: &HolderId, _: FencingToken) -> Result<bool> {
        self.reads_only()
    }
    async fn leader(&self, _: &Key) -> Result<Option<LeaderInfo>> {
        let holder = HolderId::new(InstanceId::new("a").expect("a valid instance id"));
        let since = SystemTime::UNIX_EPOCH;
        let info = LeaderInfo::new(
            holder,
            "",
            FencingToken(7),
            since,
            1,
            Duration::from_secs(9),
        );
        Ok(self.changed().then_some(info))
    }
    async fn terms_granted(&self, _: &Key) -> Result<Option<u64>> {
        Ok(Some(u64::from(self.changed())))
    }
    async fn watch(&self, _: &Key) -> Result<Box<dyn Watch>> {
        Ok(Box::new(Never))
    }
}
