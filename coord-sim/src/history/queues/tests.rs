//! Unit tests of the queue checker on made-up histories: a clean history
//! passes, and each broken rule is reported by its checker.

use std::time::Duration;

use coord_api::spi::{Nack, Pushed};

use super::*;
use crate::history::{Write, tests::t};

const TTL: Duration = Duration::from_millis(3_000);
const PRESENCE: Duration = Duration::from_millis(1_000);

/// An event at `ms` (the server's clock reads the same).
fn ev(ms: u64, op: QueueOp) -> QueueEvent {
    QueueEvent {
        queue: "q".into(),
        at: t(ms),
        now: t(ms),
        op,
    }
}

fn push(ms: u64, names: &[(&str, u64)]) -> QueueEvent {
    let items = (names.iter())
        .map(|&(name, id)| PushedItem {
            name: name.into(),
            priority: 0,
            delay: None,
            max_attempts: 3,
            dedup: None,
            reply: Pushed::Pushed(id),
        })
        .collect();
    ev(ms, QueueOp::Push(items))
}

fn dl(id: u64, token: u64, attempt: u32, started: bool) -> Delivered {
    Delivered {
        id,
        token,
        attempt,
        max_attempts: 3,
        started,
        stolen: false,
        priority: 0,
    }
}

fn receive(ms: u64, consumer: &str, max: u32, deliveries: Vec<Delivered>) -> QueueEvent {
    ev(
        ms,
        QueueOp::Receive {
            consumer: consumer.into(),
            max,
            steal: true,
            ttl: TTL,
            presence_ttl: PRESENCE,
            receive_id: 0,
            deliveries,
            next_in: None,
        },
    )
}

fn ack(ms: u64, id: u64, token: u64, done: bool) -> QueueEvent {
    ev(ms, QueueOp::Ack { id, token, done })
}

fn handler(consumer: &str, id: u64, token: u64, attempt: u32, start: u64) -> Handler {
    Handler {
        process: consumer.into(),
        consumer: consumer.into(),
        queue: "q".into(),
        id,
        token,
        attempt,
        start: t(start),
        end: Some(t(start + 10)),
        ended: Some(HandlerEnd::Succeeded),
    }
}

fn write(id: u64, token: u64, at: u64) -> Write {
    Write {
        key: item_key("q", id),
        client: "c".into(),
        token,
        at: t(at),
    }
}

fn pushed(name: &str, id: u64, at: u64) -> PushAck {
    PushAck {
        producer: "p".into(),
        queue: "q".into(),
        name: name.into(),
        id,
        duplicate: false,
        at: t(at),
    }
}

/// Two items pushed; `a` delivered to c1, its presence renewed, acked;
/// `b` prefetched by c1, stolen by c2 (nothing ready), nacked once, then
/// delivered to c2 again, whose process dies: its presence ends before
/// the lease, and c1 takes `b` at that instant and acks it.
fn clean() -> QueueHistory {
    let mut stolen = dl(2, 30, 1, true);
    stolen.stolen = true;
    let events = vec![
        push(0, &[("a", 1), ("b", 2)]),
        receive(10, "c1", 2, vec![dl(1, 10, 1, true), dl(2, 20, 1, false)]),
        receive(20, "c2", 1, vec![stolen]),
        ev(
            200,
            QueueOp::Heartbeat {
                consumer: "c1".into(),
                ttl: PRESENCE,
            },
        ),
        ack(300, 1, 10, true),
        ev(
            400,
            QueueOp::Nack {
                id: 2,
                token: 30,
                retry_in: Duration::ZERO,
                reply: Nack::Requeued,
            },
        ),
        receive(410, "c2", 1, vec![dl(2, 40, 2, true)]),
        // c2 dies: its presence (renewed at 410) ends at 1410, its lease
        // only at 3410; c1 (renewed at 1200) takes `b` at 1410.
        ev(
            1_200,
            QueueOp::Heartbeat {
                consumer: "c1".into(),
                ttl: PRESENCE,
            },
        ),
        receive(1_410, "c1", 1, vec![dl(2, 50, 3, true)]),
        ack(1_500, 2, 50, true),
    ];
    QueueHistory {
        events,
        server_now: t(5_000),
        pushes: vec![pushed("a", 1, 5), pushed("b", 2, 5)],
        handlers: vec![
            handler("c1", 1, 10, 1, 20),
            handler("c2", 2, 30, 1, 30),
            handler("c2", 2, 40, 2, 420),
            handler("c1", 2, 50, 3, 1_420),
        ],
        left: Vec::new(),
        writes: vec![
            write(1, 10, 30),
            write(2, 30, 40),
            write(2, 40, 430),
            write(2, 50, 1_430),
        ],
        dead: vec![("q".into(), Some(Vec::new()))],
        healed: t(1_000),
        drained: Some(t(2_000)),
        drain_bound: Duration::from_secs(30),
    }
}

fn checkers(h: &QueueHistory) -> Vec<&'static str> {
    let mut c: Vec<&'static str> = check_queues(h).into_iter().map(|v| v.checker).collect();
    c.sort();
    c.dedup();
    c
}

#[test]
fn a_clean_history_passes() {
    let h = clean();
    assert_eq!(check_queues(&h), Vec::new());
    let c = queue_counts(&h);
    assert_eq!((c.delivered, c.stolen, c.acked, c.nacked), (5, 1, 2, 1));
    assert_eq!((c.reclaimed, c.reclaimed_early, c.duplicates), (1, 1, 1));
    // b's duplicate: the handler of token 40 and the one of token 50.
}

#[test]
fn a_stale_ack_accepted_is_caught() {
    let mut h = clean();
    h.events.push(ack(1_600, 2, 40, true));
    assert_eq!(checkers(&h), ["queue-acked-twice", "queue-settle"]);
}

#[test]
fn an_item_never_acked_is_lost() {
    let mut h = clean();
    h.events.truncate(8);
    h.handlers.pop();
    h.writes.pop();
    // b (its second attempt of three) stays in flight to c2 until c2's
    // presence ends, then ready: never acked.
    assert_eq!(checkers(&h), ["queue-lost"]);
    // Had that been its last attempt, it would be dead (and listed).
    let mut h = clean();
    h.events.pop();
    h.handlers.pop();
    assert_eq!(checkers(&h), ["queue-dead"]);
}

#[test]
fn a_returned_item_left_out_is_caught() {
    let mut h = clean();
    // At 1410 c1 receives nothing although b came back when c2's presence
    // ended: work stealing from the dead is missing.
    h.events[8] = receive(1_410, "c1", 1, Vec::new());
    h.events.truncate(9);
    h.handlers.pop();
    h.writes.pop();
    let c = checkers(&h);
    assert!(c.contains(&"queue-reclaim"), "{c:?}");
}

#[test]
fn a_delivery_while_the_lease_is_valid_is_a_duplicate() {
    let mut h = clean();
    // c2's presence renewed: b is still validly c2's at 1410.
    h.events.insert(
        7,
        ev(
            1_000,
            QueueOp::Heartbeat {
                consumer: "c2".into(),
                ttl: PRESENCE,
            },
        ),
    );
    let c = checkers(&h);
    assert!(c.contains(&"queue-duplicate"), "{c:?}");
}

#[test]
fn a_started_delivery_stolen_is_caught() {
    let mut h = clean();
    // c1 starts b (extend) before c2 steals it.
    h.events.insert(
        2,
        ev(
            15,
            QueueOp::Extend {
                id: 2,
                token: 20,
                ttl: TTL,
                done: true,
            },
        ),
    );
    let c = checkers(&h);
    assert!(c.contains(&"queue-steal-started"), "{c:?}");
}

#[test]
fn tokens_going_back_are_caught() {
    let mut h = clean();
    let QueueOp::Receive { deliveries, .. } = &mut h.events[8].op else {
        unreachable!()
    };
    deliveries[0].token = 35;
    h.handlers[3].token = 35;
    h.writes[3].token = 35;
    let c = checkers(&h);
    assert!(c.contains(&"queue-tokens"), "{c:?}");
}

#[test]
fn attempts_past_the_maximum_and_missing_deaths_are_caught() {
    let mut h = clean();
    // b's last attempt fails: it must die, not be requeued.
    h.events[9] = ev(
        1_500,
        QueueOp::Nack {
            id: 2,
            token: 50,
            retry_in: Duration::ZERO,
            reply: Nack::Requeued,
        },
    );
    let c = checkers(&h);
    assert!(c.contains(&"queue-attempts"), "{c:?}");
    // Answered as the rules say, it is dead, and must be listed.
    h.events[9] = ev(
        1_500,
        QueueOp::Nack {
            id: 2,
            token: 50,
            retry_in: Duration::ZERO,
            reply: Nack::DeadLettered,
        },
    );
    assert_eq!(checkers(&h), ["queue-dead"]);
    h.dead = vec![(
        "q".into(),
        Some(vec![Listed {
            id: 2,
            attempts: 3,
            reason: "boom".into(),
        }]),
    )];
    assert_eq!(check_queues(&h), Vec::new());
}

#[test]
fn writes_with_foreign_tokens_and_unstarted_handlers_are_caught() {
    let mut h = clean();
    h.writes.push(write(1, 20, 50));
    assert_eq!(checkers(&h), ["queue-fencing"]);
    let mut h = clean();
    // A handler running b's prefetched delivery (never started by c1).
    h.handlers.push(handler("c1", 2, 20, 1, 15));
    assert!(checkers(&h).contains(&"queue-handler"));
}

#[test]
fn an_acknowledged_push_missing_from_the_log_is_lost() {
    let mut h = clean();
    h.pushes.push(pushed("c", 3, 50));
    assert_eq!(checkers(&h), ["queue-lost"]);
}

#[test]
fn a_restart_forgets_items_and_keeps_token_order() {
    let mut h = clean();
    h.events.truncate(4);
    h.events.push(ev(250, QueueOp::Restart));
    // The old delivery's ack is refused; a new incarnation numbers from 1.
    h.events.push(ack(300, 1, 10, false));
    h.events.push(push(310, &[("c", 1)]));
    h.events
        .push(receive(320, "c1", 1, vec![dl(1, 60, 1, true)]));
    h.events.push(ack(330, 1, 60, true));
    h.pushes.push(pushed("c", 1, 315));
    h.handlers = vec![handler("c1", 1, 10, 1, 20), handler("c1", 1, 60, 1, 321)];
    h.writes = vec![write(1, 10, 30), write(1, 60, 325)];
    assert_eq!(check_queues(&h), Vec::new());
    assert_eq!(queue_counts(&h).lost_to_restarts, 2);
    // An old token accepted after the restart is caught.
    h.events[5] = ack(300, 1, 10, true);
    assert!(checkers(&h).contains(&"queue-settle"));
}

#[test]
fn next_in_names_the_earliest_deadline() {
    let mut h = clean();
    // At 20, after c2's steal, an empty receive of c3: the next instant is
    // c1's presence end (1010, it holds a) vs a's deadline (3010) and
    // c2's presence (1020): 985 ms.
    let mut e = receive(25, "c3", 1, Vec::new());
    if let QueueOp::Receive { next_in, .. } = &mut e.op {
        *next_in = Some(Duration::from_millis(985));
    }
    h.events.insert(3, e.clone());
    assert_eq!(check_queues(&h), Vec::new());
    if let QueueOp::Receive { next_in, .. } = &mut h.events[3].op {
        *next_in = Some(Duration::from_millis(3_000));
    }
    assert_eq!(checkers(&h), ["queue-next-in"]);
}

#[test]
fn a_leave_nobody_asked_for_is_caught() {
    let mut h = clean();
    // c2 leaves at 420, just after its receive, holding b (started).
    h.events.insert(
        7,
        ev(
            420,
            QueueOp::Leave {
                consumer: "c2".into(),
                returned: 1,
            },
        ),
    );
    // b is ready again from 420: c1 takes it at 1410 (no reclaim then).
    assert_eq!(checkers(&h), ["queue-leave"]);
    let c = queue_counts(&h);
    assert_eq!((c.unasked_leaves, c.unasked_leave_duplicates), (1, 1));
    // Asked for, it is a leave like any other.
    h.left.push("c2".into());
    assert_eq!(check_queues(&h), Vec::new());
    assert_eq!(queue_counts(&h).unasked_leaves, 0);
}

/// A receive of c1 whose answer never came (id 7): its delivery given
/// back at once, then delivered to c2 as attempt 1 (the attempt taken
/// back), worked on and acked.
fn given_back() -> QueueHistory {
    let mut lost = receive(10, "c1", 1, vec![dl(1, 10, 1, true)]);
    if let QueueOp::Receive { receive_id, .. } = &mut lost.op {
        *receive_id = 7;
    }
    let give_back = |receive_id, returned| {
        ev(
            20,
            QueueOp::GiveBack {
                consumer: "c1".into(),
                receive_id,
                returned,
            },
        )
    };
    QueueHistory {
        events: vec![
            push(0, &[("a", 1)]),
            lost,
            give_back(7, 1),
            receive(30, "c2", 1, vec![dl(1, 20, 1, true)]),
            ack(100, 1, 20, true),
        ],
        server_now: t(5_000),
        pushes: vec![pushed("a", 1, 5)],
        handlers: vec![handler("c2", 1, 20, 1, 40)],
        left: Vec::new(),
        writes: vec![write(1, 20, 45)],
        dead: vec![("q".into(), Some(Vec::new()))],
        healed: t(1_000),
        drained: Some(t(2_000)),
        drain_bound: Duration::from_secs(30),
    }
}

#[test]
fn a_give_back_is_replayed_and_a_wrong_one_caught() {
    let h = given_back();
    assert_eq!(check_queues(&h), Vec::new());
    assert_eq!(
        queue_counts(&h).redelivered,
        0,
        "the attempt was taken back"
    );
    // The backend answered that it gave back nothing.
    let mut h = given_back();
    if let QueueOp::GiveBack { returned, .. } = &mut h.events[2].op {
        *returned = 0;
    }
    assert_eq!(checkers(&h), ["queue-give-back"]);
    // Another receive's id gave back c1's delivery.
    let mut h = given_back();
    if let QueueOp::GiveBack { receive_id, .. } = &mut h.events[2].op {
        *receive_id = 8;
    }
    assert!(checkers(&h).contains(&"queue-give-back"));
    // c1 had seen the delivery (its handler ran it): given back, c2's is
    // a duplicate no lease ending explains.
    let mut h = given_back();
    h.handlers.insert(0, handler("c1", 1, 10, 1, 15));
    h.writes.insert(0, write(1, 10, 16));
    assert!(checkers(&h).contains(&"queue-duplicate"));
}
