//! Circuit breakers on a real Redis, beyond the conformance suite: every
//! operation is one EVALSHA touching one Redis Cluster slot, generations
//! are drawn from the server's clock (`TIME`), and a restart that lost the
//! record births the breaker again closed with a generation above every
//! one before.

use std::time::{Duration, Instant};

use coord_api::{
    HolderId, InstanceId, Key,
    spi::{Action, BreakerBackend, Phase, Policy, Tally, Trial, WindowKind},
};
use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;
use redis::Value;

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b).unwrap(),
        Value::VerbatimString { text, .. } => text,
        other => panic!("not text: {other:?}"),
    }
}

/// The server's clock in µs (`TIME`).
fn server_us(server: &RedisServer) -> u64 {
    let Value::Array(t) = server.command(&["TIME"]).unwrap() else {
        panic!("TIME is an array")
    };
    let n = |v: &Value| text(v.clone()).parse::<u64>().unwrap();
    n(&t[0]) * 1_000_000 + n(&t[1])
}

/// A policy that opens after two failed calls of two and stays open 50 ms.
fn quick() -> Policy {
    Policy {
        window: WindowKind::Count { calls: 2 },
        minimum_calls: 2,
        open_for: Duration::from_millis(50),
        max_open_for: Duration::from_millis(50),
        trials: 1,
        ..Policy::default()
    }
}

/// Every operation (state, report, trial, trial_done, manual, peek) is one
/// EVALSHA, and every key of one breaker is in one Redis Cluster slot (a
/// cluster server refuses a script that touches two), whatever braces its
/// name holds.
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
    let b = RedisBackend::connect(server.config("slots")).await.unwrap();
    let (p, me) = (quick(), InstanceId::new("web-1").unwrap());
    let holder = HolderId::new(me);
    b.state(&key("warm"), &p, 0).await.unwrap();

    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let name = key("x}{y");
    let g = b.state(&name, &p, 0).await.unwrap().generation;
    let open = b
        .report(&name, &p, g, &me, Tally::new(2, 2, 0), 0)
        .await
        .unwrap();
    assert_eq!(open.state.phase, Phase::Open);
    let mut ops = 2;
    let (g, token) = loop {
        ops += 1;
        match b.trial(&name, &p, &holder, Duration::from_secs(5), 0).await {
            Ok(Trial::Granted { token, state }) => break (state.generation, token),
            Ok(Trial::Refused(s)) => {
                assert!(s.phase == Phase::Open, "{s:?}");
                tokio::time::sleep(s.retry_after.unwrap()).await;
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(token.get() > g, "a trial token above its generation");
    let closed = b
        .trial_done(&name, &p, g, &holder, Tally::one(false, false), 0)
        .await
        .unwrap();
    assert!(closed.counted);
    assert_eq!(closed.state.phase, Phase::Closed);
    b.manual(&name, &p, Action::ForceOpen, &me, "maintenance", 0)
        .await
        .unwrap();
    assert!(b.peek(&name, 0).await.unwrap().is_some());
    assert!(b.peek(&key("y}{x"), 0).await.unwrap().is_none());
    ops += 4;

    server.assert_evalsha_only(ops);
}

/// Generations come from the server's clock (`TIME`, in µs), never the
/// client's; a restart that lost every key births the breaker again,
/// closed, above every generation before, and a forced open is gone with
/// it (the contract's durability: what the server keeps).
#[tokio::test]
async fn generations_on_the_servers_clock_and_reborn_after_a_restart() {
    let server = RedisServer::start();
    let b = RedisBackend::connect(server.config("clock")).await.unwrap();
    let (p, me, name) = (quick(), InstanceId::new("web-1").unwrap(), key("pay"));
    let before = server_us(&server);
    let born = b.state(&name, &p, 0).await.unwrap();
    let after = server_us(&server);
    assert!(
        (before..=after).contains(&born.generation),
        "born at {} outside the server's [{before}, {after}]",
        born.generation
    );
    let forced = b
        .manual(&name, &p, Action::ForceOpen, &me, "drill", 0)
        .await
        .unwrap();
    assert_eq!(forced.phase, Phase::ForcedOpen);
    assert!(forced.generation > born.generation);
    let manual = forced.manual.expect("recorded");
    assert!((before..=server_us(&server)).contains(&manual.at_us));

    server.restart();
    let reborn = loop {
        match b.state(&name, &p, forced.generation).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(reborn.phase, Phase::Closed, "nothing survived: {reborn:?}");
    assert!(reborn.manual.is_none());
    assert!(
        reborn.generation > forced.generation,
        "generation {} after the restart is not above {}",
        reborn.generation,
        forced.generation
    );
}

/// A `permit()` dropped while it asks the backend for a half-open trial
/// (a caller's timeout, a `select!`) does not leave this instance refusing
/// for ever: once the trial it may have been granted lapses (200 ms), the
/// instance is granted one. (The instance's "asking" mark stayed set, and
/// every call was refused without asking again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_dropped_while_asking_for_a_trial_leaves_trials_to_others() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(server.config("cancel"))
        .await
        .unwrap();
    let client = coord_api::Client::new(std::sync::Arc::new(backend));
    let b = (client.breaker("svc").count_window(2).minimum_calls(2))
        .open_for(Duration::from_millis(100))
        .trials(1)
        .trial_ttl(Duration::from_millis(200))
        .build()
        .unwrap();
    for _ in 0..2 {
        b.permit().await.unwrap().failure();
    }
    b.flush().await.unwrap();
    assert_eq!(b.phase(), Some(Phase::Open));
    let deadline = Instant::now() + Duration::from_secs(5);
    // Polled once (its request on the wire), then dropped.
    loop {
        let first_poll = tokio::select! {
            biased;
            p = b.permit() => Some(p),
            () = std::future::ready(()) => None,
        };
        match first_poll {
            None => break,
            Some(Err(coord_api::Error::CircuitOpen { .. })) => {}
            // The trial's round trip finished within that one poll (this
            // thread preempted between sending and reading, under load):
            // nothing was dropped mid-request; its slot lapses, ask again.
            Some(Ok(p)) if p.is_trial() => drop(p),
            Some(other) => panic!("open: {other:?}"),
        }
        assert!(Instant::now() < deadline, "never asked for a trial");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        match b.permit().await {
            Ok(p) => {
                assert!(p.is_trial(), "half-open: a trial");
                p.success();
                break;
            }
            Err(coord_api::Error::CircuitOpen { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        let state = b.state().await.unwrap();
        assert!(
            Instant::now() < deadline,
            "no trial in 5 s: shared {:?} with {} live trials",
            state.phase,
            state.trials_live
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A peek at a breaker with no record writes no key (the next user's
/// policy is the one it is born with), and a peek at one that exists
/// does not extend how long its keys are kept: a look keeps nothing alive.
#[tokio::test]
async fn a_peek_writes_no_key_and_keeps_nothing_alive() {
    let server = RedisServer::start();
    let b = RedisBackend::connect(server.config("peek")).await.unwrap();
    let (p, me, name) = (quick(), InstanceId::new("web-1").unwrap(), key("pay"));
    let keys = || match server.command(&["KEYS", "*breaker*"]).unwrap() {
        Value::Array(keys) => keys.into_iter().map(text).collect::<Vec<_>>(),
        other => panic!("KEYS: {other:?}"),
    };
    assert_eq!(b.peek(&name, 0).await.unwrap(), None);
    assert_eq!(keys(), Vec::<String>::new(), "a look made keys");

    let g = b.state(&name, &p, 0).await.unwrap().generation;
    b.report(&name, &p, g, &me, Tally::new(2, 2, 0), 0)
        .await
        .unwrap();
    let kept = keys();
    assert!(!kept.is_empty());
    for k in &kept {
        server.command(&["PEXPIRE", k, "60000"]).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    let half = b.peek(&name, 0).await.unwrap().expect("a record");
    assert_eq!(half.phase, Phase::HalfOpen, "the open time passed");
    for k in keys() {
        let Value::Int(ms) = server.command(&["PTTL", &k]).unwrap() else {
            panic!("PTTL")
        };
        assert!((1..=60_000).contains(&ms), "{k} kept {ms} ms after a peek");
    }
}

/// An instance that followed a breaker whose keys are gone (unused for a
/// day, or a restart without persistence) is told `Missed` after the last
/// generation it knew, since what happened to the lost record cannot be
/// told, and then follows the record born again. (It was told nothing and
/// went silently from forced open to closed.)
#[tokio::test]
async fn an_instance_is_told_when_the_record_was_lost_and_born_again() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(server.config("reborn"))
        .await
        .unwrap();
    let client = coord_api::Client::new(std::sync::Arc::new(backend));
    let b = (client
        .breaker("svc")
        .refresh_interval(Duration::from_secs(60)))
    .build()
    .unwrap();
    b.state().await.unwrap();
    let mut events = b.events();
    let forced = b.force_open("drill").await.unwrap();
    match events.next().await {
        Some(coord_api::BreakerEvent::Transition(t)) => assert_eq!(t.to, Phase::ForcedOpen),
        other => panic!("expected the forced open, got {other:?}"),
    }
    let Value::Array(keys) = server.command(&["KEYS", "*breaker*"]).unwrap() else {
        panic!("KEYS")
    };
    for k in keys {
        server.command(&["DEL", &text(k)]).unwrap();
    }
    // A reply to a call in flight since before the loss (the background
    // task's) leaves the judgement to a later call's: read until followed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reborn = loop {
        let s = b.state().await.unwrap();
        if b.phase() == Some(Phase::Closed) {
            break s;
        }
        assert!(Instant::now() < deadline, "never followed the new record");
    };
    assert!(reborn.generation > forced.generation);
    assert_ne!(reborn.born, forced.born, "another record");
    let next = tokio::time::timeout(Duration::from_secs(1), events.next()).await;
    assert_eq!(
        next.ok().flatten(),
        Some(coord_api::BreakerEvent::Missed {
            after: forced.generation
        })
    );
}

/// A record kept from before records named the generation they were born
/// with is named by its generation (a peek's look included), and keeps
/// that name through its transitions: instances following it are not told
/// it was born again when it was not.
#[tokio::test]
async fn a_record_kept_from_before_its_name_keeps_the_one_it_is_given() {
    let server = RedisServer::start();
    let b = RedisBackend::connect(server.config("older")).await.unwrap();
    let (p, me, name) = (quick(), InstanceId::new("web-1").unwrap(), key("pay"));
    let born = b.state(&name, &p, 0).await.unwrap();
    let forced = b.manual(&name, &p, Action::ForceOpen, &me, "", 0).await;
    let forced = forced.unwrap();
    let Value::Array(keys) = server.command(&["KEYS", "*breaker*:h"]).unwrap() else {
        panic!("KEYS")
    };
    let record = text(keys.into_iter().next().expect("the record"));
    server.command(&["HDEL", &record, "b"]).unwrap();
    let peeked = b.peek(&name, 0).await.unwrap().expect("a record");
    assert_eq!(peeked.born, forced.generation);
    let named = b.state(&name, &p, 0).await.unwrap();
    assert_eq!(named.born, forced.generation, "named by its generation");
    assert_ne!(named.born, born.born);
    let reset = b.manual(&name, &p, Action::Reset, &me, "", 0).await;
    assert_eq!(reset.unwrap().born, named.born, "the name kept");
}

/// A record born again where only its hash was lost (an eviction under
/// `maxmemory` takes keys one by one) starts from nothing the lost one
/// left: no transitions in its log, an empty window, no trials, as the
/// SPI's `Record::born` does. (It replied the lost record's transitions as
/// its own, and counted its window on top of the lost one's parts.)
#[tokio::test]
async fn a_record_born_again_starts_from_nothing_the_lost_one_left() {
    let server = RedisServer::start();
    let b = RedisBackend::connect(server.config("evicted"))
        .await
        .unwrap();
    let (p, me, name) = (quick(), InstanceId::new("web-1").unwrap(), key("pay"));
    let g = b.state(&name, &p, 0).await.unwrap().generation;
    b.report(&name, &p, g, &me, Tally::new(2, 2, 0), 0)
        .await
        .unwrap();
    let g = b.manual(&name, &p, Action::Reset, &me, "", 0).await;
    let g = g.unwrap().generation;
    b.report(&name, &p, g, &me, Tally::new(1, 1, 0), 0)
        .await
        .unwrap();
    let keys = |suffix: &str| match server.command(&["KEYS", &format!("*breaker*:{suffix}")]) {
        Ok(Value::Array(keys)) => keys.into_iter().map(text).collect::<Vec<_>>(),
        other => panic!("KEYS: {other:?}"),
    };
    let (window, log) = (keys("w"), keys("l"));
    assert_eq!((window.len(), log.len()), (1, 1), "a window and a log left");
    server.command(&["DEL", &keys("h")[0]]).unwrap();

    let reborn = b.state(&name, &p, 0).await.unwrap();
    assert!(reborn.born > g, "born again: {reborn:?}");
    assert_eq!(reborn.transitions, [], "the lost record's log replied");
    assert_eq!(
        server.command(&["LLEN", &window[0]]).unwrap(),
        Value::Int(0),
        "the lost record's window kept"
    );
    let r = b.report(&name, &p, reborn.generation, &me, Tally::new(1, 1, 0), 0);
    let r = r.await.unwrap();
    assert!(r.counted);
    assert_eq!(r.state.window, Tally::new(1, 1, 0), "one call counted");
    assert_eq!(
        server.command(&["LRANGE", &window[0], "0", "-1"]).unwrap(),
        Value::Array(vec![Value::BulkString(b"0:1:1:0".to_vec())]),
        "the window's parts are the new record's"
    );
}
