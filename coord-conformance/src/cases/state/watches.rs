//! Watches: every change after a version, in order, each once; woken by
//! the backend, not by polling; expiries seen when due; a gap with the
//! current state when the log no longer reaches back (or from version 0);
//! prefixes of a space; resuming after an outage without a silent skip.

use super::*;

/// `StateEvent::Put` of `key` at `version` with `value`.
fn put(key: &str, version: u64, value: u64) -> StateEvent<u64> {
    StateEvent::Put {
        key: key.into(),
        version,
        value,
    }
}

cases! {
    family: "state", needs: [Need::State];

/// A watch from a version sees every later change of the value (puts,
/// compare-and-sets, updates, a delete) in order, each with the version its
/// write returned.
pub async fn state_watch_sees_every_change_in_order(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let v0 = number(&a).put(&0).await.unwrap();
    let mut watch = number(&b).watch(v0);
    let mut want = Vec::new();
    let mut last = v0;
    for i in 1..=20u64 {
        last = match i % 3 {
            0 => number(&a).put(&i).await.unwrap(),
            1 => set(number(&a).compare_and_set(Some(last), &i).await.unwrap(), "cas"),
            _ => number(&a).update(|_| i).await.unwrap().version,
        };
        want.push(put(K, last, i));
    }
    let gone = number(&a).delete().await.unwrap().unwrap();
    want.push(StateEvent::Deleted { key: K.into(), version: gone });
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&next_event(&mut watch, &format!("change {i}")).await, w);
    }
    assert_eq!(watch.position(), gone);
}

/// A watch waiting for a change is woken by the backend when one is made
/// (well before the clients' 10 s retry delay).
pub async fn state_watch_woken_promptly(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let v0 = number(&a).put(&0).await.unwrap();
    let mut watch = number(&b).watch(v0);
    let waiter = tokio::spawn(async move { next_event(&mut watch, "woken").await });
    sleep(ms(200)).await;
    let v1 = number(&a).put(&1).await.unwrap();
    assert_eq!(waiter.await.expect("watcher"), put(K, v1, 1));
}

/// A watch takes the client's options as every handle does: a zero retry
/// delay (which would poll) is `InvalidArgument`; a retry delay of
/// `Duration::MAX` ("notifications only") waits without panicking, woken
/// by the change.
pub async fn state_watch_checks_the_clients_options(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let v0 = number(&a).put(&0).await.unwrap();
    let zero = ctx.client_with("z", default_options().retry_delay(Duration::ZERO)).await;
    assert_invalid(number(&zero).watch(v0).next().await, "a zero retry delay");
    let forever = default_options().retry_delay(Duration::MAX);
    let mut watch = number(&ctx.client_with("b", forever).await).watch(v0);
    let waiter = tokio::spawn(async move { next_event(&mut watch, "woken").await });
    sleep(ms(200)).await;
    let v1 = number(&a).put(&1).await.unwrap();
    assert_eq!(waiter.await.expect("no panic"), put(K, v1, 1));
}

/// A value's TTL passing is a change a watch sees, when it is due, with a
/// version above the put's.
pub async fn state_watch_sees_expiry(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let v0 = number(&a).put(&0).await.unwrap();
    let mut watch = number(&b).watch(v0);
    let v1 = number(&a).ttl(Some(ms(300))).put(&1).await.unwrap();
    assert_eq!(next_event(&mut watch, "the put").await, put(K, v1, 1));
    let started = Instant::now();
    match next_event(&mut watch, "the expiry").await {
        StateEvent::Expired { key, version } => assert!(key == K && version > v1),
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(started.elapsed() >= ms(200), "not before it was due");
    assert_eq!(number(&a).get().await.unwrap(), None);
}

/// A watch from version 0 starts with a gap carrying the current state
/// (every key present, nothing else), then sees every change after it.
pub async fn state_watch_from_zero_gets_current_state(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let space = a.state_space::<u64>("s");
    space.value("x").put(&1).await.unwrap();
    let vy = space.value("y").put(&2).await.unwrap();
    space.value("z").put(&3).await.unwrap();
    space.value("z").delete().await.unwrap();
    let mut watch = space.watch("", 0);
    match next_event(&mut watch, "the state").await {
        StateEvent::Gap { after: 0, current, .. } => {
            let keys: Vec<_> = current.iter().map(|(k, v)| (k.as_str(), v.value)).collect();
            assert_eq!(keys, [("x", 1), ("y", 2)]);
            assert_eq!(current[1].1.version, vy);
        }
        other => panic!("expected a gap with the state, got {other:?}"),
    }
    let v = space.value("x").put(&4).await.unwrap();
    assert_eq!(next_event(&mut watch, "after").await, put("x", v, 4));
}

/// A watch from a version the log no longer reaches back to (more than its
/// 1,000 kept changes since) gets a gap naming that version and the oldest
/// kept, with the current value, and goes on from there.
pub async fn state_watch_reports_gap_when_log_trimmed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let v0 = number(&a).put(&0).await.unwrap();
    let mut last = v0;
    for i in 1..=CHANGES_KEPT as u64 + 5 {
        last = number(&a).put(&i).await.unwrap();
    }
    let mut watch = number(&a).watch(v0);
    match next_event(&mut watch, "the gap").await {
        StateEvent::Gap {
            after,
            oldest,
            current,
            ..
        } => {
            assert_eq!(after, v0);
            assert!(oldest.is_some_and(|o| o > v0 && o <= last), "{oldest:?}");
            assert_eq!(current.len(), 1);
            assert_eq!((current[0].1.value, current[0].1.version), (CHANGES_KEPT as u64 + 5, last));
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    assert_eq!(watch.position(), last);
    let next = number(&a).put(&7).await.unwrap();
    assert_eq!(next_event(&mut watch, "then changes").await, put(K, next, 7));
}

/// A watch of a prefix of a space sees the changes of its keys in order and
/// none of the others.
pub async fn state_prefix_watch_selects_keys(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let space = a.state_space::<u64>("flags");
    let v0 = space.value("other").put(&0).await.unwrap();
    let mut watch = b.state_space::<u64>("flags").watch("app/", v0);
    let v1 = space.value("app/x").put(&1).await.unwrap();
    space.value("other").put(&2).await.unwrap();
    space.value("ap").put(&3).await.unwrap();
    let v2 = space.value("app/y").put(&4).await.unwrap();
    let v3 = space.value("app/x").delete().await.unwrap().unwrap();
    assert_eq!(next_event(&mut watch, "x").await, put("app/x", v1, 1));
    assert_eq!(next_event(&mut watch, "y").await, put("app/y", v2, 4));
    assert_eq!(
        next_event(&mut watch, "x gone").await,
        StateEvent::Deleted { key: "app/x".into(), version: v3 }
    );
}

/// A watch whose backend was unreachable fails while it is, then resumes
/// where it was: every change made meanwhile, in order, none skipped.
pub async fn state_watch_resumes_after_outage(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let (b, switch) = ctx.switchable_client("b", default_options()).await;
    let v0 = number(&a).put(&0).await.unwrap();
    let mut watch = number(&b).watch(v0);
    let v1 = number(&a).put(&1).await.unwrap();
    assert_eq!(next_event(&mut watch, "before").await, put(K, v1, 1));
    switch.off();
    let mut want = Vec::new();
    for i in 2..6 {
        want.push(put(K, number(&a).put(&i).await.unwrap(), i));
    }
    match timeout(PROMPTLY, watch.next()).await {
        Ok(Err(Error::Unavailable { .. })) => {}
        // Woken by nothing while cut off: the retry delay is 10 s.
        Err(_) => {}
        other => panic!("while cut off: {other:?}"),
    }
    switch.on();
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&next_event(&mut watch, &format!("missed {i}")).await, w);
    }
}

/// A value that does not decode as the watch's type is never left out
/// silently: a gap's current state holds the keys that decode, and right
/// after the gap the watch hands out an error naming each key that does
/// not (the key, the type and the backend, as a change's value that does
/// not decode is reported), then goes on. Until that error is handed out
/// the watch's position stays before the gap, so a watch made again from
/// it (a process that checkpointed the position after the gap, then
/// restarted) is told of the key too.
pub async fn state_gap_reports_values_that_do_not_decode(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    a.state_space::<String>("s").value("a").put(&"text".into()).await.unwrap();
    let vb = a.state_space::<u64>("s").value("b").put(&2).await.unwrap();
    let space = a.state_space::<u64>("s");
    let mut first = space.watch("", 0);
    let gap = next_event(&mut first, "the gap").await;
    let StateEvent::Gap { current, head, .. } = &gap else {
        panic!("expected a gap, got {gap:?}");
    };
    let keys: Vec<_> = current.iter().map(|(k, v)| (k.as_str(), v.value, v.version)).collect();
    assert_eq!(keys, [("b", 2, vb)]);
    let mut again = space.watch("", first.position());
    assert!(matches!(next_event(&mut again, "the gap again").await, StateEvent::Gap { .. }));
    let backend = a.backend().to_string();
    for watch in [&mut first, &mut again] {
        let e = match timeout(PROMPTLY, watch.next()).await {
            Ok(Err(e)) => e,
            other => panic!("expected the error of \"a\" after the gap, got {other:?}"),
        };
        assert!(matches!(&e, Error::Backend { backend: b, .. } if *b == backend), "{e:?}");
        assert!(e.to_string().contains("s/a") && e.to_string().contains("u64"), "{e}");
        assert!(watch.position() >= *head, "past the gap once told");
    }
    let v = space.value("b").put(&3).await.unwrap();
    assert_eq!(next_event(&mut first, "then changes").await, put("b", v, 3));
    assert_eq!(next_event(&mut again, "then changes").await, put("b", v, 3));
}

/// A watch waiting for a change when its client is closed (a value's and a
/// prefix watch of a space, with a retry delay of 10 s) ends at once with
/// `Error::Closed`, as every family's waits do (`common`), not at its next
/// read; one with a change read, not handed out yet, answers `Closed` too
/// (every call of a closed client does).
pub async fn state_watch_waiting_ends_at_once_when_its_client_closes(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.client("b").await;
    let v = number(&b).put(&1).await.unwrap();
    // A watch with a change read and not handed out yet.
    let mut queued = number(&b).watch(v);
    let v2 = number(&b).put(&2).await.unwrap();
    let v3 = number(&b).put(&3).await.unwrap();
    assert_eq!(next_event(&mut queued, "the first of two").await, put(K, v2, 2));
    let mut value = number(&b).watch(v3);
    let mut space = b.state_space::<u64>("s").watch("", 0);
    assert!(matches!(next_event(&mut space, "the gap").await, StateEvent::Gap { .. }));
    let waiting = [
        ("a value's watch", tokio::spawn(async move { value.next().await.map(drop) })),
        ("a space's watch", tokio::spawn(async move { space.next().await.map(drop) })),
    ];
    // Long enough for each to read and wait (a close before that would
    // pass vacuously: checked).
    sleep(ms(300)).await;
    for (what, task) in &waiting {
        assert!(!task.is_finished(), "{what}: waiting before the close");
    }
    at_once(b.close()).await.expect("close");
    for (what, task) in waiting {
        let res = join(task, ms(2000), what).await;
        assert!(matches!(res, Err(Error::Closed { .. })), "{what}: {res:?}");
    }
    let res = at_once(queued.next()).await;
    assert!(matches!(res, Err(Error::Closed { .. })), "what it had read: {res:?}");
}
}
