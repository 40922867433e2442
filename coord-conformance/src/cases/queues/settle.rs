//! Settling a delivery: an ack removes the item; a nack gives it back,
//! delivered again after the back-off as the next attempt with a larger
//! token, and on its last attempt moves it to the dead letters exactly once
//! with the last error; `dead_letter` moves it there at once; and
//! `Consumer::run` settles by the handler's answer; `ack_and_next` (the
//! SPI's `ack_and_receive`) acks and takes the next item in one step.

use super::*;

cases! {
    family: "queue", needs: [Need::Queues];

/// An ack removes the item: nothing ready, delayed, in flight or dead, and
/// nothing delivered again; the same token acked or nacked again (through
/// the SPI) is `Stale`.
pub async fn queue_ack_removes_item(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let id = q.push(&1).await.unwrap().id();
    let mut consumer = q.consumer();
    let d = within(consumer.receive(), "the item").await;
    let token = d.token();
    within(d.ack(), "ack").await;
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 0, 0), "removed: {s:?}");
    assert_eq!(counts(&s), (1, 0, 0, 0), "{s:?}");
    let backend = ctx.backend().await;
    let again = spi(&backend).ack(&key(Q), id, token).await.unwrap();
    assert_eq!(again, Settle::Stale, "acked twice");
    let nack = spi(&backend).nack(&key(Q), id, token, "late", ms(0)).await;
    assert_eq!(nack.unwrap(), Nack::Stale, "nacked after the ack");
    let mut other = q.consumer().wait_timeout(Some(ms(100)));
    assert_timeout(other.receive().await, "nothing delivered again");
    assert_eq!(places(&stats(&c).await), (0, 0, 0, 0));
}

/// `ack_and_next` acks the delivery and, in the same step, takes the next
/// ready item (a new, larger token), or answers `None` when nothing is
/// ready; through the SPI, `ack_and_receive` receives whatever the ack's
/// answer (a stale ack is `Stale` and changes nothing), and bad receive
/// options are refused before the ack.
pub async fn queue_ack_and_next_acks_then_takes_the_next(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    q.push_many(&[1, 2, 3]).await.unwrap();
    let mut consumer = q.consumer();
    let mut d = within(consumer.receive(), "the first").await;
    let mut seen = vec![*d.item()];
    while let Some(next) = within(consumer.ack_and_next(d), "ack_and_next").await {
        assert!(next.token() > FencingToken(0) && next.attempt() == 1);
        seen.push(*next.item());
        d = next;
    }
    assert_eq!(seen, [1, 2, 3], "each ack took the next, in order");
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 0, 0), "all acked: {s:?}");
    assert_eq!(counts(&s), (3, 0, 0, 0), "{s:?}");

    let backend = ctx.backend().await;
    let (queue, who) = (key(Q), crashed());
    let opts = ReceiveOptions::new(ms(10_000), ms(10_000));
    let id = q.push(&4).await.unwrap().id();
    let got = spi(&backend).receive(&queue, &who, opts).await.unwrap();
    let token = got.deliveries[0].token;
    let bad = opts.max(0);
    let refused = spi(&backend).ack_and_receive(&queue, id, token, &who, bad).await;
    invalid(refused, "max 0");
    let id5 = q.push(&5).await.unwrap().id();
    let (acked, next) = (spi(&backend).ack_and_receive(&queue, id, token, &who, opts).await)
        .expect("ack_and_receive");
    assert_eq!(acked, Settle::Done, "not acked by the refused call");
    assert_eq!(next.deliveries.len(), 1, "{next:?}");
    let d5 = &next.deliveries[0];
    assert!(d5.id == id5 && d5.token > token, "{d5:?}");
    let (stale, none) = (spi(&backend).ack_and_receive(&queue, id, token, &who, opts).await)
        .expect("ack_and_receive");
    assert_eq!(stale, Settle::Stale, "acked twice");
    assert!(none.deliveries.is_empty(), "{none:?}");
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 1, 0), "item 5 in flight: {s:?}");
}

/// A stale `ack_and_next` is `LeaseLost`, and the item its step took is not
/// lost: the consumer's next `receive` gives it.
pub async fn queue_stale_ack_and_next_keeps_the_item_it_took(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let id = q.push(&1).await.unwrap().id();
    let mut consumer = q.consumer();
    let d = within(consumer.receive(), "the first").await;
    let backend = ctx.backend().await;
    let acked = spi(&backend).ack(&key(Q), id, d.token()).await.unwrap();
    assert_eq!(acked, Settle::Done);
    q.push(&2).await.unwrap();
    assert_lease_lost(consumer.ack_and_next(d).await, "acked already");
    let d2 = within(consumer.receive(), "the item the stale step took").await;
    assert_eq!((*d2.item(), d2.attempt()), (2, 1));
    within(d2.ack(), "ack").await;
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 0, 0), "{s:?}");
    assert_eq!(counts(&s), (2, 0, 0, 0), "{s:?}");
}

/// A nack gives the item back: it is delivered again only after the
/// consumer's back-off (100..=200 ms here), as attempt 2 with a larger
/// token, counted as a redelivery.
pub async fn queue_nack_redelivers_after_backoff_with_larger_token(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let id = q.push(&1).await.unwrap().id();
    let backoff = ms(200);
    let mut consumer = q.consumer().backoff(backoff, backoff);
    let d1 = within(consumer.receive(), "attempt 1").await;
    let first = d1.token();
    let t0 = Instant::now();
    let requeued = within(d1.nack("boom"), "nack").await;
    assert!(requeued, "requeued: it has attempts left");
    let d2 = within(consumer.receive(), "attempt 2").await;
    let waited = t0.elapsed();
    assert_eq!((d2.id(), d2.attempt()), (id, 2));
    assert!(d2.token() > first, "{} after {first}", d2.token());
    // The back-off is jittered down to half of it at most.
    let least = backoff / 2;
    assert!(
        waited + ms(2) >= least,
        "delivered again {waited:?} after the nack, before the back-off"
    );
    let s = stats(&c).await;
    assert_eq!(counts(&s), (2, 1, 0, 0), "{s:?}");
    within(d2.ack(), "ack").await;
}

/// On its last attempt (3 here) a nack moves the item to the dead letters
/// (`nack` answers `false`), exactly once, with that attempt's error and
/// its 3 attempts; it is not delivered again.
pub async fn queue_last_attempt_nack_dead_once_with_last_error(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let opts = PushOptions::new().max_attempts(3);
    let id = q.push_with(&42, opts).await.unwrap().id();
    let mut consumer = q.consumer().backoff(ms(1), ms(2));
    let mut answers = Vec::new();
    for attempt in 1..=3 {
        let d = within(consumer.receive(), &format!("attempt {attempt}")).await;
        assert_eq!((d.id(), d.attempt(), d.max_attempts()), (id, attempt, 3));
        answers.push(within(d.nack(format!("error {attempt}")), "nack").await);
    }
    assert_eq!(answers, [true, true, false], "the last nack dead-letters");
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 0, 1), "{s:?}");
    assert_eq!(counts(&s), (3, 2, 0, 1), "dead-lettered once: {s:?}");
    let dead = q.dead_letters(0, 10).await.expect("dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!((d.id, &d.item, d.attempts), (id, &Ok(42), 3));
    assert_eq!(d.reason, "error 3", "the last error");
    let mut other = q.consumer().wait_timeout(Some(ms(100)));
    assert_timeout(other.receive().await, "not delivered again");
    assert_eq!(stats(&c).await.dead_lettered, 1, "still once");
}

/// `dead_letter(reason)` moves the item to the dead letters at once,
/// whatever attempts it has left, with the reason (one over 4 KiB cut at a
/// character boundary) and the one attempt it had.
pub async fn queue_dead_letter_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let ids: Vec<u64> = (q.push_many(&[1, 2]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut consumer = q.consumer();
    let d = within(consumer.receive(), "the first").await;
    assert_eq!(d.max_attempts(), 5, "attempts left");
    within(d.dead_letter("poison pill"), "dead_letter").await;
    let long = "é".repeat(3000);
    let d = within(consumer.receive(), "the second").await;
    within(d.dead_letter(&long), "dead_letter with a long reason").await;
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 0, 2), "{s:?}");
    assert_eq!(counts(&s), (2, 0, 0, 2), "{s:?}");
    let dead = q.dead_letters(0, 10).await.expect("dead_letters");
    let view: Vec<(u64, u32)> = dead.iter().map(|d| (d.id, d.attempts)).collect();
    assert_eq!(view, [(ids[0], 1), (ids[1], 1)]);
    assert_eq!(dead[0].reason, "poison pill");
    let cut = &dead[1].reason;
    assert!(
        cut.len() <= 4096 && cut.len() >= 4094 && long.starts_with(cut.as_str()),
        "cut to 4 KiB at a character boundary: {} bytes",
        cut.len()
    );
}

/// `Consumer::run`: the handler's `Ok` acks the item, its `Err` nacks it
/// (delivered again as the next attempt), a permanent `Err` dead-letters it
/// with the error; the handler gets each item's id, attempt and attempts.
pub async fn queue_run_acks_ok_nacks_err_dead_letters_permanent(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = texts(&c).max_attempts(3);
    let items = ["ok", "flaky", "fatal"].map(str::to_owned);
    let ids: Vec<u64> = (q.push_many(&items).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let handler = move |item: String, cx: ItemContext| {
        let record = record.clone();
        async move {
            record
                .lock()
                .unwrap()
                .push((item.clone(), cx.id, cx.attempt, cx.max_attempts));
            match (item.as_str(), cx.attempt) {
                ("ok", _) | ("flaky", 2) => Ok(()),
                ("flaky", _) => Err(NodeError::msg("flaky once")),
                _ => Err(NodeError::msg("fatal error").permanent()),
            }
        }
    };
    let consumer = q.consumer().backoff(ms(1), ms(2));
    let settled = |s: &QueueStats| places(s) == (0, 0, 0, 1) && s.delivered == 4;
    let s = tokio::select! {
        res = consumer.run(handler) => panic!("run returned: {res:?}"),
        s = stats_when(&c, "every item settled", settled) => s,
    };
    assert_eq!(counts(&s), (4, 1, 0, 1), "{s:?}");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let want = [
        ("fatal", ids[2], 1),
        ("flaky", ids[1], 1),
        ("flaky", ids[1], 2),
        ("ok", ids[0], 1),
    ]
    .map(|(s, id, a)| (s.to_owned(), id, a, 3));
    assert_eq!(seen, want, "each call of the handler");
    let dead = q.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!((d.id, d.item.as_deref(), d.attempts), (ids[2], Ok("fatal"), 1));
    assert_eq!(d.reason, "fatal error", "the permanent error");
}

/// `Consumer::run` outlives a quiet queue: with a client `wait_timeout` of
/// 100 ms (which bounds one `receive`), a run that found nothing for 500 ms
/// is still running, and handles the item pushed then.
pub async fn queue_run_waits_past_wait_timeout(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().wait_timeout(Some(ms(100)));
    let c = ctx.client_with("a", opts).await;
    let q = texts(&c);
    let consumer = q.consumer();
    let quiet_then_push = async {
        tokio::time::sleep(ms(500)).await;
        q.push(&"late".to_owned()).await.unwrap();
        let done = |s: &QueueStats| s.delivered == 1 && places(s) == (0, 0, 0, 0);
        stats_when(&c, "the late item handled", done).await
    };
    tokio::select! {
        res = consumer.run(|_, _| async { Ok(()) }) => panic!("run returned: {res:?}"),
        s = quiet_then_push => assert_eq!(counts(&s), (1, 0, 0, 0), "{s:?}"),
    }
}

/// Extreme options (`wait_timeout` and `retry_delay` of `Duration::MAX`,
/// "wait for ever", notifications only) never panic: a waiting receive
/// gets the item pushed meanwhile.
pub async fn queue_extreme_durations_do_not_panic(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    for (name, opts) in extreme_waits() {
        let mut consumer = numbers(&ctx.client_with(name, opts).await).consumer();
        let got = tokio::spawn(async move {
            let d = consumer.receive().await?;
            let item = *d.item();
            d.ack().await.map(|()| item)
        });
        sleep(ms(100)).await;
        numbers(&a).push(&7).await.unwrap();
        let got = within(async { got.await.map_err(|e| Error::invalid(e.to_string()))? }, name);
        assert_eq!(got.await, 7, "{name}");
    }
}
}
