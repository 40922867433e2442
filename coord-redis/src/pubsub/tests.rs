//! Tests of `pubsub`: which watches a message wakes, and what a cluster
//! hub's lost nodes and ended subscriptions ask for.

use super::*;

fn push(kind: PushKind, channel: &str) -> PushInfo {
    PushInfo {
        kind,
        data: vec![
            Value::BulkString(channel.as_bytes().to_vec()),
            Value::Int(0),
        ],
    }
}

fn slot(wake: Wake) -> Arc<Slot> {
    Arc::new(Slot {
        wake,
        pending: AtomicBool::new(false),
        taken: AtomicBool::new(false),
        notify: Notify::new(),
        feed: None,
    })
}

fn message(channel: &str, msg: &str) -> PushInfo {
    PushInfo {
        kind: PushKind::Message,
        data: vec![
            Value::BulkString(channel.as_bytes().to_vec()),
            Value::BulkString(msg.as_bytes().to_vec()),
        ],
    }
}

/// `next <holder>` wakes that fair waiter (not the other, however old)
/// and, like `released`, one plain waiter and every `All` watch; a
/// plain `released` wakes every fair waiter; anything else, everyone.
#[test]
fn a_named_release_wakes_its_fair_waiter_alone() {
    let channels = Channels::default();
    let queued = |h: &str| slot(Wake::Queued(h.as_bytes().into()));
    let (other, head, one, later, all) = (
        queued("w#2"),
        queued("w#1"),
        slot(Wake::One),
        slot(Wake::One),
        slot(Wake::All),
    );
    let slots = [&other, &head, &one, &later, &all];
    channels.0.lock().unwrap().channels.insert(
        "c".into(),
        Entry {
            confirmed: true,
            watches: (0..).zip(slots.map(|s| s.clone())).collect(),
        },
    );
    let woken = |msg: &str| {
        channels.dispatch(message("c", msg), 0);
        slots.map(|s| s.pending.swap(false, Ordering::AcqRel))
    };
    assert_eq!(woken("next w#1"), [false, true, true, false, true]);
    assert_eq!(woken("next w#3"), [false, false, true, false, true]);
    assert_eq!(woken("released"), [true, true, true, false, true]);
    assert_eq!(woken("forced"), [true; 5]);
    assert_eq!(woken("next w#"), [false, false, true, false, true]);
}

/// A cluster hub's channels (what they ask to subscribe again goes to
/// the receiver) with one watch of channel `c`, subscribed.
fn a_cluster_hubs_watch() -> (
    Channels,
    Arc<Slot>,
    tokio::sync::mpsc::UnboundedReceiver<Again>,
) {
    let channels = Channels::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    channels.0.lock().unwrap().dropped = Some(tx);
    let slot = slot(Wake::One);
    channels.0.lock().unwrap().channels.insert(
        "c".into(),
        Entry {
            confirmed: true,
            watches: BTreeMap::from([(0, slot.clone())]),
        },
    );
    (channels, slot, rx)
}

/// A sharded subscription the server ended while watched wakes every
/// watch, tells listeners messages may be lost, and asks for the
/// channel to be subscribed again; one nobody watches is ignored.
#[test]
fn a_dropped_sharded_subscription_wakes_and_is_asked_again() {
    let (channels, slot, mut rx) = a_cluster_hubs_watch();
    channels.dispatch(push(PushKind::SUnsubscribe, "other"), 0);
    assert!(!slot.is_pending());
    assert!(rx.try_recv().is_err());
    channels.dispatch(push(PushKind::SUnsubscribe, "c"), 0);
    assert!(slot.is_pending());
    assert_eq!(rx.try_recv().unwrap(), Again::Channel("c".into()));
    assert!(!channels.0.lock().unwrap().channels["c"].confirmed);
}

/// A cluster's pub/sub connection that lost a node wakes every watch
/// and asks for a new connection with every channel on it.
#[test]
fn a_lost_node_wakes_and_asks_for_every_channel_again() {
    let (channels, slot, mut rx) = a_cluster_hubs_watch();
    channels.dispatch(push(PushKind::Disconnection, ""), 0);
    assert!(slot.is_pending());
    assert_eq!(rx.try_recv().unwrap(), Again::All(0));
}

/// Once the connection was replaced, the old one's lost nodes and
/// ended subscriptions neither wake nor ask for anything (each would
/// have woken every waiter and built yet another connection); the
/// new one's do, and its messages and the old one's still wake.
#[test]
fn a_replaced_connection_is_past() {
    let (channels, slot, mut rx) = a_cluster_hubs_watch();
    channels.0.lock().unwrap().connection = 1;
    channels.dispatch(push(PushKind::Disconnection, ""), 0);
    channels.dispatch(push(PushKind::SUnsubscribe, "c"), 0);
    assert!(!slot.is_pending());
    assert!(rx.try_recv().is_err());
    assert!(channels.0.lock().unwrap().channels["c"].confirmed);
    channels.dispatch(message("c", "released"), 0);
    assert!(slot.pending.swap(false, Ordering::AcqRel));
    channels.dispatch(push(PushKind::Disconnection, ""), 1);
    assert!(slot.is_pending());
    assert_eq!(rx.try_recv().unwrap(), Again::All(1));
}
