//! [`Switch`]: a decorator a case can cut off, or make lose its replies, for
//! every family at once (it sees every call as a [`Call`]).

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    Error, Namespace, Result,
    spi::{Call, Dispatch, DynBackend, Families, Reply},
};

/// Wraps a backend; wrap it in [`Dispatched`](coord_api::spi::Dispatched)
/// to use it. While [`off`](Switch::off), every call fails with
/// `Error::Unavailable` before reaching the backend; while
/// [`losing_replies`](Switch::losing_replies), every call reaches the backend
/// and is applied, and then fails with `Error::Unavailable` as if its reply
/// had been lost; while [`holding`](Switch::holding), every call waits on
/// the way, not applied, until the switch changes (a call a case can
/// cancel in flight). Clones share the switch.
#[derive(Clone)]
pub struct Switch {
    inner: DynBackend,
    state: Arc<AtomicU8>,
    /// Wakes the calls held when the state changes.
    changed: Arc<tokio::sync::Notify>,
    lost: Arc<AtomicUsize>,
    answered: Arc<Mutex<HashMap<&'static str, usize>>>,
    held: Arc<Mutex<HashMap<&'static str, usize>>>,
    /// Per SPI method: how late its replies come.
    late: Arc<Mutex<HashMap<&'static str, Duration>>>,
    /// Per SPI method: how late its requests reach the backend, their
    /// callers answered `Unavailable` at once.
    late_requests: Arc<Mutex<HashMap<&'static str, Duration>>>,
    /// Per SPI method: how long its requests take to reach the backend,
    /// their callers waiting.
    slow_requests: Arc<Mutex<HashMap<&'static str, Duration>>>,
}

const ON: u8 = 0;
const OFF: u8 = 1;
const LOSE_REPLIES: u8 = 2;
const HOLD: u8 = 3;

impl Switch {
    /// Wraps `inner`, switched on.
    pub fn new(inner: DynBackend) -> Switch {
        Switch {
            inner,
            state: Arc::new(AtomicU8::new(ON)),
            changed: Default::default(),
            lost: Arc::new(AtomicUsize::new(0)),
            answered: Default::default(),
            held: Default::default(),
            late: Default::default(),
            late_requests: Default::default(),
            slow_requests: Default::default(),
        }
    }

    /// Cuts the backend off.
    pub fn off(&self) {
        self.set(OFF);
    }

    /// Lets calls through, applied, and loses their replies.
    pub fn losing_replies(&self) {
        self.set(LOSE_REPLIES);
    }

    /// Holds calls on the way, not applied, until the switch changes.
    pub fn holding(&self) {
        self.set(HOLD);
    }

    /// Reconnects it.
    pub fn on(&self) {
        self.set(ON);
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Answers the calls of the SPI method `name` (`release`,
    /// `subscribe`...) `by` late, applied at once (a slow network on the way
    /// back); whatever the switch's state, which applies first.
    /// `Duration::ZERO` ends it.
    pub fn late_replies(&self, name: &'static str, by: Duration) {
        let mut late = self.late.lock().unwrap_or_else(|p| p.into_inner());
        late.insert(name, by);
    }

    /// Answers the calls of the SPI method `name` with `Unavailable` at
    /// once (as a caller's timeout would) and applies them `by` later: a
    /// request still on its way when its caller gave up. While on its way
    /// it counts as [`held`](Switch::held). `Duration::ZERO` ends it (for
    /// the calls made after).
    pub fn late_requests(&self, name: &'static str, by: Duration) {
        let mut late = self.late_requests.lock().unwrap_or_else(|p| p.into_inner());
        late.insert(name, by);
    }

    /// Makes the calls of the SPI method `name` reach the backend `by`
    /// late (a slow network on the way there): applied then, and answered
    /// as usual, their callers waiting; counted as [`held`](Switch::held)
    /// meanwhile. `Duration::ZERO` ends it (for the calls made after).
    pub fn slow_requests(&self, name: &'static str, by: Duration) {
        let mut slow = self.slow_requests.lock().unwrap_or_else(|p| p.into_inner());
        slow.insert(name, by);
    }

    /// How many calls were applied and their replies lost so far: a case
    /// waits on it to know that a retry loop ran (and was applied) again.
    pub fn replies_lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }

    /// How many calls of the SPI method `name` (`acquire_queued`...) were
    /// answered, switched on, so far: a case waits on it to know that a
    /// call of a background task (a waiter's first attempt) was applied.
    pub fn answered(&self, name: &str) -> usize {
        count(&self.answered, name)
    }

    /// How many calls of the SPI method `name` wait held on the way now
    /// ([`holding`](Switch::holding)): a case waits on it to know that a
    /// call is in flight before it changes the world around it.
    pub fn held(&self, name: &str) -> usize {
        count(&self.held, name)
    }
}

fn count(counts: &Mutex<HashMap<&'static str, usize>>, name: &str) -> usize {
    let counts = counts.lock().unwrap_or_else(|p| p.into_inner());
    counts.get(name).copied().unwrap_or(0)
}

/// Counts a call held while it lives.
struct Held<'a> {
    counts: &'a Mutex<HashMap<&'static str, usize>>,
    name: &'static str,
}

impl<'a> Held<'a> {
    fn new(counts: &'a Mutex<HashMap<&'static str, usize>>, name: &'static str) -> Self {
        let mut all = counts.lock().unwrap_or_else(|p| p.into_inner());
        *all.entry(name).or_default() += 1;
        Held { counts, name }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *all.entry(self.name).or_default() -= 1;
    }
}

impl fmt::Debug for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Switch({:?})", self.inner)
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Switch({})", self.inner)
    }
}

#[async_trait]
impl Dispatch for Switch {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        let op = call.op();
        let mut held = None;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.state.load(Ordering::SeqCst) != HOLD {
                break;
            }
            held.get_or_insert_with(|| Held::new(&self.held, op.name));
            changed.await;
        }
        drop(held);
        let slow = (self.slow_requests.lock().unwrap_or_else(|p| p.into_inner()))
            .get(op.name)
            .copied()
            .filter(|by| !by.is_zero());
        if let Some(by) = slow {
            let _on_its_way = Held::new(&self.held, op.name);
            tokio::time::sleep(by).await;
        }
        let late_request = (self.late_requests.lock().unwrap_or_else(|p| p.into_inner()))
            .get(op.name)
            .copied()
            .filter(|by| !by.is_zero());
        if let Some(by) = late_request {
            let (inner, counts) = (self.inner.clone(), self.held.clone());
            tokio::spawn(async move {
                let _on_its_way = Held::new(&counts, op.name);
                tokio::time::sleep(by).await;
                let _applied = call.run(inner).await;
            });
            return Err(Error::unavailable(
                self,
                format!("{op}: timed out (the test's switch; the request arrives {by:?} later)"),
            ));
        }
        match self.state.load(Ordering::SeqCst) {
            OFF => Err(Error::unavailable(
                self,
                format!("{op}: switched off by the test"),
            )),
            LOSE_REPLIES => {
                let _applied = call.run(self.inner.clone()).await;
                self.lost.fetch_add(1, Ordering::SeqCst);
                Err(Error::unavailable(
                    self,
                    format!("{op}: reply lost (the test's switch; the call was applied)"),
                ))
            }
            _ => {
                let reply = call.run(self.inner.clone()).await;
                {
                    let mut answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
                    *answered.entry(op.name).or_default() += 1;
                }
                let late = self
                    .late
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(op.name)
                    .copied();
                if let Some(by) = late.filter(|by| !by.is_zero()) {
                    tokio::time::sleep(by).await;
                }
                reply
            }
        }
    }
}
