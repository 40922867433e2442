//! The sim client backend: `LeaseBackend` and `LeadershipBackend` over the
//! simulated network, every call bounded by a timeout (→
//! `Error::Unavailable`), notifications by long polling a server-side watch.

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Acquire, Campaign, Capability, Error, FencingToken, HolderId, Key, LeaderInfo,
    LeadershipBackend, LeaseBackend, LeaseFamily, LeaseId, LeaseInfo, LeaseWatch, Members,
    Namespace, OnceBegin, Quorum, Release, Result,
};
use madsim::net::Endpoint;

use super::proto::{REQUEST_TAG, Reply, Request, Topic};

/// Timeouts of a [`SimBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    /// Every call's round trip; past it the call is `Error::Unavailable`
    /// (whether or not the server applied it). Default 500 ms.
    pub call_timeout: Duration,
    /// How long the server holds a notification long poll open. Default 1 s.
    pub poll_hold: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            call_timeout: Duration::from_millis(500),
            poll_hold: Duration::from_secs(1),
        }
    }
}

/// A connection from the current sim node to a sim server, bound to one
/// namespace. Cheap to clone; clones share the node's endpoint.
#[derive(Clone)]
pub struct SimBackend {
    ep: Endpoint,
    server: SocketAddr,
    ns: Namespace,
    opts: SimOptions,
    /// The node that connected: a process's connection is used by that
    /// process only.
    node: madsim::task::NodeId,
}

impl SimBackend {
    /// Binds an endpoint on the current node (which needs an IP) for talking
    /// to the server at `server`.
    pub async fn connect(
        server: SocketAddr,
        ns: Namespace,
        opts: SimOptions,
    ) -> Result<SimBackend> {
        let ep = Endpoint::bind("0.0.0.0:0")
            .await
            .map_err(|e| Error::unavailable(format!("sim({server})"), format!("bind: {e}")))?;
        Ok(SimBackend {
            ep,
            server,
            ns,
            opts,
            node: madsim::plugin::node(),
        })
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    async fn call(&self, op: &str, req: Request, timeout: Duration) -> Result<Reply> {
        let tag: u64 = madsim::rand::random();
        let unavailable = |what: String| Error::unavailable(self, format!("{op}: {what}"));
        if madsim::plugin::node() != self.node {
            // A killed node's leftovers (a guard dropped as its tasks were
            // torn down) run elsewhere; a killed process sends nothing.
            return Err(unavailable("called from another node".into()));
        }
        self.ep
            .send_to_raw(self.server, REQUEST_TAG, Box::new((tag, req)))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let (msg, _) = tokio::time::timeout(timeout, self.ep.recv_from_raw(tag))
            .await
            .map_err(|_| unavailable(format!("no reply within {timeout:?}")))?
            .map_err(|e| unavailable(e.to_string()))?;
        msg.downcast::<Reply>()
            .map(|r| *r)
            .map_err(|_| Error::backend(self, format!("{op}: malformed reply")))
    }

    fn unexpected(&self, op: &str, r: Reply) -> Error {
        Error::backend(self, format!("{op}: unexpected reply {r:?}"))
    }
}

impl fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimBackend(server={}, ns={})", self.server, self.ns)
    }
}

impl fmt::Display for SimBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sim({}, ns={})", self.server, self.ns)
    }
}

macro_rules! call {
    ($self:ident, $op:literal, $req:expr, $variant:ident) => {
        match $self.call($op, $req, $self.opts.call_timeout).await? {
            Reply::$variant(r) => r,
            other => Err($self.unexpected($op, other)),
        }
    };
}

#[async_trait]
impl LeaseBackend for SimBackend {
    fn capabilities(&self) -> Capability {
        Capability::lock_family()
    }

    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
        let req = Request::Acquire {
            ns: self.ns.clone(),
            lease: lease.clone(),
            ttl,
        };
        call!(self, "acquire", req, Acquire)
    }

    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
        let req = Request::Extend {
            ns: self.ns.clone(),
            lease: lease.clone(),
            ttl,
        };
        call!(self, "extend", req, Extend)
    }

    async fn release(&self, lease: &LeaseId) -> Result<Release> {
        let req = Request::Release {
            ns: self.ns.clone(),
            lease: lease.clone(),
        };
        call!(self, "release", req, Release)
    }

    async fn force_release(&self, family: LeaseFamily, key: &Key) -> Result<usize> {
        let req = Request::ForceRelease {
            ns: self.ns.clone(),
            family,
            key: key.clone(),
        };
        call!(self, "force_release", req, ForceRelease)
    }

    async fn inspect(&self, family: LeaseFamily, key: &Key) -> Result<Vec<LeaseInfo>> {
        let req = Request::Inspect {
            ns: self.ns.clone(),
            family,
            key: key.clone(),
        };
        call!(self, "inspect", req, Inspect)
    }

    async fn subscribe(&self, family: LeaseFamily, key: &Key) -> Result<Box<dyn LeaseWatch>> {
        self.watch("subscribe", Topic::Lease(family, key.clone()))
            .await
    }

    /// Every call crosses the simulated network.
    fn in_process(&self) -> Option<&dyn coord_api::InProcessLeases> {
        None
    }
}

impl SimBackend {
    /// Opens a server-side watch on `topic`, long polled by the returned watch.
    async fn watch(&self, op: &str, topic: Topic) -> Result<Box<dyn LeaseWatch>> {
        let req = Request::Subscribe {
            ns: self.ns.clone(),
            topic,
        };
        match self.call(op, req, self.opts.call_timeout).await? {
            Reply::Subscribed(sub) => Ok(Box::new(SimWatch {
                backend: Arc::new(self.clone()),
                sub,
                seen: 0,
            })),
            other => Err(self.unexpected(op, other)),
        }
    }
}

#[async_trait]
impl LeadershipBackend for SimBackend {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<Campaign> {
        let req = Request::Campaign {
            ns: self.ns.clone(),
            election: election.clone(),
            holder: holder.clone(),
            metadata: metadata.to_owned(),
            ttl,
            quorum: quorum.cloned(),
        };
        call!(self, "campaign", req, Campaign)
    }

    async fn renew(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<bool> {
        let req = Request::Renew {
            ns: self.ns.clone(),
            election: election.clone(),
            holder: holder.clone(),
            term,
            ttl,
            quorum: quorum.cloned(),
        };
        call!(self, "renew", req, Bool)
    }

    async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool> {
        let req = Request::Resign {
            ns: self.ns.clone(),
            election: election.clone(),
            holder: holder.clone(),
            term,
        };
        call!(self, "resign", req, Bool)
    }

    async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>> {
        let req = Request::Leader {
            ns: self.ns.clone(),
            election: election.clone(),
        };
        call!(self, "leader", req, Leader)
    }

    async fn terms_granted(&self, election: &Key) -> Result<Option<u64>> {
        let req = Request::TermsGranted {
            ns: self.ns.clone(),
            election: election.clone(),
        };
        call!(self, "terms_granted", req, TermsGranted)
    }

    async fn watch_election(&self, election: &Key) -> Result<Box<dyn LeaseWatch>> {
        self.watch("watch_election", Topic::Election(election.clone()))
            .await
    }

    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()> {
        let req = Request::Join {
            ns: self.ns.clone(),
            group: group.clone(),
            holder: holder.clone(),
            metadata: metadata.to_owned(),
            ttl,
        };
        call!(self, "join", req, Joined)
    }

    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
        let req = Request::Heartbeat {
            ns: self.ns.clone(),
            group: group.clone(),
            holder: holder.clone(),
            ttl,
        };
        call!(self, "heartbeat", req, Bool)
    }

    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool> {
        let req = Request::Leave {
            ns: self.ns.clone(),
            group: group.clone(),
            holder: holder.clone(),
        };
        call!(self, "leave", req, Bool)
    }

    async fn members(&self, group: &Key) -> Result<Members> {
        let req = Request::Members {
            ns: self.ns.clone(),
            group: group.clone(),
        };
        call!(self, "members", req, Members)
    }

    async fn watch_group(&self, group: &Key) -> Result<Box<dyn LeaseWatch>> {
        self.watch("watch_group", Topic::Group(group.clone())).await
    }

    async fn begin_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin> {
        let req = Request::BeginOnce {
            ns: self.ns.clone(),
            job: job.clone(),
            occurrence: occurrence.clone(),
            holder: holder.clone(),
            ttl,
        };
        call!(self, "begin_once", req, BeginOnce)
    }

    async fn extend_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool> {
        let req = Request::ExtendOnce {
            ns: self.ns.clone(),
            job: job.clone(),
            occurrence: occurrence.clone(),
            holder: holder.clone(),
            ttl,
        };
        call!(self, "extend_once", req, Bool)
    }

    async fn end_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool> {
        let req = Request::EndOnce {
            ns: self.ns.clone(),
            job: job.clone(),
            occurrence: occurrence.clone(),
            holder: holder.clone(),
            finished,
        };
        call!(self, "end_once", req, Bool)
    }

    async fn watch_once(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn LeaseWatch>> {
        self.watch("watch_once", Topic::Once(job.clone(), occurrence.clone()))
            .await
    }
}

/// A server-side watch, long polled.
struct SimWatch {
    backend: Arc<SimBackend>,
    sub: u64,
    seen: u64,
}

#[async_trait]
impl LeaseWatch for SimWatch {
    async fn changed(&mut self) -> Result<()> {
        let b = &self.backend;
        loop {
            let req = Request::Poll {
                sub: self.sub,
                seen: self.seen,
                hold: b.opts.poll_hold,
            };
            match b
                .call("poll", req, b.opts.poll_hold + b.opts.call_timeout)
                .await?
            {
                Reply::Polled(Some(v)) if v > self.seen => {
                    self.seen = v;
                    return Ok(());
                }
                // Held open and nothing changed: poll again.
                Reply::Polled(Some(_)) => {}
                Reply::Polled(None) => {
                    return Err(Error::unavailable(
                        &**b,
                        "poll: the server lost the watch (restarted?)",
                    ));
                }
                other => return Err(b.unexpected("poll", other)),
            }
        }
    }
}

impl Drop for SimWatch {
    fn drop(&mut self) {
        let b = self.backend.clone();
        let sub = self.sub;
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            drop(h.spawn(async move {
                let _ = b
                    .call(
                        "unsubscribe",
                        Request::Unsubscribe { sub },
                        b.opts.call_timeout,
                    )
                    .await;
            }));
        }
    }
}
