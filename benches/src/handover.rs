//! `redis_load`'s fair-handover breakdown (`ONLY=fair BREAKDOWN=1`): where
//! one handover of a contended fair lock goes. Timestamps from three
//! sources on one clock: the `coord.backend` spans of the lock's calls
//! (start, end, outcome), a raw pub/sub connection of the same process
//! subscribed to the key's channel (when a release's `released` arrives),
//! and the bench's own tasks (when `lock()` returned, `release()` began).
//! Spans are only made when something listens at debug level, so this mode
//! costs a little more per call than the plain rounds.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};

/// One timestamped event of a handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A `release` call left (span start).
    ReleaseSent,
    /// Its answer came (span end).
    ReleaseAnswered,
    /// A `released` (or `next <holder>`) message reached the raw subscriber.
    Published,
    /// An `acquire_queued` call left.
    QueuedSent,
    /// An `acquire_queued` answered granted.
    Granted,
    /// An `acquire_queued` answered busy.
    Refused,
    /// `lock()` returned to the bench task.
    Returned,
    /// A `freed` message (every waiter looks again) reached the raw
    /// subscriber.
    Freed,
}

/// The events of a run, in no particular order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<(Instant, Mark)>>>);

impl Log {
    /// Records `mark` now.
    pub fn mark(&self, mark: Mark) {
        self.0.lock().unwrap().push((Instant::now(), mark));
    }

    fn push(&self, at: Instant, mark: Mark) {
        self.0.lock().unwrap().push((at, mark));
    }

    /// Empties the log.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// The median of each part of a handover, printed: for each grant, the
    /// release that preceded it, the first `released` after that release
    /// left, the granted attempt and the return to the task.
    pub fn report(&self) {
        let mut ev = self.0.lock().unwrap().clone();
        ev.sort_by_key(|(t, _)| *t);
        let find = |from: usize, m: Mark| (from..ev.len()).find(|&i| ev[i].1 == m);
        let mut parts: [Vec<Duration>; 7] = Default::default();
        let (mut refused, mut freed) = (0usize, 0usize);
        let mut handovers = 0usize;
        let mut i = 0;
        while let Some(r) = find(i, Mark::ReleaseSent) {
            let Some(g) = find(r, Mark::Granted) else {
                break;
            };
            // The attempt that was granted: the last one sent before it.
            let Some(q) = (r..g).rev().find(|&j| ev[j].1 == Mark::QueuedSent) else {
                i = r + 1;
                continue;
            };
            let (Some(a), Some(p), Some(ret), Some(next)) = (
                find(r, Mark::ReleaseAnswered),
                find(r, Mark::Published),
                find(g, Mark::Returned),
                find(g, Mark::ReleaseSent),
            ) else {
                break;
            };
            let t = |k: usize| ev[k].0;
            parts[0].push(t(a) - t(r));
            parts[1].push(t(p).saturating_duration_since(t(r)));
            parts[2].push(t(q).saturating_duration_since(t(p)));
            parts[3].push(t(g) - t(q));
            parts[4].push(t(ret) - t(g));
            parts[5].push(t(next) - t(ret));
            parts[6].push(t(next) - t(r));
            refused += (r..next).filter(|&j| ev[j].1 == Mark::Refused).count();
            freed += (r..next).filter(|&j| ev[j].1 == Mark::Freed).count();
            handovers += 1;
            i = next;
        }
        let names = [
            "release round trip (sent -> answered)",
            "release sent -> `released` at a raw subscriber of this process",
            "`released` at the raw subscriber -> the head's attempt sent (hub, wake, wait loop)",
            "head's attempt round trip (sent -> granted)",
            "granted -> lock() returned to the task (guard, lease start)",
            "lock() returned -> its release sent (bench task)",
            "whole handover (release sent -> next release sent)",
        ];
        println!("fair handover breakdown, {handovers} handovers, medians (p90):");
        for (name, mut v) in names.iter().zip(parts) {
            v.sort();
            if v.is_empty() {
                continue;
            }
            let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
            println!("- {name}: {:.0} µs ({:.0} µs)", q(0.5), q(0.9));
        }
        println!(
            "- refused attempts per handover (the releaser queueing again, misdirected wake-ups): {:.2}",
            refused as f64 / handovers.max(1) as f64
        );
        println!(
            "- `freed` (every waiter looks again) per handover: {:.2}",
            freed as f64 / handovers.max(1) as f64
        );
    }
}

/// A tracing layer that logs the `coord.backend` spans of `key`'s calls.
struct Spans {
    log: Log,
    key: String,
}

#[derive(Default)]
struct Fields {
    op: String,
    key: String,
    outcome: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        match field.name() {
            "op" => self.op = value,
            "key" => self.key = value,
            "outcome" => self.outcome = value,
            _ => {}
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "coord.backend" {
            return;
        }
        let mut f = Fields::default();
        attrs.record(&mut f);
        if !f.key.contains(&self.key) {
            return;
        }
        match f.op.as_str() {
            "release" => self.log.mark(Mark::ReleaseSent),
            "acquire_queued" => self.log.mark(Mark::QueuedSent),
            _ => return,
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(f) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(f);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let now = Instant::now();
        if let Some(span) = ctx.span(&id)
            && let Some(f) = span.extensions().get::<Fields>()
        {
            let mark = match (f.op.as_str(), f.outcome.as_str()) {
                ("release", _) => Mark::ReleaseAnswered,
                ("acquire_queued", "granted") => Mark::Granted,
                ("acquire_queued", _) => Mark::Refused,
                _ => return,
            };
            self.log.push(now, mark);
        }
    }
}

/// Installs the span layer for `key`'s calls and a raw subscriber to
/// `url`'s channels that name `key`; the log they both write.
pub async fn start(url: &str, key: &str) -> Log {
    let log = Log::default();
    let layer = Spans {
        log: log.clone(),
        key: key.to_owned(),
    }
    .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG);
    tracing_subscriber::registry().with(layer).init();
    let client = redis::Client::open(url).expect("the server's url");
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .expect("a pub/sub connection");
    pubsub
        .psubscribe(format!("*{key}*"))
        .await
        .expect("psubscribe");
    let sub_log = log.clone();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut stream = pubsub.into_on_message();
        while let Some(msg) = stream.next().await {
            // (A lease granted from the queue names its next holder.)
            match msg.get_payload_bytes() {
                b"released" => sub_log.mark(Mark::Published),
                m if m.starts_with(b"next ") => sub_log.mark(Mark::Published),
                b"freed" => sub_log.mark(Mark::Freed),
                _ => {}
            }
        }
    });
    log
}
