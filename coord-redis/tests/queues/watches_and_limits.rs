//! Wake-ups, limits refused before any I/O, a full batch in one step each
//! way, and one EVALSHA per operation in one Cluster slot.

use super::*;

/// Rule 9: a step that made an item ready wakes the queue's watchers; other
/// steps do not.
#[tokio::test]
async fn watches_wake_when_a_step_made_an_item_ready() {
    let t = Q::new("watch").await;
    let mut w = t.watch().await;
    let dd = |p: &str| item(p).dedup(Some((key("k"), Duration::from_secs(60))));
    t.push(vec![dd("a")]).await;
    wakes(&mut w, "a push").await;
    t.push(vec![dd("a again")]).await;
    stays_quiet(&mut w, "a duplicate").await;
    t.push(vec![item("later").delay(Some(SHORT))]).await;
    // A delayed push wakes (a waiting consumer learns when it is due)...
    wakes(&mut w, "a delayed push").await;
    // ...and its due time passes silently; the next step sweeps it.
    stays_quiet(&mut w, "the due time passing").await;
    t.stats().await;
    wakes(&mut w, "a sweep").await;
    let r = t.receive(&t.a, 2).await;
    stays_quiet(&mut w, "a receive").await;
    assert_eq!(t.extend(&r.deliveries[1], TTL).await, Settle::Done);
    assert_eq!(t.dead_letter(&r.deliveries[1], "x").await, Settle::Done);
    stays_quiet(&mut w, "a dead letter").await;
    assert_eq!(t.ack(&r.deliveries[0]).await, Settle::Done);
    stays_quiet(&mut w, "an ack").await;
    // Another queue's steps wake nobody here.
    let other = Q {
        q: key("other"),
        ..Q::on(t.b.clone())
    };
    other.push1("x").await;
    stays_quiet(&mut w, "another queue").await;
}

/// Every limit is refused before any I/O: with the server gone, each call
/// is `InvalidArgument` naming the queue, never `Unavailable`.
#[tokio::test]
async fn limits_are_refused_before_any_io() {
    let server = RedisServer::start();
    let t = Q::on(backend_on(&server, "limits").await);
    t.push1("warm").await;
    server.stop();
    let invalid = |r: Result<(), Error>, what: &str| {
        let err = r.expect_err(what);
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("\"q\""), "{what}: {err}");
    };
    let q = t.qs();
    let (name, a) = (&t.q, &t.a);
    let push = move |items: Vec<NewItem>| async move { q.push(name, items).await.map(drop) };
    invalid(
        push(vec![NewItem::new(vec![0; MAX_PAYLOAD_BYTES + 1], 1)]).await,
        "payload",
    );
    invalid(
        push(vec![item("x").priority(MAX_PRIORITY + 1)]).await,
        "priority",
    );
    invalid(push(vec![tries("x", 0)]).await, "attempts");
    let many = (0..=MAX_BATCH).map(|_| item("x")).collect();
    invalid(push(many).await, "batch");
    let recv = move |o: ReceiveOptions| async move { q.receive(name, a, o).await.map(drop) };
    invalid(recv(opts(0)).await, "receive of 0");
    invalid(
        recv(opts(MAX_BATCH as u32 + 1)).await,
        "receive of too many",
    );
    invalid(
        recv(ReceiveOptions::new(Duration::ZERO, PRESENCE)).await,
        "ttl",
    );
    invalid(
        recv(ReceiveOptions::new(TTL, Duration::from_secs(200_000))).await,
        "presence",
    );
    invalid(
        q.extend(&t.q, 1, FencingToken(1), Duration::ZERO)
            .await
            .map(drop),
        "extend ttl",
    );
    invalid(
        q.heartbeat(&t.q, &t.a, Duration::ZERO).await,
        "heartbeat ttl",
    );
    invalid(q.dead_items(&t.q, 0, 0).await.map(drop), "page");
    // A valid call does reach for the server.
    let err = q.push(&t.q, vec![item("x")]).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

/// Big batches: a push of MAX_BATCH items and a receive of all of them.
#[tokio::test]
async fn a_full_batch_goes_in_and_out_in_one_step_each() {
    let t = Q::new("batch").await;
    let items = (0..MAX_BATCH).map(|i| item(&i.to_string()).priority((i % 10) as u8));
    let out = t.push(items.collect()).await;
    assert_eq!(out.len(), MAX_BATCH);
    let r = t.receive(&t.a, MAX_BATCH as u32).await;
    assert_eq!(r.deliveries.len(), MAX_BATCH);
    assert!(r.deliveries[0].started && !r.deliveries[1].started);
    let order: Vec<_> = r
        .deliveries
        .iter()
        .map(|d| (9 - d.priority, d.id))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    let tokens: Vec<_> = r.deliveries.iter().map(|d| d.token).collect();
    assert!(tokens.windows(2).all(|w| w[1].get() == w[0].get() + 1));
    // The counter stands at the last token: the next draw is above it.
    t.push1("next").await;
    let next = t.recv(&t.c).await;
    assert!(next.token > *tokens.last().unwrap());
    assert_eq!(t.qs().leave(&t.q, &t.a).await.unwrap(), MAX_BATCH as u32);
    assert_eq!(t.places().await, (MAX_BATCH as u64, 0, 1, 0));
}

/// Every operation is one EVALSHA, and every key of a queue is in one
/// Redis Cluster slot (a cluster server refuses a script that touches
/// another).
#[tokio::test]
async fn one_evalsha_per_operation_in_one_cluster_slot() {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    server
        .command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(server.command(&["CLUSTER", "INFO"]).unwrap()).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "single-node cluster never ok");
        sleep(Duration::from_millis(20)).await;
    }
    let t = Q {
        q: key("x}{y"),
        ..Q::on(backend_on(&server, "slots").await)
    };
    // Warm up: loads the script.
    t.stats().await;
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let dd = Some((key("d}{"), Duration::from_secs(60)));
    t.push(vec![
        item("a").dedup(dd.clone()),
        item("b"),
        item("c").delay(Some(SHORT)),
    ])
    .await;
    t.push(vec![item("a").dedup(dd)]).await;
    let r = t.receive(&t.a, 2).await;
    let stolen = t.receive_with(&t.c, opts(1).steal(true)).await;
    assert_eq!(stolen.deliveries.len(), 1);
    t.extend(&r.deliveries[0], TTL).await;
    t.nack(&r.deliveries[0], "x", Duration::ZERO).await;
    let d = t.recv(&t.a).await;
    t.dead_letter(&d, "y").await;
    t.ack(&stolen.deliveries[0]).await;
    t.qs().heartbeat(&t.q, &t.a, PRESENCE).await.unwrap();
    t.dead().await;
    t.qs().requeue_dead(&t.q, d.id).await.unwrap();
    let d = t.recv(&t.a).await;
    t.dead_letter(&d, "z").await;
    t.qs().remove_dead(&t.q, d.id).await.unwrap();
    sleep(SHORT + MARGIN).await;
    t.qs().leave(&t.q, &t.a).await.unwrap();
    t.stats().await;
    let ops = 17;
    let info = text(server.command(&["INFO", "commandstats"]).unwrap());
    let evalsha = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("calls=")))
        .map(|n| n.parse::<i64>().unwrap());
    assert_eq!(evalsha, Some(ops));
    assert!(
        !info.contains("cmdstat_script") && !info.contains("cmdstat_eval:"),
        "{info}"
    );
    // Nothing failed in there.
    let line = info.lines().find(|l| l.starts_with("cmdstat_evalsha:"));
    assert!(line.is_some_and(|l| l.contains("failed_calls=0")), "{info}");
}
