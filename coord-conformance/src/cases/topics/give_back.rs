//! A read whose answer never came (its reply lost, or the call cancelled
//! after it was applied) gives back at once what it delivered, and only
//! that (decision 0044): another subscriber of the subscription gets the
//! events long before their 30 s leases end, as their first attempt, and
//! the subscription's cursor does not move back; the SPI's `give_back`
//! names one read and touches no delivery of another read, of another
//! consumer, or one already settled or expired. A `next` cancelled while
//! it refuses an event leaves the dead-letter to the background, not the
//! event to its lease. A seek cancelled (or failed) while it gives back
//! what a batch read buffered sends the give-backs left in the background,
//! not the events to their leases; so does a leave or an unsubscribe with
//! what the subscriber held, not leave it to the subscriber's presence. An
//! ack, nack or dead-letter cancelled (or failed) is sent again in the
//! background as it was asked (decision 0052), not turned into a give-back
//! without delay.

use super::*;
use crate::cases::queues::{
    PROMPTLY, crashed,
    give_back::{cancel_held, cancel_when_held, unanswered},
};
use coord_api::spi::SubscriptionStats;

/// The lease (and presence) of every delivery here: far longer than
/// [`PROMPTLY`], so an event left to it is not back in time.
const LONG: Duration = Duration::from_secs(30);

/// Subscription `s` of `topic`'s counts through the SPI.
async fn counts(backend: &DynBackend, topic: &str) -> SubscriptionStats {
    spi(backend).stats(&key(topic), &key("s")).await.unwrap()
}

/// Waits (bounded by [`PROMPTLY`]) until subscription `s` of `topic`'s
/// counts satisfy `cond`; panics naming `what` with the last counts
/// otherwise.
async fn counts_when(
    backend: &DynBackend,
    topic: &str,
    what: &str,
    cond: impl Fn(&SubscriptionStats) -> bool,
) {
    let seen = eventually(PROMPTLY, || async {
        let s = counts(backend, topic).await;
        cond(&s).then_some(s)
    })
    .await;
    if seen.is_none() {
        let last = counts(backend, topic).await;
        panic!("{what}: not within {PROMPTLY:?}: {last:?}");
    }
}

/// A subscriber of `client` that read offsets 1 to 3 of [`T`] in one
/// batch (under 30 s leases and presence) and acked the first: offsets 2
/// and 3 are buffered in it, leased to it, not handed out.
async fn two_buffered(client: &Client, publisher: &Client) -> Subscriber<u64> {
    let mut sub = (numbers(client).subscriber("s").start(Start::Earliest))
        .batch(3)
        .ttl(LONG)
        .presence_ttl(LONG);
    sub.subscribe().await.unwrap();
    numbers(publisher).publish_many(&[1, 2, 3]).await.unwrap();
    let d1 = event(&mut sub, "the first").await;
    assert_eq!(d1.offset(), 1);
    within(d1.ack(), "ack 1").await;
    sub
}

/// Offsets 2 and 3 are due again at once (long before their 30 s leases
/// end), the subscription's cursor still past them, and another
/// subscriber gets them.
async fn two_and_three_back(backend: &DynBackend, other: &Client, what: &str) {
    counts_when(backend, T, what, |s| s.in_flight == 0 && s.retrying == 2).await;
    assert_eq!(counts(backend, T).await.cursor, 3);
    let mut other = numbers(other).subscriber("s").ttl(LONG);
    for o in 2..=3 {
        let d = event(&mut other, &format!("{what}: offset {o}")).await;
        assert_eq!(d.offset(), o, "{what}");
        within(d.ack(), "ack").await;
    }
}

cases! {
    family: "topic", needs: [Need::Topics];

/// A read (a batch of three) whose reply is lost after the backend
/// delivered: the three events are given back at once, not after their
/// 30 s leases (nor the reader's 30 s presence); another subscriber gets
/// them, each as attempt 1, and the cursor stayed past them.
pub async fn topic_read_whose_reply_is_lost_gives_back_its_deliveries(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let mut lost = (numbers(&a).subscriber("s").start(Start::Earliest))
        .batch(3)
        .ttl(LONG)
        .presence_ttl(LONG);
    lost.subscribe().await.unwrap();
    for v in 1..=3 {
        numbers(&b).publish(&v).await.unwrap();
    }
    switch.losing_replies();
    let failed = lost.next().await;
    assert!(failed.is_err(), "the read's reply was lost: {failed:?}");
    switch.on();
    let mut other = numbers(&b).subscriber("s").ttl(LONG);
    for o in 1..=3 {
        let d = event(&mut other, &format!("offset {o}, given back")).await;
        assert_eq!((d.offset(), d.attempt()), (o, 1), "offset {o}");
        within(d.ack(), "ack").await;
    }
    let s = counts(&ctx.backend().await, T).await;
    assert_eq!((s.cursor, s.in_flight, s.retrying), (3, 0, 0), "{s:?}");
}

/// A read cancelled while its reply was on its way (the backend applied
/// it; the reply comes 3 s late): what it delivered is given back at once,
/// and another subscriber gets it as attempt 1. The same for a cancelled
/// `ack_and_next`: its ack counts, and the next event it was handed is
/// given back.
pub async fn topic_cancelled_read_gives_back_its_delivery(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let backend = ctx.backend().await;
    let mut cancelled = (numbers(&a).subscriber("s").start(Start::Earliest))
        .ttl(LONG)
        .presence_ttl(LONG);
    cancelled.subscribe().await.unwrap();
    for v in 1..=3 {
        numbers(&b).publish(&v).await.unwrap();
    }
    switch.late_replies("read", ms(3000));
    let gave_up = timeout(ms(300), cancelled.next()).await;
    assert!(gave_up.is_err(), "cancelled while its reply was late");
    switch.late_replies("read", Duration::ZERO);
    counts_when(&backend, T, "offset 1 given back", |s| s.retrying == 1 && s.in_flight == 0).await;
    let mut other = numbers(&b).subscriber("s").ttl(LONG);
    let d = event(&mut other, "offset 1, given back").await;
    assert_eq!((d.offset(), d.attempt()), (1, 1));
    within(d.ack(), "ack").await;
    let first = event(&mut cancelled, "the next event").await;
    assert_eq!((first.offset(), first.attempt()), (2, 1));
    switch.late_replies("ack_and_read", ms(3000));
    let gave_up = timeout(ms(300), cancelled.ack_and_next(first)).await;
    assert!(gave_up.is_err(), "cancelled while its reply was late");
    switch.late_replies("ack_and_read", Duration::ZERO);
    counts_when(&backend, T, "offset 3 given back", |s| s.retrying == 1 && s.in_flight == 0).await;
    let d = event(&mut other, "offset 3, given back").await;
    assert_eq!((d.offset(), d.attempt()), (3, 1));
    within(d.ack(), "ack").await;
    let s = counts(&backend, T).await;
    assert_eq!((s.cursor, s.in_flight, s.retrying), (3, 0, 0), "the ack counted: {s:?}");
}

/// `give_back` through the SPI returns exactly what the named read
/// delivered to the named consumer and still holds: not a later read's
/// delivery of the same consumer, nor another consumer's, nor one acked,
/// nor one that expired and went to another consumer; an id of 0 gives
/// nothing back. What it returns is due again at once, its attempt taken
/// back, and the cursor stays.
pub async fn topic_give_back_returns_only_its_reads_deliveries(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.client("b").await;
    let backend = ctx.backend().await;
    let (ts, tk, sk, c) = (spi(&backend), key(T), key("s"), crashed());
    assert!(ts.subscribe(&tk, &sk, Start::Earliest).await.unwrap());
    for v in 1..=4 {
        numbers(&b).publish(&v).await.unwrap();
    }
    let other = HolderId::new(InstanceId::new("other").expect("valid instance id"));
    let opts = ReadOptions::new(LONG, LONG, 1);
    let (r1, r2, r3) = (0x5eed_0001, 0x5eed_0002, 0x5eed_0003);
    let got = |r: ReadOptions, holder: &HolderId| {
        let (holder, tk, sk) = (holder.clone(), tk.clone(), sk.clone());
        async move {
            let read = ts.read(&tk, &sk, &holder, r).await.unwrap().unwrap();
            let view: Vec<(u64, u32)> = (read.events.iter())
                .map(|d| (d.event.offset, d.attempt))
                .collect();
            (view, read.events)
        }
    };
    // r1: offsets 1 and 2; r2: offset 3; another consumer's read with
    // r1's id: offset 4.
    let (one, ones) = got(ReadOptions::new(LONG, LONG, 2).read_id(r1), &c).await;
    assert_eq!(one, [(1, 1), (2, 1)]);
    assert_eq!(got(opts.read_id(r2), &c).await.0, [(3, 1)]);
    assert_eq!(got(opts.read_id(r1), &other).await.0, [(4, 1)]);
    assert_eq!(ts.give_back(&tk, &sk, &c, 0).await.unwrap(), 0, "id 0 names none");
    assert_eq!(ts.give_back(&tk, &sk, &c, r3).await.unwrap(), 0, "no such read");
    let acked = ts.ack(&tk, &sk, 1, ones[0].token).await.unwrap();
    assert_eq!(acked, Settle::Done);
    assert_eq!(ts.give_back(&tk, &sk, &c, r1).await.unwrap(), 1, "offset 2 only");
    let s = counts(&backend, T).await;
    assert_eq!((s.cursor, s.in_flight, s.retrying), (4, 2, 1), "{s:?}");
    assert_eq!(ts.give_back(&tk, &sk, &c, r1).await.unwrap(), 0, "done already");
    // Offset 3 (r2's) given back: due again at once, as attempt 1.
    assert_eq!(ts.give_back(&tk, &sk, &c, r2).await.unwrap(), 1, "offset 3");
    let again = got(ReadOptions::new(LONG, LONG, 2).read_id(r3), &other).await.0;
    assert_eq!(again, [(2, 1), (3, 1)], "as if never delivered");
    // Offset 5 expired under an r1 of c (a 50 ms lease) and went to
    // another consumer: r1's give-back leaves it.
    numbers(&b).publish(&5).await.unwrap();
    let short = ReadOptions::new(ms(50), LONG, 1).read_id(r1);
    assert_eq!(got(short, &c).await.0, [(5, 1)]);
    sleep(ms(100)).await;
    assert_eq!(got(opts.read_id(r3), &other).await.0, [(5, 2)]);
    assert_eq!(ts.give_back(&tk, &sk, &c, r1).await.unwrap(), 0, "not c's any more");
    let s = counts(&backend, T).await;
    assert_eq!((s.cursor, s.in_flight, s.retrying), (5, 4, 0), "all four with `other`: {s:?}");
    assert_eq!(ts.leave(&tk, &sk, &other).await.unwrap(), 4);
}

/// A `next` cancelled while it refuses a buffered event that does not
/// decode (its start applied, the dead-letter held on its way, never
/// applied): the dead-letter is sent in the background, and the event is
/// in the subscription's dead events at once, not leased to nobody until
/// its 30 s lease ends (then delivered again).
pub async fn topic_cancelled_next_still_dead_letters_its_refused_event(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let backend = ctx.backend().await;
    let nums = |c: &Client| c.topic::<u64>(T).kind("n", 1);
    let mut sub = (nums(&a).subscriber("s").start(Start::Earliest))
        .batch(2)
        .ttl(LONG)
        .presence_ttl(LONG);
    sub.subscribe().await.unwrap();
    nums(&b).publish(&1).await.unwrap();
    let texts = b.topic::<String>(T).kind("n", 1);
    texts.publish(&"not a number".to_owned()).await.unwrap();
    let d1 = event(&mut sub, "the first").await;
    assert_eq!(d1.offset(), 1);
    cancel_when_held(sub.next(), &switch, "extend", "dead_letter").await;
    counts_when(&backend, T, "offset 2 dead", |s| s.dead == 1 && s.in_flight == 1).await;
    let dead = spi(&backend).dead_events(&key(T), &key("s"), 0, 10).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.offset).collect::<Vec<_>>(), [2]);
    assert!(dead[0].reason.contains("decode"), "{:?}", dead[0].reason);
    within(d1.ack(), "ack").await;
}

/// A seek cancelled while it gives back what a batch read buffered (the
/// first give-back, offset 2's nack, held on its way, never applied):
/// offsets 2 and 3 are given back in the background, due again at once
/// for any subscriber, not leased to a subscriber that no longer knows of
/// them until their 30 s leases end.
pub async fn topic_cancelled_seek_gives_back_what_it_buffered(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let backend = ctx.backend().await;
    let mut sub = two_buffered(&a, &b).await;
    cancel_held(sub.seek(Start::Offset(1)), &switch, "nack").await;
    two_and_three_back(&backend, &b, "after a cancelled seek").await;
}

/// A seek whose give-backs fail without an answer (the backend cut off;
/// the seek itself fails then too): they are sent again in the
/// background, and once the backend is back offsets 2 and 3 are due again
/// at once, not after their 30 s leases.
pub async fn topic_failed_seek_gives_back_what_it_buffered(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let backend = ctx.backend().await;
    let mut sub = two_buffered(&a, &b).await;
    switch.off();
    let failed = sub.seek(Start::Offset(1)).await;
    assert!(failed.is_err(), "cut off: {failed:?}");
    switch.on();
    two_and_three_back(&backend, &b, "after a failed seek").await;
}

/// A subscriber's leave cancelled on its way (held, never applied), then
/// another's that failed (the backend cut off): each is sent again in the
/// background, and the event buffered in each is due again at once for
/// another subscriber, not left with a subscriber that is gone until its
/// 30 s presence ends. The same for an unsubscribe cancelled on its way:
/// the subscription stays, and what the subscriber held is given back.
pub async fn topic_cancelled_or_failed_leave_gives_back_what_it_held(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let backend = ctx.backend().await;
    let mut other = numbers(&b).subscriber("s").start(Start::Earliest).ttl(LONG);
    other.subscribe().await.unwrap();
    for (how, held) in [("cancelled", "leave"), ("failed", "leave"), ("cancelled", "unsubscribe")] {
        let what = format!("{how} {held}");
        let offsets = numbers(&b).publish_many(&[1, 2]).await.unwrap();
        let mut sub = (numbers(&a).subscriber("s").batch(2))
            .ttl(LONG)
            .presence_ttl(LONG);
        let d = event(&mut sub, &format!("{what}: the first")).await;
        assert_eq!(d.offset(), offsets[0], "{what}");
        within(d.ack(), "ack").await;
        match (how, held) {
            ("failed", _) => {
                switch.off();
                let left = sub.leave().await;
                assert!(left.is_err(), "cut off: {left:?}");
                switch.on();
            }
            (_, "leave") => cancel_held(sub.leave(), &switch, "leave").await,
            _ => cancel_held(sub.unsubscribe(), &switch, "unsubscribe").await,
        }
        let back = |s: &SubscriptionStats| s.in_flight == 0 && s.retrying == 1;
        counts_when(&backend, T, &format!("after a {what}"), back).await;
        let d = event(&mut other, &format!("{what}: the second")).await;
        assert_eq!(d.offset(), offsets[1], "{what}");
        within(d.ack(), "ack").await;
    }
}

/// An ack, a nack, a dead-letter and an `ack_and_next`, each cancelled on
/// its way (held, never applied), then each failed (the backend cut off):
/// each is sent again in the background as it was asked, not turned into
/// a give-back without delay (which delivered a processed event again,
/// skipped the back-off, lost the dead-letter). The acked event is done;
/// the nacked one waits out the subscriber's 30 s back-off (another
/// subscriber gets nothing); the dead-lettered one is dead with its
/// reason.
pub async fn topic_cancelled_or_failed_settle_is_sent_again_as_asked(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let backend = ctx.backend().await;
    for failed in [false, true] {
        let how = if failed { "failed" } else { "cancelled" };
        for step in ["ack", "nack", "dead_letter", "ack_and_next"] {
            let (what, topic) = (format!("{how} {step}"), format!("{how}-{step}"));
            let mut sub = (a.topic::<u64>(&topic).subscriber("s").start(Start::Earliest))
                .ttl(LONG)
                .presence_ttl(LONG)
                .backoff(LONG, LONG);
            sub.subscribe().await.unwrap();
            b.topic::<u64>(&topic).publish(&1).await.unwrap();
            let d = event(&mut sub, &what).await;
            match step {
                "ack" => unanswered(d.ack(), &switch, failed, "ack").await,
                "nack" => unanswered(d.nack(), &switch, failed, "nack").await,
                "dead_letter" => {
                    unanswered(d.dead_letter("poison"), &switch, failed, "dead_letter").await
                }
                _ => unanswered(sub.ack_and_next(d), &switch, failed, "ack_and_read").await,
            }
            let (retrying, dead) = match step {
                "nack" => (1, 0),
                "dead_letter" => (0, 1),
                _ => (0, 0),
            };
            let settled = |s: &SubscriptionStats| {
                (s.in_flight, s.retrying, s.dead, s.cursor) == (0, retrying, dead, 1)
            };
            counts_when(&backend, &topic, &what, settled).await;
            if step == "nack" {
                let other = b.topic::<u64>(&topic).subscriber("s");
                nothing(other, ms(300), &format!("{what}: within the back-off")).await;
            }
            if step == "dead_letter" {
                let dead = spi(&backend).dead_events(&key(&topic), &key("s"), 0, 10).await;
                let dead = dead.unwrap();
                assert_eq!(dead.len(), 1, "{what}: {dead:?}");
                assert_eq!(dead[0].reason, "poison", "{what}");
            }
        }
    }
}

/// `Subscriber::run` cancelled while its ack is on its way (slow to reach
/// the backend): the ack is sent again and the subscriber's leave (its
/// presence ends with it), which gives back every delivery of the
/// subscriber, goes only after it, so the event handled is done, not
/// given back and delivered again (decision 0060).
pub async fn topic_run_cancelled_mid_ack_leaves_after_the_ack(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let backend = ctx.backend().await;
    let topic = "run-cancelled";
    let mut sub = (a.topic::<u64>(topic).subscriber("s").start(Start::Earliest))
        .ttl(LONG)
        .presence_ttl(LONG);
    sub.subscribe().await.unwrap();
    b.topic::<u64>(topic).publish(&1).await.unwrap();
    // (The ack sent again is a plain ack.)
    switch.slow_requests("ack_and_read", ms(400));
    switch.slow_requests("ack", ms(400));
    let on_its_way = async {
        let held = || async { (switch.held("ack_and_read") == 1).then_some(()) };
        eventually(PROMPTLY, held).await.expect("the ack on its way");
    };
    tokio::select! {
        res = sub.run(|_: u64, _| async { Ok(()) }) => panic!("run returned: {res:?}"),
        () = on_its_way => {}
    }
    let left = || async { (switch.answered("leave") == 1).then_some(()) };
    eventually(PROMPTLY, left).await.expect("the dropped subscriber left");
    let s = counts(&backend, topic).await;
    let done = (s.in_flight, s.retrying, s.cursor);
    assert_eq!(done, (0, 0, 1), "done when the leave came: {s:?}");
}
}
