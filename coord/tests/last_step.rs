//! The end of a run-once run, or a graph node's completion, that crosses
//! one of the lease's renewals, on the memory backend with tokio's time
//! paused (every instant decided, not raced): a renewal the backend
//! refuses because the holder's own last step was applied first is not a
//! lost lease; and the look at a run's occurrence after its end's resend
//! found the run gone, which begins nothing.
//!
//! The recorder is the test thread's own (`set_default_local_recorder`),
//! so each test runs on a current-thread runtime: every task, background
//! renewals included, records on that thread.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use coord::{
    Client, Error, Forced, LeaseOptions, Namespace, RunOnce,
    memory::MemoryStore,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply, Resource},
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// How the first ends of runs (or completions of nodes) go wrong.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The first end is applied at once and answered this late.
    LateReply(Duration),
    /// The first end is answered `Unavailable` at once and applied this
    /// late; the second is refused (`Unavailable`, never applied).
    LateThenRefused(Duration),
    /// The first end is refused (`Unavailable`, never applied).
    Refused,
}

#[derive(Debug)]
struct FaultyEnds {
    inner: DynBackend,
    fault: Fault,
    /// The SPI call that is a holder's last step: family and name.
    last_step: (&'static str, &'static str),
    ends: AtomicUsize,
}

impl std::fmt::Display for FaultyEnds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyEnds({})", self.inner)
    }
}

#[coord_api::async_trait]
impl Dispatch for FaultyEnds {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: Call) -> coord::Result<Reply> {
        let op = call.op();
        if (op.family, op.name) != self.last_step {
            return call.run(self.inner.clone()).await;
        }
        let nth = self.ends.fetch_add(1, SeqCst);
        let lost = || {
            Err(Error::unavailable(
                self,
                "end: no answer (the test's fault)",
            ))
        };
        match (self.fault, nth) {
            (Fault::LateReply(by), 0) => {
                let reply = call.run(self.inner.clone()).await;
                tokio::time::sleep(by).await;
                reply
            }
            (Fault::LateThenRefused(by), 0) => {
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(by).await;
                    let _applied = call.run(inner).await;
                });
                lost()
            }
            (Fault::LateThenRefused(_), 1) | (Fault::Refused, 0) => lost(),
            _ => call.run(self.inner.clone()).await,
        }
    }
}

/// The TTL of the runs: renewed every second.
const TTL: Duration = Duration::from_secs(3);

/// A client of `store` whose first ends of runs meet `fault`, and a
/// client without faults.
fn clients(store: &MemoryStore, fault: Fault) -> (Client, Client) {
    clients_faulty_at(store, fault, ("jobs", "end"))
}

/// A client of `store` whose first calls `last_step` meet `fault`, and a
/// client without faults.
fn clients_faulty_at(
    store: &MemoryStore,
    fault: Fault,
    last_step: (&'static str, &'static str),
) -> (Client, Client) {
    let faulty = FaultyEnds {
        inner: Arc::new(store.backend(Namespace::default())),
        fault,
        last_step,
        ends: AtomicUsize::new(0),
    };
    let opts = LeaseOptions::default().ttl(TTL);
    let a = Client::builder(Arc::new(Dispatched::new(faulty)))
        .instance_id("a")
        .expect("a valid id")
        .lease_options(opts)
        .build();
    let b = Client::new(Arc::new(store.backend(Namespace::default())));
    (a, b)
}

/// What a recorder counted: each counter's name, labels and value.
type Counted = Vec<(String, Vec<(String, String)>, u64)>;

/// The counters `recorder` recorded (a snapshot resets them).
fn counters(recorder: &DebuggingRecorder) -> Counted {
    let seen = recorder.snapshotter().snapshot().into_vec();
    (seen.into_iter())
        .filter_map(|(key, _, _, value)| {
            let DebugValue::Counter(n) = value else {
                return None;
            };
            let key = key.key();
            let labels = key.labels();
            let labels = labels.map(|l| (l.key().to_owned(), l.value().to_owned()));
            Some((key.name().to_owned(), labels.collect(), n))
        })
        .collect()
}

/// The value of the counter `name` with `labels` in `seen`, 0 if never
/// counted.
fn counted(seen: &Counted, name: &str, labels: &[(&str, &str)]) -> u64 {
    let has = |l: &[(String, String)]| {
        labels
            .iter()
            .all(|(k, v)| l.contains(&((*k).into(), (*v).into())))
    };
    (seen.iter())
        .filter(|(n, l, _)| n == name && has(l))
        .map(|(.., v)| v)
        .sum()
}

/// A run whose end was applied at once and answered 1.5 s later, across
/// the run's renewal at 1 s (refused: the run had ended), finished: it is
/// `Ran`, counted finished, and no lease of it counts as lost (the refused
/// renewal marked the finished run lost: a "lease lost" warning and a
/// `coord_leases_lost_total` for a run that lost nothing).
#[tokio::test(start_paused = true)]
async fn a_finished_run_whose_end_crossed_a_renewal_is_not_lost() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = MemoryStore::new();
    let (a, b) = clients(&store, Fault::LateReply(Duration::from_millis(1500)));
    let ran = a.job("j").run_once("o", |_| async { 7 }).await;
    assert!(matches!(ran, Ok(RunOnce::Ran(7))), "{ran:?}");
    let again = b.job("j").run_once("o", |_| async { 8 }).await;
    assert!(matches!(again, Ok(RunOnce::AlreadyFinished)), "{again:?}");
    let seen = counters(&recorder);
    let runs = "coord_job_runs_total";
    assert_eq!(
        counted(&seen, runs, &[("stage", "finished")]),
        1,
        "{seen:?}"
    );
    assert_eq!(counted(&seen, runs, &[("stage", "failed")]), 0, "{seen:?}");
    let run_lost = [("family", "job"), ("kind", "run")];
    let lost = counted(&seen, "coord_leases_lost_total", &run_lost);
    assert_eq!(lost, 0, "the finished run counted lost: {seen:?}");
}

/// A run whose end got no answer but was applied (2 ms late), just before
/// the run's renewal at 1 s (refused: the run had ended), and whose resend
/// got no answer either, sends its end again while its lease holds; the
/// next one finds the run no longer its holder's, and the occurrence tells
/// that it finished: `Ran`, not `Unavailable` (the refused renewal marked
/// the lease lost, and the resends stopped with the last error).
#[tokio::test(start_paused = true)]
async fn a_finished_run_whose_end_was_applied_unanswered_is_told_by_the_occurrence() {
    let store = MemoryStore::new();
    let (a, b) = clients(&store, Fault::LateThenRefused(Duration::from_millis(2)));
    let ran = a
        .job("j")
        .run_once("o", |_| async {
            // The end leaves 5 ms before the renewal is due.
            tokio::time::sleep(Duration::from_millis(995)).await;
            7
        })
        .await;
    assert!(matches!(ran, Ok(RunOnce::Ran(7))), "{ran:?}");
    let again = b.job("j").run_once("o", |_| async { 8 }).await;
    assert!(matches!(again, Ok(RunOnce::AlreadyFinished)), "{again:?}");
}

/// A run force released by an operator as its body returned, whose end got
/// no answer (never applied), finds at the resend that the run is no longer
/// its own and looks at the occurrence: not finished, so `LeaseLost`, and
/// the look counted no attempt, so the next run is attempt 2 (the look was
/// a begin, ended at once: attempt 2 went to it, and the next run was
/// attempt 3).
#[tokio::test(start_paused = true)]
async fn looking_at_the_occurrence_after_an_end_counts_no_attempt() {
    let store = MemoryStore::new();
    let (a, b) = clients(&store, Fault::Refused);
    let run: Resource = "job:j@o".parse().unwrap();
    let ops = b.operations();
    let ran = a
        .job("j")
        .run_once("o", |ctx| async move {
            let forced = ops.force_release(&run, ctx.token, "wedged").await;
            assert!(matches!(forced, Ok(Forced::Released { .. })), "{forced:?}");
        })
        .await;
    assert!(matches!(ran, Err(Error::LeaseLost { .. })), "{ran:?}");
    let again = b
        .job("j")
        .run_once("o", |ctx| async move { ctx.attempt })
        .await;
    assert!(matches!(again, Ok(RunOnce::Ran(2))), "{again:?}");
}

/// A graph node whose completion was applied at once and answered 1.5 s
/// later, across its attempt's renewal at 1 s (refused: the attempt had
/// ended), succeeded: its attempt's lease is not counted lost (as a
/// run-once run's end, decision 0050).
#[tokio::test(start_paused = true)]
async fn a_node_whose_completion_crossed_a_renewal_is_not_lost() {
    use coord::{Node, NodeState, RunState};
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = MemoryStore::new();
    let late = Fault::LateReply(Duration::from_millis(1500));
    let (a, b) = clients_faulty_at(&store, late, ("graphs", "complete"));
    let graph = |c: &Client| c.graph("g").node(Node::new("n").max_attempts(1)).build();
    let run = graph(&b).unwrap().submit("r").await.unwrap();
    let worker = graph(&a).unwrap().worker().ttl(TTL);
    let worked = worker.work_one(|_| async { Ok(7u32) }).await;
    let worked = worked.unwrap().expect("n was taken");
    assert_eq!(worked.state, Some(NodeState::Succeeded), "{worked:?}");
    assert_eq!(run.status().await.unwrap().state, RunState::Succeeded);
    let seen = counters(&recorder);
    let node_lost = [("family", "graph"), ("kind", "node")];
    let lost = counted(&seen, "coord_leases_lost_total", &node_lost);
    assert_eq!(lost, 0, "the completed attempt counted lost: {seen:?}");
}
