//! Unit tests of `barriers`.

use super::*;
use crate::keys::hash_tag;

/// The keys of barrier `name` of `kind` as the EVALSHA passes them, then
/// its channel.
fn barrier_layout(ns: &Namespace, kind: BarrierKind, name: &str) -> (Vec<String>, String) {
    let mut names = barrier_names(ns, kind, &Key::new(name).unwrap());
    let keys = BARRIER_PARTS.iter().map(|p| names.name(*p)).collect();
    (keys, names.name('c'))
}

/// The keys of latch `name`, then its channel.
fn latch_layout(ns: &Namespace, name: &str) -> (Vec<String>, String) {
    let mut names = latch_names(ns, &Key::new(name).unwrap());
    let keys = LATCH_PARTS.iter().map(|p| names.name(*p)).collect();
    (keys, names.name('c'))
}

/// Every layout of `name`: cyclic, double, latch.
fn layouts(ns: &Namespace, name: &str) -> Vec<(Vec<String>, String)> {
    vec![
        barrier_layout(ns, BarrierKind::Cyclic, name),
        barrier_layout(ns, BarrierKind::Double, name),
        latch_layout(ns, name),
    ]
}

#[test]
fn keys_of_one_barrier_or_latch_share_its_slot() {
    let ns = Namespace::new("ns").unwrap();
    for name in ["b", "a}b", "{x}", "with:colons", "ünïcode"] {
        for (keys, channel) in layouts(&ns, name) {
            let tag = hash_tag(&keys[0]);
            assert!(keys.iter().all(|k| hash_tag(k) == tag), "{keys:?}");
            assert_eq!(hash_tag(&channel), tag);
        }
    }
    assert_eq!(
        layouts(&ns, "b"),
        [
            (
                [
                    "coord:{ns:barrier:b}:s",
                    "coord:{ns:barrier:b}:a",
                    "coord:{ns:barrier:b}:o",
                    "coord:{ns:barrier:b}:x",
                    "coord:{ns:barrier:b}:t",
                ]
                .map(String::from)
                .to_vec(),
                "coord:{ns:barrier:b}:c".to_owned()
            ),
            (
                [
                    "coord:{ns:double_barrier:b}:s",
                    "coord:{ns:double_barrier:b}:a",
                    "coord:{ns:double_barrier:b}:o",
                    "coord:{ns:double_barrier:b}:x",
                    "coord:{ns:double_barrier:b}:t",
                ]
                .map(String::from)
                .to_vec(),
                "coord:{ns:double_barrier:b}:c".to_owned()
            ),
            (
                [
                    "coord:{ns:latch:b}:s",
                    "coord:{ns:latch:b}:p",
                    "coord:{ns:latch:b}:t",
                    "coord:{ns:latch:b}:d",
                    "coord:{ns:latch:b}:e",
                ]
                .map(String::from)
                .to_vec(),
                "coord:{ns:latch:b}:c".to_owned()
            ),
        ]
    );
}

#[test]
fn kinds_names_and_namespaces_never_collide() {
    let names = [
        "b",
        "b}",
        "b}:s",
        "b}:s}",
        "a}:b",
        "a",
        "barrier:b",
        "double_barrier:b",
        "latch:b",
        "lock:b",
        "}",
        "b}:c",
    ];
    let mut all = std::collections::HashSet::new();
    let mut count = 0;
    for ns in ["ns", "ns2"] {
        let ns = Namespace::new(ns).unwrap();
        for name in names {
            for (keys, channel) in layouts(&ns, name) {
                for k in keys.into_iter().chain([channel]) {
                    count += 1;
                    assert!(all.insert(k.clone()), "{k} named twice");
                }
            }
        }
    }
    assert_eq!(all.len(), count);
    // Nor do they collide with a lock of the same name.
    let ns = Namespace::new("ns").unwrap();
    let lock = Names::new(&ns, &["lock", "b"], &[]).name('t');
    assert!(!all.contains(&lock));
}

#[test]
fn barrier_evals_pass_the_layout_then_op_channel_kind_args() {
    let ns = Namespace::new("ns").unwrap();
    let name = Key::new("b").unwrap();
    for (kind, letter) in [(BarrierKind::Cyclic, "c"), (BarrierKind::Double, "d")] {
        let mut eval = barrier_eval(&ns, kind, &name, "arrive", 0).unwrap();
        eval.arg("p").arg(7u64).arg(3u32).arg(1000u64);
        let (keys, channel) = barrier_layout(&ns, kind, "b");
        let args = eval::written(&eval);
        assert_eq!(args[2], "5");
        assert_eq!(args[3..8], keys[..]);
        assert_eq!(
            args[8..],
            ["arrive", &channel, letter, "p", "7", "3", "1000"]
        );
    }
}

#[test]
fn latch_evals_pass_the_layout_then_op_channel_args() {
    let ns = Namespace::new("ns").unwrap();
    let mut eval = latch_eval(&ns, &Key::new("l").unwrap(), "count_down", 0);
    eval.arg("p").arg(generation_arg(None)).arg(9u64);
    let (keys, channel) = latch_layout(&ns, "l");
    let args = eval::written(&eval);
    assert_eq!(args[2], "5");
    assert_eq!(args[3..8], keys[..]);
    assert_eq!(args[8..], ["count_down", &channel, "p", "", "9"]);
    assert_eq!(generation_arg(Some(u64::MAX)), u64::MAX.to_string());
}

#[test]
fn out_of_range_parties_and_counts_are_refused() {
    let name = Key::new("b").unwrap();
    for kind in [BarrierKind::Cyclic, BarrierKind::Double] {
        for bad in [0, MAX_PARTIES + 1] {
            let err = check_parties(kind, &name, bad).unwrap_err().to_string();
            assert!(err.contains("\"b\"") && err.contains("10000"), "{err}");
        }
        assert!(check_parties(kind, &name, 1).is_ok());
        assert!(check_parties(kind, &name, MAX_PARTIES).is_ok());
    }
    for bad in [0, MAX_LATCH_COUNT + 1] {
        let err = check_count(&name, bad).unwrap_err().to_string();
        assert!(err.contains("\"b\"") && err.contains("1000000"), "{err}");
    }
    assert!(check_count(&name, MAX_LATCH_COUNT).is_ok());
}

#[test]
fn replies_decode() {
    let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
    let a = Value::Array;
    let k = |t: &str| Key::new(t).unwrap();
    let trip = a(vec![
        s("c"),
        a(vec![s("a"), s("b"), s("c")]),
        a(vec![s("x")]),
    ]);
    let tripped = a(vec![
        Value::Int(5),
        Value::Int(9),
        s("tripped"),
        s("c"),
        a(vec![s("a"), s("b"), s("c")]),
        a(vec![s("x")]),
    ]);
    let want_trip = Trip::new(k("c"), vec![k("a"), k("b"), k("c")]).with_expired(vec![k("x")]);
    assert_eq!(
        arrive_reply(&a(vec![s("ended"), tripped.clone()])),
        Some(Arrive::Ended(EndedGeneration::new(
            5,
            9,
            Ended::Tripped(want_trip.clone())
        )))
    );
    assert_eq!(
        arrive_reply(&a(vec![s("entered"), trip.clone()])),
        Some(Arrive::Entered(want_trip.clone()))
    );
    let broken = a(vec![
        Value::Int(5),
        Value::Int(9),
        s("broken"),
        s("timeout"),
        s("x}\"y"),
        a(vec![s("x}\"y")]),
        a(vec![]),
        Value::Int(2),
    ]);
    assert_eq!(
        break_reply(&a(vec![s("ended"), broken])),
        Some(Break::Ended(EndedGeneration::new(
            5,
            9,
            Ended::Broken(Broken::new(
                BreakReason::Timeout { by: k("x}\"y") },
                vec![k("x}\"y")],
                vec![],
                2
            ))
        )))
    );
    assert_eq!(
        state_reply(&a(vec![
            Value::Int(5),
            Value::Int(-1),
            a(vec![]),
            a(vec![a(vec![s("a"), Value::Int(1500)])]),
            a(vec![]),
        ])),
        Some(BarrierState::new(
            5,
            None,
            None,
            vec![ArrivalInfo::new(k("a"), Duration::from_millis(1500))],
            None
        ))
    );
    assert_eq!(
        count_down_reply(&a(vec![s("counted"), Value::Int(5), Value::Int(0)])),
        Some(CountDown::Counted {
            generation: 5,
            remaining: 0
        })
    );
    assert_eq!(latch_state_reply(&a(vec![])), Some(None));
    // What the scripts never answer is refused, not guessed at.
    assert_eq!(arrive_reply(&a(vec![s("waiting")])), None);
    assert_eq!(arrive_reply(&a(vec![s("full"), Value::Int(-3)])), None);
    assert_eq!(leave_reply(&Value::Int(1)), None);
    assert_eq!(tagged(&a(vec![s("busy")])).0, "busy");
    assert_eq!(tagged(&Value::Int(1)).0, "other");
}
