//! Unit tests of `queues`: the layout, the arguments, the limits and the
//! decoding of replies (the script itself runs against a real server in
//! `tests/queues/`).

use coord_api::{
    Error, InstanceId, MIN_TTL,
    spi::{
        MAX_BATCH, MAX_DEAD_KEPT, MAX_ITEM_ATTEMPTS, MAX_PAYLOAD_BYTES, MAX_PRIORITY,
        MAX_REASON_BYTES,
    },
};

use super::*;
use crate::{eval, keys::hash_tag};

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// The names of `queue`'s keys (the one the EVALSHA passes first, then
/// those the script builds from it), then its channel.
fn layout(ns: &Namespace, queue: &str) -> (Vec<String>, String) {
    let mut n = queue_names(ns, &k(queue));
    let keys = [READY, 'w', 'l', 'p', 'f', 'm', 'x', 'o']
        .iter()
        .map(|p| n.name(*p))
        .collect();
    (keys, n.name('c'))
}

#[test]
fn every_key_of_a_queue_shares_its_slot_and_never_collides() {
    let ns = Namespace::new("ns").unwrap();
    let (keys, channel) = layout(&ns, "q");
    let want: Vec<String> = "rwlpfmxo"
        .chars()
        .map(|p| format!("coord:{{ns:queue:1:q}}:{p}"))
        .collect();
    assert_eq!(keys, want);
    assert_eq!(channel, "coord:{ns:queue:1:q}:c");
    let names = ["q", "q:1:q", "a}:x", "a", "{x}", "}", "ünï", "r", "q}:r"];
    let mut all = std::collections::HashSet::new();
    for q in names {
        let (keys, channel) = layout(&ns, q);
        let tag = hash_tag(&keys[0]);
        assert!(keys.iter().all(|x| hash_tag(x) == tag), "{keys:?}");
        assert_eq!(hash_tag(&channel), tag);
        for name in keys.into_iter().chain([channel]) {
            assert!(all.insert(name.clone()), "{name} twice");
        }
    }
    // Names the script builds from the base (KEYS[1] without its letter)
    // are in the same slot.
    let (keys, _) = layout(&ns, "a}:x");
    let base = &keys[0][..keys[0].len() - 1];
    for sub in ["17:i", "web-1#00ff:s", "order-7:k"] {
        assert_eq!(hash_tag(&format!("{base}{sub}")), hash_tag(&keys[0]));
    }
}

#[test]
fn evals_pass_the_layout_then_op_and_args() {
    let ns = Namespace::new("ns").unwrap();
    let mut eval = queue_eval(&ns, &k("q"), "ack", 2, 0);
    eval.arg(7u64).arg(99u64);
    let (keys, _) = layout(&ns, "q");
    let args = eval::written(&eval);
    assert_eq!(args[2], "1");
    assert_eq!(args[3], keys[0]);
    assert_eq!(args[4..], ["ack", "7", "99"]);
}

/// The script's constants are the SPI's.
#[test]
fn the_script_knows_the_limits() {
    let lua = include_str!("queue.lua");
    assert!(lua.contains(&format!("local MAX_PRIORITY = {MAX_PRIORITY}\n")));
    assert!(lua.contains(&format!("local MAX_DEAD_KEPT = {MAX_DEAD_KEPT}\n")));
    assert!(lua.contains(&format!("local PRIORITY_STEP = {}\n", 1u64 << 44)));
    // Every score is exact in a double.
    assert!((u64::from(MAX_PRIORITY) + 1) << 44 < 1 << 53);
}

#[test]
fn pushes_are_checked_naming_the_queue_and_the_limit() {
    let q = k("jobs");
    let ok = || NewItem::new(vec![0; MAX_PAYLOAD_BYTES], 1);
    assert!(check_push(&q, &[ok(), ok().priority(MAX_PRIORITY)]).is_ok());
    let refused = |items: Vec<NewItem>, needle: &str| {
        let err = check_push(&q, &items).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
        assert!(text.contains("\"jobs\"") && text.contains(needle), "{text}");
    };
    refused(
        vec![NewItem::new(vec![0; MAX_PAYLOAD_BYTES + 1], 1)],
        "524288",
    );
    refused(vec![ok().priority(MAX_PRIORITY + 1)], "limit of 9");
    refused(vec![NewItem::new(vec![], 0)], "1..=1000");
    refused(
        vec![NewItem::new(vec![], MAX_ITEM_ATTEMPTS + 1)],
        "1..=1000",
    );
    refused(
        vec![ok().delay(Some(MAX_TTL + Duration::from_millis(1)))],
        "delay",
    );
    refused(
        vec![ok().dedup(Some((k("d"), Duration::from_micros(10))))],
        "dedup window",
    );
    refused(
        vec![ok().dedup(Some((k("d"), MAX_TTL + Duration::from_secs(1))))],
        "dedup window",
    );
    refused(
        (0..=MAX_BATCH).map(|_| NewItem::new(vec![], 1)).collect(),
        "limit of 1000",
    );
    let receive = |max: u32| ReceiveOptions::new(MIN_TTL, MAX_TTL).max(max).check(&q);
    assert!(receive(1).is_ok());
    assert!(receive(MAX_BATCH as u32).is_ok());
    assert!(receive(0).is_err());
    let err = receive(MAX_BATCH as u32 + 1).unwrap_err();
    assert!(err.to_string().contains("\"jobs\""), "{err}");
}

#[test]
fn reasons_are_cut_at_a_character_boundary_and_durations_round_up() {
    let long = "é".repeat(MAX_REASON_BYTES);
    let c = cut_reason(long.clone());
    assert!(c.len() <= MAX_REASON_BYTES && c.len() >= MAX_REASON_BYTES - 1);
    assert!(long.starts_with(&c));
    assert_eq!(cut_reason("short".to_owned()), "short");
    assert_eq!(ms(Duration::from_micros(1_001)), 2);
    assert_eq!(ms(Duration::ZERO), 0);
    assert_eq!(ms(Duration::MAX), u64::MAX);
}

#[test]
fn replies_decode() {
    let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
    let a = Value::Array;
    let i = Value::Int;
    assert_eq!(
        push_reply(&a(vec![i(3), i(-1), i(4)])),
        Some(vec![
            Pushed::Pushed(3),
            Pushed::Duplicate(1),
            Pushed::Pushed(4)
        ])
    );
    assert_eq!(push_reply(&a(vec![i(0)])), None);
    let two = a(vec![
        i(-1),
        i(5),
        Value::BulkString(vec![0, 255]),
        i(2),
        i(3),
        i(1_700_000_000_000_001),
        i(1),
        i(7),
        i(6),
        s(""),
        i(1),
        i(1),
        i(1_700_000_000_000_002),
        i(2),
        i(0),
    ]);
    let r = receive_reply(&two).unwrap();
    assert_eq!(r.next_in, None);
    let first = &r.deliveries[0];
    assert_eq!(
        (
            first.id,
            &first.payload[..],
            first.attempt,
            first.max_attempts
        ),
        (5, &[0u8, 255][..], 2, 3)
    );
    assert_eq!(first.token, FencingToken(1_700_000_000_000_001));
    assert_eq!(
        (first.started, first.stolen, first.priority),
        (true, false, 7)
    );
    let second = &r.deliveries[1];
    assert_eq!((second.started, second.stolen), (false, true));
    assert_eq!(received(&two), ("delivered", Some(1_700_000_000_000_001)));
    let idle = a(vec![i(1500)]);
    assert_eq!(
        receive_reply(&idle),
        Some(Received::new(vec![], Some(Duration::from_millis(1500))))
    );
    assert_eq!(received(&idle), ("empty", None));
    assert_eq!(
        receive_reply(&a(vec![i(-1)])),
        Some(Received::new(vec![], None))
    );
    assert_eq!(receive_reply(&a(vec![i(-1), i(5)])), None);
    let dead = dead_reply(&a(vec![i(4), s("p"), i(2), s("boom"), i(1_000_000)])).unwrap();
    assert_eq!(
        dead,
        [DeadItem::new(
            4,
            b"p".to_vec(),
            2,
            "boom".into(),
            wall(1_000_000)
        )]
    );
    assert_eq!(dead_reply(&a(vec![i(4)])), None);
    let holder = HolderId::new(InstanceId::new("web-1").unwrap()).to_string();
    let reply = a(vec![
        i(1),
        i(2),
        i(3),
        i(4),
        i(5),
        i(6),
        i(7),
        i(8),
        s(&holder),
    ]);
    let (stats, consumers) = stats_reply(&reply).unwrap();
    assert_eq!(
        (stats.ready, stats.delayed, stats.in_flight, stats.dead),
        (1, 2, 3, 4)
    );
    assert_eq!(
        (
            stats.delivered,
            stats.redelivered,
            stats.stolen,
            stats.dead_lettered
        ),
        (5, 6, 7, 8)
    );
    assert_eq!(consumers, [holder.as_str()]);
    assert_eq!(stats_reply(&a(vec![i(1)])), None);
}
