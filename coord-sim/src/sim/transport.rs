//! The sim client backend: every call of every family, carried as a
//! [`Call`] value over the simulated network to the sim server, which runs
//! it on its store; every call bounded by a timeout (→ `Error::Unavailable`,
//! whether or not the server applied it); notifications by long polling a
//! watch the server keeps. Adding a method to a family trait changes nothing
//! here.
//!
//! The simulated network delivers each message after its own latency, so a
//! request may overtake an earlier one of the same connection, which a TCP
//! connection never does. Where that matters, the transport keeps the
//! order: after a call is abandoned in flight (its caller cancelled it), the
//! connection's next call leaves only once the abandoned request has
//! arrived or is lost (the longest latency in effect when it left has
//! passed). So a clean-up sent when a call is cancelled (the release of
//! what it may have been granted) never reaches the server before the
//! call it undoes.

use std::{
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    Error, Namespace, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply, Watch},
};
use madsim::net::{Endpoint, NetSim};
use tokio::time::Instant;

/// The tag every request is sent with; replies go to a random tag per call.
pub(crate) const REQUEST_TAG: u64 = 0x636f_6f72_645f_7271;

/// A request: its reply tag and what is asked. The simulated network carries
/// Rust values as they are, a call's closure included.
pub(crate) type Envelope = (u64, Request);

/// What crosses the simulated network, which wants `Send + Sync` values: a
/// request or an answer (`Send` only: a call's closure, a reply) in a
/// mutex, taken out by the receiver.
pub(crate) struct Wire<T>(std::sync::Mutex<Option<T>>);

impl<T> Wire<T> {
    pub(crate) fn new(value: T) -> Box<Wire<T>> {
        Box::new(Wire(std::sync::Mutex::new(Some(value))))
    }

    pub(crate) fn take(self) -> Option<T> {
        self.0.into_inner().ok().flatten()
    }
}

pub(crate) enum Request {
    /// Runs a family call on the namespace's backend.
    Call { ns: Namespace, call: Call },
    /// Long poll: answers when the watch's version passes `seen`, or after
    /// `hold` with the version unchanged.
    Poll { sub: u64, seen: u64, hold: Duration },
    /// Drops a watch (best effort; idle watches are also swept).
    Unsubscribe { sub: u64 },
}

pub(crate) enum Answer {
    /// A call's reply.
    Done(Result<Reply>),
    /// A call that returned a watch: the server keeps it, under this id.
    Watching(u64),
    /// The watch's version; `None` when the server does not know the watch
    /// (it restarted or swept it).
    Polled(Option<u64>),
    Unsubscribed,
}

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
/// namespace: a [`Dispatch`] (use [`backend`](SimBackend::backend)). Cheap
/// to clone; clones share the node's endpoint.
#[derive(Clone)]
pub struct SimBackend {
    ep: Endpoint,
    server: SocketAddr,
    ns: Namespace,
    opts: SimOptions,
    /// The node that connected: a process's connection is used by that
    /// process only.
    node: madsim::task::NodeId,
    /// No call leaves before this instant: an abandoned request may still
    /// be on its way (shared by clones: one connection).
    fence: Arc<Mutex<Instant>>,
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
            fence: Arc::new(Mutex::new(Instant::now())),
        })
    }

    /// This connection as a backend of every family.
    pub fn backend(self) -> DynBackend {
        Arc::new(Dispatched::new(self))
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    async fn send(&self, op: &str, req: Request, timeout: Duration) -> Result<Answer> {
        let tag: u64 = madsim::rand::random();
        let unavailable = |what: String| Error::unavailable(self, format!("{op}: {what}"));
        if madsim::plugin::node() != self.node {
            // A killed node's leftovers (a guard dropped as its tasks were
            // torn down) run elsewhere; a killed process sends nothing.
            return Err(unavailable("called from another node".into()));
        }
        let is_call = matches!(req, Request::Call { .. });
        let fence = *self.fence.lock().unwrap();
        if is_call && Instant::now() < fence {
            tokio::time::sleep_until(fence).await;
        }
        // Dropped before it ends: the request may still be on its way.
        let abandoned = Abandoned {
            fence: is_call.then_some(&self.fence),
            arrived_by: Instant::now() + max_latency(),
        };
        let sent = self
            .ep
            .send_to_raw(self.server, REQUEST_TAG, Wire::new((tag, req)))
            .await;
        if let Err(e) = sent {
            abandoned.forget();
            return Err(unavailable(e.to_string()));
        }
        let reply = tokio::time::timeout(timeout, self.ep.recv_from_raw(tag)).await;
        abandoned.forget();
        let (msg, _) = reply
            .map_err(|_| unavailable(format!("no reply within {timeout:?}")))?
            .map_err(|e| unavailable(e.to_string()))?;
        msg.downcast::<Wire<Answer>>()
            .ok()
            .and_then(|a| a.take())
            .ok_or_else(|| Error::backend(self, format!("{op}: malformed reply")))
    }
}

/// The longest a message sent now may travel (with a margin for the
/// sender's own scheduling delay).
fn max_latency() -> Duration {
    let mut max = Duration::ZERO;
    NetSim::current().update_config(|c| max = c.send_latency.end);
    max + Duration::from_millis(1)
}

/// A call in flight: if dropped before [`forget`](Abandoned::forget), its
/// connection's next call waits until `arrived_by`.
struct Abandoned<'a> {
    fence: Option<&'a Mutex<Instant>>,
    arrived_by: Instant,
}

impl Abandoned<'_> {
    fn forget(mut self) {
        self.fence = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(fence) = self.fence {
            let mut f = fence.lock().unwrap();
            *f = (*f).max(self.arrived_by);
        }
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

#[async_trait]
impl Dispatch for SimBackend {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The server hosts an in-memory store: every family.
    fn families(&self) -> Families {
        Families::all()
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        let op = call.op().to_string();
        let req = Request::Call {
            ns: self.ns.clone(),
            call,
        };
        match self.send(&op, req, self.opts.call_timeout).await? {
            Answer::Done(reply) => reply,
            Answer::Watching(sub) => {
                let watch: Box<dyn Watch> = Box::new(SimWatch {
                    backend: Arc::new(self.clone()),
                    sub,
                    seen: 0,
                });
                Ok(Box::new(watch))
            }
            _ => Err(Error::backend(self, format!("{op}: unexpected reply"))),
        }
    }
}

/// A watch the server keeps, long polled.
struct SimWatch {
    backend: Arc<SimBackend>,
    sub: u64,
    seen: u64,
}

#[async_trait]
impl Watch for SimWatch {
    async fn changed(&mut self) -> Result<()> {
        let b = &self.backend;
        loop {
            let req = Request::Poll {
                sub: self.sub,
                seen: self.seen,
                hold: b.opts.poll_hold,
            };
            let timeout = b.opts.poll_hold + b.opts.call_timeout;
            match b.send("poll", req, timeout).await? {
                Answer::Polled(Some(v)) if v > self.seen => {
                    self.seen = v;
                    return Ok(());
                }
                // Held open and nothing changed: poll again.
                Answer::Polled(Some(_)) => {}
                Answer::Polled(None) => {
                    return Err(Error::unavailable(
                        &**b,
                        "poll: the server lost the watch (restarted?)",
                    ));
                }
                _ => return Err(Error::backend(&**b, "poll: unexpected reply")),
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
                let req = Request::Unsubscribe { sub };
                let _ = b.send("unsubscribe", req, b.opts.call_timeout).await;
            }));
        }
    }
}
