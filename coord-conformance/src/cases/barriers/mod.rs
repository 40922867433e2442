//! Barriers and latches (`contract::barriers`): the cyclic barrier, the
//! double barrier and the countdown latch, one file each, and the helpers
//! they share. A crashed participant is an arrival made through the SPI
//! with a short TTL and never renewed.

use crate::{cases::prelude::*, runner::Case};
pub(crate) use coord_api::{
    BarrierBroken, Inside, LatchWait, Tripped,
    spi::{
        Arrive, BarrierBackend, BarrierKind, BarrierState, BreakReason, Broken, ENDED_KEPT, Ended,
        EndedGeneration, Leave, MAX_LATCH_COUNT, MAX_PARTIES,
    },
};
use coord_api::{
    Namespace,
    spi::{Call, Dispatch, Dispatched, Families, Reply},
};
pub(crate) use std::future::Future;
pub(crate) use tokio::task::JoinHandle;

pub mod cyclic;
pub mod double;
pub mod latch;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [cyclic::cases(), double::cases(), latch::cases()].concat()
}

/// How long a condition that a notification or one round trip brings about
/// may take (cases run with a 10 s retry delay).
pub(crate) const PROMPTLY: Duration = Duration::from_millis(2000);

/// The TTL of the cases of renewals: renewed every half of it, so that a
/// renewed arrival always has more than [`LEFT_AT_LEAST`] left.
pub(crate) const RENEWED_TTL: Duration = Duration::from_millis(600);

/// The least time left a renewed arrival shows (it shows about 300 ms at
/// worst; 240 ms to spare for a late renewal). An arrival not renewed runs
/// down to zero before the backend drops it and the waiter arrives anew.
pub(crate) const LEFT_AT_LEAST: Duration = Duration::from_millis(60);

/// Options with [`RENEWED_TTL`], renewed every half of it.
pub(crate) fn short_renewed() -> LeaseOptions {
    default_options()
        .ttl(RENEWED_TTL)
        .extend_interval(Some(RENEWED_TTL / 2))
}

/// The barrier SPI of `backend` (the family's needs say it is there).
pub(crate) fn spi(backend: &DynBackend) -> &dyn BarrierBackend {
    backend.barriers().expect("the backend offers barriers")
}

/// Participant ids, sorted.
pub(crate) fn ids(keys: &[Key]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
    v.sort();
    v
}

/// The live arrivals of a state, sorted.
pub(crate) fn live(st: &BarrierState) -> Vec<String> {
    let mut v: Vec<String> = (st.arrivals.iter())
        .map(|a| a.participant.as_str().to_owned())
        .collect();
    v.sort();
    v
}

/// `["a", "b"]` as owned strings, for comparisons with [`ids`] and [`live`].
pub(crate) fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

/// The trip of a wait that must have tripped.
#[track_caller]
pub(crate) fn tripped(res: Result<Tripped>, what: &str) -> Tripped {
    match res {
        Ok(t) => t,
        Err(e) => panic!("{what}: expected Tripped, got {e:?}"),
    }
}

/// The break of a wait that must have been broken.
#[track_caller]
pub(crate) fn broken<T: Debug>(res: Result<T>, what: &str) -> BarrierBroken {
    match res {
        Err(Error::Broken(b)) => *b,
        other => panic!("{what}: expected Error::Broken, got {other:?}"),
    }
}

/// How a reset ended `generation`: broken, reason `reset`.
#[track_caller]
pub(crate) fn reset_broke(ended: &EndedGeneration, generation: u64, what: &str) -> Broken {
    assert_eq!(ended.generation, generation, "{what}: {ended:?}");
    match &ended.ended {
        Ended::Broken(b) if b.reason == BreakReason::Reset => b.clone(),
        other => panic!("{what}: expected broken by a reset, got {other:?}"),
    }
}

/// The current state of `kind`/`name`, read through the SPI of `backend`.
pub(crate) async fn state_of(backend: &DynBackend, kind: BarrierKind, name: &str) -> BarrierState {
    spi(backend).state(kind, &key(name), None).await.unwrap()
}

/// How `generation` of `kind`/`name` ended, read through the SPI.
pub(crate) async fn ended_of(
    backend: &DynBackend,
    kind: BarrierKind,
    name: &str,
    generation: u64,
) -> Option<EndedGeneration> {
    let name = key(name);
    let st = spi(backend).state(kind, &name, Some(generation));
    st.await.unwrap().asked
}

/// Waits (bounded) until the current generation of `kind`/`name` shows
/// exactly `who` as its live arrivals (in any order); returns that state.
pub(crate) async fn arrivals_are(
    backend: &DynBackend,
    kind: BarrierKind,
    name: &str,
    who: &[&str],
    what: &str,
) -> BarrierState {
    let mut want = names(who);
    want.sort();
    let last = Mutex::new(None);
    let found = eventually(PROMPTLY, || async {
        let st = state_of(backend, kind, name).await;
        let ok = live(&st) == want;
        *last.lock().unwrap() = Some(st.clone());
        ok.then_some(st)
    })
    .await;
    found.unwrap_or_else(|| {
        let last = last.lock().unwrap();
        panic!("{what}: arrivals never became {want:?}; last {last:?}")
    })
}

/// Reads the state of `kind`/`name` every 10 ms for `for_`, panicking the
/// first time its generation or live arrivals differ from `st`'s, or an
/// arrival has [`LEFT_AT_LEAST`] or less left: nobody was dropped or let
/// run down, even for a moment, and nothing ended.
pub(crate) async fn stays_renewed(
    backend: &DynBackend,
    kind: BarrierKind,
    name: &str,
    st: &BarrierState,
    for_: Duration,
    what: &str,
) {
    let until = Instant::now() + for_;
    while Instant::now() < until {
        let now = state_of(backend, kind, name).await;
        if (now.generation, live(&now)) != (st.generation, live(st)) {
            panic!("{what}: {st:?} became {now:?}");
        }
        if let Some(a) = now.arrivals.iter().find(|a| a.expires_in <= LEFT_AT_LEAST) {
            panic!("{what}: {a:?} not renewed in time: {now:?}");
        }
        sleep(ms(10)).await;
    }
}

/// Asserts that `task` is still running `for_` from now (a bounded check
/// that something does not happen: a wait that must not return yet).
pub(crate) async fn still_waiting<T: Debug>(task: &mut JoinHandle<T>, for_: Duration, what: &str) {
    if let Ok(res) = timeout(for_, &mut *task).await {
        panic!("{what}: returned while it must still wait: {res:?}");
    }
}

/// A participant that arrives through the SPI in the current generation of
/// `kind`/`name` with a lease of `ttl`, and then crashes (never renews,
/// never leaves). Returns the generation it arrived in.
pub(crate) async fn crashed_arrival(
    backend: &DynBackend,
    kind: BarrierKind,
    name: &str,
    participant: &str,
    parties: u32,
    ttl: Duration,
) -> u64 {
    let b = spi(backend);
    let (name, participant) = (key(name), key(participant));
    let g = b.state(kind, &name, None).await.unwrap().generation;
    let arrive = b.arrive(kind, &name, &participant, g, parties, ttl, 0);
    match arrive.await.unwrap() {
        Arrive::Waiting { arrived } => assert!(arrived >= 1),
        other => panic!("the crashing participant's arrival: expected Waiting, got {other:?}"),
    }
    g
}

type Hook = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A connection that, once, runs a hook just before it carries its first
/// `arrive`: what others do between a waiter's read of the generation and
/// its arrival, made to happen every time.
pub(crate) struct BeforeArrive {
    inner: DynBackend,
    hook: Mutex<Option<Hook>>,
}

impl BeforeArrive {
    /// A client `name` on a new connection of the case whose first arrival
    /// comes after `hook` ran.
    pub(crate) async fn client(
        ctx: &Ctx<'_>,
        name: &str,
        hook: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Client {
        let inner = ctx.backend().await;
        let hook = Mutex::new(Some(Box::pin(hook) as Hook));
        let backend: DynBackend = Arc::new(Dispatched::new(BeforeArrive { inner, hook }));
        Client::builder(backend)
            .instance_id(name)
            .expect("valid instance id")
            .lease_options(default_options())
            .build()
    }
}

impl std::fmt::Debug for BeforeArrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BeforeArrive({:?})", self.inner)
    }
}

impl std::fmt::Display for BeforeArrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BeforeArrive({})", self.inner)
    }
}

#[async_trait::async_trait]
impl Dispatch for BeforeArrive {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        if call.op().name == "arrive" {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook.await;
            }
        }
        call.run(self.inner.clone()).await
    }
}

/// A hook: participants `c` and `d` trip the current generation of the
/// two-party cyclic barrier `name` (through the SPI of `backend`).
pub(crate) fn others_trip(backend: DynBackend, name: &str) -> impl Future<Output = ()> + Send {
    let name = key(name);
    async move {
        let b = spi(&backend);
        let kind = BarrierKind::Cyclic;
        let g = b.state(kind, &name, None).await.unwrap().generation;
        for p in ["c", "d"] {
            b.arrive(kind, &name, &key(p), g, 2, ms(5000), 0)
                .await
                .unwrap();
        }
        let st = b.state(kind, &name, Some(g)).await.unwrap();
        assert!(st.generation > g, "c and d tripped generation {g}: {st:?}");
    }
}

/// A hook: someone resets the cyclic barrier `name`.
pub(crate) fn someone_resets(backend: DynBackend, name: &str) -> impl Future<Output = ()> + Send {
    someone_resets_kind(backend, BarrierKind::Cyclic, name)
}

/// A hook: participants `c` and `d` enter the current generation of the
/// two-party double barrier `name` and leave it (through the SPI of
/// `backend`): the generation ends, tripped without anyone else.
pub(crate) fn others_pass(backend: DynBackend, name: &str) -> impl Future<Output = ()> + Send {
    let name = key(name);
    async move {
        let b = spi(&backend);
        let kind = BarrierKind::Double;
        let g = b.state(kind, &name, None).await.unwrap().generation;
        for p in ["c", "d"] {
            b.arrive(kind, &name, &key(p), g, 2, ms(5000), 1)
                .await
                .unwrap();
        }
        for p in ["c", "d"] {
            b.leave(kind, &name, &key(p), g, 1).await.unwrap();
        }
        let st = b.state(kind, &name, Some(g)).await.unwrap();
        assert!(st.generation > g, "c and d passed generation {g}: {st:?}");
    }
}

/// A hook: someone resets the barrier `name` of `kind`.
pub(crate) fn someone_resets_kind(
    backend: DynBackend,
    kind: BarrierKind,
    name: &str,
) -> impl Future<Output = ()> + Send {
    let name = key(name);
    async move {
        let brk = spi(&backend).break_generation(kind, &name, None, BreakReason::Reset);
        brk.await.unwrap();
    }
}
