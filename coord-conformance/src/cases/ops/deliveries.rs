//! Work queues' and topic subscriptions' deliveries are leases to
//! operations: listed (which item or event, which consumer, started or
//! prefetched, token, time left; stale when the consumer's instance is
//! gone) and revoked by naming the item or event — returned as an expired
//! delivery is, the consumer's lost signal firing, a waiting consumer
//! woken.

use super::*;
use crate::cases::{
    queues::{PROMPTLY, PushOptions, Q, QueueBackend, ReceiveOptions, crashed, numbers, within},
    topics::{self, ReadOptions, Start, event},
};

/// The deliveries `op` lists for the queue (of every kind's listing).
async fn deliveries(op: &Operations) -> Vec<LeaseRecord> {
    let all = op.leases(&LeaseFilter::all()).await.unwrap();
    (all.into_iter().map(|l| l.lease))
        .filter(|l| l.resource.kind == ResourceKind::Queue)
        .collect()
}

/// The message of an `InvalidArgument`, or a panic naming `what`.
#[track_caller]
fn refused<T: std::fmt::Debug>(res: Result<T>, what: &str) -> String {
    match res {
        Err(Error::InvalidArgument { message }) => message,
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Walks `op`'s listing of `kind` in pages of 3: the tokens seen, each
/// record's text form read back as its resource, naming that delivery
/// alone.
async fn walk_in_threes(op: &Operations, kind: ResourceKind) -> Vec<coord_api::FencingToken> {
    let mut walk = op.walk(LeaseFilter::all().kind(kind)).page_size(3).unwrap();
    let (mut seen, mut pages) = (Vec::new(), 0);
    while let Some(page) = walk.next_page().await.unwrap() {
        assert!(page.len() <= 3, "a page of {}", page.len());
        for l in &page {
            let text = l.lease.resource.to_string();
            assert_eq!(res(&text), l.lease.resource, "{text} reads back");
            let one = op.holders(&res(&text)).await.unwrap();
            assert_eq!(one.len(), 1, "{text}: {one:?}");
            seen.push(l.lease.token.expect("a token"));
        }
        pages += 1;
        assert!(pages <= 20, "the walk does not end");
    }
    seen.sort();
    seen
}

cases! {
    family: "ops", needs: [Need::Ops];

/// A consumer prefetching three items holds one started delivery and two
/// prefetched ones: `leases()` lists the three under `queue:q@<item>` with
/// the consumer as holder, the roles `delivery` and `prefetched`, each
/// delivery's token and time left; `holders()` lists the queue's (or one
/// item's); the kind filter keeps them; a delivery to a consumer whose
/// instance has no presence is stale; settled deliveries are gone.
#[needs(Need::Queues)]
pub async fn deliveries_are_listed_by_item_with_consumer_and_token(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client("a").await;
    let ids: Vec<u64> = (numbers(&a).push_many(&[1, 2, 3, 4, 5]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut consumer = numbers(&a).consumer().prefetch(3).ttl(ms(30_000));
    let first = within(consumer.receive(), "the first").await;
    assert_eq!(first.id(), ids[0]);
    appears(&op, "a").await;
    let listed = deliveries(&op).await;
    let view: Vec<(String, Role)> =
        (listed.iter()).map(|l| (l.resource.to_string(), l.role)).collect();
    let want = [
        (format!("queue:q@{}", ids[0]), Role::Delivery),
        (format!("queue:q@{}", ids[1]), Role::Prefetched),
        (format!("queue:q@{}", ids[2]), Role::Prefetched),
    ];
    let mut sorted = view.clone();
    sorted.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(sorted, want, "{listed:?}");
    for l in &listed {
        assert_eq!(&l.holder, consumer.holder(), "{l:?}");
        assert!(l.expires_in > ms(20_000) && l.expires_in <= ms(30_000), "{l:?}");
        assert_eq!(l.holds, 1);
    }
    let tokens: Vec<_> = listed.iter().filter_map(|l| l.token).collect();
    assert_eq!(tokens.len(), 3, "every delivery has its token");
    assert!(tokens.contains(&first.token()), "{tokens:?}");
    let one = op.holders(&res(&format!("queue:q@{}", ids[0]))).await.unwrap();
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!((one[0].lease.token, one[0].lease.role), (Some(first.token()), Role::Delivery));
    assert!(one[0].holder_alive, "a's instance is live: {one:?}");
    assert_eq!(op.holders(&res("queue:q")).await.unwrap().len(), 3);
    let filtered = LeaseFilter::all().kind(ResourceKind::Queue);
    assert_eq!(op.leases(&filtered).await.unwrap().len(), 3);
    assert!(op.leases(&LeaseFilter::all().kind(ResourceKind::Lock)).await.unwrap().is_empty());
    // A consumer of an instance with no presence (it received through the
    // SPI): its delivery is listed, and stale.
    let backend = ctx.backend().await;
    let queues = backend.queues().expect("the backend offers work queues");
    let opts = ReceiveOptions::new(ms(30_000), ms(30_000));
    let got = queues.receive(&key(Q), &crashed(), opts).await.unwrap().deliveries;
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[3]]);
    let stale = op.stale().await.unwrap();
    let view: Vec<String> = stale.iter().map(|l| l.lease.resource.to_string()).collect();
    assert_eq!(view, [format!("queue:q@{}", ids[3])], "only the crashed consumer's");
    // A consumer whose presence ended (100 ms) holds nothing, though its
    // delivery's own lease (30 s) has not ended: the queue's next step
    // gives it back.
    let vanished = HolderId::new(InstanceId::new("vanished").unwrap());
    let opts = ReceiveOptions::new(ms(30_000), ms(100));
    let got = queues.receive(&key(Q), &vanished, opts).await.unwrap().deliveries;
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[4]]);
    sleep(ms(400)).await;
    let listed = op.holders(&res("queue:q")).await.unwrap();
    assert!(listed.iter().all(|l| l.lease.holder != vanished), "{listed:?}");
    assert_eq!(listed.len(), 4, "{listed:?}");
    // Settled: no longer listed.
    within(first.ack(), "ack").await;
    let left = op.holders(&res("queue:q")).await.unwrap();
    assert!(left.iter().all(|l| l.lease.resource.item != Some(ids[0])), "{left:?}");
    assert_eq!(left.len(), 3, "{left:?}");
}

/// An operator revokes a wedged consumer's delivery by item and token: the
/// item is ready again at once (a consumer waiting for it gets it
/// promptly, as attempt 2, with a larger token), the wedged consumer's lost
/// signal fires and its ack is refused, the audit trail records it; aimed
/// at the old token again, `NotFound` names the new delivery's token; on
/// an item's last attempt the item goes to the dead letters with
/// `revoked by an operator`.
#[needs(Need::Queues)]
pub async fn force_release_of_a_delivery_returns_its_item(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let id = numbers(&a).push(&1).await.unwrap().id();
    let opts = default_options().ttl(ms(30_000)).extend_interval(Some(ms(200)));
    let mut wedged = numbers(&a).consumer().with_options(opts);
    let d = within(wedged.receive(), "the item").await;
    let token = d.token();
    let mut other = numbers(&b).consumer().wait_timeout(Some(ms(20_000)));
    let waiting = tokio::spawn(async move {
        let got = other.receive().await;
        (other, got)
    });
    // Lets b find the queue empty and wait: had it not yet, it would get
    // the item at its first try and prove less, never fail.
    sleep(ms(300)).await;
    let item = res(&format!("queue:q@{id}"));
    let forced = op.force_release(&item, d.token(), "handler wedged").await.unwrap();
    assert_eq!(forced, Forced::Released { holder: wedged.holder().clone() });
    let (other, again) = timeout(PROMPTLY, waiting)
        .await
        .expect("b woken promptly")
        .unwrap();
    let again = again.expect("b's receive");
    assert_eq!((again.id(), again.attempt()), (id, 2));
    assert!(again.token() > d.token(), "{:?} after {:?}", again.token(), d.token());
    timeout(PROMPTLY, d.lost().wait()).await.expect("a's lost signal fires");
    assert!(matches!(d.ack().await, Err(Error::LeaseLost { .. })), "a's ack refused");
    let r = op.audit(1).await.unwrap().remove(0);
    assert_eq!((&r.resource, r.token, r.reason.as_str()), (&item, token, "handler wedged"));
    let stale = op.force_release(&item, token, "again").await.unwrap();
    assert_eq!(stale, Forced::NotFound { current: vec![again.token()] });
    within(again.ack(), "b's ack").await;
    drop(other);
    // The item's last attempt: dead, with the revocation as its reason.
    let last = numbers(&a).push_with(&2, PushOptions::new().max_attempts(1)).await;
    let last = last.unwrap().id();
    let d = within(wedged.receive(), "the last attempt").await;
    assert_eq!(d.id(), last);
    let item = res(&format!("queue:q@{last}"));
    let forced = op.force_release(&item, d.token(), "poison").await.unwrap();
    assert!(matches!(forced, Forced::Released { .. }), "{forced:?}");
    let dead = numbers(&a).dead_letters(0, 10).await.unwrap();
    let view: Vec<(u64, &str)> = dead.iter().map(|d| (d.id, d.reason.as_str())).collect();
    assert_eq!(view, [(last, coord_api::spi::queues::REVOKED)]);
}

/// A revocation names the item whose delivery it revokes: a queue alone is
/// refused with `InvalidArgument` (saying how to name it), before any
/// change; an item nobody holds is `NotFound` with no token.
#[needs(Need::Queues)]
pub async fn force_release_of_a_queue_names_the_item(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client("a").await;
    let id = numbers(&a).push(&1).await.unwrap().id();
    let mut consumer = numbers(&a).consumer().ttl(ms(30_000));
    let d = within(consumer.receive(), "the item").await;
    let message = refused(op.force_release(&res("queue:q"), d.token(), "x").await, "no item");
    assert!(message.contains("queue:q") && message.contains("@ITEM"), "{message}");
    within(d.extend(), "a still holds it").await;
    let backend = ctx.backend().await;
    let queues: &dyn QueueBackend = backend.queues().expect("queues");
    let free = op.force_release(&res(&format!("queue:q@{}", id + 1)), d.token(), "x").await;
    assert_eq!(free.unwrap(), Forced::NotFound { current: vec![] });
    let s = queues.stats(&key(Q)).await.unwrap();
    assert_eq!(s.in_flight, 1, "nothing changed: {s:?}");
}

/// A subscription's deliveries are listed as `topic:t@s@<offset>` with
/// their subscriber, token and time left (`holders` of the subscription,
/// or of one event; a subscription of another topic not among them), and
/// one is revoked by offset and token: the event goes back to the
/// subscription at once (another subscriber waiting gets it promptly, as
/// attempt 2, with a larger token), the first subscriber's lost signal
/// fires; a revocation without the offset is `InvalidArgument`, and one
/// with the old token `NotFound` naming the new delivery's.
#[needs(Need::Topics)]
pub async fn topic_deliveries_are_listed_and_revoked_by_offset(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let opts = default_options().ttl(ms(30_000)).extend_interval(Some(ms(200)));
    let mut wedged = topics::numbers(&a).subscriber("s").start(Start::Earliest).with_options(opts);
    wedged.subscribe().await.unwrap();
    topics::numbers(&a).publish(&1).await.unwrap();
    let d = event(&mut wedged, "the event").await;
    assert_eq!(d.offset(), 1);
    // A subscription of another topic, with a delivery of its own.
    let backend = ctx.backend().await;
    let other = key("other");
    let spi = topics::spi(&backend);
    spi.subscribe(&other, &key("s"), Start::Earliest).await.unwrap();
    a.topic::<u64>("other").publish(&7).await.unwrap();
    let read = ReadOptions::new(ms(30_000), ms(30_000), 1);
    let got = spi.read(&other, &key("s"), &crashed(), read).await.unwrap().unwrap();
    assert_eq!(got.events.len(), 1);
    appears(&op, "a").await;
    let listed = op.holders(&res("topic:t@s")).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let l = &listed[0].lease;
    assert_eq!((l.resource.to_string(), l.role), ("topic:t@s@1".to_owned(), Role::Delivery));
    assert_eq!((&l.holder, l.token), (wedged.holder(), Some(d.token())));
    assert!(l.expires_in > ms(20_000) && l.expires_in <= ms(30_000), "{l:?}");
    assert!(listed[0].holder_alive, "{listed:?}");
    assert_eq!(op.holders(&res("topic:t@s@1")).await.unwrap().len(), 1);
    assert!(op.holders(&res("topic:t@s@2")).await.unwrap().is_empty());
    let all: Vec<String> = (op.leases(&LeaseFilter::all().kind(ResourceKind::Topic)).await)
        .unwrap()
        .iter()
        .map(|l| l.lease.resource.to_string())
        .collect();
    let mut all = all;
    all.sort();
    assert_eq!(all, ["topic:other@s@1", "topic:t@s@1"]);
    let stale = op.stale().await.unwrap();
    let stale: Vec<String> = stale.iter().map(|l| l.lease.resource.to_string()).collect();
    assert_eq!(stale, ["topic:other@s@1"], "the crashed subscriber's alone");
    // Revoked: the event comes back to a waiting subscriber.
    let message = refused(op.force_release(&res("topic:t@s"), d.token(), "x").await, "no offset");
    assert!(message.contains("@OFFSET"), "{message}");
    let mut waiting = topics::numbers(&b).subscriber("s").wait_timeout(Some(ms(20_000)));
    let next = tokio::spawn(async move {
        let got = waiting.next().await;
        (waiting, got)
    });
    // Lets b find nothing and wait: had it not yet, it would get the event
    // at its first try and prove less, never fail.
    sleep(ms(300)).await;
    let token = d.token();
    let forced = op.force_release(&res("topic:t@s@1"), token, "stuck handler").await.unwrap();
    assert_eq!(forced, Forced::Released { holder: wedged.holder().clone() });
    let (_waiting, again) = timeout(PROMPTLY, next).await.expect("b woken promptly").unwrap();
    let again = match again.expect("b's next") {
        coord_api::Next::Event(e) => e,
        other => panic!("expected the event again, got {other:?}"),
    };
    assert_eq!((again.offset(), again.attempt()), (1, 2));
    assert!(again.token() > token, "{:?} after {token:?}", again.token());
    timeout(PROMPTLY, d.lost().wait()).await.expect("a's lost signal fires");
    let stale = op.force_release(&res("topic:t@s@1"), token, "again").await.unwrap();
    assert_eq!(stale, Forced::NotFound { current: vec![again.token()] });
    within(again.ack(), "b's ack").await;
}

/// A queue and a subscription (names holding `@`, `\`, `}` and `:`) with
/// seven deliveries each, walked in pages of 3: each delivery is listed
/// exactly once (the walk resumes inside the queue or subscription), and
/// each record's text form reads back as its resource, names that
/// delivery alone, and revokes it.
#[needs(Need::Queues, Need::Topics)]
pub async fn deliveries_walk_in_pages_under_any_name(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client("a").await;
    let backend = ctx.backend().await;
    let (queue, topic, sub) = ("o@r}:l\\", "p@}:x\\", "b\\@:f}");
    let q: coord_api::Queue<u64> = a.queue(queue);
    q.push_many(&[1, 2, 3, 4, 5, 6, 7]).await.unwrap();
    let opts = ReceiveOptions::new(ms(30_000), ms(30_000)).max(7);
    let queues = backend.queues().expect("queues");
    let got = queues.receive(&key(queue), &crashed(), opts).await.unwrap().deliveries;
    let mut tokens: Vec<_> = got.iter().map(|d| d.token).collect();
    tokens.sort();
    assert_eq!(walk_in_threes(&op, ResourceKind::Queue).await, tokens);
    let spi = topics::spi(&backend);
    spi.subscribe(&key(topic), &key(sub), Start::Earliest).await.unwrap();
    let t: coord_api::Topic<u64> = a.topic(topic);
    for i in 0..7u64 {
        t.publish(&i).await.unwrap();
    }
    let read = ReadOptions::new(ms(30_000), ms(30_000), 7);
    let events = spi.read(&key(topic), &key(sub), &crashed(), read).await.unwrap().unwrap();
    let mut tokens: Vec<_> = events.events.iter().map(|d| d.token).collect();
    tokens.sort();
    assert_eq!(walk_in_threes(&op, ResourceKind::Topic).await, tokens);
    // Revoked through their text forms.
    let item = Resource::delivery(key(queue), got[3].id).to_string();
    let forced = op.force_release(&res(&item), got[3].token, "x").await.unwrap();
    assert!(matches!(forced, Forced::Released { .. }), "{item}: {forced:?}");
    let offset = events.events[3].event.offset;
    let event = Resource::event_delivery(key(topic), key(sub), offset).to_string();
    let forced = op.force_release(&res(&event), events.events[3].token, "x").await.unwrap();
    assert!(matches!(forced, Forced::Released { .. }), "{event}: {forced:?}");
    assert_eq!(op.leases(&LeaseFilter::all()).await.unwrap().len(), 12);
}
}
