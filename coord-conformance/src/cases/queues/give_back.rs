//! A receive whose answer never came (its reply lost, or the call
//! cancelled after it was applied) gives back at once what it delivered,
//! and only that (decision 0044): another consumer gets the items long
//! before their 30 s leases end, as their first attempt; the SPI's
//! `give_back` names one receive and touches no delivery of another
//! receive, of another consumer, or one already settled. A receive
//! cancelled while it dead-letters an item that does not decode leaves
//! the dead-letter to the background, not the item to its lease; a leave
//! cancelled (or failed) is sent again in the background, not left to the
//! consumer's presence; an ack, nack or dead-letter cancelled (or failed)
//! is sent again in the background as it was asked (decision 0052), not
//! turned into a give-back without delay.

use std::future::Future;

use super::*;

/// The lease of every delivery here: far longer than [`PROMPTLY`], so an
/// item left to it is not back in time.
const LONG: Duration = Duration::from_secs(30);

/// Polls `call`, the switch holding, until its SPI call `held` waits held
/// on the way (not applied), then cancels it there; the switch is on
/// again after.
pub(crate) async fn cancel_held<T: Debug>(
    call: impl Future<Output = T>,
    switch: &Switch,
    held: &str,
) {
    cancel_held_after(call, switch, None, held).await
}

/// Polls `call` until its SPI call `held` waits held on the way (not
/// applied), then cancels it there. `first`, an SPI call `call` makes
/// before, is applied and answered late, so that the switch holds from
/// then on; the switch is on again after.
pub(crate) async fn cancel_when_held<T: Debug>(
    call: impl Future<Output = T>,
    switch: &Switch,
    first: &'static str,
    held: &str,
) {
    switch.late_replies(first, ms(500));
    cancel_held_after(call, switch, Some(first), held).await;
    switch.late_replies(first, Duration::ZERO);
}

/// [`cancel_held`], the switch holding only once `first` (if any) was
/// applied.
async fn cancel_held_after<T: Debug>(
    call: impl Future<Output = T>,
    switch: &Switch,
    first: Option<&'static str>,
    held: &str,
) {
    let before = first.map(|f| switch.answered(f));
    if first.is_none() {
        switch.holding();
    }
    let on_the_way = async {
        if let (Some(first), Some(before)) = (first, before) {
            let applied = || async { (switch.answered(first) > before).then_some(()) };
            let applied = eventually(PROMPTLY, applied).await;
            applied.unwrap_or_else(|| panic!("{first} applied"));
            switch.holding();
        }
        let waits = || async { (switch.held(held) == 1).then_some(()) };
        let waits = eventually(PROMPTLY, waits).await;
        waits.unwrap_or_else(|| panic!("{held} held on its way"));
    };
    tokio::select! {
        got = call => panic!("answered before {held} was held: {got:?}"),
        () = on_the_way => {}
    }
    switch.on();
}

/// Settles with `settle` (a delivery's ack, nack or dead-letter, or an
/// `ack_and_next`) cancelled on its way (the SPI call `held` held, never
/// applied), or, `failed`, failing (the backend cut off, the call never
/// reaching it); the switch is on again after.
pub(crate) async fn unanswered<T: Debug>(
    settle: impl Future<Output = Result<T>>,
    switch: &Switch,
    failed: bool,
    held: &str,
) {
    if failed {
        switch.off();
        let res = settle.await;
        assert!(res.is_err(), "cut off: {res:?}");
        switch.on();
    } else {
        cancel_held(settle, switch, held).await;
    }
}

/// The only dead letter of `queue`: its attempts and reason.
async fn only_dead(queue: &Queue<u64>, what: &str) -> (u32, String) {
    let dead = queue.dead_letters(0, 10).await.expect("dead_letters");
    assert_eq!(dead.len(), 1, "{what}: {dead:?}");
    (dead[0].attempts, dead[0].reason.clone())
}

cases! {
    family: "queue", needs: [Need::Queues];

/// A receive (prefetching three) whose reply is lost after the backend
/// delivered: the three items are given back at once, not after their
/// 30 s leases; another consumer gets them, each as attempt 1, and
/// nothing was counted redelivered.
pub async fn queue_receive_whose_reply_is_lost_gives_back_its_deliveries(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let ids: Vec<u64> = (numbers(&b).push_many(&[1, 2, 3]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut lost = numbers(&a).consumer().prefetch(3).ttl(LONG);
    switch.losing_replies();
    let failed = lost.receive().await;
    assert!(failed.is_err(), "the receive's reply was lost: {failed:?}");
    switch.on();
    let mut other = numbers(&b).consumer().ttl(LONG);
    for (i, id) in ids.iter().enumerate() {
        let d = within(other.receive(), &format!("item {i}, given back")).await;
        assert_eq!((d.id(), d.attempt()), (*id, 1), "item {i}");
        within(d.ack(), "ack").await;
    }
    let s = stats(&b).await;
    assert_eq!(places(&s), (0, 0, 0, 0), "{s:?}");
    assert_eq!(s.redelivered, 0, "never worked on: {s:?}");
}

/// A receive cancelled while its reply was on its way (the backend applied
/// it; the reply comes 3 s late): what it delivered is given back at once,
/// and another consumer gets it as attempt 1. The same for a cancelled
/// `ack_and_next`: its ack counts, and the next item it was handed is
/// given back.
pub async fn queue_cancelled_receive_gives_back_its_delivery(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let ids: Vec<u64> = (numbers(&b).push_many(&[1, 2, 3]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut cancelled = numbers(&a).consumer().ttl(LONG);
    switch.late_replies("receive", ms(3000));
    let gave_up = timeout(ms(300), cancelled.receive()).await;
    assert!(gave_up.is_err(), "cancelled while its reply was late");
    switch.late_replies("receive", Duration::ZERO);
    stats_when(&b, "the item given back", |s| s.ready == 3).await;
    let mut other = numbers(&b).consumer().ttl(LONG);
    let d = within(other.receive(), "the item, given back").await;
    assert_eq!((d.id(), d.attempt()), (ids[0], 1));
    within(d.ack(), "ack").await;
    let first = within(cancelled.receive(), "the next item").await;
    assert_eq!(first.id(), ids[1]);
    // (`ack_and_next` is one call, carried as the ack then the receive.)
    switch.late_replies("receive", ms(3000));
    let gave_up = timeout(ms(300), cancelled.ack_and_next(first)).await;
    assert!(gave_up.is_err(), "cancelled while its reply was late");
    switch.late_replies("receive", Duration::ZERO);
    stats_when(&b, "the next one given back", |s| places(s) == (1, 0, 0, 0)).await;
    let d = within(other.receive(), "the next one, given back").await;
    assert_eq!((d.id(), d.attempt()), (ids[2], 1));
    within(d.ack(), "ack").await;
    assert_eq!(places(&stats(&b).await), (0, 0, 0, 0), "the ack counted");
}

/// `give_back` through the SPI returns exactly what the named receive
/// delivered to the named consumer and still holds: not a later receive's
/// delivery of the same consumer, nor another consumer's, nor one acked,
/// nor one that expired and went to another consumer; an id of 0 gives
/// nothing back. What it returns is ready at once, its attempt taken back.
pub async fn queue_give_back_returns_only_its_receives_deliveries(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.client("b").await;
    let ids: Vec<u64> = (numbers(&b).push_many(&[1, 2, 3, 4]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let backend = ctx.backend().await;
    let (qs, qk, c) = (spi(&backend), key(Q), crashed());
    let other = HolderId::new(InstanceId::new("other").expect("valid instance id"));
    let opts = ReceiveOptions::new(LONG, LONG);
    let (r1, r2, r3) = (0x5eed_0001, 0x5eed_0002, 0x5eed_0003);
    let got = |r: ReceiveOptions, holder: &HolderId| {
        let holder = holder.clone();
        let qk = qk.clone();
        async move { qs.receive(&qk, &holder, r).await.unwrap().deliveries }
    };
    // r1: items 1 (started) and 2 (prefetched); r2: item 3; another
    // consumer's receive with r1's id: item 4.
    let one = got(opts.max(2).receive_id(r1), &c).await;
    assert_eq!(one.iter().map(|d| d.id).collect::<Vec<_>>(), ids[..2]);
    let two = got(opts.receive_id(r2), &c).await;
    assert_eq!(two[0].id, ids[2]);
    let theirs = got(opts.receive_id(r1), &other).await;
    assert_eq!(theirs[0].id, ids[3]);
    assert_eq!(qs.give_back(&qk, &c, 0).await.unwrap(), 0, "id 0 names none");
    assert_eq!(qs.give_back(&qk, &c, r3).await.unwrap(), 0, "no such receive");
    let acked = qs.ack(&qk, one[0].id, one[0].token).await.unwrap();
    assert_eq!(acked, Settle::Done);
    assert_eq!(qs.give_back(&qk, &c, r1).await.unwrap(), 1, "item 2 only");
    let s = stats(&b).await;
    assert_eq!(places(&s), (1, 0, 2, 0), "item 2 ready, 3 and 4 not: {s:?}");
    assert_eq!(qs.give_back(&qk, &c, r1).await.unwrap(), 0, "done already");
    // Item 3 (r2's, started) given back: ready again as attempt 1.
    assert_eq!(qs.give_back(&qk, &c, r2).await.unwrap(), 1, "item 3");
    let again = got(opts.max(2).receive_id(r3), &other).await;
    let view: Vec<(u64, u32)> = again.iter().map(|d| (d.id, d.attempt)).collect();
    assert_eq!(view, [(ids[1], 1), (ids[2], 1)], "as if never delivered");
    // Item 5 expired under an r1 of c (a 50 ms lease) and went to another
    // consumer: r1's give-back leaves it.
    let fifth = numbers(&b).push(&5).await.unwrap().id();
    let short = ReceiveOptions::new(ms(50), LONG).receive_id(r1);
    assert_eq!(got(short, &c).await[0].id, fifth);
    sleep(ms(100)).await;
    let taken = got(opts.receive_id(r3), &other).await;
    assert_eq!((taken[0].id, taken[0].attempt), (fifth, 2));
    assert_eq!(qs.give_back(&qk, &c, r1).await.unwrap(), 0, "not c's any more");
    let s = stats(&b).await;
    assert_eq!(places(&s), (0, 0, 4, 0), "all four with `other`: {s:?}");
    assert_eq!(qs.leave(&qk, &other).await.unwrap(), 4);
}

/// A receive cancelled while it dead-letters a prefetched item that does
/// not decode (its start applied, the dead-letter held on its way, never
/// applied): the dead-letter is sent in the background, and the item is
/// in the dead letters at once, with the decode error, not started for
/// nobody until its 30 s lease ends (then delivered again, an attempt
/// spent).
pub async fn queue_cancelled_receive_still_dead_letters_its_undecodable_item(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let good = numbers(&b).push(&1).await.unwrap().id();
    let bad = texts(&b).push(&"not a number".to_owned()).await.unwrap().id();
    let mut c = numbers(&a).consumer().prefetch(2).ttl(LONG);
    let d1 = within(c.receive(), "the first").await;
    assert_eq!(d1.id(), good);
    cancel_when_held(c.receive(), &switch, "extend", "dead_letter").await;
    let s = stats_when(&b, "the bad item dead", |s| places(s) == (0, 0, 1, 1)).await;
    assert_eq!(s.redelivered, 0, "{s:?}");
    let dead = numbers(&b).dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), [bad]);
    assert!(dead[0].reason.contains("decode"), "{:?}", dead[0].reason);
    within(d1.ack(), "ack").await;
}

/// A consumer's leave cancelled on its way (held, never applied), then
/// another's that failed (the backend cut off): each is sent again in the
/// background, and the item prefetched by each is ready again at once for
/// another consumer, not left with a consumer that is gone until its 30 s
/// presence ends.
pub async fn queue_cancelled_or_failed_leave_gives_back_what_it_held(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let mut other = numbers(&b).consumer().ttl(LONG);
    for failed in [false, true] {
        let what = if failed { "failed" } else { "cancelled" };
        let ids = numbers(&b).push_many(&[1, 2]).await.unwrap();
        let mut c = (numbers(&a).consumer().prefetch(2))
            .ttl(LONG)
            .presence_ttl(LONG);
        let d = within(c.receive(), "the first").await;
        assert_eq!(d.id(), ids[0].id());
        within(d.ack(), "ack").await;
        if failed {
            switch.off();
            let left = c.leave().await;
            assert!(left.is_err(), "cut off: {left:?}");
            switch.on();
        } else {
            cancel_held(c.leave(), &switch, "leave").await;
        }
        let back = |s: &QueueStats| places(s) == (1, 0, 0, 0);
        stats_when(&b, &format!("after a {what} leave"), back).await;
        let d = within(other.receive(), &format!("{what}: the second")).await;
        assert_eq!(d.id(), ids[1].id(), "{what}");
        within(d.ack(), "ack").await;
    }
}

/// An ack, a nack, a last attempt's nack, a dead-letter and an
/// `ack_and_next`, each cancelled on its way (held, never applied), then
/// each failed (the backend cut off): each is sent again in the background
/// as it was asked, not turned into a give-back without delay (which
/// delivered a processed item again, skipped the back-off, lost the error
/// and the dead-letter). The acked item is gone; the nacked one is delayed
/// by the consumer's 30 s back-off, and on its last attempt dead with the
/// nack's error; the dead-lettered one is dead with its reason; the item
/// of the `ack_and_next` is gone, the next one ready.
pub async fn queue_cancelled_or_failed_settle_is_sent_again_as_asked(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    for failed in [false, true] {
        let how = if failed { "failed" } else { "cancelled" };
        let queue = |step: &str| a.queue::<u64>(&format!("{how}-{step}"));
        let consumer = |q: &Queue<u64>| q.consumer().ttl(LONG).backoff(LONG, LONG);

        let q = queue("ack");
        q.push(&1).await.unwrap();
        let mut c = consumer(&q);
        let d = within(c.receive(), "the item").await;
        unanswered(d.ack(), &switch, failed, "ack").await;
        let what = format!("{how} ack");
        queue_stats_when(&q, &what, |s| places(s) == (0, 0, 0, 0)).await;

        let q = queue("nack");
        q.push(&1).await.unwrap();
        let mut c = consumer(&q);
        let d = within(c.receive(), "the item").await;
        unanswered(d.nack("boom"), &switch, failed, "nack").await;
        let what = format!("{how} nack: delayed by the back-off");
        queue_stats_when(&q, &what, |s| places(s) == (0, 1, 0, 0)).await;

        let q = queue("last");
        q.push_with(&1, PushOptions::new().max_attempts(1)).await.unwrap();
        let mut c = consumer(&q);
        let d = within(c.receive(), "the item").await;
        unanswered(d.nack("boom"), &switch, failed, "nack").await;
        let what = format!("{how} last nack");
        queue_stats_when(&q, &what, |s| places(s) == (0, 0, 0, 1)).await;
        assert_eq!(only_dead(&q, &what).await, (1, "boom".to_owned()), "{what}");

        let q = queue("dead");
        q.push(&1).await.unwrap();
        let mut c = consumer(&q);
        let d = within(c.receive(), "the item").await;
        unanswered(d.dead_letter("poison"), &switch, failed, "dead_letter").await;
        let what = format!("{how} dead_letter");
        queue_stats_when(&q, &what, |s| places(s) == (0, 0, 0, 1)).await;
        assert_eq!(only_dead(&q, &what).await, (1, "poison".to_owned()), "{what}");

        // (`ack_and_next` is carried as the ack then the receive.)
        let q = queue("next");
        q.push_many(&[1, 2]).await.unwrap();
        let mut c = consumer(&q);
        let d = within(c.receive(), "the first").await;
        unanswered(c.ack_and_next(d), &switch, failed, "ack").await;
        let what = format!("{how} ack_and_next");
        queue_stats_when(&q, &what, |s| places(s) == (1, 0, 0, 0)).await;
        let d = within(c.receive(), &format!("{what}: the second")).await;
        assert_eq!((*d.item(), d.attempt()), (2, 1), "{what}");
        within(d.ack(), "ack").await;
    }
}

/// `Consumer::run`: a handler's error whose nack fails (held on its way,
/// then the backend cut off): the nack is sent again in the background
/// with the consumer's back-off (30 s), so the item is delayed, not ready
/// again at once.
pub async fn queue_run_failed_nack_keeps_its_back_off(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let q = numbers(&a);
    q.push(&1).await.unwrap();
    let consumer = q.consumer().ttl(LONG).backoff(LONG, LONG);
    let holding = switch.clone();
    let handler = move |_: u64, _: ItemContext| {
        holding.holding();
        async { Err(NodeError::msg("boom")) }
    };
    let nack_failed = async {
        let held = || async { (switch.held("nack") == 1).then_some(()) };
        eventually(PROMPTLY, held).await.expect("the nack held on its way");
        switch.off();
        let gone = || async { (switch.held("nack") == 0).then_some(()) };
        eventually(PROMPTLY, gone).await.expect("the nack failed");
        switch.on();
        stats_when(&a, "delayed by the back-off", |s| places(s) == (0, 1, 0, 0)).await
    };
    tokio::select! {
        res = consumer.run(handler) => panic!("run returned: {res:?}"),
        s = nack_failed => assert_eq!(counts(&s), (1, 0, 0, 0), "{s:?}"),
    }
}

/// `Consumer::run` cancelled while its ack is on its way (slow to reach
/// the backend): the ack is sent again and the consumer's leave (its
/// presence ends with it), which gives back every delivery of the
/// consumer, goes only after it, so the item handled is done, not given
/// back and delivered again (decision 0060).
pub async fn queue_run_cancelled_mid_ack_leaves_after_the_ack(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let q = numbers(&a);
    q.push(&1).await.unwrap();
    let slow = ms(400);
    // (The run's ack with the next receive is carried as an ack, then a
    // receive.)
    switch.slow_requests("ack", slow);
    let consumer = q.consumer().ttl(LONG);
    let on_its_way = async {
        let held = || async { (switch.held("ack") == 1).then_some(()) };
        eventually(PROMPTLY, held).await.expect("the ack on its way");
    };
    tokio::select! {
        res = consumer.run(|_: u64, _| async { Ok(()) }) => panic!("run returned: {res:?}"),
        () = on_its_way => {}
    }
    let left = || async { (switch.answered("leave") == 1).then_some(()) };
    eventually(PROMPTLY, left).await.expect("the dropped consumer left");
    let s = q.stats().await.unwrap();
    assert_eq!(places(&s), (0, 0, 0, 0), "done when the leave came: {s:?}");
}
}
