//! Elections, membership groups and run-once jobs: behaviour only a real
//! Redis has (one EVALSHA per operation, one Cluster slot per quorum
//! election, terms across a restart without persistence, PUBLISH and expiry
//! wake-ups). Tests that restart or reconfigure a server start their own.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{
    Client, FencingToken, HolderId, InstanceId, Key, LeaseOptions, Quorum,
    spi::{Backend, Campaign, ElectionBackend, GroupBackend, JobBackend, OnceBegin},
};
use coord_redis::{RedisBackend, RedisConfig};
use coord_testkit::redis::RedisServer;
use redis::Value;

async fn backend(config: RedisConfig) -> Arc<RedisBackend> {
    Arc::new(RedisBackend::connect(config).await.expect("connect"))
}

/// The families of `b` these tests use.
fn families(b: &RedisBackend) -> (&dyn ElectionBackend, &dyn GroupBackend, &dyn JobBackend) {
    (
        b.elections().expect("elections"),
        b.groups().expect("groups"),
        b.jobs().expect("jobs"),
    )
}

/// A client on its own connections; TTL `ttl`, and a retry delay far beyond
/// every bound the tests check, so only notifications and expiry instants can
/// wake a waiter in time.
async fn client(config: RedisConfig, name: &str, ttl: Duration) -> Client {
    Client::builder(backend(config).await)
        .instance_id(name)
        .unwrap()
        .lease_options(
            LeaseOptions::default()
                .ttl(ttl)
                .retry_delay(Duration::from_secs(60))
                .wait_timeout(Some(Duration::from_secs(30))),
        )
        .build()
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn holder(name: &str) -> HolderId {
    HolderId::new(InstanceId::new(name).unwrap())
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    }
}

/// `(command, calls)` of INFO commandstats for the commands a client sends to
/// run scripts (commands run inside scripts are not round trips).
fn script_calls(server: &RedisServer) -> Vec<(String, u64)> {
    let info = text(server.command(&["INFO", "commandstats"]).unwrap());
    let mut calls: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .map(|l| {
            let (name, rest) = l.split_once(':').unwrap();
            let calls = rest
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .unwrap()
                .parse()
                .unwrap();
            (name.to_owned(), calls)
        })
        .filter(|(n, _)| n.starts_with("eval") || n.starts_with("script") || n.starts_with("fcall"))
        .collect();
    calls.sort();
    calls
}

fn elected(c: Campaign) -> coord_api::LeaderInfo {
    match c {
        Campaign::Elected(info) => info,
        busy => panic!("not elected: {busy:?}"),
    }
}

#[tokio::test]
async fn one_evalsha_per_operation() {
    let server = RedisServer::start();
    let b = backend(server.config("evalsha")).await;
    let (el, gr, jo) = families(&b);
    let (e, g, job, occ) = (key("e"), key("g"), key("job"), key("occ"));
    let (a, other) = (holder("a"), holder("b"));
    let ttl = Duration::from_secs(5);
    let quorum = Quorum {
        group: g.clone(),
        min_members: 1,
    };
    // Warm up: loads the three scripts (elections, groups, jobs).
    el.leader(&e).await.unwrap();
    gr.members(&g).await.unwrap();
    assert!(!jo.extend(&job, &occ, &a, ttl).await.unwrap());

    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    gr.join(&g, &a, "m", ttl).await.unwrap();
    assert!(gr.heartbeat(&g, &a, ttl).await.unwrap());
    let info = elected(
        el.campaign(&e, &a, "meta", ttl, Some(&quorum), false)
            .await
            .unwrap(),
    );
    assert!(matches!(
        el.campaign(&e, &other, "", ttl, None, false).await.unwrap(),
        Campaign::Busy {
            leader: Some(_),
            no_quorum: false
        }
    ));
    assert!(
        el.renew(&e, &a, info.term, ttl, Some(&quorum))
            .await
            .unwrap()
    );
    assert_eq!(el.leader(&e).await.unwrap().unwrap().term, info.term);
    assert_eq!(el.terms_granted(&e).await.unwrap(), Some(info.seq));
    assert!(el.resign(&e, &a, info.term).await.unwrap());
    assert_eq!(gr.members(&g).await.unwrap().members.len(), 1);
    assert!(gr.leave(&g, &a).await.unwrap());
    assert!(matches!(
        jo.begin(&job, &occ, &a, ttl).await.unwrap(),
        OnceBegin::Started { attempt: 1, .. }
    ));
    assert!(jo.extend(&job, &occ, &a, ttl).await.unwrap());
    assert!(jo.end(&job, &occ, &a, Some(ttl)).await.unwrap());
    assert_eq!(script_calls(&server), [("evalsha".to_owned(), 13)]);

    // A watch reads the next expiry instant with one EVALSHA per wait.
    let mut watch = el.watch(&e).await.unwrap();
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    el.campaign(&e, &a, "", ttl, None, false).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken by the new term")
        .unwrap();
    assert_eq!(script_calls(&server), [("evalsha".to_owned(), 2)]);

    // After SCRIPT FLUSH the script is loaded again, transparently.
    assert_eq!(server.command(&["SCRIPT", "FLUSH"]).unwrap(), Value::Okay);
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    assert_eq!(el.leader(&e).await.unwrap().unwrap().holder, a);
    assert_eq!(
        script_calls(&server),
        [("evalsha".to_owned(), 2), ("script|load".to_owned(), 1)]
    );
}

/// In Redis Cluster a script may only touch keys of one slot: a quorum
/// election (election keys + group keys in one script) must still run.
#[tokio::test]
async fn quorum_election_keys_share_one_cluster_slot() {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    server
        .command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(server.command(&["CLUSTER", "INFO"]).unwrap()).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "single-node cluster never ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server does refuse keys of two slots in one script.
    let cross = server.command(&["EVAL", "return 1", "2", "{a}x", "{b}x"]);
    assert!(
        format!("{cross:?}").contains("same slot"),
        "cluster mode checks slots: {cross:?}"
    );

    let b = backend(server.config("cluster")).await;
    let (el, gr, jo) = families(&b);
    let ttl = Duration::from_secs(5);
    let quorum = Quorum {
        group: key("workers"),
        min_members: 2,
    };
    let (e, a, c) = (key("scheduler"), holder("a"), holder("c"));
    gr.join(&quorum.group, &a, "", ttl).await.unwrap();
    assert!(matches!(
        el.campaign(&e, &a, "", ttl, Some(&quorum), false)
            .await
            .unwrap(),
        Campaign::Busy {
            leader: None,
            no_quorum: true
        }
    ));
    gr.join(&quorum.group, &c, "", ttl).await.unwrap();
    let info = elected(
        el.campaign(&e, &a, "", ttl, Some(&quorum), false)
            .await
            .unwrap(),
    );
    assert!(
        el.renew(&e, &a, info.term, ttl, Some(&quorum))
            .await
            .unwrap()
    );
    assert!(gr.leave(&quorum.group, &c).await.unwrap());
    assert!(
        !el.renew(&e, &a, info.term, ttl, Some(&quorum))
            .await
            .unwrap(),
        "quorum lost: the renewal steps down"
    );
    assert_eq!(el.leader(&e).await.unwrap(), None);
    // Run-once keys (tagged per job) work in cluster mode too.
    assert!(matches!(
        jo.begin(&key("job}x"), &key("o{1}"), &a, ttl)
            .await
            .unwrap(),
        OnceBegin::Started { attempt: 1, .. }
    ));
    assert!(
        jo.end(&key("job}x"), &key("o{1}"), &a, Some(ttl))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn terms_and_run_tokens_increase_across_a_restart_without_persistence() {
    let server = RedisServer::start();
    let config = server.config("tokens");
    let b = backend(config.clone()).await;
    let (el, _, jo) = families(&b);
    let (e, a) = (key("e"), holder("a"));
    let ttl = Duration::from_secs(5);
    let mut last = 0;
    for seq in 1..=3 {
        let info = elected(el.campaign(&e, &a, "", ttl, None, false).await.unwrap());
        assert!(info.term.get() > last);
        assert_eq!(info.seq, seq);
        last = info.term.get();
        assert!(el.resign(&e, &a, info.term).await.unwrap());
    }
    let clock_last = last;
    // A counter far ahead of the clock wins: counter + 1.
    let ahead = last + 3_600_000_000;
    server
        .command(&["SET", "coord:{tokens:lead}:e:e:t", &ahead.to_string()])
        .unwrap();
    let info = elected(el.campaign(&e, &a, "", ttl, None, false).await.unwrap());
    assert_eq!(info.term, FencingToken(ahead + 1));
    assert_eq!(info.seq, 4);
    el.resign(&e, &a, info.term).await.unwrap();

    let (job, occ) = (key("job"), key("occ"));
    let OnceBegin::Started {
        token: run_token, ..
    } = jo.begin(&job, &occ, &a, ttl).await.unwrap()
    else {
        panic!("not started");
    };
    jo.end(&job, &occ, &a, None).await.unwrap();

    server.restart();
    let keys = server.command(&["DBSIZE"]).unwrap();
    assert_eq!(keys, Value::Int(0), "restart lost all data");
    // The restarted server knows nothing, yet the next term is above every
    // term the clock gave before (the pushed counter is lost with the data:
    // it ran ahead of the clock, so it is not the bound that survives).
    let b = backend(config).await;
    let (el, _, jo) = families(&b);
    let info = elected(el.campaign(&e, &a, "", ttl, None, false).await.unwrap());
    assert!(
        info.term.get() > clock_last,
        "term {} after restart is not above {clock_last}",
        info.term
    );
    assert!(info.term.get() > run_token.get());
    assert_eq!(info.seq, 1, "seq starts again after the data was lost");
    let OnceBegin::Started { token, attempt } = jo.begin(&job, &occ, &a, ttl).await.unwrap() else {
        panic!("not started");
    };
    assert!(token > run_token, "{token} > {run_token}");
    assert_eq!(attempt, 1);
}

/// A new term and a resignation reach an observer through PUBLISH: with a
/// 30 s TTL and a 60 s retry delay nothing else could wake it within 5 s.
#[tokio::test]
async fn publish_wakes_an_observer_at_once() {
    let server = RedisServer::shared();
    let ttl = Duration::from_secs(30);
    let observer = client(server.config("publish"), "observer", ttl).await;
    let leader = client(server.config("publish"), "leader", ttl).await;
    let mut obs = observer.election("e").observe().await.unwrap();
    assert_eq!(obs.next().await.unwrap().leader, None);

    let waiting = tokio::spawn(async move {
        let change = obs.next().await.unwrap();
        (obs, change)
    });
    // Only PUBLISH can wake it; give the observer time to be waiting first.
    tokio::task::yield_now().await;
    let term = leader
        .election("e")
        .metadata("10.0.0.1")
        .campaign()
        .await
        .unwrap();
    let (mut obs, change) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the new term woke the observer")
        .unwrap();
    let info = change.leader.expect("a leader");
    assert_eq!(info.term, term.term());
    assert_eq!(info.metadata, "10.0.0.1");
    assert_eq!(change.skipped, 0);

    assert!(term.resign().await.unwrap());
    let change = tokio::time::timeout(Duration::from_secs(5), obs.next())
        .await
        .expect("the resignation woke the observer")
        .unwrap();
    assert_eq!(change.leader, None);

    // Group changes likewise.
    let mut members = observer.group("g").observe().await.unwrap();
    assert!(members.next().await.unwrap().members.members.is_empty());
    let m = leader.group("g").metadata("x").join().await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), members.next())
        .await
        .expect("the join woke the group observer")
        .unwrap();
    assert_eq!(change.members.members.len(), 1);
    assert_eq!(change.members.members[0].metadata, "x");
    assert!(m.leave().await.unwrap());
    let change = tokio::time::timeout(Duration::from_secs(5), members.next())
        .await
        .expect("the leave woke the group observer")
        .unwrap();
    assert!(change.members.members.is_empty());
}

/// Expiry publishes nothing: observers wake at the expiry instant they read
/// from the server.
#[tokio::test]
async fn observers_wake_at_expiry() {
    let server = RedisServer::shared();
    let b = backend(server.config("expiry")).await;
    let (el, gr, jo) = families(&b);
    let observer = client(server.config("expiry"), "observer", Duration::from_secs(30)).await;
    let ttl = Duration::from_millis(300);

    let mut obs = observer.election("e").observe().await.unwrap();
    let info = elected(
        el.campaign(&key("e"), &holder("a"), "", ttl, None, false)
            .await
            .unwrap(),
    );
    let change = obs.next().await.unwrap();
    assert_eq!(change.leader.map(|l| l.term), Some(info.term));
    let start = Instant::now();
    let change = tokio::time::timeout(Duration::from_secs(5), obs.next())
        .await
        .expect("woken at the term's expiry")
        .unwrap();
    assert_eq!(change.leader, None);
    assert!(start.elapsed() < ttl + Duration::from_secs(2));

    let mut members = observer.group("g").observe().await.unwrap();
    let (short, long) = (holder("a"), holder("b"));
    gr.join(&key("g"), &short, "", ttl).await.unwrap();
    gr.join(&key("g"), &long, "", ttl * 10).await.unwrap();
    let seen = members.next().await.unwrap().members;
    let seq = seen.seq;
    let change = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let c = members.next().await.unwrap();
            if c.members.members.len() == 1 {
                return c;
            }
        }
    })
    .await
    .expect("woken at the member's expiry");
    assert_eq!(change.members.members[0].holder, long);
    assert!(change.members.seq > seq, "the expiry counts in seq");

    // A run's lease expiring wakes watch_once.
    let (job, occ) = (key("job"), key("occ"));
    let mut watch = jo.watch(&job, &occ).await.unwrap();
    assert!(matches!(
        jo.begin(&job, &occ, &holder("a"), ttl).await.unwrap(),
        OnceBegin::Started { attempt: 1, .. }
    ));
    // Drain wake-ups so far, then wait for the expiry.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("woken at the run's expiry")
            .unwrap();
        match jo.begin(&job, &occ, &holder("b"), ttl).await.unwrap() {
            OnceBegin::Started { attempt, .. } => {
                assert_eq!(attempt, 2, "a retry after the crashed run");
                break;
            }
            OnceBegin::Running { .. } => assert!(Instant::now() < deadline),
            OnceBegin::Finished => panic!("never finished"),
            other => panic!("begin answered {other:?}, which this test does not know"),
        }
    }
}

/// Group seq counts expiries even when every member expired (the group's
/// keys outlive the last deadline), and idle state keeps a bounded TTL.
#[tokio::test]
async fn group_state_outlives_the_last_member_with_a_ttl() {
    let server = RedisServer::shared();
    let b = backend(server.config("group-ttl")).await;
    let (el, gr, _) = families(&b);
    let g = key("g");
    let ttl = Duration::from_millis(100);
    gr.join(&g, &holder("a"), "", ttl).await.unwrap();
    let seq = gr.members(&g).await.unwrap().seq;
    let gone = async {
        loop {
            let m = gr.members(&g).await.unwrap();
            if m.members.is_empty() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let m = tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("the member expires");
    assert_eq!(m.seq, seq + 1, "the expiry of the last member counts");
    for part in ["s", "i"] {
        let k = format!("coord:{{group-ttl:lead}}:g:g:{part}");
        let Value::Int(pttl) = server.command(&["PTTL", &k]).unwrap() else {
            panic!("PTTL of {k}");
        };
        if part == "s" {
            assert!(pttl > 0, "{k} kept with a TTL, got {pttl}");
        }
        assert!(pttl <= 24 * 3600 * 1000 + 1000, "{k} never lives for ever");
    }
    // Election state likewise has a TTL (no key without one).
    let e = key("e");
    let info = elected(
        el.campaign(&e, &holder("a"), "", ttl, None, false)
            .await
            .unwrap(),
    );
    el.resign(&e, &holder("a"), info.term).await.unwrap();
    let Value::Int(pttl) = server
        .command(&["PTTL", "coord:{group-ttl:lead}:e:e:s"])
        .unwrap()
    else {
        panic!("PTTL");
    };
    assert!(pttl > 0, "election state has a TTL: {pttl}");
}

/// A group's keys go a day after its last member (above), its change
/// counter with them: a counter that starts again and meets the value an
/// observer saw last does not hide the change from it (the observer
/// compares the members too).
#[tokio::test]
async fn observer_sees_a_change_after_the_group_counter_started_again() {
    let server = RedisServer::shared();
    let config = server.config("group-again");
    let (a, b) = (
        client(config.clone(), "a", Duration::from_secs(30)).await,
        client(config.clone(), "b", Duration::from_secs(30)).await,
    );
    let group = a.group("g");
    let mut observer = group.observe().await.unwrap();
    assert!(observer.next().await.unwrap().members.members.is_empty());
    let first = group.join().await.unwrap();
    let second = group.join().await.unwrap();
    let seen = observer.next().await.unwrap();
    let seen = if seen.members.members.len() == 2 {
        seen
    } else {
        observer.next().await.unwrap()
    };
    assert_eq!((seen.members.members.len(), seen.members.seq), (2, 2));
    // The group idle for a day: its keys expire (deleted here at once, the
    // members' leases with them, as their TTLs would have).
    let keys = text(server.command(&["KEYS", "coord:{group-again:*"]).unwrap());
    for k in ["m", "i", "s"] {
        server
            .command(&["DEL", &format!("coord:{{group-again:lead}}:g:g:{k}")])
            .unwrap();
    }
    drop((first, second));
    // Two joins of b's before the observer reads: the counter is at 2 again.
    let group_b = b.group("g");
    let (c, d) = (group_b.join().await.unwrap(), group_b.join().await.unwrap());
    let change = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let change = observer.next().await.unwrap();
            let holders: Vec<_> = change
                .members
                .members
                .iter()
                .map(|m| m.holder.clone())
                .collect();
            if holders == [c.holder().clone(), d.holder().clone()] {
                return change;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the observer never saw b's members (keys before: {keys})"));
    assert_eq!((change.members.seq, change.skipped), (2, 0));
}

/// The client types on Redis: a waiting candidate wins at a crashed leader's
/// expiry (no resignation, no notification: the refusal's `expires_in`), a
/// leader whose quorum group shrinks loses leadership at its next renewal,
/// and a finished occurrence never runs again.
#[tokio::test]
async fn client_types_on_redis() {
    let server = RedisServer::shared();
    let config = server.config("clients");
    let ttl = Duration::from_millis(600);
    let a = client(config.clone(), "a", ttl).await;
    let b = client(config.clone(), "b", ttl).await;
    let raw = backend(config).await;

    // A crashed leader: elected by the raw backend, never renewed.
    let crashed = elected(
        raw.elections()
            .unwrap()
            .campaign(&key("e"), &holder("crashed"), "", ttl, None, false)
            .await
            .unwrap(),
    );
    let start = Instant::now();
    let won = tokio::time::timeout(Duration::from_secs(5), a.election("e").campaign())
        .await
        .expect("elected after the crashed term's TTL, not the 60 s retry delay")
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(won.term() > crashed.term);
    assert_eq!(won.info().seq, crashed.seq + 1);
    assert!(won.resign().await.unwrap());

    // Quorum: two members needed.
    let quorum = Quorum {
        group: key("workers"),
        min_members: 2,
    };
    let ma = a.group("workers").join().await.unwrap();
    let election = a.election("q").quorum(quorum.clone());
    assert!(
        election.try_campaign().await.unwrap().is_none(),
        "no quorum yet"
    );
    let mb = b.group("workers").join().await.unwrap();
    let leading = election.try_campaign().await.unwrap().expect("quorum met");
    assert!(mb.leave().await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), leading.lost())
        .await
        .expect("quorum loss ends leadership at the next renewal");
    assert!(!leading.is_leader());
    assert_eq!(a.election("q").leader().await.unwrap(), None);
    drop(ma);

    // Run-once: finished means finished, on every instance.
    let job = a.job("nightly").retention(Duration::from_secs(60));
    let ran = job
        .run_once("2024-01-01", |ctx| async move { ctx.attempt })
        .await;
    assert!(matches!(ran, Ok(coord_api::RunOnce::Ran(1))), "{ran:?}");
    let again = b
        .job("nightly")
        .run_once("2024-01-01", |_| async { unreachable!("ran twice") })
        .await
        .unwrap();
    assert!(matches!(again, coord_api::RunOnce::AlreadyFinished));
}

/// The token counters of an election and of a job live a day past the
/// latest lease (renewals included), as their docs say: a term or a run
/// renewed for longer than a day keeps its counter, so tokens keep
/// increasing through a server clock step back after it.
#[tokio::test]
async fn renewals_keep_the_token_counters() {
    let server = RedisServer::shared();
    let b = backend(server.config("counters")).await;
    let (el, _, jo) = families(&b);
    let ttl = Duration::from_secs(10);
    let day_ms = 24 * 3600 * 1000;
    let pttl = |k: &str| match server.command(&["PTTL", k]).unwrap() {
        Value::Int(ms) => ms,
        other => panic!("PTTL of {k}: {other:?}"),
    };
    // Each counter as if drawn a day ago: a minute left.
    let (e, a) = (key("e"), holder("a"));
    let term = elected(el.campaign(&e, &a, "", ttl, None, false).await.unwrap()).term;
    let counter = "coord:{counters:lead}:e:e:t";
    server.command(&["PEXPIRE", counter, "60000"]).unwrap();
    assert!(el.renew(&e, &a, term, ttl, None).await.unwrap());
    assert!(
        pttl(counter) > day_ms,
        "the term's renewal keeps its counter"
    );
    let (job, occ) = (key("j"), key("o"));
    let OnceBegin::Started { .. } = jo.begin(&job, &occ, &a, ttl).await.unwrap() else {
        panic!("began")
    };
    let counter = "coord:{counters:job:1:j}:t";
    server.command(&["PEXPIRE", counter, "60000"]).unwrap();
    assert!(jo.extend(&job, &occ, &a, ttl).await.unwrap());
    assert!(
        pttl(counter) > day_ms,
        "the run's extension keeps its counter"
    );
    // Never shortened: the job's counter is shared by its occurrences.
    let longest = (day_ms + 3_600_000).to_string();
    server.command(&["PEXPIRE", counter, &longest]).unwrap();
    assert!(jo.extend(&job, &occ, &a, ttl).await.unwrap());
    assert!(pttl(counter) > day_ms + 3_500_000, "not shortened");
    server.command(&["PEXPIRE", counter, "60000"]).unwrap();
    let retention = Duration::from_secs(3600);
    assert!(jo.end(&job, &occ, &a, Some(retention)).await.unwrap());
    assert!(
        pttl(counter) > day_ms + 3_500_000,
        "kept past the retention"
    );
}

/// An ended run leaves neither its holder nor its token behind: only the
/// attempt count, the finished marker (with a retention) and the job's
/// counter outlive it (the token's key was kept until the lease's TTL).
#[tokio::test]
async fn an_ended_run_leaves_no_run_key_behind() {
    let server = RedisServer::shared();
    let b = backend(server.config("ended")).await;
    let (_, _, jo) = families(&b);
    let (job, a) = (key("j"), holder("a"));
    let exists = |k: &str| server.command(&["EXISTS", k]).unwrap();
    for (occ, retention) in [("o", None), ("p", Some(Duration::from_secs(60)))] {
        let OnceBegin::Started { .. } = jo
            .begin(&job, &key(occ), &a, Duration::from_secs(30))
            .await
            .unwrap()
        else {
            panic!("began")
        };
        let (run, token) = (
            format!("coord:{{ended:job:1:j}}:{occ}:r"),
            format!("coord:{{ended:job:1:j}}:{occ}:k"),
        );
        assert_eq!(exists(&token), Value::Int(1), "the running token is kept");
        assert!(jo.end(&job, &key(occ), &a, retention).await.unwrap());
        assert_eq!(exists(&run), Value::Int(0), "{occ}: the run is gone");
        assert_eq!(exists(&token), Value::Int(0), "{occ}: its token is gone");
    }
}
