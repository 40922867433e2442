//! One run of a graph: its nodes' states and the rules that move them
//! (rules 1 to 8 of [`coord_api::spi::graphs`]). Every method is part
//! of one step, decided at the step's instant; the graph's queues (ready
//! nodes, running leases, kept runs) are kept in step with the nodes here.

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use coord_api::{
    FencingToken, HolderId, InstanceId, Instant, Key,
    spi::{
        Cancel, GraphSpec, NodeState, NodeStatus, OnFailure, Outcome, Renew, RunState, RunStatus,
        Taken,
    },
};

/// The error an attempt whose lease expired is left with.
const LEASE_EXPIRED: &str = "lease expired";

/// The longest retry delay kept (2^40 ms, about 35 years, as on Redis);
/// longer ones are cut to it.
const MAX_RETRY: Duration = Duration::from_millis(1 << 40);

/// The instant and wall time a step runs at, and what it must tell the
/// watchers once it let go of the lock.
pub(super) struct Step {
    pub(super) now: Instant,
    pub(super) wall: SystemTime,
    /// The wall clock in µs, for the token rule.
    pub(super) wall_us: u64,
    /// The nodes (run, node) made ready and not taken in this step: when
    /// any, wake the graph's `watch_ready` watchers.
    pub(super) ready: Vec<(u64, u32)>,
    /// The runs that counted a transition: wake their `watch_run` watchers.
    pub(super) changed: Vec<Key>,
}

/// A graph's indexes over its runs' nodes, kept by every change of state.
#[derive(Default)]
pub(super) struct Queues {
    /// Ready nodes: (ready at, run, node), earliest first; ties go to the
    /// run submitted first, then to the node declared first.
    pub(super) ready: BTreeSet<(Instant, u64, u32)>,
    /// Running nodes: (lease deadline, run, node).
    pub(super) leases: BTreeSet<(Instant, u64, u32)>,
    /// Ended runs: (instant they are removed at, run).
    pub(super) kept: BTreeSet<(Instant, u64)>,
}

/// One run of a graph.
pub(super) struct Run {
    pub(super) id: Key,
    /// The graph's number for it, in submission order: its queue entries'.
    seq: u64,
    pub(super) spec: GraphSpec,
    /// For each node, its dependents in declaration order.
    children: Vec<Vec<u32>>,
    nodes: Vec<Node>,
    cancelled: Option<String>,
    transitions: u64,
    submitted_at: SystemTime,
    retention: Duration,
    ended_at: Option<SystemTime>,
    /// Nodes not ended yet.
    open: usize,
    /// Whether a node failed.
    failed: bool,
}

struct Node {
    state: NodeState,
    attempts: u32,
    token: Option<FencingToken>,
    worker: Option<InstanceId>,
    /// While running: the holder that took it (a give-back names it).
    holder: Option<HolderId>,
    /// While running: the lease's deadline.
    deadline: Option<Instant>,
    /// While ready: when it may be taken.
    ready_at: Option<Instant>,
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
    error: Option<String>,
    by: Option<Key>,
    result: Option<Vec<u8>>,
    /// The token of the last attempt a completion ended, and the state it
    /// left the node in: that completion sent again is answered `Already`.
    completed: Option<(FencingToken, NodeState)>,
}

/// What resolution decides for a pending node.
enum Verdict {
    /// An upstream node has not ended: it stays pending.
    Wait,
    Ready,
    /// Skipped or cancelled by this upstream node.
    End(NodeState, usize),
}

impl Run {
    /// Rule 2: every node made, the ones without edges ready since now.
    pub(super) fn new(
        id: Key,
        seq: u64,
        spec: &GraphSpec,
        retention: Duration,
        q: &mut Queues,
        step: &mut Step,
    ) -> Run {
        let nodes = spec.nodes();
        let mut run = Run {
            id,
            seq,
            spec: spec.clone(),
            children: spec.children(),
            nodes: (nodes.iter())
                .map(|_| Node {
                    state: NodeState::Pending,
                    attempts: 0,
                    token: None,
                    worker: None,
                    holder: None,
                    deadline: None,
                    ready_at: None,
                    started_at: None,
                    ended_at: None,
                    error: None,
                    by: None,
                    result: None,
                    completed: None,
                })
                .collect(),
            cancelled: None,
            transitions: 0,
            submitted_at: step.wall,
            retention,
            ended_at: None,
            open: nodes.len(),
            failed: false,
        };
        for (i, n) in nodes.iter().enumerate() {
            if n.after.is_empty() {
                run.place_ready(i, step.now, q);
                step.ready.push((seq, i as u32));
            }
        }
        run
    }

    /// The run's state (rule 7).
    pub(super) fn state(&self) -> RunState {
        if self.open > 0 {
            RunState::Running
        } else if self.cancelled.is_some() {
            RunState::Cancelled
        } else if self.failed {
            RunState::Failed
        } else {
            RunState::Succeeded
        }
    }

    /// The index of the node named `name`.
    pub(super) fn node_index(&self, name: &Key) -> Option<usize> {
        self.spec.index_of(name.as_str())
    }

    pub(super) fn node_state(&self, i: usize) -> NodeState {
        self.nodes[i].state
    }

    /// The state node `i` was left in by its last completion, if that was
    /// attempt `token`'s (rule 4: a completion sent again).
    pub(super) fn completed(&self, i: usize, token: FencingToken) -> Option<NodeState> {
        let (done, state) = self.nodes[i].completed?;
        (done == token).then_some(state)
    }

    /// Whether node `i` runs the attempt `token` (rule 4).
    pub(super) fn holds(&self, i: usize, token: FencingToken) -> bool {
        let n = &self.nodes[i];
        n.state == NodeState::Running && n.token == Some(token)
    }

    // The changes of state, each keeping the queues in step and counting.

    /// Counts one transition (rule 8).
    fn count(&mut self, step: &mut Step) {
        self.transitions += 1;
        if !step.changed.contains(&self.id) {
            step.changed.push(self.id.clone());
        }
    }

    /// Takes node `i` out of the queue its state puts it in.
    fn unqueue(&mut self, i: usize, q: &mut Queues) {
        let n = &mut self.nodes[i];
        if let Some(at) = n.ready_at.take() {
            q.ready.remove(&(at, self.seq, i as u32));
        }
        if let Some(at) = n.deadline.take() {
            q.leases.remove(&(at, self.seq, i as u32));
        }
    }

    fn place_ready(&mut self, i: usize, at: Instant, q: &mut Queues) {
        self.unqueue(i, q);
        let n = &mut self.nodes[i];
        n.state = NodeState::Ready;
        n.ready_at = Some(at);
        q.ready.insert((at, self.seq, i as u32));
    }

    /// Node `i` is ready at `at`: a transition, and a wake-up (rule 9).
    fn make_ready(&mut self, i: usize, at: Instant, q: &mut Queues, step: &mut Step) {
        self.place_ready(i, at, q);
        self.count(step);
        step.ready.push((self.seq, i as u32));
    }

    /// Node `i` ends in `state` (terminal), `by` an upstream node; the run
    /// ends with its last node (rule 7). Its dependents are not resolved.
    fn end_node(
        &mut self,
        i: usize,
        state: NodeState,
        by: Option<usize>,
        q: &mut Queues,
        step: &mut Step,
    ) {
        debug_assert!(state.is_terminal() && !self.nodes[i].state.is_terminal());
        self.unqueue(i, q);
        let by = by.map(|p| self.spec.nodes()[p].name.clone());
        let n = &mut self.nodes[i];
        n.state = state;
        n.by = by;
        n.ended_at = Some(step.wall);
        self.count(step);
        self.failed |= state == NodeState::Failed;
        self.open -= 1;
        if self.open == 0 {
            self.ended_at = Some(step.wall);
            q.kept.insert((step.now + self.retention, self.seq));
        }
    }

    /// Node `i` ends in `state`, its dependents are resolved (rule 5), and
    /// then a final failure of a [`OnFailure::CancelRun`] node cancels the
    /// run as [`cancel`](Self::cancel) does: not a run that this step ended
    /// (its last node was this one or one it resolved), which stays failed.
    fn finish(&mut self, i: usize, state: NodeState, q: &mut Queues, step: &mut Step) {
        self.end_node(i, state, None, q, step);
        self.resolve(i, q, step);
        let spec = &self.spec.nodes()[i];
        if state == NodeState::Failed && spec.on_failure == OnFailure::CancelRun {
            let reason = format!("node \"{}\" failed", spec.name);
            self.cancel(&reason, q, step);
        }
    }

    /// Rule 5, from node `n` that just ended: its pending dependents, in
    /// declaration order, made ready or ended, and each one ended resolved
    /// in turn before the next dependent (depth first).
    fn resolve(&mut self, n: usize, q: &mut Queues, step: &mut Step) {
        let mut path: Vec<(usize, usize)> = vec![(n, 0)];
        while let Some(top) = path.last_mut() {
            let (p, next) = *top;
            let Some(&c) = self.children[p].get(next) else {
                path.pop();
                continue;
            };
            top.1 += 1;
            let c = c as usize;
            if self.nodes[c].state != NodeState::Pending {
                continue;
            }
            match self.verdict(c, p) {
                Verdict::Wait => {}
                Verdict::Ready => self.make_ready(c, step.now, q, step),
                Verdict::End(state, by) => {
                    self.end_node(c, state, Some(by), q, step);
                    path.push((c, 0));
                }
            }
        }
    }

    /// What pending node `c` becomes, resolved from its upstream node `p`
    /// that just ended: ended by `p` if `p`'s edge can no longer be
    /// satisfied (cancelled if `p` was), ready once every edge is satisfied.
    /// An edge from another node ended in this step but not resolved yet is
    /// decided when that node's resolution reaches `c`.
    fn verdict(&self, c: usize, p: usize) -> Verdict {
        let mut waits = false;
        for e in &self.spec.nodes()[c].after {
            let from = e.from as usize;
            match e.on.satisfied_by(self.nodes[from].state) {
                Some(true) => {}
                Some(false) if from == p => {
                    let state = match self.nodes[p].state {
                        NodeState::Cancelled => NodeState::Cancelled,
                        _ => NodeState::Skipped,
                    };
                    return Verdict::End(state, p);
                }
                None | Some(false) => waits = true,
            }
        }
        if waits { Verdict::Wait } else { Verdict::Ready }
    }

    // The steps.

    /// Rule 1, for node `i` whose lease expired (already out of the lease
    /// queue).
    pub(super) fn expire(&mut self, i: usize, q: &mut Queues, step: &mut Step) {
        if self.nodes[i].state != NodeState::Running {
            return;
        }
        if self.cancelled.is_none() {
            self.nodes[i].error = Some(LEASE_EXPIRED.to_owned());
        }
        self.attempt_ended(i, Some(Duration::ZERO), q, step);
    }

    /// An attempt of running node `i` failed (its error recorded, if it
    /// has one): cancelled
    /// in a cancelled run, ready again after `retry` while it has attempts
    /// left, failed otherwise.
    fn attempt_ended(
        &mut self,
        i: usize,
        retry: Option<Duration>,
        q: &mut Queues,
        step: &mut Step,
    ) {
        let left = self.nodes[i].attempts < self.spec.nodes()[i].max_attempts;
        if self.cancelled.is_some() {
            self.finish(i, NodeState::Cancelled, q, step);
        } else if let Some(delay) = retry.filter(|_| left) {
            let delay = delay.min(MAX_RETRY);
            let at = (step.now.checked_add(delay)).unwrap_or(step.now + coord_api::MAX_TTL);
            self.make_ready(i, at, q, step);
        } else {
            self.finish(i, NodeState::Failed, q, step);
        }
    }

    /// Rule 3: ready node `i` runs for `holder` as attempt `token`.
    pub(super) fn start(
        &mut self,
        i: usize,
        holder: &HolderId,
        ttl: Duration,
        token: FencingToken,
        q: &mut Queues,
        step: &mut Step,
    ) -> Taken {
        self.unqueue(i, q);
        // Taken in the step that made it ready: nobody needs waking for it.
        step.ready.retain(|&e| e != (self.seq, i as u32));
        let deadline = step.now + ttl;
        let n = &mut self.nodes[i];
        n.state = NodeState::Running;
        n.attempts += 1;
        n.token = Some(token);
        n.worker = Some(*holder.instance());
        n.holder = Some(holder.clone());
        n.deadline = Some(deadline);
        n.started_at = Some(step.wall);
        let attempt = n.attempts;
        q.leases.insert((deadline, self.seq, i as u32));
        self.count(step);
        let spec = &self.spec.nodes()[i];
        let parents = (spec.after.iter())
            .map(|e| {
                let p = e.from as usize;
                (self.spec.nodes()[p].name.clone(), self.outcome(p))
            })
            .collect();
        Taken::new(self.id.clone(), spec.name.clone(), attempt, token, parents)
    }

    /// How ended node `p` ended, as a dependent sees it.
    fn outcome(&self, p: usize) -> Outcome {
        let n = &self.nodes[p];
        match n.state {
            NodeState::Succeeded => Outcome::Succeeded(n.result.clone().unwrap_or_default()),
            NodeState::Failed => Outcome::Failed(n.error.clone().unwrap_or_default()),
            NodeState::Skipped => match &n.by {
                Some(by) => Outcome::Skipped(by.clone()),
                None => Outcome::Cancelled,
            },
            // A ready node's parents have all ended: only a cancelled one
            // is left.
            _ => Outcome::Cancelled,
        }
    }

    /// Whether running node `i` was taken by exactly `holder`.
    pub(super) fn taken_by(&self, i: usize, holder: &HolderId) -> bool {
        let n = &self.nodes[i];
        n.state == NodeState::Running && n.holder.as_ref() == Some(holder)
    }

    /// Rule 4's give-back of running node `i` (taken by the holder named):
    /// its attempt taken back, ready again at once; cancelled in a
    /// cancelled run.
    pub(super) fn give_back(&mut self, i: usize, q: &mut Queues, step: &mut Step) {
        let n = &mut self.nodes[i];
        n.holder = None;
        n.attempts -= 1;
        if self.cancelled.is_some() {
            self.attempt_ended(i, None, q, step);
        } else {
            self.make_ready(i, step.now, q, step);
        }
    }

    /// Rule 4's renewal of running node `i`, whose token was checked.
    pub(super) fn renew(&mut self, i: usize, ttl: Duration, q: &mut Queues, step: &Step) -> Renew {
        if self.cancelled.is_some() {
            return Renew::Cancelled;
        }
        let deadline = step.now + ttl;
        let n = &mut self.nodes[i];
        if let Some(old) = n.deadline.replace(deadline) {
            q.leases.remove(&(old, self.seq, i as u32));
        }
        q.leases.insert((deadline, self.seq, i as u32));
        Renew::Renewed
    }

    /// Rule 4's success of running node `i`, whose token was checked.
    pub(super) fn succeed(&mut self, i: usize, result: Vec<u8>, q: &mut Queues, step: &mut Step) {
        let n = &mut self.nodes[i];
        n.result = Some(result);
        n.error = None;
        self.finish(i, NodeState::Succeeded, q, step);
        self.completed_by(i);
    }

    /// Node `i`'s attempt just ended by its completion.
    fn completed_by(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.completed = n.token.map(|t| (t, n.state));
    }

    /// Rule 4's failure of running node `i`, whose token was checked.
    pub(super) fn fail(
        &mut self,
        i: usize,
        error: String,
        retry_in: Option<Duration>,
        q: &mut Queues,
        step: &mut Step,
    ) {
        self.nodes[i].error = Some(error);
        self.attempt_ended(i, retry_in, q, step);
        self.completed_by(i);
    }

    /// Rule 6: the run is cancelled, its pending and ready nodes with it.
    pub(super) fn cancel(&mut self, reason: &str, q: &mut Queues, step: &mut Step) -> Cancel {
        if self.open == 0 || self.cancelled.is_some() {
            return Cancel::AlreadyEnded(self.state());
        }
        self.cancelled = Some(reason.to_owned());
        // Not a transition, but what `status` tells changed: a permitted
        // extra wake-up of the run's watchers.
        if !step.changed.contains(&self.id) {
            step.changed.push(self.id.clone());
        }
        let mut running = 0;
        for i in 0..self.nodes.len() {
            match self.nodes[i].state {
                NodeState::Pending | NodeState::Ready => {
                    self.end_node(i, NodeState::Cancelled, None, q, step)
                }
                NodeState::Running => running += 1,
                _ => {}
            }
        }
        Cancel::Cancelled { running }
    }

    /// The run as [`GraphBackend::status`](coord_api::spi::GraphBackend::status)
    /// tells it.
    pub(super) fn status(&self, results: bool, now: Instant) -> RunStatus {
        let nodes = (self.spec.nodes().iter().zip(&self.nodes))
            .map(|(spec, n)| {
                let mut s = NodeStatus::new(spec.name.clone(), n.state);
                s.attempts = n.attempts;
                s.token = n.token;
                s.worker = n.worker;
                s.expires_in = n.deadline.map(|d| d.saturating_duration_since(now));
                s.ready_in = n.ready_at.map(|at| at.saturating_duration_since(now));
                s.started_at = n.started_at;
                s.ended_at = n.ended_at;
                s.error = n.error.clone();
                s.by = n.by.clone();
                if results && n.state == NodeState::Succeeded {
                    s.result = n.result.clone();
                }
                s
            })
            .collect();
        let mut status = RunStatus::new(self.state(), nodes, self.transitions, self.submitted_at);
        status.cancelled = self.cancelled.clone();
        status.ended_at = self.ended_at;
        status
    }
}

#[cfg(test)]
impl Run {
    /// Sets node `i`'s state without any rule (for tests of resolution).
    pub(super) fn force(&mut self, i: usize, state: NodeState, q: &mut Queues, step: &mut Step) {
        if state.is_terminal() {
            self.end_node(i, state, None, q, step);
        } else {
            self.unqueue(i, q);
            self.nodes[i].state = state;
        }
    }

    /// Resolves node `i`'s dependents (for tests of resolution).
    pub(super) fn resolve_from(&mut self, i: usize, q: &mut Queues, step: &mut Step) {
        self.resolve(i, q, step);
    }
}
