//! The checker of the work-queue family's histories: the backend's log
//! replayed through the rules (`model`), then what the producers, the
//! handlers, the resource and the final listing saw, against it.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    QueueCounts, QueueHistory, QueueOp,
    model::{End, ItemKey, Place, Replay},
};
use crate::history::Violation;

/// Judges a queue workload's history (see [`QueueHistory`]). The log is
/// replayed through the SPI's rules first (the model's checkers:
/// `queue-receive`, `queue-lost`, `queue-reclaim`, `queue-duplicate`,
/// `queue-early`, `queue-dead`, `queue-steal-started`, `queue-settle`,
/// `queue-attempts`, `queue-tokens`, `queue-push`, `queue-leave`,
/// `queue-give-back`, `queue-next-in`); then:
///
/// - `queue-lost` (a): every push a producer saw acknowledged is in the
///   log, and its item ended acked or dead once the queues drained; only
///   a server restart (the store emptied) excuses it, and only for items
///   it found not ended.
/// - `queue-acked-twice` (b): at most one accepted ack per item.
/// - `queue-handler`, `queue-duplicate`, `queue-steal-started` (c, f):
///   every handler ran a delivery the backend made to its consumer, for
///   its item and attempt, started before the handler began; a later
///   handler of the same item follows a delivery that was nacked (a retry)
///   or whose lease ended without a settlement (an expiry, its consumer's
///   presence ending, a leave, a restart) — never one stolen while its
///   handler ran, acked, dead-lettered or given back by its receive's
///   clean-up (which only a receive whose answer never came runs).
/// - `queue-fencing` (d): every write the resource accepted for an item
///   carries a token delivered for that item, started before the write;
///   every accepted ack's token wrote (the work the ack confirms landed).
///   (The resource's own `fencing` checker: tokens never go back.)
/// - `queue-dead` (e): the dead letters listed at the end are exactly the
///   items the rules made dead, each once, with the attempts they had; no
///   item died twice.
/// - `queue-leave`: deliveries are given back by a leave only of a
///   consumer its user asked to leave (or dropped): a live consumer's
///   client never leaves for it.
/// - `queue-drain`: the queues drained within the bound after the heal.
pub fn check_queues(h: &QueueHistory) -> Vec<Violation> {
    let r = Replay::run(&h.events, h.server_now);
    let mut out = r.out.clone();
    let mut v = |c: &'static str, d: String| out.push(Violation::new(c, d));
    check_pushes(h, &r, &mut v);
    for ((q, _, id), t) in &r.items {
        if t.acks.len() > 1 {
            v(
                "queue-acked-twice",
                format!(
                    "{q}#{id} ({}): acks accepted for tokens {:?}",
                    t.name, t.acks
                ),
            );
        }
        if t.deaths > 1 + t.requeues {
            v(
                "queue-dead",
                format!("{q}#{id}: moved to dead {} times", t.deaths),
            );
        }
    }
    for (pair, end, _) in handler_pairs(h, &r, &mut v) {
        match end {
            Some(End::Nacked) => {}
            Some(e) if e.lease_ended() => {}
            Some(End::Stolen) => v(
                "queue-steal-started",
                format!("{pair}: the first delivery was stolen while its handler ran"),
            ),
            other => v(
                "queue-duplicate",
                format!("{pair}: not explained, the first delivery ended {other:?}"),
            ),
        }
    }
    check_writes(h, &r, &mut v);
    check_dead(h, &r, &mut v);
    let asked: HashSet<&str> = h.left.iter().map(String::as_str).collect();
    for e in &h.events {
        if let QueueOp::Leave { consumer, returned } = &e.op
            && *returned > 0
            && !asked.contains(consumer.as_str())
        {
            v(
                "queue-leave",
                format!(
                    "{}: {consumer} left at {:?}, giving back {returned} deliveries; its user never asked it to leave nor dropped it",
                    e.queue, e.at
                ),
            );
        }
    }
    match h.drained {
        Some(at) if at <= h.healed + h.drain_bound => {}
        Some(at) => v(
            "queue-drain",
            format!(
                "drained {:?} after the heal; bound {:?}",
                at - h.healed,
                h.drain_bound
            ),
        ),
        None => v(
            "queue-drain",
            format!("not drained within {:?} of the heal", h.drain_bound),
        ),
    }
    out
}

/// What the history shows (crashes and boundaries are the scenario's to
/// add).
pub fn queue_counts(h: &QueueHistory) -> QueueCounts {
    let r = Replay::run(&h.events, h.server_now);
    let mut c = r.counts;
    c.pushed = h.pushes.len() as u64;
    c.deduplicated = h.pushes.iter().filter(|p| p.duplicate).count() as u64;
    let mut ignore = |_: &'static str, _: String| {};
    let asked: HashSet<&str> = h.left.iter().map(String::as_str).collect();
    for (_, end, first) in handler_pairs(h, &r, &mut ignore) {
        if end.is_some_and(End::lease_ended) {
            c.duplicates += 1;
            if end == Some(End::Left) && !asked.contains(first.as_str()) {
                c.unasked_leave_duplicates += 1;
            }
        }
    }
    for e in &h.events {
        if let QueueOp::Leave { consumer, returned } = &e.op
            && !asked.contains(consumer.as_str())
        {
            c.unasked_leaves += u64::from(*returned);
        }
    }
    let lost: HashSet<ItemKey> = (h.pushes.iter())
        .filter_map(|p| pushed_item(&r, p))
        .filter(|k| r.items[k].place == Place::Lost)
        .collect();
    c.lost_to_restarts = lost.len() as u64;
    if let Some(at) = h.drained {
        c.worst_drain_ms = at.saturating_duration_since(h.healed).as_millis() as u64;
    }
    c
}

/// The item an acknowledged push made (or named, for a duplicate: the
/// workload's dedup ids are its items' names): the latest incarnation's
/// item of that id and name whose push was answered before the
/// acknowledgement came.
fn pushed_item(r: &Replay, p: &super::PushAck) -> Option<ItemKey> {
    (r.items.iter())
        .filter(|((q, _, id), t)| {
            *q == p.queue && *id == p.id && t.pushed <= p.at && t.name == p.name
        })
        .map(|(k, _)| k.clone())
        .max_by_key(|k| k.1)
}

/// (a): every acknowledged push ended acked or dead.
fn check_pushes(h: &QueueHistory, r: &Replay, v: &mut impl FnMut(&'static str, String)) {
    for p in &h.pushes {
        let what = format!(
            "{}'s push of {:?} acknowledged as {}#{} at {:?}",
            p.producer, p.name, p.queue, p.id, p.at
        );
        let Some(key) = pushed_item(r, p) else {
            v("queue-lost", format!("{what}: no such push in the log"));
            continue;
        };
        let t = &r.items[&key];
        match t.place {
            Place::Acked | Place::Dead | Place::Lost => {}
            place => {
                let last = t.deliveries.last().map(|d| (d.token, &d.consumer, d.end));
                v(
                    "queue-lost",
                    format!(
                        "{what}: ended {place:?} after {} deliveries (the last: {last:?})",
                        t.deliveries.len()
                    ),
                );
            }
        }
    }
}

/// Each pair of successive handler starts of one item (by token), named,
/// with how the first one's delivery ended and its consumer; reports
/// handlers that ran no started delivery of theirs (`queue-handler`,
/// `queue-attempts`).
fn handler_pairs(
    h: &QueueHistory,
    r: &Replay,
    v: &mut impl FnMut(&'static str, String),
) -> Vec<(String, Option<End>, String)> {
    let mut by_item: BTreeMap<ItemKey, Vec<u64>> = BTreeMap::new();
    for hd in &h.handlers {
        let name = format!(
            "{}#{} token {} (attempt {}, {} {})",
            hd.queue, hd.id, hd.token, hd.attempt, hd.process, hd.consumer
        );
        let Some(key) = r.tokens.get(&(hd.queue.clone(), hd.token)) else {
            v(
                "queue-handler",
                format!("{name}: no such delivery was made"),
            );
            continue;
        };
        let d = r.items.get(key).and_then(|t| t.delivery(hd.token));
        let Some(d) = d.filter(|_| key.2 == hd.id) else {
            v(
                "queue-handler",
                format!("{name}: its token was delivered for #{}", key.2),
            );
            continue;
        };
        if d.consumer != hd.consumer {
            v(
                "queue-handler",
                format!("{name}: delivered to {}", d.consumer),
            );
        }
        if d.attempt != hd.attempt {
            v(
                "queue-attempts",
                format!("{name}: delivered as attempt {}", d.attempt),
            );
        }
        match d.started {
            Some(s) if s <= hd.start => {}
            s => v(
                "queue-handler",
                format!(
                    "{name}: began at {:?} (made at {:?}); the backend started it at {s:?}",
                    hd.start, d.made
                ),
            ),
        }
        by_item.entry(key.clone()).or_default().push(hd.token);
    }
    let mut out = Vec::new();
    for (key, mut tokens) in by_item {
        tokens.sort();
        let t = &r.items[&key];
        for w in tokens.windows(2) {
            let pair = format!(
                "{}#{}: handlers of tokens {} and {}",
                key.0, key.2, w[0], w[1]
            );
            if w[0] == w[1] {
                v(
                    "queue-handler",
                    format!("{pair}: one delivery handled twice"),
                );
                continue;
            }
            let first = t.delivery(w[0]);
            let end = first.and_then(|d| d.end).map(|e| e.0);
            let end = match end {
                Some(End::Acked | End::DeadLettered) if t.requeues > 0 => Some(End::Nacked),
                e => e,
            };
            let consumer = first.map(|d| d.consumer.clone()).unwrap_or_default();
            out.push((pair, end, consumer));
        }
    }
    out
}

/// (d): accepted writes carry a started delivery's token of their item;
/// every accepted ack's token wrote first.
fn check_writes(h: &QueueHistory, r: &Replay, v: &mut impl FnMut(&'static str, String)) {
    let mut wrote: HashSet<(&str, u64)> = HashSet::new();
    for w in &h.writes {
        let Some((q, id)) = w.key.rsplit_once('/') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        wrote.insert((w.key.as_str(), w.token));
        let what = format!(
            "{q}#{id}: write by {} with token {} accepted at {:?}",
            w.client, w.token, w.at
        );
        let Some(key) = r.tokens.get(&(q.to_owned(), w.token)) else {
            v("queue-fencing", format!("{what}: no such delivery"));
            continue;
        };
        if key.2 != id {
            v(
                "queue-fencing",
                format!("{what}: the token was delivered for #{}", key.2),
            );
            continue;
        }
        let started = r.items[key].delivery(w.token).and_then(|d| d.started);
        if started.is_none_or(|s| s > w.at) {
            v(
                "queue-fencing",
                format!("{what}: the delivery was started at {started:?}"),
            );
        }
    }
    let keys: HashMap<(String, u64), String> = (r.items.keys())
        .map(|(q, _, id)| ((q.clone(), *id), super::item_key(q, *id)))
        .collect();
    for ((q, _, id), t) in &r.items {
        for &(token, at) in &t.acks {
            let key = &keys[&(q.clone(), *id)];
            if !wrote.contains(&(key.as_str(), token)) {
                v(
                    "queue-fencing",
                    format!(
                        "{q}#{id}: ack of token {token} accepted at {at:?}; that token wrote nothing"
                    ),
                );
            }
        }
    }
}

/// (e): the final listing is what the rules made dead, each once.
fn check_dead(h: &QueueHistory, r: &Replay, v: &mut impl FnMut(&'static str, String)) {
    for (q, listed) in &h.dead {
        let Some(listed) = listed else {
            v(
                "queue-dead",
                format!("{q}: the dead letters could not be listed"),
            );
            continue;
        };
        let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
        for l in listed {
            if seen.insert(l.id, l.attempts).is_some() {
                v("queue-dead", format!("{q}#{}: listed twice", l.id));
            }
        }
        let model: BTreeMap<u64, u32> = (r.items.iter())
            .filter(|((kq, epoch, _), t)| kq == q && *epoch == r.epoch && t.place == Place::Dead)
            .map(|((_, _, id), t)| (*id, t.attempts))
            .collect();
        for (id, attempts) in &model {
            match seen.get(id) {
                None => v(
                    "queue-dead",
                    format!("{q}#{id}: dead by the rules (after {attempts} attempts), not listed"),
                ),
                Some(a) if a != attempts => v(
                    "queue-attempts",
                    format!("{q}#{id}: listed dead after {a} attempts; it had {attempts}"),
                ),
                Some(_) => {}
            }
        }
        for id in seen.keys().filter(|id| !model.contains_key(id)) {
            let place = (r.items.get(&(q.clone(), r.epoch, *id))).map(|t| t.place);
            v(
                "queue-dead",
                format!("{q}#{id}: listed dead; by the rules it is {place:?}"),
            );
        }
    }
}
