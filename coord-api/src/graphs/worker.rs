//! The worker: takes ready nodes of any run of a graph and runs a body on
//! each under a lease, then completes the attempt with the body's result.
//! [`GraphWorker::run`] completes each node and takes the next in one
//! backend call (a busy worker costs one call per node beyond the lease's
//! renewals); [`work_next`](GraphWorker::work_next) and
//! [`work_one`](GraphWorker::work_one) take and complete, two. An idle
//! worker waits on the graph's ready notifications, shared with the other
//! workers of its [`Graph`] (see `ready.rs`).

use std::{
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::Duration,
};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    Graph, metrics,
    ready::{Owed, Woken},
};
use crate::{
    BoxError, Error, FencingToken, HolderId, Key, LostSignal, Release, Result,
    clock::Instant,
    handle::{Handle, option_setters},
    lease::{
        BoxFuture, Guard, Lease, Tenure,
        undo::{self, MakeUndo, granting, resend_while_valid},
        wait::{hinted_wait, jittered, later},
    },
    spi::{
        Complete, MAX_ERROR_BYTES, MAX_RESULT_BYTES, NodeResult, NodeState, Outcome, Renew, Take,
    },
    trace::{self, Site},
};

/// One attempt's lease, for the lease engine. A renewal refused because the
/// run was cancelled marks `cancelled` (the lost signal fires either way);
/// `stage` says whether its body was called or the node given back.
struct Attempt {
    graph: Key,
    run: Key,
    node: Key,
    token: FencingToken,
    holder: HolderId,
    cancelled: Arc<AtomicBool>,
    stage: Arc<AtomicU8>,
}

/// An attempt's [`stage`](Attempt::stage): taken, its body not called yet;
/// decided once, either way, by a compare-and-swap.
const TAKEN: u8 = 0;
/// Its body was called: a release fails the attempt as abandoned.
const STARTED: u8 = 1;
/// Released before its body was called: the node was given back, and the
/// body is never called.
const GIVEN_BACK: u8 = 2;

/// Moves `stage` from [`TAKEN`] to `to`; the stage it found.
fn leave_taken(stage: &AtomicU8, to: u8) -> u8 {
    let moved = stage.compare_exchange(TAKEN, to, Ordering::AcqRel, Ordering::Acquire);
    moved.unwrap_or_else(|found| found)
}

impl Tenure for Attempt {
    fn family(&self) -> &'static str {
        "graph"
    }

    fn kind(&self) -> &'static str {
        "node"
    }

    fn key(&self) -> &Key {
        &self.graph
    }

    fn holder(&self) -> &HolderId {
        &self.holder
    }

    fn renew<'a>(
        &'a self,
        client: &'a crate::Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        let graphs = client.graphs()?;
        Ok(Box::pin(async move {
            let renew = graphs.renew(&self.graph, &self.run, &self.node, self.token, ttl);
            Ok(match renew.await? {
                Renew::Renewed => true,
                Renew::Cancelled => {
                    self.cancelled.store(true, Ordering::Release);
                    false
                }
                _ => false,
            })
        }))
    }

    /// A dropped attempt (its body's future was dropped): failed, to be
    /// retried at once if it has attempts left. One whose body was not
    /// called (its client closed while the node was handed over) is given
    /// back instead, as if never taken, and its body is then never called
    /// (decision 0056): nothing was worked.
    fn release<'a>(&'a self, client: &'a crate::Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let graphs = client.graphs()?;
        Ok(Box::pin(async move {
            if leave_taken(&self.stage, GIVEN_BACK) != STARTED {
                let given = graphs.give_back(&self.graph, &self.holder).await?;
                return Ok(crate::lease::released(given > 0));
            }
            let result = NodeResult::Failure {
                error: "abandoned: the worker dropped the attempt".into(),
                retry_in: Some(Duration::ZERO),
            };
            let done =
                graphs.complete(&self.graph, &self.run, &self.node, self.token, result, None);
            Ok(crate::lease::released(matches!(
                done.await?,
                Complete::Recorded { .. } | Complete::Already { .. }
            )))
        }))
    }

    fn counted(&self) -> bool {
        false
    }
}

/// Why a node's body failed. Any error converts into one with `?`; a
/// failure is retried (after the node's back-off) while the node has
/// attempts left, unless made [`permanent`](Self::permanent).
pub struct NodeError {
    error: BoxError,
    permanent: bool,
}

impl NodeError {
    /// A failure with this message.
    pub fn msg(message: impl fmt::Display) -> NodeError {
        NodeError {
            error: message.to_string().into(),
            permanent: false,
        }
    }

    /// The same failure, not to be retried: the node fails now.
    pub fn permanent(mut self) -> NodeError {
        self.permanent = true;
        self
    }

    /// Whether it will not be retried.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The error.
    pub fn error(&self) -> &BoxError {
        &self.error
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for NodeError {
    fn from(e: E) -> NodeError {
        NodeError {
            error: Box::new(e),
            permanent: false,
        }
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeError")
            .field("error", &self.error)
            .field("permanent", &self.permanent)
            .finish()
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// What a node's body gets: which node of which run, the attempt and its
/// fencing token, the lost signal, and its parents' outcomes.
#[derive(Debug, Clone)]
pub struct NodeContext {
    graph: Key,
    run: Key,
    node: Key,
    attempt: u32,
    token: FencingToken,
    lost: LostSignal,
    cancelled: Arc<AtomicBool>,
    parents: Arc<[(Key, Outcome)]>,
}

impl NodeContext {
    /// The graph's name.
    pub fn graph(&self) -> &str {
        self.graph.as_str()
    }

    /// The run's id.
    pub fn run(&self) -> &str {
        self.run.as_str()
    }

    /// The node's name: match on it to pick the work.
    pub fn node(&self) -> &str {
        self.node.as_str()
    }

    /// Which attempt this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The attempt's fencing token: pass it to everything the body writes.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Fires when the attempt's lease is lost (it expired, another attempt
    /// took the node) or its run was cancelled: stop, the result will not
    /// count (unless it still reaches the backend before the lease ends).
    pub fn lost(&self) -> &LostSignal {
        &self.lost
    }

    /// Whether the run was cancelled (learnt at a renewal: the lost signal
    /// has fired too).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Every parent's outcome, in the node's edge order (fan-in).
    pub fn parents(&self) -> &[(Key, Outcome)] {
        &self.parents
    }

    /// Parent `name`'s outcome, if it is a parent.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        (self.parents.iter())
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, o)| o)
    }

    /// Parent `name`'s result, decoded as `T`. `InvalidArgument` if it is
    /// not a parent, did not succeed, or its result is not a `T`.
    pub fn parent<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        match self.outcome(name) {
            Some(Outcome::Succeeded(bytes)) => decode(&self.run, name, bytes),
            Some(other) => Err(Error::invalid(format!(
                "run \"{}\": parent \"{name}\" of \"{}\" did not succeed: {other:?}",
                self.run, self.node
            ))),
            None => Err(Error::invalid(format!(
                "run \"{}\": \"{name}\" is not a parent of \"{}\"",
                self.run, self.node
            ))),
        }
    }

    /// Every parent's result in edge order: `Ok(T)` for one that
    /// succeeded, `Err(text)` for one that failed, was skipped or cancelled
    /// (a node after others `On::Any` sees all of them).
    pub fn parent_results<T: DeserializeOwned>(&self) -> Vec<(String, Result<T, String>)> {
        (self.parents.iter())
            .map(|(k, o)| {
                let r = match o {
                    Outcome::Succeeded(b) => {
                        decode(&self.run, k.as_str(), b).map_err(|e| e.to_string())
                    }
                    Outcome::Failed(e) => Err(e.clone()),
                    Outcome::Skipped(by) => Err(format!("skipped (by \"{by}\")")),
                    _ => Err("cancelled".to_owned()),
                };
                (k.as_str().to_owned(), r)
            })
            .collect()
    }
}

/// Decodes node `node`'s result bytes.
pub(super) fn decode<T: DeserializeOwned>(run: &Key, node: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::invalid(format!(
            "run \"{run}\": the result of \"{node}\" does not decode as {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// What a worker did with one node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Worked {
    /// The run.
    pub run: String,
    /// The node.
    pub node: String,
    /// The attempt.
    pub attempt: u32,
    /// Its token.
    pub token: FencingToken,
    /// What the backend recorded: the node's state after the attempt
    /// (`Ready` when it will be retried; also when the completion was sent
    /// again after its reply was lost, and found recorded), or `None` when
    /// the completion was refused as stale (the lease had ended: another
    /// attempt may run it).
    pub state: Option<NodeState>,
}

/// Works on a graph's runs: takes a ready node of any run, runs the body,
/// completes the attempt. One node at a time per worker; run several
/// (e.g. one per task) for concurrency. The workers made from one
/// [`Graph`] (or its clones) share its ready notifications: one idle
/// worker is woken per notification, and each that takes a node wakes one
/// more.
///
/// The lease options (TTL, renewal, retry delay) are the client's unless
/// set here.
#[derive(Clone)]
pub struct GraphWorker {
    graph: Graph,
    handle: Handle,
}

impl fmt::Debug for GraphWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphWorker")
            .field("graph", &self.graph.name())
            .field("options", self.handle.opts())
            .finish()
    }
}

/// A node taken by a completion (or nothing, and when to look again),
/// when that completion was sent, and the holder it took for.
type Carried = (Take, Instant, HolderId);

impl GraphWorker {
    pub(super) fn new(graph: Graph) -> GraphWorker {
        let handle = Handle::new(graph.client().clone(), graph.name());
        GraphWorker { graph, handle }
    }

    option_setters!();

    /// Takes one ready node if there is one now, runs `body` on it and
    /// completes it; `None` if nothing was ready.
    pub async fn work_one<R, F, Fut>(&self, body: F) -> Result<Option<Worked>>
    where
        F: FnOnce(NodeContext) -> Fut,
        Fut: Future<Output = std::result::Result<R, NodeError>>,
        R: Serialize,
    {
        let (taken, t_sent, holder) = self.take().await?;
        let Take::Taken(taken) = taken else {
            return Ok(None);
        };
        let (worked, _) = self.attempt(*taken, holder, t_sent, body, false).await?;
        Ok(Some(worked))
    }

    /// Waits for a ready node (woken by the backend's notification, or at
    /// the time a retry delay or a crashed attempt's lease ends), runs
    /// `body` on it and completes it.
    pub async fn work_next<R, F, Fut>(&mut self, body: F) -> Result<Worked>
    where
        F: FnOnce(NodeContext) -> Fut,
        Fut: Future<Output = std::result::Result<R, NodeError>>,
        R: Serialize,
    {
        Ok(self.next(body, None, false).await?.0)
    }

    /// Works for ever: [`work_next`](Self::work_next) in a loop, where each
    /// completion also takes the worker's next node in the same backend
    /// call (one call per node while there is work). Errors the backend
    /// may recover from (it is unreachable) are logged and waited out; any
    /// other error is returned.
    pub async fn run<R, F, Fut>(self, body: F) -> Result<()>
    where
        F: Fn(NodeContext) -> Fut,
        Fut: Future<Output = std::result::Result<R, NodeError>>,
        R: Serialize,
    {
        let mut carried = None;
        loop {
            match self.next(&body, carried.take(), true).await {
                Ok((_, next)) => carried = next,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(graph = %self.graph.name(), error = %e, "graph worker: backend unreachable; waiting");
                    let clock = self.graph.client().clock();
                    clock
                        .sleep_until(later(clock.now(), jittered(self.handle.opts())))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Works on the next node: `carried` when the previous completion took
    /// one, else one taken now or once woken. With `carry`, its completion
    /// takes the next node, returned to be worked on next.
    async fn next<R, F, Fut>(
        &self,
        body: F,
        carried: Option<Carried>,
        carry: bool,
    ) -> Result<(Worked, Option<Carried>)>
    where
        F: FnOnce(NodeContext) -> Fut,
        Fut: Future<Output = std::result::Result<R, NodeError>>,
        R: Serialize,
    {
        let (_, opts) = self.handle.checked()?;
        let opts = opts.clone();
        let client = self.graph.client().clone();
        let ready = self.graph.ready().clone();
        let mut look = carried;
        // Owed by a worker woken to take: a hand-on to one more idle worker
        // unless its take finds nothing.
        let mut owed: Option<Owed> = None;
        loop {
            let (taken, t_sent, holder) = match look.take() {
                Some(l) => l,
                None => self.take().await?,
            };
            let next_in = match taken {
                Take::Taken(t) => {
                    drop(owed.take());
                    return self.attempt(*t, holder, t_sent, body, carry).await;
                }
                Take::Idle { next_in } => next_in,
            };
            if let Some(o) = owed.take() {
                o.settled();
            }
            if !ready.is_watched() && ready.watch(&client, self.graph.key()).await {
                // Subscribed: look again, so that a node made ready before
                // the watch was effective is not missed.
                continue;
            }
            let wait = hinted_wait(&opts, next_in);
            if ready.wait(&client, later(client.clock().now(), wait)).await == Woken::Notified {
                owed = Some(ready.owed());
            }
        }
    }

    /// One take, traced, when it was sent, and the holder it was for (one
    /// per take: a take whose answer never came gives back what it got by
    /// naming it, decision 0044).
    async fn take(&self) -> Result<(Take, Instant, HolderId)> {
        let (_, opts) = self.handle.checked()?;
        let client = self.graph.client();
        let holder = HolderId::new(*client.instance_id());
        let t_sent = client.clock().now();
        let take = client.graphs()?.take(self.graph.key(), &holder, opts.ttl);
        let site = || self.site("take", &holder, None);
        let taken = trace::call(client, site, take, |t| match t {
            Take::Taken(t) => trace::Outcome::Granted(t.token),
            _ => trace::Outcome::Busy,
        });
        let undo = give_back(self.graph.key(), &holder);
        let taken = granting(client, opts.ttl, taken, undo).await?;
        metrics::took("take", &taken);
        Ok((taken, t_sent, holder))
    }

    /// Runs `body` on a taken node under its lease and completes it; with
    /// `carry`, the completion takes the next node (for a new holder), which
    /// is returned with when the completion was sent.
    async fn attempt<R, F, Fut>(
        &self,
        taken: crate::spi::Taken,
        holder: HolderId,
        t_sent: Instant,
        body: F,
        carry: bool,
    ) -> Result<(Worked, Option<Carried>)>
    where
        F: FnOnce(NodeContext) -> Fut,
        Fut: Future<Output = std::result::Result<R, NodeError>>,
        R: Serialize,
    {
        let client = self.graph.client();
        let opts = self.handle.opts();
        let (cancelled, stage) = (Arc::default(), Arc::new(AtomicU8::new(TAKEN)));
        let tenure = Attempt {
            graph: self.graph.key().clone(),
            run: taken.run.clone(),
            node: taken.node.clone(),
            token: taken.token,
            holder: holder.clone(),
            cancelled: Arc::clone(&cancelled),
            stage: Arc::clone(&stage),
        };
        // The lease first: on a client closed while the node was handed over
        // it fails, its release giving the node back (no body called).
        let lease = Lease::start(
            client.clone(),
            tenure,
            Some(taken.token),
            opts,
            self.handle.validity(),
            t_sent,
        )?;
        let guard = Guard::new(lease);
        let graphs = client.graphs()?;
        let ctx = NodeContext {
            graph: self.graph.key().clone(),
            run: taken.run.clone(),
            node: taken.node.clone(),
            attempt: taken.attempt,
            token: taken.token,
            lost: guard.lost_signal(),
            cancelled,
            parents: taken.parents.into(),
        };
        if leave_taken(&stage, STARTED) != TAKEN {
            // Given back by close's release meanwhile: not to be worked on.
            return Err(client.closed());
        }
        let began = client.clock().now();
        let out = body(ctx).await;
        let ran = client.clock().now().saturating_duration_since(began);
        let result = self.result_of(&taken.run, &taken.node, taken.attempt, out);
        let failed = matches!(result, NodeResult::Failure { .. });
        let next_holder = carry.then(|| HolderId::new(*client.instance_id()));
        let next = next_holder.clone().map(|h| (h, opts.ttl));
        let c_sent = client.clock().now();
        let complete = |result: NodeResult, next| {
            let complete = graphs.complete(
                self.graph.key(),
                &taken.run,
                &taken.node,
                taken.token,
                result,
                next,
            );
            let site = || self.site("complete", &holder, Some(taken.token));
            trace::call(client, site, complete, |c| match c {
                Complete::Recorded { .. } | Complete::Already { .. } => trace::Outcome::Ok,
                _ => trace::Outcome::NotHeld,
            })
        };
        // A renewal refused from now on may be this completion's doing
        // (applied before it, answered after): its answer tells, not that
        // (decision 0050).
        guard.lease().ending();
        let first = complete(result.clone(), next);
        // What the completion took for `next_holder`, if its answer never
        // comes, is given back (decision 0044).
        let first = match &next_holder {
            Some(h) => granting(client, opts.ttl, first, give_back(self.graph.key(), h)).await,
            None => first.await,
        };
        // Unanswered (the backend unreachable): sent again, without a next
        // node, while the attempt's lease holds. The token makes a repeat
        // harmless: one that was applied answers the next one `Already`
        // (decision 0062).
        let again = || complete(result.clone(), None);
        let (done, _) = resend_while_valid(client, guard.lease(), opts.ttl, first, again).await;
        // Disarmed only once the completion answered: a worker dropped while
        // it is on the way fails the attempt at once (retried at once, as a
        // body dropped mid-run is), not left running for nobody until its
        // lease ends. (Applied first, the completion makes that stale.)
        let lease = guard.into_lease();
        let (state, next, error) = match done {
            Ok(Complete::Recorded { state, next, .. }) => (Some(state), next, None),
            // This completion, applied before its reply was lost: recorded,
            // the lease not lost.
            Ok(Complete::Already { state }) => (Some(state), None, None),
            Ok(_) => (None, None, None),
            Err(e) => (None, None, Some(e)),
        };
        // The attempt is over either way: stop renewing. A refused
        // completion, or one unanswered until the lease was lost, leaves the
        // node to its lease's expiry.
        lease.mark(state.is_none());
        metrics::attempt_ended(state, failed, ran);
        if let Some(e) = error {
            return Err(e);
        }
        if let Some(next) = &next {
            metrics::took("complete", next);
        }
        let worked = Worked {
            run: taken.run.as_str().to_owned(),
            node: taken.node.as_str().to_owned(),
            attempt: taken.attempt,
            token: taken.token,
            state,
        };
        let carried = next.zip(next_holder).map(|(n, h)| (n, c_sent, h));
        Ok((worked, carried))
    }

    /// The body's outcome as the backend takes it: an encoded result, or a
    /// failure with its retry delay (none when permanent; a result too
    /// large to keep fails the node for good).
    fn result_of<R: Serialize>(
        &self,
        run: &Key,
        node: &Key,
        attempt: u32,
        out: std::result::Result<R, NodeError>,
    ) -> NodeResult {
        let failure = |error: String, retry: bool| NodeResult::Failure {
            error: truncate(error, MAX_ERROR_BYTES),
            retry_in: retry.then(|| self.graph.backoff_of(node).delay(attempt)),
        };
        match out {
            Ok(value) => match serde_json::to_vec(&value) {
                Ok(bytes) if bytes.len() <= MAX_RESULT_BYTES => NodeResult::Success(bytes),
                Ok(bytes) => failure(
                    format!(
                        "run \"{run}\": the result of \"{node}\" is {} bytes, more than the limit of {MAX_RESULT_BYTES}",
                        bytes.len()
                    ),
                    false,
                ),
                Err(e) => failure(
                    format!("the result of \"{node}\" does not encode: {e}"),
                    false,
                ),
            },
            Err(e) => failure(e.to_string(), !e.permanent),
        }
    }

    fn site<'a>(
        &'a self,
        op: &'static str,
        holder: &'a HolderId,
        token: Option<FencingToken>,
    ) -> Site<'a> {
        Site::new(("graph", "node", op), self.graph.key(), Some(holder), token)
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(super) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The clean-up of a take (or a completion's `next`) for `holder` whose
/// answer never came: gives back the attempt it made, if any (decision
/// 0044).
fn give_back(graph: &Key, holder: &HolderId) -> impl MakeUndo {
    let args = (graph.clone(), holder.clone());
    undo::calling(args, |client, (graph, holder)| async move {
        let give_back = client.graphs()?.give_back(&graph, &holder);
        let site = || Site::new(("graph", "node", "give_back"), &graph, Some(&holder), None);
        let given = trace::call(&client, site, give_back, |n| match n {
            0 => trace::Outcome::NotHeld,
            _ => trace::Outcome::Ok,
        });
        given.await.map(drop)
    })
}
