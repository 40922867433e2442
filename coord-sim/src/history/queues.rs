//! The work-queue family's histories: what the backend answered to every
//! queue call that changes a queue (pushes, receives, extends, acks, nacks,
//! dead letters, heartbeats, leaves, requeues), in its order, with the
//! server's own clock reading, as the sim server logs them; the pushes the
//! producers saw acknowledged; the handlers as the consumers ran them; the
//! fenced resource's writes; the dead letters listed at the end.
//! [`check_queues`] judges them by replaying the log through a model of the
//! SPI's rules (`model`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{
    Instant,
    spi::{Nack, Pushed},
};

mod check;
mod model;
#[cfg(test)]
mod tests;

pub use check::{check_queues, queue_counts};

/// One queue call the backend answered, with the (global) instant it
/// answered and the server clock's reading then (the instant its step ran
/// at: deadlines are on that clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEvent {
    /// The queue (empty for a restart).
    pub queue: String,
    /// Global simulated time.
    pub at: Instant,
    /// The server's clock.
    pub now: Instant,
    /// The call and its answer.
    pub op: QueueOp,
}

/// A queue call and what the backend answered (tokens as numbers, holders
/// as their text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOp {
    /// `push`: each item and its reply.
    Push(Vec<PushedItem>),
    /// `receive`.
    Receive {
        /// The consumer.
        consumer: String,
        /// At most this many.
        max: u32,
        /// Stealing asked for.
        steal: bool,
        /// The deliveries' lease.
        ttl: Duration,
        /// The consumer's presence lease.
        presence_ttl: Duration,
        /// The receive's id (0: none), which a give-back names.
        receive_id: u64,
        /// What was delivered, in order.
        deliveries: Vec<Delivered>,
        /// With nothing delivered: when to look again.
        next_in: Option<Duration>,
    },
    /// `extend`: `done` if it answered `Done`.
    Extend {
        /// The item.
        id: u64,
        /// The token named.
        token: u64,
        /// The new lease.
        ttl: Duration,
        /// Answered `Done`.
        done: bool,
    },
    /// `ack`.
    Ack {
        /// The item.
        id: u64,
        /// The token named.
        token: u64,
        /// Answered `Done`.
        done: bool,
    },
    /// `nack`.
    Nack {
        /// The item.
        id: u64,
        /// The token named.
        token: u64,
        /// The retry delay asked for.
        retry_in: Duration,
        /// The answer.
        reply: Nack,
    },
    /// `dead_letter`.
    DeadLetter {
        /// The item.
        id: u64,
        /// The token named.
        token: u64,
        /// Answered `Done`.
        done: bool,
    },
    /// `heartbeat`.
    Heartbeat {
        /// The consumer.
        consumer: String,
        /// Its presence lease.
        ttl: Duration,
    },
    /// `leave`: how many deliveries it returned.
    Leave {
        /// The consumer.
        consumer: String,
        /// The answer.
        returned: u32,
    },
    /// `give_back`: how many deliveries of the receive it returned.
    GiveBack {
        /// The consumer.
        consumer: String,
        /// The receive named.
        receive_id: u64,
        /// The answer.
        returned: u32,
    },
    /// `requeue_dead`.
    RequeueDead {
        /// The item.
        id: u64,
        /// Answered `true`.
        done: bool,
    },
    /// `remove_dead`.
    RemoveDead {
        /// The item.
        id: u64,
        /// Answered `true`.
        done: bool,
    },
    /// The server restarted with an empty store (every queue forgotten).
    Restart,
}

/// One item of a push, as sent, and its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedItem {
    /// The payload as text (the workload's item name).
    pub name: String,
    /// Its priority.
    pub priority: u8,
    /// Its delay.
    pub delay: Option<Duration>,
    /// Its attempts.
    pub max_attempts: u32,
    /// Its dedup key and window.
    pub dedup: Option<(String, Duration)>,
    /// The reply.
    pub reply: Pushed,
}

/// One delivery of a receive's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The item.
    pub id: u64,
    /// Its token.
    pub token: u64,
    /// The attempt it is (or will be once started).
    pub attempt: u32,
    /// The item's attempts.
    pub max_attempts: u32,
    /// Started (the first of a receive) or prefetched.
    pub started: bool,
    /// Taken from another consumer's prefetch.
    pub stolen: bool,
    /// The item's priority.
    pub priority: u8,
}

/// The backend's queue events, in its order. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct QueueLog {
    inner: Arc<Mutex<Vec<QueueEvent>>>,
}

impl QueueLog {
    /// An empty log.
    pub fn new() -> QueueLog {
        QueueLog::default()
    }

    /// Appends an event.
    pub fn push(&self, e: QueueEvent) {
        self.inner.lock().unwrap().push(e);
    }

    /// Whether nothing was logged yet.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().unwrap().is_empty()
    }

    /// The events so far.
    pub fn events(&self) -> Vec<QueueEvent> {
        self.inner.lock().unwrap().clone()
    }
}

/// A push a producer saw acknowledged (its call returned `Ok`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAck {
    /// The producer (its process's name).
    pub producer: String,
    /// The queue.
    pub queue: String,
    /// The item's name (its payload).
    pub name: String,
    /// The id the push returned.
    pub id: u64,
    /// Whether it was a duplicate of an earlier push (by its dedup id).
    pub duplicate: bool,
    /// When the reply came.
    pub at: Instant,
}

/// Acknowledged pushes. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct PushAcks {
    inner: Arc<Mutex<Vec<PushAck>>>,
}

impl PushAcks {
    /// None yet.
    pub fn new() -> PushAcks {
        PushAcks::default()
    }

    /// A push was acknowledged.
    pub fn push(&self, a: PushAck) {
        self.inner.lock().unwrap().push(a);
    }

    /// Every acknowledged push.
    pub fn all(&self) -> Vec<PushAck> {
        self.inner.lock().unwrap().clone()
    }
}

/// How a handler ended, as its consumer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandlerEnd {
    /// It succeeded (an ack follows).
    Succeeded,
    /// It failed, to be retried (a nack follows).
    Failed,
    /// It failed for good (a dead letter follows).
    FailedForGood,
    /// Its lost signal fired, or the resource refused its write (a newer
    /// token wrote): it stopped.
    Lost,
    /// Its process was killed.
    Killed,
}

/// One handler run, as its consumer ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// The consumer's process.
    pub process: String,
    /// The consumer (its holder's text).
    pub consumer: String,
    /// The queue.
    pub queue: String,
    /// The item.
    pub id: u64,
    /// The delivery's token.
    pub token: u64,
    /// The attempt it was told.
    pub attempt: u32,
    /// When it began.
    pub start: Instant,
    /// When it ended (or its process was killed).
    pub end: Option<Instant>,
    /// How.
    pub ended: Option<HandlerEnd>,
}

/// Handlers as their consumers ran them. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Handlers {
    inner: Arc<Mutex<Vec<Handler>>>,
}

impl Handlers {
    /// None yet.
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// A handler began; its index.
    pub fn start(&self, h: Handler) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(h);
        v.len() - 1
    }

    /// It ended (the first end recorded counts).
    pub fn end(&self, idx: usize, at: Instant, how: HandlerEnd) {
        let mut v = self.inner.lock().unwrap();
        if v[idx].end.is_none() {
            v[idx].end = Some(at);
            v[idx].ended = Some(how);
        }
    }

    /// Process `process` was killed at `at`: its running handlers ended.
    pub fn killed(&self, process: &str, at: Instant) {
        let mut v = self.inner.lock().unwrap();
        for h in v
            .iter_mut()
            .filter(|h| h.process == process && h.end.is_none())
        {
            h.end = Some(at);
            h.ended = Some(HandlerEnd::Killed);
        }
    }

    /// Every handler.
    pub fn all(&self) -> Vec<Handler> {
        self.inner.lock().unwrap().clone()
    }
}

/// A dead letter as listed at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The item.
    pub id: u64,
    /// The attempts it had.
    pub attempts: u32,
    /// Why it died.
    pub reason: String,
}

/// What [`check_queues`] judges.
#[derive(Debug, Clone)]
pub struct QueueHistory {
    /// The backend's log.
    pub events: Vec<QueueEvent>,
    /// The server clock's reading when the history was taken: what is due
    /// by then has happened (a sweep at the end).
    pub server_now: Instant,
    /// The pushes producers saw acknowledged.
    pub pushes: Vec<PushAck>,
    /// The handlers.
    pub handlers: Vec<Handler>,
    /// The consumers (their holders' text) the workload asked to leave,
    /// or dropped: a leave of any other consumer was not the user's.
    pub left: Vec<String>,
    /// The fenced resource's accepted writes (keys from [`item_key`];
    /// others are ignored).
    pub writes: Vec<crate::history::Write>,
    /// Per queue, its dead letters as listed once drained (`None`: the
    /// listing failed).
    pub dead: Vec<(String, Option<Vec<Listed>>)>,
    /// When the faults healed.
    pub healed: Instant,
    /// When every queue was seen drained (nothing ready, delayed or in
    /// flight), if it was.
    pub drained: Option<Instant>,
    /// How long after the heal the queues must have drained.
    pub drain_bound: Duration,
}

/// The resource key a handler of item `id` of `queue` writes to.
pub fn item_key(queue: &str, id: u64) -> String {
    format!("{queue}/{id}")
}

/// What the queues did, over one run or a sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Pushes acknowledged to producers (duplicates included).
    pub pushed: u64,
    /// Of which answered as duplicates by their dedup id.
    pub deduplicated: u64,
    /// Deliveries made.
    pub delivered: u64,
    /// Of which of an item started before.
    pub redelivered: u64,
    /// Of which stolen from a live consumer's prefetch.
    pub stolen: u64,
    /// Items acked.
    pub acked: u64,
    /// Nacks that requeued.
    pub nacked: u64,
    /// Items moved to dead.
    pub dead: u64,
    /// Deliveries returned at their lease's deadline.
    pub expired: u64,
    /// Deliveries returned because their consumer's presence ended.
    pub reclaimed: u64,
    /// Of which before their own lease's deadline (work stealing from the
    /// dead).
    pub reclaimed_early: u64,
    /// Settlements and extends refused as stale.
    pub stale: u64,
    /// Second handler starts of an item after a lease ended (expiry, a
    /// dead consumer, a leave): the duplicates at-least-once allows.
    pub duplicates: u64,
    /// Acknowledged pushes lost with a server restart.
    pub lost_to_restarts: u64,
    /// Deliveries given back by leaves of consumers nobody asked to leave
    /// (`queue-leave`).
    pub unasked_leaves: u64,
    /// Of the duplicates, those after such a leave.
    pub unasked_leave_duplicates: u64,
    /// Processes killed at a step boundary.
    pub crashes: u64,
    /// The step boundaries crashed at, one bit each.
    pub boundaries: u64,
    /// The longest from a presence's end to the next delivery of an item
    /// it gave back, in ms (server clock).
    pub worst_reclaim_ms: u64,
    /// The longest the queues took to drain after the heal, in ms.
    pub worst_drain_ms: u64,
    /// Deliveries given back by their receive's clean-up (its answer never
    /// came: decision 0044).
    pub given_back: u64,
}

impl QueueCounts {
    /// How many numbers [`to_vec`](Self::to_vec) gives.
    pub const LEN: usize = 21;

    /// The counts as numbers, for a report line.
    pub fn to_vec(&self) -> Vec<u64> {
        vec![
            self.pushed,
            self.deduplicated,
            self.delivered,
            self.redelivered,
            self.stolen,
            self.acked,
            self.nacked,
            self.dead,
            self.expired,
            self.reclaimed,
            self.reclaimed_early,
            self.stale,
            self.duplicates,
            self.lost_to_restarts,
            self.unasked_leaves,
            self.unasked_leave_duplicates,
            self.crashes,
            self.boundaries,
            self.worst_reclaim_ms,
            self.worst_drain_ms,
            self.given_back,
        ]
    }

    /// The counts from [`to_vec`](Self::to_vec)'s numbers.
    pub fn from_slice(f: &[u64]) -> QueueCounts {
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        QueueCounts {
            pushed: g(0),
            deduplicated: g(1),
            delivered: g(2),
            redelivered: g(3),
            stolen: g(4),
            acked: g(5),
            nacked: g(6),
            dead: g(7),
            expired: g(8),
            reclaimed: g(9),
            reclaimed_early: g(10),
            stale: g(11),
            duplicates: g(12),
            lost_to_restarts: g(13),
            unasked_leaves: g(14),
            unasked_leave_duplicates: g(15),
            crashes: g(16),
            boundaries: g(17),
            worst_reclaim_ms: g(18),
            worst_drain_ms: g(19),
            given_back: g(20),
        }
    }

    /// Adds `o` (the boundaries' union, the worst of the worst).
    pub fn add(&mut self, o: &QueueCounts) {
        let mut mine = self.to_vec();
        for (m, x) in mine.iter_mut().zip(o.to_vec()).take(17) {
            *m += x;
        }
        let mut sum = QueueCounts::from_slice(&mine);
        sum.boundaries = self.boundaries | o.boundaries;
        sum.worst_reclaim_ms = self.worst_reclaim_ms.max(o.worst_reclaim_ms);
        sum.worst_drain_ms = self.worst_drain_ms.max(o.worst_drain_ms);
        sum.given_back = self.given_back + o.given_back;
        *self = sum;
    }
}
