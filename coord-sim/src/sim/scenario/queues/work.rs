//! The queue workload's parts: the plan (what each producer pushes when,
//! with which options; how each item's attempts end), the producers, the
//! consumers (their styles, handlers and crash points) and the drainer.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    Client, Consumer, Error, Instant, LostSignal, Namespace, NodeError, PresenceOptions,
    PushOptions, Queue, QueueStats,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply},
};
use madsim::{
    net::Endpoint,
    rand::{Rng, thread_rng},
};
use tokio::sync::{mpsc, oneshot};

use super::super::{
    NodeClock, Shared,
    client::{client_over, sim_backend},
    connect, opts, write,
};
use crate::history::{Handler, HandlerEnd, Handlers, Listed, PushAck, PushAcks, item_key};

/// The queue.
pub(super) const QUEUE: &str = "work";
/// Each delivery's lease.
pub(super) const ITEM_TTL: Duration = Duration::from_secs(3);
/// Each consumer's presence lease: a dead consumer's deliveries come back
/// this long after its last heartbeat, well before their leases end.
pub(super) const PRESENCE_TTL: Duration = Duration::from_secs(1);
/// The attempts an item is given unless its push says otherwise.
const ATTEMPTS: u32 = 3;
/// Producers.
pub(super) const PRODUCERS: usize = 2;
/// Push calls per producer.
const CALLS: usize = 11;
/// How long a handler waits for the resource's answer before resending.
const WRITE_WAIT: Duration = Duration::from_millis(400);
/// The chance that a process crashes at a step boundary it passes.
const CRASH_CHANCE: f64 = 0.02;

/// How one item's attempts end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fate {
    /// The first `fails` attempts fail (to be retried).
    fails: u32,
    /// This attempt fails for good.
    permanent_at: Option<u32>,
}

/// One push call: a producer, when, and its items with their options.
#[derive(Debug, Clone)]
pub(super) struct PushPlan {
    pub(super) at: Duration,
    pub(super) items: Vec<(String, PushOptions)>,
}

/// The seed's plan: per producer its push calls in order; each item's
/// fate; each consumer's style.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) pushes: Vec<Vec<PushPlan>>,
    fates: HashMap<String, Fate>,
    pub(super) styles: Vec<Style>,
}

/// How a consumer works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// `Consumer::run` with a handler.
    Run { prefetch: u32, steal: bool },
    /// A `receive` / settle loop, leaving (and coming back as a new
    /// consumer) now and then.
    Loop { prefetch: u32, steal: bool },
}

const STYLES: [Style; 4] = [
    Style::Run {
        prefetch: 1,
        steal: false,
    },
    Style::Loop {
        prefetch: 3,
        steal: false,
    },
    Style::Run {
        prefetch: 2,
        steal: true,
    },
    Style::Loop {
        prefetch: 1,
        steal: true,
    },
];

/// Draws the plan: each producer's calls over the fault window (a third
/// `push_many` of two to four items), items with a priority, a delay, a
/// dedup id (some pushed again), their own attempts; fates: most succeed,
/// some fail once or twice, some always (dead after their attempts), a few
/// fail for good.
pub(super) fn plan(rng: &mut madsim::rand::GlobalRng, consumers: usize) -> Plan {
    let mut pushes = Vec::new();
    let mut fates = HashMap::new();
    for p in 0..PRODUCERS {
        let mut calls = Vec::new();
        for k in 0..CALLS {
            let at = Duration::from_millis(rng.gen_range(300..19_000));
            let n = if rng.gen_bool(0.33) {
                rng.gen_range(2..5)
            } else {
                1
            };
            let mut items = Vec::new();
            for j in 0..n {
                let name = format!("p{p}-{k}-{j}");
                let mut o = PushOptions::new();
                if rng.gen_bool(0.4) {
                    o = o.priority(rng.gen_range(1..10));
                }
                if rng.gen_bool(0.2) {
                    o = o.delay(Duration::from_millis(rng.gen_range(200..3_000)));
                }
                if rng.gen_bool(0.3) {
                    o = o.max_attempts(rng.gen_range(1..5));
                }
                let dedup = rng.gen_bool(0.25);
                if dedup {
                    o = o.dedup(&name, Duration::from_secs(60));
                }
                let fate = match rng.gen_range(0..100) {
                    0..70 => Fate {
                        fails: 0,
                        permanent_at: None,
                    },
                    70..85 => Fate {
                        fails: 1,
                        permanent_at: None,
                    },
                    85..90 => Fate {
                        fails: 2,
                        permanent_at: None,
                    },
                    90..95 => Fate {
                        fails: u32::MAX,
                        permanent_at: None,
                    },
                    _ => Fate {
                        fails: 0,
                        permanent_at: Some(1),
                    },
                };
                fates.insert(name.clone(), fate);
                if dedup && rng.gen_bool(0.5) {
                    // Pushed again by its dedup id: a duplicate.
                    let again = at + Duration::from_millis(rng.gen_range(0..2_000));
                    calls.push(PushPlan {
                        at: again,
                        items: vec![(name.clone(), o.clone())],
                    });
                }
                items.push((name, o));
            }
            calls.push(PushPlan { at, items });
        }
        calls.sort_by_key(|c| c.at);
        pushes.push(calls);
    }
    let shift = rng.gen_range(0..STYLES.len());
    let styles = (0..consumers)
        .map(|i| STYLES[(i + shift) % STYLES.len()])
        .collect();
    Plan {
        pushes,
        fates,
        styles,
    }
}

/// The step boundaries a process crashes at (bit numbers of
/// `QueueCounts::boundaries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Boundary {
    /// Before a receive (a loop).
    BeforeReceive,
    /// The delivery received, its handler not begun.
    AfterReceive,
    /// After the handler's first write.
    MidHandler,
    /// The handler done, its ack (nack, dead letter) not sent.
    AfterHandler,
    /// A moment after the handler: before, while or after its settlement
    /// travels (or the next receive).
    DuringAck,
    /// The settlement answered (a loop).
    AfterAck,
    /// Before a push.
    BeforePush,
    /// While a push travels.
    DuringPush,
    /// The push acknowledged.
    AfterPush,
}

/// A process asking to be killed (`after` from now; `ack`: answered
/// whether it will be, when it waits for it).
pub(super) struct CrashRequest {
    pub(super) process: usize,
    pub(super) boundary: Boundary,
    pub(super) after: Duration,
    pub(super) ack: Option<oneshot::Sender<bool>>,
}

/// What the processes share besides [`Shared`].
#[derive(Clone)]
pub(super) struct QueueShared {
    pub(super) plan: Arc<Plan>,
    pub(super) t0: Instant,
    pub(super) pushes: PushAcks,
    pub(super) handlers: Handlers,
    /// The consumers asked to leave, or dropped (their holders' text).
    pub(super) left: Arc<Mutex<Vec<String>>>,
    pub(super) crash: mpsc::UnboundedSender<CrashRequest>,
    /// Push calls done per producer (a restarted producer goes on there).
    pub(super) progress: Arc<Mutex<Vec<usize>>>,
    /// Handlers running per consumer, for the pause plan's target.
    pub(super) busy: Arc<Mutex<Vec<usize>>>,
    /// Whether processes crash at step boundaries.
    pub(super) crashes: bool,
}

impl QueueShared {
    fn busy(&self, shared: &Shared, i: usize, began: bool) {
        let mut busy = self.busy.lock().unwrap();
        if began {
            busy[i] += 1;
        } else {
            busy[i] = busy[i].saturating_sub(1);
        }
        let mut h = shared.holder.lock().unwrap();
        if began {
            *h = Some(i);
        } else if *h == Some(i) && busy[i] == 0 {
            *h = busy.iter().position(|&b| b > 0);
        }
    }

    /// Process `i` (a consumer, or a producer past them) was killed.
    pub(super) fn killed(&self, shared: &Shared, i: usize, name: &str, at: Instant) {
        self.handlers.killed(name, at);
        let mut busy = self.busy.lock().unwrap();
        if let Some(b) = busy.get_mut(i) {
            *b = 0;
        }
        let mut h = shared.holder.lock().unwrap();
        if *h == Some(i) {
            *h = busy.iter().position(|&b| b > 0);
        }
    }

    fn fate(&self, name: &str, attempt: u32) -> Option<HandlerEnd> {
        let f = self.plan.fates.get(name)?;
        Some(if f.permanent_at == Some(attempt) {
            HandlerEnd::FailedForGood
        } else if attempt <= f.fails {
            HandlerEnd::Failed
        } else {
            HandlerEnd::Succeeded
        })
    }
}

/// One process's surroundings.
struct Env {
    i: usize,
    name: String,
    shared: Shared,
    q: QueueShared,
}

impl Env {
    /// Crashes here, perhaps: asks to be killed now and waits for it.
    async fn crash_point(&self, boundary: Boundary) {
        if !self.q.crashes || self.shared.stopping() || !thread_rng().gen_bool(CRASH_CHANCE) {
            return;
        }
        let (ack, answer) = oneshot::channel();
        let req = CrashRequest {
            process: self.i,
            boundary,
            after: Duration::ZERO,
            ack: Some(ack),
        };
        if self.q.crash.send(req).is_ok() && matches!(answer.await, Ok(true)) {
            std::future::pending::<()>().await;
        }
    }

    /// Whether a handler beginning now takes [`SLOW_STEP`] after its first
    /// write: consumer 0's, begun while its renewals are lost and at least
    /// that step before they come back. Its lease was last renewed before
    /// the handler began, so it ends at the server during the step while
    /// heartbeats keep the consumer alive: an expiry for the rules to judge
    /// about every other seed (with handlers far shorter than a lease
    /// settling first, such expiries were about 5 per 200 seeds, at times
    /// none).
    fn outlasts_lease(&self) -> bool {
        let (from, len) = RENEWALS_LOST;
        let since = Instant::now() - self.q.t0;
        self.i == 0 && since >= from && since + SLOW_STEP < from + len
    }

    /// Crashes a moment from now, perhaps, without waiting for it.
    fn crash_soon(&self, boundary: Boundary) {
        let mut rng = thread_rng();
        if !self.q.crashes || self.shared.stopping() || !rng.gen_bool(CRASH_CHANCE) {
            return;
        }
        let _ = self.q.crash.send(CrashRequest {
            process: self.i,
            boundary,
            after: Duration::from_millis(rng.gen_range(0..25)),
            ack: None,
        });
    }
}

/// The workload's queue on `client`.
fn queue(client: &Client) -> Queue<String> {
    client.queue::<String>(QUEUE).max_attempts(ATTEMPTS)
}

/// Producer `p` (process `i`): its push calls from where it got to, each
/// retried while the server is unreachable (until the heal), crash points
/// around them; every acknowledged push recorded as it returns.
pub(super) async fn producer(i: usize, p: usize, clock: NodeClock, shared: Shared, q: QueueShared) {
    let name = format!("p{p}");
    let client = connect(&name, &clock, opts(), &shared).await;
    let queue = queue(&client);
    let env = Env {
        i,
        name: name.clone(),
        shared: shared.clone(),
        q: q.clone(),
    };
    loop {
        let k = q.progress.lock().unwrap()[p];
        let Some(call) = q.plan.pushes[p].get(k) else {
            break;
        };
        tokio::time::sleep_until(q.t0 + call.at).await;
        if shared.stopping() {
            break;
        }
        env.crash_point(Boundary::BeforePush).await;
        loop {
            let items = call.items.iter().map(|(n, o)| (n, o.clone())).collect();
            env.crash_soon(Boundary::DuringPush);
            match queue.push_many_with(items).await {
                Ok(outs) => {
                    for ((item, _), out) in call.items.iter().zip(outs) {
                        q.pushes.push(PushAck {
                            producer: name.clone(),
                            queue: QUEUE.to_owned(),
                            name: item.clone(),
                            id: out.id(),
                            duplicate: matches!(out, coord_api::PushOutcome::Duplicate(_)),
                            at: Instant::now(),
                        });
                    }
                    break;
                }
                Err(e) if e.is_retryable() && !shared.stopping() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    if !e.is_retryable() {
                        eprintln!("{}: {name}: push: {e}", shared.name);
                    }
                    break;
                }
            }
        }
        q.progress.lock().unwrap()[p] += 1;
        env.crash_point(Boundary::AfterPush).await;
    }
    std::future::pending::<()>().await
}

/// How a handler's work ended.
fn as_result(end: HandlerEnd) -> Result<(), NodeError> {
    match end {
        HandlerEnd::Succeeded => Ok(()),
        HandlerEnd::FailedForGood => Err(NodeError::msg("a planned permanent failure").permanent()),
        HandlerEnd::Failed => Err(NodeError::msg("a planned failure")),
        HandlerEnd::Lost | HandlerEnd::Killed => Err(NodeError::msg("the lease was lost")),
    }
}

/// A handler: writes to the resource with its token (one to three times,
/// stopping when the lost signal fires or the resource refuses the token;
/// a careless one looks at the signal only at its end, or never), then
/// ends as the item's fate says; crash points before, inside and after it.
async fn handle(
    env: &Env,
    consumer: &str,
    item: &str,
    (id, token, attempt): (u64, u64, u32),
    lost_signal: LostSignal,
) -> HandlerEnd {
    env.crash_point(Boundary::AfterReceive).await;
    let q = &env.q;
    let idx = q.handlers.start(Handler {
        process: env.name.clone(),
        consumer: consumer.to_owned(),
        queue: QUEUE.to_owned(),
        id,
        token,
        attempt,
        start: Instant::now(),
        end: None,
        ended: None,
    });
    q.busy(&env.shared, env.i, true);
    let key = item_key(QUEUE, id);
    let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let writes = thread_rng().gen_range(1..4);
    let careless = thread_rng().gen_bool(0.3);
    let slow = env.outlasts_lease();
    let mut lost = false;
    for k in 0..writes {
        let pause = Duration::from_millis(thread_rng().gen_range(20..200));
        let wrote = if careless {
            write(&ep, &key, &env.name, token, WRITE_WAIT, true).await
        } else {
            tokio::select! {
                biased;
                _ = lost_signal.wait() => None,
                w = write(&ep, &key, &env.name, token, WRITE_WAIT, true) => w,
            }
        };
        if wrote != Some(true) {
            // Lost, or refused: a newer delivery of the item wrote.
            lost = true;
            break;
        }
        if k == 0 {
            env.crash_point(Boundary::MidHandler).await;
            if slow {
                tokio::time::sleep(SLOW_STEP).await;
            }
        }
        if careless {
            tokio::time::sleep(pause).await;
            continue;
        }
        tokio::select! {
            biased;
            _ = lost_signal.wait() => { lost = true; break }
            _ = tokio::time::sleep(pause) => {}
        }
    }
    // Half the careless ones settle as if nothing happened, lost or not
    // (a zombie's ack, which the backend must refuse: a consumer learns
    // its delivery lost with its presence, so zombies are rare otherwise).
    let sloppy = careless && thread_rng().gen_bool(0.5);
    lost |= careless && !sloppy && lost_signal.is_lost();
    let end = match q.fate(item, attempt) {
        _ if lost => HandlerEnd::Lost,
        Some(end) => end,
        None => HandlerEnd::Succeeded,
    };
    q.handlers.end(idx, Instant::now(), end);
    q.busy(&env.shared, env.i, false);
    env.crash_point(Boundary::AfterHandler).await;
    env.crash_soon(Boundary::DuringAck);
    end
}

/// When consumer 0's delivery renewals are lost (after `t0`): from the
/// fourth second for two lease TTLs.
const RENEWALS_LOST: (Duration, Duration) = (Duration::from_secs(4), Duration::from_secs(6));

/// One step of the handlers consumer 0 begins while its renewals are lost
/// (see [`Env::outlasts_lease`]): longer than a lease, and blind to the
/// lost signal (a call out that takes its time).
const SLOW_STEP: Duration = Duration::from_millis(ITEM_TTL.as_millis() as u64 + 500);

/// A client whose `queues.extend` calls (delivery renewals) fail, not
/// applied, from `from` until `to`, everything else going through: its
/// heartbeats keep its presence while its deliveries' leases end at the
/// server. Consumer 0 is such a client in every seed, and its handlers
/// begun then outlast a lease ([`Env::outlasts_lease`]), so the rule for a
/// lease that ended with its consumer alive has something to judge (a
/// consumer cut off or paused loses its presence first, and its
/// deliveries are given back before their leases end).
struct RenewalsLost {
    inner: DynBackend,
    from: Instant,
    to: Instant,
}

impl fmt::Display for RenewalsLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "renewals-lost({})", self.inner)
    }
}

impl fmt::Debug for RenewalsLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[async_trait]
impl Dispatch for RenewalsLost {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> coord_api::Result<Reply> {
        let (op, now) = (call.op(), Instant::now());
        if (op.family, op.name) == ("queues", "extend") && now >= self.from && now < self.to {
            return Err(Error::unavailable(
                self,
                format!("{op}: lost by the scenario"),
            ));
        }
        call.run(self.inner.clone()).await
    }
}

/// Consumer `i` in its style; runs until the simulation ends.
pub(super) async fn consumer(i: usize, clock: NodeClock, shared: Shared, q: QueueShared) {
    let name = format!("c{i}");
    let client = if i == 0 {
        let (from, len) = RENEWALS_LOST;
        let (from, to) = (q.t0 + from, q.t0 + from + len);
        let inner = sim_backend(&shared).await;
        let backend = Arc::new(Dispatched::new(RenewalsLost { inner, from, to }));
        client_over(backend, &name, &clock, opts(), PresenceOptions::default())
    } else {
        connect(&name, &clock, opts(), &shared).await
    };
    let env = Arc::new(Env {
        i,
        name,
        shared,
        q: q.clone(),
    });
    let make = |prefetch: u32, steal: bool, wait: Option<Duration>| -> Consumer<String> {
        queue(&client)
            .consumer()
            .ttl(ITEM_TTL)
            .wait_timeout(wait)
            .presence_ttl(PRESENCE_TTL)
            .prefetch(prefetch)
            .steal(steal)
            .backoff(Duration::from_millis(50), Duration::from_millis(400))
    };
    match q.plan.styles[i] {
        Style::Run { prefetch, steal } => loop {
            let c = make(prefetch, steal, None);
            let holder = c.holder().to_string();
            let holder_text = holder.clone();
            let e = env.clone();
            let handler = move |item: String, ctx: coord_api::ItemContext| {
                let (e, holder) = (e.clone(), holder.clone());
                async move {
                    let what = (ctx.id, ctx.token.get(), ctx.attempt);
                    as_result(handle(&e, &holder, &item, what, ctx.lost).await)
                }
            };
            let run = c.run(handler).await;
            // Returned: the consumer was dropped (and left).
            env.q.left.lock().unwrap().push(holder_text.clone());
            if let Err(err) = run {
                eprintln!("{}: {}: consumer: {err}", env.shared.name, env.name);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        },
        Style::Loop { prefetch, steal } => {
            let wait = Some(Duration::from_secs(4));
            let mut c = make(prefetch, steal, wait);
            loop {
                env.crash_point(Boundary::BeforeReceive).await;
                let d = match c.receive().await {
                    Ok(d) => d,
                    Err(Error::Timeout { .. }) => continue,
                    Err(e) => {
                        if !e.is_retryable() {
                            eprintln!("{}: {}: receive: {e}", env.shared.name, env.name);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let holder = c.holder().to_string();
                let what = (d.id(), d.token().get(), d.attempt());
                let end = handle(&env, &holder, d.item(), what, d.lost()).await;
                let settled = match as_result(end) {
                    Ok(()) => d.ack().await,
                    Err(e) if e.is_permanent() => d.dead_letter(e).await,
                    Err(e) => d.nack(e).await.map(drop),
                };
                match settled {
                    Ok(()) | Err(Error::LeaseLost { .. }) => {}
                    Err(e) if e.is_retryable() => {}
                    Err(e) => eprintln!("{}: {}: settle: {e}", env.shared.name, env.name),
                }
                env.crash_point(Boundary::AfterAck).await;
                if !env.shared.stopping() && thread_rng().gen_bool(0.08) {
                    // Leave (what it prefetched goes back at once) and come
                    // back as a new consumer.
                    env.q.left.lock().unwrap().push(holder);
                    let _ = c.leave().await;
                    c = make(prefetch, steal, wait);
                }
            }
        }
    }
}

/// Retries `f` while the backend is unreachable, until `deadline`.
async fn retried<T, F, Fut>(mut f: F, deadline: Instant) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return None,
        }
    }
}

/// After the heal: waits until the queue has nothing ready, delayed or in
/// flight (until `deadline`), then lists its dead letters. Returns when it
/// drained, and the listing.
pub(super) async fn drainer(
    clock: NodeClock,
    shared: Shared,
    deadline: Instant,
) -> (Option<Instant>, Option<Vec<Listed>>) {
    let client = connect("drainer", &clock, opts(), &shared).await;
    let queue = queue(&client);
    let empty = |s: &QueueStats| s.ready + s.delayed + s.in_flight == 0;
    let mut drained = None;
    while Instant::now() < deadline {
        if let Some(s) = retried(|| queue.stats(), deadline).await
            && empty(&s)
        {
            drained = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = retried(
        || queue.dead_letters(0, 1_000),
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .map(|list| {
        (list.into_iter())
            .map(|d| Listed {
                id: d.id,
                attempts: d.attempts,
                reason: d.reason,
            })
            .collect()
    });
    (drained, listed)
}
