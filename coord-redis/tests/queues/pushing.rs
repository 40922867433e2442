//! Pushing (rules 1-3): ids in order, receive order by priority then id,
//! delays and the idle `next_in`, the sweep before every step, dedup windows.

use super::*;

/// Rules 2 and 3: ids in push order; highest priority first, then lowest
/// id; every delivery's fields.
#[tokio::test]
async fn pushes_get_ids_in_order_and_receives_go_by_priority_then_id() {
    let t = Q::new("order").await;
    let items = vec![
        item("a"),
        item("b").priority(5),
        tries("c", 7),
        item("d").priority(MAX_PRIORITY),
        item("e").priority(5),
    ];
    assert_eq!(t.push(items).await, pushed(&[1, 2, 3, 4, 5]));
    assert_eq!(t.push1("f").await, 6);
    let mut order = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..6 {
        let d = t.recv(&t.a).await;
        assert_eq!((d.attempt, d.started, d.stolen), (1, true, false));
        order.push((d.id, d.payload.clone(), d.priority, d.max_attempts));
        tokens.push(d.token);
    }
    let want = [
        (4, "d", 9, 3),
        (2, "b", 5, 3),
        (5, "e", 5, 3),
        (1, "a", 0, 3),
        (3, "c", 0, 7),
        (6, "f", 0, 3),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|&(id, p, pr, n)| (id, p.as_bytes().to_vec(), pr, n))
        .collect();
    assert_eq!(order, want);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    // Held and unsettled: the next thing due is the first deadline.
    let next = t.idle(&t.a).await.expect("a deadline");
    assert!(
        next <= TTL && next >= TTL - Duration::from_secs(1),
        "{next:?}"
    );
    // Another queue of the same namespace counts its own ids.
    let other = Q {
        q: key("other"),
        ..Q::on(t.b.clone())
    };
    assert_eq!(other.push1("x").await, 1);
    // An empty push is no step at all.
    assert_eq!(t.push(vec![]).await, []);
}

/// Rules 2 and 3: a delayed item is ready once due, and an idle receive
/// says when; then the next deadline.
#[tokio::test]
async fn delayed_items_wait_and_an_idle_receive_says_when() {
    let t = Q::new("delay").await;
    assert_eq!(t.idle(&t.a).await, None);
    t.push(vec![item("later").delay(Some(BRIEF))]).await;
    let next = t.idle(&t.a).await.expect("a delayed item");
    assert!(next <= BRIEF && next > Duration::ZERO, "{next:?}");
    assert_eq!(t.places().await, (0, 1, 0, 0));
    sleep(BRIEF + MARGIN).await;
    let d = t.recv(&t.a).await;
    assert_eq!((d.id, d.payload.as_slice()), (1, &b"later"[..]));
    // Now the delivery's deadline is the next thing due: c is told of it
    // (a holds it, and a's presence lasts longer than the lease).
    let next = t.idle(&t.c).await.expect("a deadline");
    assert!(
        next <= TTL && next >= TTL - Duration::from_secs(1),
        "{next:?}"
    );
    // A zero delay is none.
    t.push(vec![item("now").delay(Some(Duration::ZERO))]).await;
    assert_eq!(t.recv(&t.c).await.id, 2);
}

/// Rule 1: the sweep is done whatever set made the step due first: a
/// short lease after a delay of an hour, a short presence after both.
#[tokio::test]
async fn a_step_sweeps_whatever_fell_due_first() {
    let t = Q::new("sweep").await;
    t.push(vec![item("far").delay(Some(Duration::from_secs(3600)))])
        .await;
    t.push1("x").await;
    let short = ReceiveOptions::new(SHORT, PRESENCE);
    let d = t.receive_with(&t.a, short).await.deliveries.remove(0);
    sleep(SHORT + MARGIN).await;
    assert_eq!(t.places().await, (1, 1, 0, 0));
    assert_eq!(t.ack(&d).await, Settle::Stale);
    let long = ReceiveOptions::new(TTL, BRIEF);
    let d = t.receive_with(&t.c, long).await.deliveries.remove(0);
    assert_eq!(d.attempt, 2);
    assert_eq!(t.places().await, (0, 1, 1, 0));
    sleep(BRIEF + MARGIN).await;
    assert_eq!(t.places().await, (1, 1, 0, 0));
    assert_eq!(t.stats().await.consumers, [*t.a.instance()]);
}

/// Rule 2: a dedup key pushed within its window pushes nothing and names
/// the first id, in one push or across pushes; ids stay consecutive.
#[tokio::test]
async fn dedup_keys_hold_their_first_id_for_their_window() {
    let t = Q::new("dedup").await;
    let d = |p: &str, k: &str, w: Duration| item(p).dedup(Some((key(k), w)));
    let long = Duration::from_secs(60);
    let out = t
        .push(vec![
            d("a", "k1", long),
            d("b", "k1", long),
            item("c"),
            d("e", "k2", BRIEF),
        ])
        .await;
    assert_eq!(
        out,
        [
            Pushed::Pushed(1),
            Pushed::Duplicate(1),
            Pushed::Pushed(2),
            Pushed::Pushed(3)
        ]
    );
    assert_eq!(
        t.push(vec![d("x", "k1", long), d("y", "k2", long), item("z")])
            .await,
        [
            Pushed::Duplicate(1),
            Pushed::Duplicate(3),
            Pushed::Pushed(4)
        ]
    );
    // Acked or not, the key holds for its window.
    let first = t.recv(&t.a).await;
    assert_eq!(t.ack(&first).await, Settle::Done);
    assert_eq!(
        t.push(vec![d("again", "k1", long)]).await,
        [Pushed::Duplicate(1)]
    );
    sleep(BRIEF + MARGIN).await;
    assert_eq!(
        t.push(vec![d("later", "k2", long)]).await,
        [Pushed::Pushed(5)]
    );
    assert_eq!(t.places().await, (4, 0, 0, 0));
}
