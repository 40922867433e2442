//! Every family's metrics, seen by a recording recorder on the memory
//! backend: each name appears with its unit and its bounded labels after
//! the action that counts it, and a `key` label only when the client opted
//! in (the lease families; the others never carry a key).
//!
//! The recorder is the test thread's own (`set_default_local_recorder`),
//! so each test runs on a current-thread runtime: every task, background
//! releases and renewals included, records on that thread.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use coord::{Client, Error, LeaseOptions, Namespace, RunOnce, memory::MemoryStore};
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// One recorded metric: name, labels (sorted), unit, value.
#[derive(Debug)]
struct Seen {
    name: String,
    labels: Vec<(String, String)>,
    unit: Option<Unit>,
    value: DebugValue,
}

fn snapshot(s: &Snapshotter) -> Vec<Seen> {
    let mut seen: Vec<Seen> = (s.snapshot().into_vec().into_iter())
        .map(|(ck, unit, _, value)| {
            let key = ck.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let name = key.name().to_owned();
            Seen {
                name,
                labels,
                unit,
                value,
            }
        })
        .collect();
    seen.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    seen
}

/// The metric `name` with exactly `labels`; panics, listing what was
/// recorded, if there is none.
fn find<'a>(seen: &'a [Seen], name: &str, labels: &[(&str, &str)]) -> &'a Seen {
    let mut want: Vec<(String, String)> = (labels.iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    seen.iter()
        .find(|m| m.name == name && m.labels == want)
        .unwrap_or_else(|| panic!("no {name} {labels:?} in {seen:#?}"))
}

/// A counter's value.
fn count(seen: &[Seen], name: &str, labels: &[(&str, &str)]) -> u64 {
    let m = find(seen, name, labels);
    assert_eq!(m.unit, Some(Unit::Count), "{m:?}");
    match m.value {
        DebugValue::Counter(n) => n,
        ref other => panic!("{name} is not a counter: {other:?}"),
    }
}

/// A histogram's samples, in seconds.
fn samples(seen: &[Seen], name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let m = find(seen, name, labels);
    assert_eq!(m.unit, Some(Unit::Seconds), "{m:?}");
    match &m.value {
        DebugValue::Histogram(v) => v.iter().map(|x| x.0).collect(),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

fn no_key_label(seen: &[Seen]) {
    for m in seen {
        assert!(
            m.labels.iter().all(|(k, _)| k != "key"),
            "a key label without the opt-in: {m:?}"
        );
    }
}

/// Two clients (two instances) on one fresh store; the recorder must be
/// installed first, since building a client describes the metrics.
fn clients(per_key: bool) -> (Client, Client) {
    let store = MemoryStore::new();
    let client = |id: &str| {
        let backend = Arc::new(store.backend(Namespace::default()));
        Client::builder(backend)
            .instance_id(id)
            .expect("a valid id")
            .metrics_per_key(per_key)
            .build()
    };
    (client("a"), client("b"))
}

const SHORT: Duration = Duration::from_millis(50);

#[tokio::test(start_paused = true)]
async fn lock_metrics_carry_kind_and_outcome_and_no_key() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (a, b) = clients(false);

    let held = a.lock("k").try_lock().await.unwrap().expect("free");
    assert!(b.lock("k").try_lock().await.unwrap().is_none(), "held by a");
    let waited = b.lock("k").wait_timeout(Some(SHORT)).lock().await;
    assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
    held.release().await.unwrap();
    b.lock("k").lock().await.unwrap().release().await.unwrap();
    let r = a.lock("r").reentrant(true);
    let (outer, inner) = (r.lock().await.unwrap(), r.lock().await.unwrap());
    inner.release().await.unwrap();
    outer.release().await.unwrap();
    let rw = a.rwlock("rw");
    rw.read().await.unwrap().release().await.unwrap();
    rw.write().await.unwrap().release().await.unwrap();
    // Dropped: released in the background.
    drop(a.semaphore("s", 2).acquire().await.unwrap());
    // A fixed lease, left to run out.
    tokio::task::yield_now().await;
    let fixed = a.lock("lost").lease(SHORT).lock().await.unwrap();
    fixed.lost().await;
    // Renewed in the background every 100 ms (of paused time) meanwhile.
    let renewed = a.lock("renewed").ttl(6 * SHORT).lock().await.unwrap();
    tokio::time::sleep(5 * SHORT).await;
    assert!(renewed.release().await.unwrap(), "renewed, never lost");

    let seen = snapshot(&snapshotter);
    no_key_label(&seen);
    let wait = "coord_lock_wait_seconds";
    let acquired = samples(
        &seen,
        wait,
        &[("kind", "exclusive"), ("outcome", "acquired")],
    );
    assert_eq!(
        acquired.len(),
        4,
        "a's try, b's lock, the fixed one, the renewed one"
    );
    let busy = samples(&seen, wait, &[("kind", "exclusive"), ("outcome", "busy")]);
    assert_eq!(busy.len(), 1);
    let timeout = samples(
        &seen,
        wait,
        &[("kind", "exclusive"), ("outcome", "timeout")],
    );
    assert_eq!(timeout.len(), 1);
    assert!(timeout[0] >= SHORT.as_secs_f64(), "waited {timeout:?}");
    for kind in ["reentrant", "read", "write", "permit"] {
        let waits = samples(&seen, wait, &[("kind", kind), ("outcome", "acquired")]);
        assert!(!waits.is_empty(), "{kind}");
    }
    // The reentrant lease is held once, from its first grant to its last release.
    let hold = "coord_lock_hold_seconds";
    assert_eq!(samples(&seen, hold, &[("kind", "reentrant")]).len(), 1);
    assert_eq!(samples(&seen, hold, &[("kind", "exclusive")]).len(), 4);
    for kind in ["read", "write", "permit"] {
        assert_eq!(samples(&seen, hold, &[("kind", kind)]).len(), 1, "{kind}");
    }
    // Contended: the try, and the timed-out wait's attempts (at least two:
    // the first and the one after subscribing).
    let contended = count(
        &seen,
        "coord_lock_contended_total",
        &[("kind", "exclusive")],
    );
    assert!(contended >= 3, "{contended}");
    let timeouts = count(&seen, "coord_lock_timeouts_total", &[("kind", "exclusive")]);
    assert_eq!(timeouts, 1);
    let lag = samples(&seen, "coord_renewal_lag_seconds", &[]);
    assert!(lag.len() >= 2, "two renewals at least: {lag:?}");
    let lost = [("family", "lock"), ("kind", "exclusive")];
    assert_eq!(count(&seen, "coord_leases_lost_total", &lost), 1);
}

#[tokio::test(start_paused = true)]
async fn election_group_and_job_metrics_are_counted_without_a_key() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (a, b) = clients(false);

    let leading = a.election("e").try_campaign().await.unwrap().expect("won");
    assert!(b.election("e").try_campaign().await.unwrap().is_none());
    let waited = b.election("e").wait_timeout(Some(SHORT)).campaign().await;
    assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
    assert!(leading.resign().await.unwrap());
    let term = b.election("e").lease(SHORT).campaign().await.unwrap();
    term.lost().await;

    a.group("g").join().await.unwrap().leave().await.unwrap();
    let member = b.group("g").lease(SHORT).join().await.unwrap();
    member.lost().await;

    let job = a.job("j");
    let ran = job.run_once("tick-1", |_| async {}).await.unwrap();
    assert!(matches!(ran, RunOnce::Ran(())), "{ran:?}");
    let opts = LeaseOptions::default().ttl(SHORT).auto_extend(false);
    let lost = job
        .clone()
        .with_options(opts)
        .run_once("tick-2", |ctx| async move { ctx.lost.wait().await })
        .await;
    assert!(matches!(lost, Err(Error::LeaseLost { .. })), "{lost:?}");

    let seen = snapshot(&snapshotter);
    no_key_label(&seen);
    let campaigns = "coord_election_campaigns_total";
    assert_eq!(count(&seen, campaigns, &[("outcome", "elected")]), 2);
    assert_eq!(count(&seen, campaigns, &[("outcome", "busy")]), 1);
    assert_eq!(count(&seen, campaigns, &[("outcome", "timeout")]), 1);
    assert_eq!(count(&seen, "coord_election_terms_total", &[]), 2);
    let terms = samples(&seen, "coord_leadership_seconds", &[]);
    assert_eq!(terms.len(), 2, "resigned, and lost: {terms:?}");
    let term_lost = [("family", "election"), ("kind", "term")];
    assert_eq!(count(&seen, "coord_leases_lost_total", &term_lost), 1);

    let changes = "coord_group_changes_total";
    assert_eq!(count(&seen, changes, &[("change", "joined")]), 2);
    assert_eq!(count(&seen, changes, &[("change", "left")]), 1);
    assert_eq!(count(&seen, changes, &[("change", "expired")]), 1);

    let runs = "coord_job_runs_total";
    assert_eq!(count(&seen, runs, &[("stage", "started")]), 2);
    assert_eq!(count(&seen, runs, &[("stage", "finished")]), 1);
    assert_eq!(count(&seen, runs, &[("stage", "failed")]), 1);
    let run_lost = [("family", "job"), ("kind", "run")];
    assert_eq!(count(&seen, "coord_leases_lost_total", &run_lost), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_opts_in_labels_its_metrics_with_the_key() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (a, b) = clients(true);

    let held = a.lock("orders/7").lock().await.unwrap();
    assert!(b.lock("orders/7").try_lock().await.unwrap().is_none());
    held.release().await.unwrap();
    let term = a.election("e").campaign().await.unwrap();
    term.resign().await.unwrap();

    let seen = snapshot(&snapshotter);
    let key = ("key", "orders/7");
    let acquired = [("kind", "exclusive"), ("outcome", "acquired"), key];
    assert_eq!(
        samples(&seen, "coord_lock_wait_seconds", &acquired).len(),
        1
    );
    let busy = [("kind", "exclusive"), ("outcome", "busy"), key];
    assert_eq!(samples(&seen, "coord_lock_wait_seconds", &busy).len(), 1);
    let hold = [("kind", "exclusive"), key];
    assert_eq!(samples(&seen, "coord_lock_hold_seconds", &hold).len(), 1);
    let contended = [("kind", "exclusive"), key];
    assert_eq!(count(&seen, "coord_lock_contended_total", &contended), 1);
    let elected = [("outcome", "elected"), ("key", "e")];
    assert_eq!(count(&seen, "coord_election_campaigns_total", &elected), 1);
    assert_eq!(
        count(&seen, "coord_election_terms_total", &[("key", "e")]),
        1
    );
    let terms = samples(&seen, "coord_leadership_seconds", &[("key", "e")]);
    assert_eq!(terms.len(), 1);
}

/// Every family's metrics are described with their unit (what an exporter
/// shows as a metric's type and help), counted by the action that counts
/// them, and carry no key: queues, topics, graphs, shared values,
/// breakers, barriers and latches.
#[tokio::test(start_paused = true)]
async fn every_family_describes_its_metrics_and_counts_without_a_key() {
    use coord::{Next, NodeError, spi::Start};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (a, _) = clients(false);

    let queue = a.queue::<u64>("q");
    queue.push(&1).await.unwrap();
    let mut consumer = queue.consumer();
    consumer.receive().await.unwrap().ack().await.unwrap();

    let topic = a.topic::<u64>("t");
    let mut sub = topic.subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    topic.publish(&1).await.unwrap();
    match sub.next().await.unwrap() {
        Next::Event(e) => e.ack().await.unwrap(),
        other => panic!("expected the event: {other:?}"),
    }

    let graph = a.graph("g").node("only").build().unwrap();
    graph.submit("r").await.unwrap();
    let worker = graph.worker();
    let ran = worker.work_one(|_| async { Ok::<_, NodeError>(()) }).await;
    assert!(ran.unwrap().is_some(), "the node ran");

    let value = a.state::<u64>("k");
    // From version 0 a watch starts with a gap (the current, empty state);
    // the put then comes as its own event.
    let mut watch = value.watch(0);
    watch.next().await.unwrap();
    value.put(&1).await.unwrap();
    value.update(|v| v.map_or(0, |v| v + 1)).await.unwrap();
    watch.next().await.unwrap();

    let breaker = a.breaker("payments").build().unwrap();
    breaker
        .call(async { Ok::<_, ()>(()) })
        .await
        .unwrap()
        .unwrap();
    breaker.flush().await.unwrap();
    breaker.force_open("test").await.unwrap();

    a.barrier("b", 1).wait().await.unwrap();

    let seen = snapshot(&snapshotter);
    no_key_label(&seen);
    assert_eq!(count(&seen, "coord_queue_pushed_total", &[]), 1);
    assert_eq!(
        count(&seen, "coord_queue_delivered_total", &[("kind", "first")]),
        1
    );
    assert_eq!(
        count(&seen, "coord_queue_settled_total", &[("outcome", "acked")]),
        1
    );
    let durable = [("tier", "durable")];
    assert_eq!(count(&seen, "coord_topic_published_total", &durable), 1);
    assert_eq!(
        count(&seen, "coord_topic_delivered_total", &[("kind", "first")]),
        1
    );
    assert_eq!(
        count(&seen, "coord_topic_settled_total", &[("outcome", "acked")]),
        1
    );
    assert_eq!(count(&seen, "coord_graph_runs_submitted_total", &[]), 1);
    let succeeded = [("outcome", "succeeded")];
    assert_eq!(count(&seen, "coord_graph_attempts_total", &succeeded), 1);
    assert_eq!(
        samples(&seen, "coord_graph_attempt_seconds", &[("outcome", "ok")]).len(),
        1
    );
    let put = [("op", "put"), ("outcome", "done")];
    assert_eq!(count(&seen, "coord_state_written_total", &put), 1);
    assert_eq!(
        count(&seen, "coord_state_update_total", &[("outcome", "done")]),
        1
    );
    for kind in ["gap", "put"] {
        let watched = [("kind", kind)];
        assert_eq!(count(&seen, "coord_state_watch_events_total", &watched), 1);
    }
    let success = [("outcome", "success")];
    assert_eq!(count(&seen, "coord_breaker_calls_total", &success), 1);
    let counted = [("outcome", "counted")];
    assert_eq!(count(&seen, "coord_breaker_flushes_total", &counted), 1);
    let forced = [("to", "forced_open")];
    assert_eq!(count(&seen, "coord_breaker_transitions_total", &forced), 1);
    let tripped = [("kind", "barrier"), ("outcome", "tripped")];
    assert_eq!(count(&seen, "coord_barrier_waits_total", &tripped), 1);
    let waited = samples(&seen, "coord_barrier_wait_seconds", &[("kind", "barrier")]);
    assert_eq!(waited.len(), 1);
}

/// A backend whose first state write is beaten by a rival's: the update
/// that sent it loses one race.
#[derive(Debug)]
struct RivalOnce {
    inner: coord::spi::DynBackend,
    done: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for RivalOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RivalOnce({})", self.inner)
    }
}

#[coord_api::async_trait]
impl coord::spi::Dispatch for RivalOnce {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> coord::spi::Families {
        coord::spi::Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: coord::spi::Call) -> coord::Result<coord::spi::Reply> {
        let op = call.op();
        if op.family == "state" && op.name == "put" && !self.done.swap(true, Ordering::SeqCst) {
            let k = coord::Key::new("k").unwrap();
            let state = self.inner.state().expect("offered");
            let rival = b"7".to_vec();
            state
                .put(&k, &k, rival, coord::spi::Expect::Any, None, 0)
                .await?;
        }
        call.run(self.inner.clone()).await
    }
}

/// An update that lost a race and won on its next attempt counts one
/// retry and one update done.
#[tokio::test(start_paused = true)]
async fn a_lost_update_race_counts_a_retry() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = MemoryStore::new();
    let inner: coord::spi::DynBackend = Arc::new(store.backend(Namespace::default()));
    let done = std::sync::atomic::AtomicBool::new(false);
    let rival = coord::spi::Dispatched::new(RivalOnce { inner, done });
    let a = Client::builder(Arc::new(rival))
        .instance_id("a")
        .unwrap()
        .build();

    let value = a.state::<u64>("k");
    let end = value.update(|v| v.map_or(0, |v| v + 1)).await.unwrap();
    assert_eq!(end.value, 8, "computed again from the rival's 7");

    let seen = snapshot(&snapshotter);
    assert_eq!(count(&seen, "coord_state_update_retries_total", &[]), 1);
    let done = [("outcome", "done")];
    assert_eq!(count(&seen, "coord_state_update_total", &done), 1);
}

/// A connection whose first barrier arrival comes after participants `c`
/// and `d` tripped the current generation of the two-party barrier `b`
/// (through `other`): the waiter's read generation ended before its
/// arrival reached it, so `wait()` moves on to the next one.
#[derive(Debug)]
struct TrippedFirst {
    inner: coord::spi::DynBackend,
    other: coord::spi::DynBackend,
    done: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for TrippedFirst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrippedFirst({})", self.inner)
    }
}

#[coord_api::async_trait]
impl coord::spi::Dispatch for TrippedFirst {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> coord::spi::Families {
        coord::spi::Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: coord::spi::Call) -> coord::Result<coord::spi::Reply> {
        use coord::spi::Backend;
        use std::sync::atomic::Ordering::SeqCst;
        if call.op().name == "arrive" && !self.done.swap(true, SeqCst) {
            let b = self.other.barriers().unwrap();
            let (kind, name) = (
                coord::spi::BarrierKind::Cyclic,
                coord::Key::new("b").unwrap(),
            );
            let g = b.state(kind, &name, None).await.unwrap().generation;
            for p in ["c", "d"] {
                let p = coord::Key::new(p).unwrap();
                b.arrive(kind, &name, &p, g, 2, Duration::from_secs(5), 0)
                    .await
                    .unwrap();
            }
        }
        call.run(self.inner.clone()).await
    }
}

/// A barrier `wait()` is one wait, counted once with its outcome, however
/// many generations it read: one that moved past a generation that tripped
/// without it, then tripped, is one `tripped` wait (not a `stale` one as
/// well).
#[tokio::test(start_paused = true)]
async fn a_barrier_wait_that_moves_on_is_counted_once() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = MemoryStore::new();
    let connection = || -> coord::spi::DynBackend { Arc::new(store.backend(Namespace::default())) };
    let first = TrippedFirst {
        inner: connection(),
        other: connection(),
        done: Default::default(),
    };
    let a = Client::builder(Arc::new(coord::spi::Dispatched::new(first)))
        .instance_id("a")
        .expect("a valid id")
        .build();
    let b = Client::builder(connection())
        .instance_id("b")
        .unwrap()
        .build();
    let waiting = tokio::spawn(async move { a.barrier("b", 2).wait().await });
    for _ in 0..100 {
        let st = b.barrier("b", 2).state().await.unwrap();
        if st.arrivals.len() == 1 {
            break;
        }
        tokio::time::sleep(SHORT).await;
    }
    let tb = b.barrier("b", 2).wait().await.unwrap();
    let ta = waiting.await.unwrap().expect("a moved on and tripped");
    assert_eq!(ta, tb);

    let seen = snapshot(&snapshotter);
    let tripped = [("kind", "barrier"), ("outcome", "tripped")];
    assert_eq!(count(&seen, "coord_barrier_waits_total", &tripped), 2);
    let outcomes: Vec<_> = (seen.iter())
        .filter(|m| m.name == "coord_barrier_waits_total")
        .map(|m| &m.labels)
        .collect();
    assert_eq!(outcomes.len(), 1, "a's moving on counted: {outcomes:?}");
    let waited = samples(&seen, "coord_barrier_wait_seconds", &[("kind", "barrier")]);
    assert_eq!(waited.len(), 2, "one sample per wait");
}

/// Every wait of the barrier family is counted with its outcome, also one
/// refused before any I/O: a latch's, a cyclic barrier's and a double
/// barrier's on an invalid name are each one `error` wait.
#[tokio::test(start_paused = true)]
async fn a_wait_refused_for_bad_input_is_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (a, _) = clients(false);
    let bad = "a\nb";
    assert!(a.latch(bad).wait().await.is_err());
    assert!(a.barrier(bad, 2).wait().await.is_err());
    assert!(a.double_barrier(bad, 2).enter().await.is_err());
    let seen = snapshot(&snapshotter);
    for kind in ["latch", "barrier", "double_barrier"] {
        let error = [("kind", kind), ("outcome", "error")];
        assert_eq!(
            count(&seen, "coord_barrier_waits_total", &error),
            1,
            "{kind}"
        );
    }
}

/// A backend whose breaker calls fail `Unavailable` while `off`.
#[derive(Debug)]
struct BreakerCut {
    inner: coord::spi::DynBackend,
    off: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for BreakerCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BreakerCut({})", self.inner)
    }
}

#[coord_api::async_trait]
impl coord::spi::Dispatch for BreakerCut {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> coord::spi::Families {
        coord::spi::Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: coord::spi::Call) -> coord::Result<coord::spi::Reply> {
        if call.op().family == "breakers" && self.off.load(Ordering::SeqCst) {
            return Err(Error::unavailable(self, "cut off"));
        }
        call.run(self.inner.clone()).await
    }
}

/// The breaker's flush outcomes besides `counted`, and the backend lost:
/// a flush of calls counted before another instance forced the breaker
/// open is `stale`; a flush that fails is `error`, and the breaker that
/// lost its backend counts one `unreachable`.
#[tokio::test(start_paused = true)]
async fn breaker_stale_and_failed_flushes_and_unreachable_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = MemoryStore::new();
    let cut = BreakerCut {
        inner: Arc::new(store.backend(Namespace::default())),
        off: std::sync::atomic::AtomicBool::new(false),
    };
    let cut = Arc::new(coord::spi::Dispatched::new(cut));
    let a = Client::builder(cut.clone())
        .instance_id("a")
        .unwrap()
        .build();
    let b = Client::builder(Arc::new(store.backend(Namespace::default())))
        .instance_id("b")
        .unwrap()
        .build();
    let breaker = a.breaker("payments").build().unwrap();
    let ok = || async { Ok::<_, ()>(()) };
    breaker.call(ok()).await.unwrap().unwrap();
    let other = b.breaker("payments").build().unwrap();
    other.force_open("test").await.unwrap();
    breaker.flush().await.unwrap();
    other.reset("test").await.unwrap();
    breaker.state().await.unwrap();
    cut.get_ref().off.store(true, Ordering::SeqCst);
    breaker.call(ok()).await.unwrap().unwrap();
    assert!(breaker.flush().await.is_err(), "cut off");
    assert!(!breaker.backend_reachable());

    let seen = snapshot(&snapshotter);
    no_key_label(&seen);
    for outcome in ["stale", "error"] {
        let flushed = [("outcome", outcome)];
        assert_eq!(
            count(&seen, "coord_breaker_flushes_total", &flushed),
            1,
            "{outcome}"
        );
    }
    assert_eq!(count(&seen, "coord_breaker_unreachable_total", &[]), 1);
}
