//! What reaches the server: input refused before any I/O, the remembered
//! history, key lifetimes, one EVALSHA per operation in one Cluster slot.

use super::*;

#[tokio::test]
async fn out_of_range_input_is_refused_before_any_io() {
    // A backend on a port nobody listens on would fail with Unavailable;
    // these fail first with InvalidArgument.
    let b = backend("invalid").await;
    let br = barriers(&b);
    let (name, a) = (key("b"), key("a"));
    for kind in [Cyclic, Double] {
        for parties in [0, 10_001] {
            let err = br
                .arrive(kind, &name, &a, 1, parties, TTL, 0)
                .await
                .unwrap_err();
            assert!(
                matches!(err, coord_api::Error::InvalidArgument { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("10000"), "{err}");
        }
        let err = br
            .arrive(kind, &name, &a, 1, 2, Duration::ZERO, 0)
            .await
            .unwrap_err();
        assert!(matches!(err, coord_api::Error::InvalidArgument { .. }));
    }
    for count in [0, 1_000_001] {
        let err = br.latch_set(&name, count, TTL, 0).await.unwrap_err();
        assert!(
            matches!(err, coord_api::Error::InvalidArgument { .. }),
            "{err}"
        );
    }
    let err = br
        .latch_set(&name, 1, Duration::from_secs(25 * 3600), 0)
        .await
        .unwrap_err();
    assert!(matches!(err, coord_api::Error::InvalidArgument { .. }));
    // Nothing was written.
    assert_eq!(br.latch_state(&name).await.unwrap(), None);
}

#[tokio::test]
async fn ended_history_keeps_the_newest_sixteen() {
    let b = backend("history").await;
    let br = barriers(&b);
    let name = key("b");
    let a = key("a");
    let mut ends = Vec::new();
    for _ in 0..20 {
        let e = broke(
            br.break_generation(Cyclic, &name, None, BreakReason::Reset)
                .await
                .unwrap(),
        );
        if let Some(prev) = ends.last() {
            let prev: &EndedGeneration = prev;
            assert_eq!(e.generation, prev.next);
            assert!(e.next > e.generation);
        }
        ends.push(e);
    }
    let current = ends.last().unwrap().next;
    for (i, e) in ends.iter().enumerate() {
        let asked = br
            .state(Cyclic, &name, Some(e.generation))
            .await
            .unwrap()
            .asked;
        if i < 4 {
            assert_eq!(asked, None, "generation {i} forgotten");
            assert_eq!(
                br.arrive(Cyclic, &name, &a, e.generation, 2, TTL, 0)
                    .await
                    .unwrap(),
                Arrive::Stale { current }
            );
            assert_eq!(
                br.break_generation(Cyclic, &name, Some(e.generation), BreakReason::Reset)
                    .await
                    .unwrap(),
                Break::Unknown { current }
            );
        } else {
            assert_eq!(asked.as_ref(), Some(e), "generation {i} remembered");
        }
    }
    // The record holds the sixteen ends and their order, nothing more.
    let server = RedisServer::shared();
    let rec = "coord:{history:barrier:b}:s";
    let order = text(server.command(&["HGET", rec, "ended"]).unwrap());
    let newest: Vec<String> = ends[4..].iter().map(|e| e.generation.to_string()).collect();
    assert_eq!(order, newest.join(" "));
    let Value::Array(fields) = server.command(&["HKEYS", rec]).unwrap() else {
        panic!("no record")
    };
    let mut ended: Vec<String> = fields
        .into_iter()
        .map(text)
        .filter_map(|f| f.strip_prefix("e:").map(str::to_owned))
        .collect();
    ended.sort();
    let mut want = newest;
    want.sort();
    assert_eq!(ended, want);
}

/// The record keeps the id of the wait behind each live arrival, and only
/// while it lives: an arrival's id goes with its leave, its expiry and the
/// end of its generation.
#[tokio::test]
async fn a_waits_id_lives_with_its_arrival() {
    let b = backend("waits").await;
    let br = barriers(&b);
    let server = RedisServer::shared();
    let waits = |kind: BarrierKind| {
        let kind = if kind == Cyclic {
            "barrier"
        } else {
            "double_barrier"
        };
        let rec = format!("coord:{{waits:{kind}:b}}:s");
        let Value::Array(fields) = server.command(&["HKEYS", &rec]).unwrap() else {
            panic!("no record")
        };
        let mut w: Vec<String> = (fields.into_iter().map(text))
            .filter(|f| f.starts_with("w:"))
            .collect();
        w.sort();
        w
    };
    let name = key("b");
    let (a, c, d, e) = (key("a"), key("c"), key("d"), key("e"));
    // Long enough to be seen right after its arrival, however loaded the
    // machine; then waited out.
    let short = Duration::from_millis(1000);
    for kind in [Cyclic, Double] {
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 4, TTL, 7).await.unwrap();
        br.arrive(kind, &name, &c, g, 4, short, 8).await.unwrap();
        assert_eq!(waits(kind), ["w:a", "w:c"], "{kind:?}");
        br.arrive(kind, &name, &d, g, 4, TTL, 9).await.unwrap();
        tokio::time::sleep(short + Duration::from_millis(20)).await;
        br.leave(kind, &name, &d, g, 9).await.unwrap();
        assert_eq!(waits(kind), ["w:a"], "{kind:?}: c expired, d left");
        br.arrive(kind, &name, &c, g, 4, TTL, 8).await.unwrap();
        br.arrive(kind, &name, &d, g, 4, TTL, 9).await.unwrap();
        br.arrive(kind, &name, &e, g, 4, TTL, 10).await.unwrap();
        if kind == Double {
            // Inside until each leaves.
            assert_eq!(waits(kind), ["w:a", "w:c", "w:d", "w:e"]);
            for (p, wait) in [(&a, 7), (&c, 8), (&d, 9), (&e, 10)] {
                br.leave(kind, &name, p, g, wait).await.unwrap();
            }
        }
        let now = br.state(kind, &name, None).await.unwrap().generation;
        assert!(now > g, "{kind:?}: the generation ended");
        assert_eq!(waits(kind), Vec::<String>::new(), "{kind:?}: ended");
    }
}

/// A latch's generation keeps the id of the call that set it (the hash's
/// `id`): a set naming it again is answered `Set` with that generation,
/// busy or at zero, and changes nothing; id 0 names no call.
#[tokio::test]
async fn a_sets_id_lives_with_its_generation() {
    let b = backend("sets").await;
    let br = barriers(&b);
    let server = RedisServer::shared();
    let id = || {
        text(
            server
                .command(&["HGET", "coord:{sets:latch:l}:s", "id"])
                .unwrap(),
        )
    };
    let (l, a) = (key("l"), key("a"));
    let LatchSet::Set { generation: g } = br.latch_set(&l, 1, TTL, 7).await.unwrap() else {
        panic!("set")
    };
    assert_eq!(id(), "7");
    let again = br.latch_set(&l, 1, TTL, 7).await.unwrap();
    assert_eq!(
        again,
        LatchSet::Set { generation: g },
        "busy: the same call"
    );
    assert!(matches!(
        br.latch_set(&l, 1, TTL, 8).await.unwrap(),
        LatchSet::Busy(_)
    ));
    br.latch_count_down(&l, &a, None, 0).await.unwrap();
    let again = br.latch_set(&l, 1, TTL, 7).await.unwrap();
    assert_eq!(
        again,
        LatchSet::Set { generation: g },
        "at zero: the same call"
    );
    assert_eq!(br.latch_state(&l).await.unwrap().unwrap().remaining, 0);
    let LatchSet::Set { generation: g2 } = br.latch_set(&l, 1, TTL, 0).await.unwrap() else {
        panic!("set at zero")
    };
    assert!(g2 > g);
    assert_eq!(id(), "0");
    br.latch_count_down(&l, &a, None, 0).await.unwrap();
    let LatchSet::Set { generation: g3 } = br.latch_set(&l, 1, TTL, 0).await.unwrap() else {
        panic!("set at zero")
    };
    assert!(g3 > g2, "id 0 names no call: set again");
    // The settings before the current one keep their ids in `past`, the
    // newest LATCH_SETS_KEPT - 1 of them.
    let past = || {
        let past = server.command(&["HGET", "coord:{sets:latch:l}:s", "past"]);
        let past = text(past.unwrap());
        past.split(' ')
            .map(|e| e.split(':').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    for id in 101..=120u64 {
        br.latch_count_down(&l, &a, None, 0).await.unwrap();
        let set = br.latch_set(&l, 1, TTL, id).await.unwrap();
        assert!(matches!(set, LatchSet::Set { .. }), "{id}: {set:?}");
    }
    let kept = (120 - LATCH_SETS_KEPT as u64 + 1..120).map(|id| id.to_string());
    assert_eq!(past(), kept.collect::<Vec<_>>());
}

/// No key of a barrier or latch lives for ever: a barrier's live at least
/// `KEEP_MS` past its latest arrival deadline and at most `KEEP_SLACK_MS`
/// longer (also those remade after the end of a generation, when no
/// operation needed the keys longer), a latch's die with it (its counter
/// `KEEP_MS` later).
#[tokio::test]
async fn every_key_expires() {
    let ns = "lifetimes";
    let b = backend(ns).await;
    let br = barriers(&b);
    let (a, c, d) = (key("a"), key("c"), key("d"));
    let short = Duration::from_millis(1);
    let long = Duration::from_secs(2 * 3600);
    let started = Instant::now();
    for kind in [Cyclic, Double] {
        let name = key("b");
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 3, TTL, 0).await.unwrap();
        br.arrive(kind, &name, &c, g, 3, short, 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        br.state(kind, &name, None).await.unwrap();
        br.break_generation(kind, &name, None, BreakReason::Reset)
            .await
            .unwrap();
        // The arrival, order and expired sets again, in a generation that
        // needs them no longer than the last.
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 3, TTL, 0).await.unwrap();
        br.arrive(kind, &name, &c, g, 3, short, 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        br.state(kind, &name, None).await.unwrap();
        // An arrival past the slack: every key kept longer.
        let name = key("long");
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 3, TTL, 0).await.unwrap();
        br.arrive(kind, &name, &d, g, 3, long, 0).await.unwrap();
    }
    let latch_ttl = Duration::from_secs(30);
    // The calls that counted (named ones) live with the latch, those of
    // the generation before too.
    br.latch_set(&key("l"), 1, latch_ttl, 0).await.unwrap();
    br.latch_count_down(&key("l"), &a, None, 7).await.unwrap();
    br.latch_set(&key("l"), 2, latch_ttl, 0).await.unwrap();
    br.latch_count_down(&key("l"), &a, None, 8).await.unwrap();

    let server = RedisServer::shared();
    let Value::Array(names) = server
        .command(&["KEYS", &format!("coord:{{{ns}:*")])
        .unwrap()
    else {
        panic!("no keys")
    };
    let names: Vec<String> = names.into_iter().map(text).collect();
    let mut expected = vec![
        "coord:{lifetimes:latch:l}:s".to_owned(),
        "coord:{lifetimes:latch:l}:p".to_owned(),
        "coord:{lifetimes:latch:l}:t".to_owned(),
        "coord:{lifetimes:latch:l}:d".to_owned(),
        "coord:{lifetimes:latch:l}:e".to_owned(),
    ];
    for space in ["barrier", "double_barrier"] {
        for part in ["s", "a", "o", "x", "t"] {
            expected.push(format!("coord:{{lifetimes:{space}:b}}:{part}"));
        }
        for part in ["s", "a", "o", "t"] {
            expected.push(format!("coord:{{lifetimes:{space}:long}}:{part}"));
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    let ms = |d: Duration| d.as_millis() as i64;
    let elapsed = ms(started.elapsed()) + 1000;
    for name in &names {
        let left = int(server.command(&["PTTL", name]).unwrap());
        let (min, max) = if name.contains(":latch:") {
            if name.ends_with(":t") {
                (1, ms(latch_ttl + KEEP))
            } else {
                (1, ms(latch_ttl))
            }
        } else if name.contains(":long}") {
            (ms(long + KEEP) - elapsed, ms(long + KEEP + KEEP_SLACK))
        } else {
            (ms(TTL + KEEP) - elapsed, ms(TTL + KEEP + KEEP_SLACK))
        };
        assert!(
            left >= min && left <= max,
            "{name}: PTTL {left}, not in {min}..={max}"
        );
    }
}

/// `kept` (the instant the record says its keys are kept until) is what
/// spares most operations their PEXPIREs; where it falls short, any
/// operation sets every expiry again, an arrival answered from the history
/// included, and a record without it (made before it was kept) counts its
/// arrivals' deadlines.
#[tokio::test]
async fn keys_are_kept_again_when_kept_falls_short() {
    let ns = "kept";
    let b = backend(ns).await;
    let br = barriers(&b);
    let server = RedisServer::shared();
    let (a, c) = (key("a"), key("c"));
    let name = key("b");
    let keys = |parts: &[&str]| -> Vec<String> {
        parts
            .iter()
            .map(|p| format!("coord:{{{ns}:barrier:b}}:{p}"))
            .collect()
    };
    let pttl = |k: &str| int(server.command(&["PTTL", k]).unwrap());
    let ms = |d: Duration| d.as_millis() as i64;
    let started = Instant::now();
    let g = br.state(Cyclic, &name, None).await.unwrap().generation;
    let e = ended(br.arrive(Cyclic, &name, &a, g, 1, TTL, 0).await.unwrap());
    let long = Duration::from_secs(2 * 3600);
    br.arrive(Cyclic, &name, &c, e.next, 2, long, 0)
        .await
        .unwrap();

    // Shortened behind the record's back: an arrival in the ended
    // generation (answered from the history) keeps them again.
    server
        .command(&["HSET", &keys(&["s"])[0], "kept", "1"])
        .unwrap();
    for k in keys(&["s", "a", "o", "t"]) {
        server.command(&["PEXPIRE", &k, "60000"]).unwrap();
    }
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 1, TTL, 0).await.unwrap(),
        Arrive::Ended(e.clone())
    );
    let elapsed = ms(started.elapsed()) + 1000;
    for k in keys(&["s", "a", "o", "t"]) {
        let left = pttl(&k);
        assert!(
            left >= ms(KEEP) - elapsed && left <= ms(KEEP + KEEP_SLACK),
            "{k}: PTTL {left}"
        );
    }

    // A record without `kept`: kept past its latest arrival deadline.
    server.command(&["HDEL", &keys(&["s"])[0], "kept"]).unwrap();
    br.state(Cyclic, &name, None).await.unwrap();
    let elapsed = ms(started.elapsed()) + 1000;
    for k in keys(&["s", "a", "o", "t"]) {
        let left = pttl(&k);
        assert!(
            left >= ms(long + KEEP) - elapsed && left <= ms(long + KEEP + KEEP_SLACK),
            "{k}: PTTL {left}"
        );
    }
}

/// Every operation is one EVALSHA, and every key of one barrier or latch
/// is in one Redis Cluster slot (a cluster server refuses a script that
/// touches two).
#[tokio::test]
async fn one_evalsha_per_operation_in_one_cluster_slot() {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    server
        .command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(server.command(&["CLUSTER", "INFO"]).unwrap()).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "single-node cluster never ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = backend_on(&server, "slots").await;
    let br = barriers(&b);
    // Names whose braces would split the slot if the tag were not the
    // barrier's own.
    let (name, latch) = (key("x}{y"), key("{l}"));
    let (a, c) = (key("a"), key("c"));
    // Warm up: loads both scripts.
    br.state(Cyclic, &key("warm"), None).await.unwrap();
    br.latch_state(&latch).await.unwrap();

    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let mut ops = 0;
    for kind in [Cyclic, Double] {
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 2, TTL, 0).await.unwrap();
        assert!(br.renew(kind, &name, &a, g, TTL).await.unwrap());
        br.arrive(kind, &name, &c, g, 2, TTL, 0).await.unwrap();
        br.leave(kind, &name, &a, g, 0).await.unwrap();
        br.break_generation(kind, &name, None, BreakReason::Reset)
            .await
            .unwrap();
        ops += 6;
    }
    let LatchSet::Set { .. } = br.latch_set(&latch, 1, TTL, 0).await.unwrap() else {
        panic!("not set")
    };
    br.latch_count_down(&latch, &a, None, 0).await.unwrap();
    br.latch_state(&latch).await.unwrap().unwrap();
    ops += 3;
    server.assert_evalsha_only(ops);
}
