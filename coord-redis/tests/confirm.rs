//! Confirmed writes (`Confirm`, `confirm_*` URL keys): a master with one
//! replica of the test's own. With the replica attached, confirmed grants
//! succeed; with it frozen, a grant is `Error::Unconfirmed` within the
//! confirmation's timeout and released again in the background, a release
//! is `Unconfirmed` but frees the key, reads are not confirmed, and a client without the option is unchanged. `WAITAOF`
//! is refused at connect by a server without it. Behind sentinels, a grant
//! confirmed by every replica survives an unplanned failover.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{Client, Error, LeaseOptions};
use coord_redis::{Confirm, RedisBackend, RedisConfig};
use coord_testkit::{redis::RedisServer, sentinel::SentinelSet};

/// How long the replica may take to attach, and the background release to
/// run (generous: a loaded 2-core machine).
const DEADLINE: Duration = Duration::from_secs(30);

/// How long a confirmation waits in these tests.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// A master and one replica attached to it.
struct Pair {
    master: RedisServer,
    replica: RedisServer,
}

impl Pair {
    fn start() -> Pair {
        let master = RedisServer::start();
        let port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let deadline = Instant::now() + DEADLINE;
        // Attached: the master counts it and a WAIT for it answers 1.
        while master.command(&["WAIT", "1", "100"]).ok() != Some(redis::Value::Int(1)) {
            assert!(Instant::now() < deadline, "the replica did not attach");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pair { master, replica }
    }

    fn url(&self, query: &str) -> String {
        format!("redis://127.0.0.1:{}/0?{query}", self.master.port())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // A frozen replica must not outlive a failed test frozen.
        self.replica.resume();
    }
}

async fn client(url: &str, name: &str) -> Client {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = RedisConfig::from_url(url).expect("valid test URL");
    let backend = RedisBackend::connect(config).await.expect("connect");
    Client::builder(Arc::new(backend))
        .instance_id(name)
        .unwrap()
        .lease_options(LeaseOptions::default().ttl(Duration::from_secs(120)))
        .build()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// `confirm_replicas=1`: granted while the replica acknowledges; with the
/// replica frozen, `Unconfirmed { acked: 0, wanted: 1 }` after the
/// confirmation's timeout (not the operation timeout), and the grant the
/// master made is released in the background: nothing is left held. A
/// release is `Unconfirmed` too, and has freed the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_without_its_replica_is_unconfirmed_and_released() {
    let pair = Arc::new(blocking(Pair::start).await);
    let query = format!("namespace=c1&confirm_replicas=1&confirm_timeout={CONFIRM_TIMEOUT:?}");
    let confirmed = client(&pair.url(&query), "confirmed").await;
    let plain = client(&pair.url("namespace=c1"), "plain").await;

    let g = confirmed
        .lock("a")
        .try_lock()
        .await
        .unwrap()
        .expect("granted");
    assert!(g.release().await.unwrap());
    let d = confirmed
        .lock("d")
        .try_lock()
        .await
        .unwrap()
        .expect("granted");

    let p = pair.clone();
    blocking(move || p.replica.pause()).await;
    // Reads are not confirmed: answered at once with the replica frozen
    // (before any write: a write's confirmation holds up whatever follows
    // it on the connection).
    let started = Instant::now();
    let holders = confirmed.lock("a").holders().await.unwrap();
    assert!(holders.is_empty(), "{holders:?}");
    assert!(
        started.elapsed() < CONFIRM_TIMEOUT,
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let err = confirmed.lock("b").try_lock().await.unwrap_err();
    let took = started.elapsed();
    match &err {
        Error::Unconfirmed {
            acked: 0,
            wanted: 1,
            by: "replicas",
            what,
            ..
        } => assert!(what.contains("\"b\""), "{err}"),
        other => panic!("expected Unconfirmed, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(took >= CONFIRM_TIMEOUT, "waited {took:?}");
    assert!(took < Duration::from_secs(3), "waited {took:?}");

    // The master granted "b"; the background release frees it.
    let deadline = Instant::now() + DEADLINE;
    let b = plain.lock("b");
    loop {
        let holders = b.holders().await.unwrap();
        if holders.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still held: {holders:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = plain
        .lock("b")
        .try_lock()
        .await
        .unwrap()
        .expect("free again");

    // A release not confirmed freed the key on the master: the error
    // reaches the caller, the guard counts the lease released, others may
    // take it.
    let released = d.lost_signal();
    match d.release().await {
        Err(Error::Unconfirmed { what, .. }) => assert!(what.contains("\"d\""), "{what}"),
        other => panic!("expected Unconfirmed, got {other:?}"),
    }
    assert!(released.is_lost());
    let taken = plain.lock("d").try_lock().await.unwrap();
    assert!(taken.expect("freed on the master").release().await.unwrap());

    // Without the option, nothing changes with the replica gone.
    let started = Instant::now();
    assert!(g.release().await.unwrap());
    assert!(
        started.elapsed() < CONFIRM_TIMEOUT,
        "{:?}",
        started.elapsed()
    );

    let p = pair.clone();
    blocking(move || p.replica.resume()).await;
    let g = confirmed
        .lock("c")
        .try_lock()
        .await
        .unwrap()
        .expect("granted");
    assert!(g.release().await.unwrap());
}

/// The clean-up of an unconfirmed grant of several locks at once, or of a
/// fair lock, frees everything the master granted although each of its
/// writes is `Unconfirmed` too: every member of the multi-lock (it stopped
/// at the first release) and the fair lock's lease after its place in the
/// queue (it stopped at giving the place back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_multi_and_fair_grants_are_released_whole() {
    let pair = Arc::new(blocking(Pair::start).await);
    let query = format!("namespace=c4&confirm_replicas=1&confirm_timeout={CONFIRM_TIMEOUT:?}");
    let confirmed = client(&pair.url(&query), "confirmed").await;
    let plain = client(&pair.url("namespace=c4"), "plain").await;
    let p = pair.clone();
    blocking(move || p.replica.pause()).await;

    let err = confirmed.multi_lock(["m1", "m2", "m3"]).try_lock().await;
    assert!(matches!(err, Err(Error::Unconfirmed { .. })), "{err:?}");
    freed(&plain, &["m1", "m2", "m3"]).await;
    let err = confirmed.lock("f").fair(true).try_lock().await;
    assert!(matches!(err, Err(Error::Unconfirmed { .. })), "{err:?}");
    freed(&plain, &["f"]).await;
}

/// Decision 0079: a confirmed write waits for its replicas on a connection
/// of its own. On the backend's shared connection, a `WAIT` held up every
/// other call of the client until it ended: with the replica frozen, a
/// second write was not even sent before the first's confirmation ended,
/// and a read was answered only after both (a few writes at once made
/// calls fail `Unavailable` at the operation timeout, which made
/// `unconfirmed_multi_and_fair_grants_are_released_whole` fail at random,
/// its grant queued behind the client's presence announcement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_writes_wait_without_holding_up_other_calls() {
    let pair = Arc::new(blocking(Pair::start).await);
    // A confirmation long enough to look at the server meanwhile.
    let query = "namespace=c5&confirm_replicas=1&confirm_timeout=5s&timeout=10s";
    let confirmed = client(&pair.url(query), "confirmed").await;
    let plain = client(&pair.url("namespace=c5"), "plain").await;
    let p = pair.clone();
    blocking(move || p.replica.pause()).await;

    let write = |key: &'static str| {
        let client = confirmed.clone();
        tokio::spawn(async move { client.lock(key).try_lock().await.map(drop) })
    };
    let (first, second) = (write("w1"), write("w2"));
    // Both applied on the master, so both wait for their confirmations.
    held(&plain, &["w1", "w2"]).await;
    let holders = confirmed.lock("w1").holders().await.unwrap();
    assert!(
        !first.is_finished() && !second.is_finished(),
        "a write, or the read, waited for another write's confirmation"
    );
    assert_eq!(holders.len(), 1, "{holders:?}");
    for write in [first, second] {
        let res = write.await.unwrap();
        assert!(matches!(res, Err(Error::Unconfirmed { .. })), "{res:?}");
    }
}

/// A confirmed write answered `NOSCRIPT` waits for its replicas twice (a
/// `WAIT` blocks whenever a replica lags, also after a request that did not
/// run), so a backend that confirms writes loads every script at connect:
/// its first writes find them (no `EVALSHA` failed on the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_writes_find_their_scripts_loaded() {
    let pair = blocking(Pair::start).await;
    let query = format!("namespace=c6&confirm_replicas=1&confirm_timeout={CONFIRM_TIMEOUT:?}");
    let confirmed = client(&pair.url(&query), "confirmed").await;
    let g = confirmed
        .lock("s")
        .try_lock()
        .await
        .unwrap()
        .expect("granted");
    g.release().await.unwrap();
    let stats = pair.master.command(&["INFO", "commandstats"]).unwrap();
    let stats: String = redis::from_redis_value(stats).unwrap();
    let evalsha = (stats.lines())
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .expect("EVALSHA ran");
    assert!(evalsha.ends_with("failed_calls=0"), "{evalsha}");
}

/// Waits until every key of `keys` is held (for at most [`DEADLINE`]).
async fn held(plain: &Client, keys: &[&str]) {
    let deadline = Instant::now() + DEADLINE;
    for key in keys {
        while plain.lock(key).holders().await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "{key} never held");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until no key of `keys` is held (for at most [`DEADLINE`]).
async fn freed(plain: &Client, keys: &[&str]) {
    let deadline = Instant::now() + DEADLINE;
    for key in keys {
        loop {
            let holders = plain.lock(key).holders().await.unwrap();
            if holders.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{key} still held: {holders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A renewal the replica does not confirm counts as not made: with the
/// replica frozen, a held lock's renewals fail and it is lost at its local
/// validity, as if the backend were unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_renewals_lose_the_lease_at_its_local_validity() {
    let pair = Arc::new(blocking(Pair::start).await);
    let query = format!("namespace=c2&confirm_replicas=1&confirm_timeout={CONFIRM_TIMEOUT:?}");
    let config = RedisConfig::from_url(&pair.url(&query)).unwrap();
    let backend = RedisBackend::connect(config).await.unwrap();
    let ttl = Duration::from_secs(3);
    let confirmed = Client::builder(Arc::new(backend))
        .instance_id("renewing")
        .unwrap()
        .lease_options(LeaseOptions::default().ttl(ttl))
        .build();
    let g = confirmed
        .lock("r")
        .try_lock()
        .await
        .unwrap()
        .expect("granted");
    let p = pair.clone();
    blocking(move || p.replica.pause()).await;
    let frozen = Instant::now();
    tokio::time::timeout(DEADLINE, g.lost())
        .await
        .expect("the lost signal fires");
    // Its local validity ends within a TTL of the freeze (its last
    // confirmed renewal was sent before it); a second of slack for a
    // loaded machine waking the renewal task.
    let lost_after = frozen.elapsed();
    assert!(
        lost_after <= ttl + Duration::from_secs(1),
        "lost after {lost_after:?}"
    );
    assert!(!g.is_held());
}

/// Decision 0036: "reads are answered at once". With no replica at all
/// and `confirm_replicas=1` every write is `Unconfirmed`, and every read
/// must answer without waiting for one. A barrier's and a latch's state,
/// the health probe and the audit trail were classified as writes (not in
/// the reads list): each waited `confirm_timeout` and failed `Unconfirmed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_at_once_without_the_replicas() {
    use coord_api::{
        Key,
        spi::{Backend, BarrierKind, ops::Cursor},
    };
    let server = RedisServer::start();
    let url = format!(
        "redis://127.0.0.1:{}/0?namespace=rd&confirm_replicas=1&confirm_timeout=300ms",
        server.port()
    );
    let backend = RedisBackend::connect(RedisConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    let name = Key::new("b").unwrap();
    let mut failures = Vec::new();
    let mut check = |what: &str, ok: bool, started: Instant, r: &dyn std::fmt::Debug| {
        if !ok || started.elapsed() >= Duration::from_millis(300) {
            failures.push(format!("{what}: {r:?} after {:?}", started.elapsed()));
        }
    };
    let barriers = backend.barriers().unwrap();
    let ops = backend.ops().unwrap();

    let started = Instant::now();
    let r = barriers.state(BarrierKind::Cyclic, &name, None).await;
    check("barrier state", r.is_ok(), started, &r);
    let started = Instant::now();
    let r = barriers.latch_state(&name).await;
    check("latch state", r.is_ok(), started, &r);
    let started = Instant::now();
    let r = ops.probe().await;
    check("probe", r.is_ok(), started, &r);
    let started = Instant::now();
    let r = ops.audit(&Cursor::start(), 10).await;
    check("audit", r.is_ok(), started, &r);
    assert!(
        failures.is_empty(),
        "reads confirmed:\n{}",
        failures.join("\n")
    );
}

/// `WAITAOF` (7.2) is refused at connect by a server without it, naming
/// its version; a server with it is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_needs_a_server_with_waitaof() {
    let server = RedisServer::shared();
    let plain = RedisBackend::connect(server.config("c3")).await.unwrap();
    let info = plain.server_info();
    let config = RedisConfig::builder()
        .with_url(server.url())
        .confirm(Confirm::Fsync {
            local: true,
            replicas: 0,
            timeout: CONFIRM_TIMEOUT,
        })
        .build()
        .unwrap();
    let res = RedisBackend::connect(config).await;
    if info.waitaof {
        res.expect("a server with WAITAOF takes confirm_fsync");
        return;
    }
    let version = info
        .version
        .expect("the server says its version")
        .to_string();
    match res {
        Err(Error::Config { message }) => {
            assert!(message.contains(&version), "{message}");
            assert!(message.contains("WAITAOF"), "{message}");
        }
        Err(e) => panic!("expected a config error, got {e:?}"),
        Ok(_) => panic!("confirm_fsync accepted by {version} without WAITAOF"),
    }
}

/// What confirmation buys: with `confirm_replicas=2` (both replicas of
/// the set), a grant acknowledged right before the master is SIGKILLed is
/// on whichever replica the sentinels promote, so the new master refuses
/// it to others. (Unconfirmed, such a grant can be lost: tests/sentinel.rs,
/// `unplanned_failover_loses_unreplicated_grants_and_fencing_refuses_the_stale_holder`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_confirmed_by_every_replica_survives_an_unplanned_failover() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    let confirming = format!(
        "{}?namespace=c4&timeout=3s&confirm_replicas=2&confirm_timeout=2s",
        set.url()
    );
    let a = client(&confirming, "a").await;
    // The other client confirms nothing: after the failover one replica is
    // left, and a refusal is a write as far as confirmation knows.
    let b = client(&format!("{}?namespace=c4&timeout=2s", set.url()), "b").await;
    // With both replicas frozen the master grants at once, but the grant
    // is not acknowledged: it waits for them.
    let old = set.master_port();
    let replicas: Vec<u16> = (set.servers().iter().map(|s| s.port()))
        .filter(|p| *p != old)
        .collect();
    for p in &replicas {
        set.server(*p).pause();
    }
    let lock = a.lock("k");
    let grant = tokio::spawn(async move { lock.try_lock().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acknowledged_early = grant.is_finished();
    for p in &replicas {
        set.server(*p).resume();
    }
    assert!(
        !acknowledged_early,
        "acknowledged before the replicas had it"
    );
    let g = grant.await.unwrap().unwrap().expect("granted, confirmed");
    let s = set.clone();
    assert_eq!(blocking(move || s.kill_master()).await, old);
    let s = set.clone();
    blocking(move || s.wait_for_master_other_than(old)).await;

    let deadline = Instant::now() + DEADLINE;
    let lock = b.lock("k");
    loop {
        match lock.try_lock().await {
            Ok(None) => break,
            Ok(Some(_)) => panic!("the confirmed grant was lost in the failover"),
            Err(Error::Unavailable { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(Instant::now() < deadline, "b did not reach the new master");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holders = lock.holders().await.unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(g.is_held());
}
