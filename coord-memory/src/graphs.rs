//! Job graphs, under one lock of their own: every operation is one step on
//! one graph (all its runs), following the rules of
//! [`coord_api::spi::graphs`] in their order. A graph keeps its runs, one
//! token counter (the fencing-token rule on the store's wall clock, so a
//! graph made anew starts at the wall clock) and three queues: ready nodes by
//! ready time, running attempts by lease deadline, ended runs by the instant
//! their retention ends. Expired leases and runs past their retention are
//! dealt with by the next step on the graph; a graph with no run, idle for a
//! day, is forgotten by the store's sweep.
//!
//! Watches: `watch_ready` is the graph's topic, woken by a step that made a
//! node ready and did not take it (a completion may take the next node in
//! its step); `watch_run` the run's, woken by a step that counted one of its
//! transitions (and by its cancellation). Neither wakes at a retry delay's
//! end or a lease deadline (rule 9): `Take::Idle` tells when.

mod run;

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Error, FencingToken, HolderId, Instant, Key, Namespace, Result,
    spi::{
        Cancel, Complete, GraphBackend, GraphSpec, MAX_RESULT_BYTES, NodeResult, OnFailure, Renew,
        RunStatus, Submit, Take, Watch, graphs::cut_error,
    },
};

use self::run::{Queues, Run, Step};
use crate::{MemoryBackend, watch::Topic};

/// Every graph of a store.
#[derive(Default)]
pub(crate) struct Graphs {
    map: HashMap<(Namespace, Key), Graph>,
    /// The size at which stale graphs are swept next.
    sweep_at: usize,
}

/// One graph: its runs, its token counter and its queues.
struct Graph {
    last_token: u64,
    /// The number the next run submitted gets.
    next_seq: u64,
    ids: HashMap<Key, u64>,
    runs: HashMap<u64, Run>,
    q: Queues,
    /// The last step on it, for the store's sweep.
    touched: Instant,
}

impl Graph {
    fn new(now: Instant) -> Graph {
        Graph {
            last_token: 0,
            next_seq: 0,
            ids: HashMap::new(),
            runs: HashMap::new(),
            q: Queues::default(),
            touched: now,
        }
    }

    /// Removes the runs whose retention ended by `now`.
    fn forget_ended(&mut self, now: Instant) {
        while let Some(&(at, seq)) = self.q.kept.first()
            && at <= now
        {
            self.q.kept.pop_first();
            if let Some(run) = self.runs.remove(&seq) {
                self.ids.remove(&run.id);
            }
        }
    }

    /// What every step does first (rule 1): runs past their retention are
    /// removed and expired leases are dealt with, earliest deadline first.
    fn sweep(&mut self, step: &mut Step) {
        self.forget_ended(step.now);
        while let Some(&(at, seq, i)) = self.q.leases.first()
            && at <= step.now
        {
            self.q.leases.pop_first();
            if let Some(run) = self.runs.get_mut(&seq) {
                run.expire(i as usize, &mut self.q, step);
            }
        }
        self.touched = step.now;
    }

    fn run_mut(&mut self, id: &Key) -> Option<(&mut Run, &mut Queues)> {
        let seq = self.ids.get(id)?;
        Some((self.runs.get_mut(seq)?, &mut self.q))
    }

    fn submit(
        &mut self,
        id: &Key,
        spec: &GraphSpec,
        retention: Duration,
        step: &mut Step,
    ) -> Submit {
        if let Some(seq) = self.ids.get(id) {
            let same_graph = self.runs.get(seq).is_some_and(|r| r.spec == *spec);
            return Submit::Exists { same_graph };
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let run = Run::new(id.clone(), seq, spec, retention, &mut self.q, step);
        self.ids.insert(id.clone(), seq);
        self.runs.insert(seq, run);
        Submit::Created
    }

    /// Rule 3.
    fn take(&mut self, holder: &HolderId, ttl: Duration, step: &mut Step) -> Take {
        while let Some(&(at, seq, i)) = self.q.ready.first()
            && at <= step.now
        {
            let Some(run) = self.runs.get_mut(&seq) else {
                // Not expected: a removed run has no ready node.
                self.q.ready.pop_first();
                continue;
            };
            let token = FencingToken::next_after_micros(self.last_token, step.wall_us);
            self.last_token = token.get();
            let taken = run.start(i as usize, holder, ttl, token, &mut self.q, step);
            return Take::Taken(Box::new(taken));
        }
        let ready = self.q.ready.first().map(|&(at, ..)| at);
        let expiry = self.q.leases.first().map(|&(at, ..)| at);
        let next = match (ready, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Take::Idle {
            next_in: next.map(|at| at.saturating_duration_since(step.now)),
        }
    }

    /// Rule 4's give-back: the running attempt `holder` took, if any (the
    /// sweep returned the expired ones).
    fn give_back(&mut self, holder: &HolderId, step: &mut Step) -> u32 {
        let taken = (self.q.leases.iter())
            .map(|&(_, seq, i)| (seq, i as usize))
            .find(|(seq, i)| self.runs.get(seq).is_some_and(|r| r.taken_by(*i, holder)));
        let Some((seq, i)) = taken else {
            return 0;
        };
        let run = self.runs.get_mut(&seq).expect("found");
        run.give_back(i, &mut self.q, step);
        1
    }

    /// Nothing to remember: no run, and idle for a day (a graph made again
    /// draws tokens from the wall clock, a day past anything this one drew).
    fn stale(&self, now: Instant) -> bool {
        self.runs.is_empty() && now.saturating_duration_since(self.touched) > coord_api::MAX_TTL
    }
}

impl Graphs {
    /// Forgets ended runs past their retention and stale graphs once the
    /// map doubled since the last sweep.
    fn sweep(&mut self, now: Instant) {
        if self.map.len() < self.sweep_at.max(256) {
            return;
        }
        self.map.retain(|_, g| {
            g.forget_ended(now);
            !g.stale(now)
        });
        self.sweep_at = self.map.len() * 2;
    }
}

/// A [`NodeResult`] within the family's limits.
enum Ending {
    Success(Vec<u8>),
    Failure(String, Option<Duration>),
}

/// `result` within the limits, which the client keeps too and the store
/// does not rely on: a result over [`MAX_RESULT_BYTES`] is refused
/// (`InvalidArgument` naming the graph, run, node and limit), an error over
/// [`MAX_ERROR_BYTES`] is cut at a character boundary.
fn check_result(
    graph: &Key,
    run: &Key,
    node: &Key,
    result: NodeResult,
    backend: &MemoryBackend,
) -> Result<Ending> {
    match result {
        NodeResult::Success(bytes) if bytes.len() > MAX_RESULT_BYTES => {
            Err(Error::invalid(format!(
                "graph {:?} run {:?} node {:?}: a result of {} bytes is over the limit of \
                 {MAX_RESULT_BYTES} bytes",
                graph.as_str(),
                run.as_str(),
                node.as_str(),
                bytes.len()
            )))
        }
        NodeResult::Success(bytes) => Ok(Ending::Success(bytes)),
        NodeResult::Failure { error, retry_in } => {
            Ok(Ending::Failure(cut_error(&error).to_owned(), retry_in))
        }
        // A result added to the SPI that this store does not know.
        _ => Err(Error::NotSupported {
            operation: "this node result",
            backend: backend.to_string(),
        }),
    }
}

impl MemoryBackend {
    fn graph_step(&self) -> Step {
        let now = self.store.now();
        Step {
            now,
            wall: self.store.wall(now),
            wall_us: self.store.inner.table.wall_us(now),
            ready: Vec::new(),
            changed: Vec::new(),
        }
    }

    /// Runs `op` on the graph (made if missing when `create`, else `None`
    /// when it is), swept first, under the lock; then wakes the watchers
    /// the step's changes concern.
    fn on_graph<T>(
        &self,
        graph: &Key,
        create: bool,
        op: impl FnOnce(&mut Graph, &mut Step) -> T,
    ) -> Option<T> {
        let mut step = self.graph_step();
        let out = {
            let mut graphs = self.store.graphs();
            let key = (self.ns.clone(), graph.clone());
            let record = if create {
                graphs.sweep(step.now);
                Some(
                    graphs
                        .map
                        .entry(key)
                        .or_insert_with(|| Graph::new(step.now)),
                )
            } else {
                graphs.map.get_mut(&key)
            };
            record.map(|g| {
                g.sweep(&mut step);
                op(g, &mut step)
            })
        };
        if !step.ready.is_empty() {
            self.store
                .notify(|| Topic::GraphReady(self.ns.clone(), graph.clone()));
        }
        for run in step.changed {
            self.store
                .notify(|| Topic::GraphRun(self.ns.clone(), graph.clone(), run));
        }
        out
    }

    /// Runs `op` on the run (`None` if the graph or the run is missing).
    fn on_run<T>(
        &self,
        graph: &Key,
        run: &Key,
        op: impl FnOnce(&mut Run, &mut Queues, &mut Step) -> T,
    ) -> Option<T> {
        self.on_graph(graph, false, |g, step| {
            g.run_mut(run).map(|(r, q)| op(r, q, step))
        })
        .flatten()
    }
}

#[async_trait]
impl GraphBackend for MemoryBackend {
    async fn submit(
        &self,
        graph: &Key,
        run: &Key,
        spec: &GraphSpec,
        retention: Duration,
    ) -> Result<Submit> {
        coord_api::validate_ttl(run, retention)?;
        for n in spec.nodes() {
            match n.on_failure {
                OnFailure::Continue | OnFailure::CancelRun => {}
                // A policy added to the SPI that this store does not know.
                _ => {
                    return Err(Error::NotSupported {
                        operation: "this node failure policy",
                        backend: self.to_string(),
                    });
                }
            }
        }
        let submitted = self.on_graph(graph, true, |g, step| g.submit(run, spec, retention, step));
        Ok(submitted.expect("made"))
    }

    async fn take(&self, graph: &Key, holder: &HolderId, ttl: Duration) -> Result<Take> {
        coord_api::validate_ttl(graph, ttl)?;
        let took = self.on_graph(graph, false, |g, step| g.take(holder, ttl, step));
        Ok(took.unwrap_or(Take::Idle { next_in: None }))
    }

    async fn give_back(&self, graph: &Key, holder: &HolderId) -> Result<u32> {
        let given = self.on_graph(graph, false, |g, step| g.give_back(holder, step));
        Ok(given.unwrap_or(0))
    }

    async fn renew(
        &self,
        graph: &Key,
        run: &Key,
        node: &Key,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Renew> {
        coord_api::validate_ttl(graph, ttl)?;
        let renewed = self.on_run(graph, run, |r, q, step| {
            match r.node_index(node).filter(|&i| r.holds(i, token)) {
                Some(i) => r.renew(i, ttl, q, step),
                None => Renew::Lost,
            }
        });
        Ok(renewed.unwrap_or(Renew::Lost))
    }

    async fn complete(
        &self,
        graph: &Key,
        run: &Key,
        node: &Key,
        token: FencingToken,
        result: NodeResult,
        next: Option<(HolderId, Duration)>,
    ) -> Result<Complete> {
        let ending = check_result(graph, run, node, result, self)?;
        if let Some((_, ttl)) = &next {
            coord_api::validate_ttl(graph, *ttl)?;
        }
        let completed = self.on_graph(graph, false, |g, step| {
            let Some((r, q)) = g.run_mut(run) else {
                return Complete::Stale { state: None };
            };
            let Some(i) = r.node_index(node) else {
                return Complete::Stale { state: None };
            };
            if !r.holds(i, token) {
                return match r.completed(i, token) {
                    Some(state) => Complete::Already { state },
                    None => Complete::Stale {
                        state: Some(r.node_state(i)),
                    },
                };
            }
            match ending {
                Ending::Success(bytes) => r.succeed(i, bytes, q, step),
                Ending::Failure(error, retry_in) => r.fail(i, error, retry_in, q, step),
            }
            let (state, run) = (r.node_state(i), r.state());
            // Rule 4: the next node, taken in the same step.
            let next = next.map(|(holder, ttl)| g.take(&holder, ttl, step));
            Complete::Recorded { state, run, next }
        });
        Ok(completed.unwrap_or(Complete::Stale { state: None }))
    }

    async fn cancel(&self, graph: &Key, run: &Key, reason: &str) -> Result<Cancel> {
        let reason = cut_error(reason);
        let cancelled = self.on_run(graph, run, |r, q, step| r.cancel(reason, q, step));
        Ok(cancelled.unwrap_or(Cancel::NotFound))
    }

    async fn status(&self, graph: &Key, run: &Key, results: bool) -> Result<Option<RunStatus>> {
        Ok(self.on_run(graph, run, |r, _, step| r.status(results, step.now)))
    }

    async fn watch_ready(&self, graph: &Key) -> Result<Box<dyn Watch>> {
        let topic = Topic::GraphReady(self.ns.clone(), graph.clone());
        Ok(self.store.watch(topic))
    }

    async fn watch_run(&self, graph: &Key, run: &Key) -> Result<Box<dyn Watch>> {
        let topic = Topic::GraphRun(self.ns.clone(), graph.clone(), run.clone());
        Ok(self.store.watch(topic))
    }
}

#[cfg(test)]
mod tests;
