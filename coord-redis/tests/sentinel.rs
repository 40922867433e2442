//! Redis behind Sentinel (`redis+sentinel://`): a master, two replicas and
//! three sentinels of the test's own (`coord_testkit::sentinel`). Clients
//! connect through the sentinels and follow the master through a planned
//! failover (`SENTINEL FAILOVER`) and an unplanned one (SIGKILL of the
//! master); what holds through a failover is what the contract's
//! "Failover" section says (coord-api's `contract/common.md`), no more.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{Client, Error, LeaseOptions, LockGuard, spi::LockSpace};
use coord_redis::RedisBackend;
use coord_testkit::{
    failover::{self, Fenced},
    sentinel::SentinelSet,
};

/// How long clients may take to reach the new master once the sentinels
/// name it (generous: a loaded 2-core machine).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

async fn client(set: &SentinelSet, namespace: &str, name: &str, ttl: Duration) -> Client {
    // RUST_LOG=coord_redis=info,coord_api=info shows the failover handling.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let backend = RedisBackend::connect(set.config(namespace))
        .await
        .expect("connect through the sentinels");
    Client::builder(Arc::new(backend))
        .instance_id(name)
        .unwrap()
        .lease_options(
            LeaseOptions::default()
                .ttl(ttl)
                .retry_delay(Duration::from_millis(200))
                .wait_timeout(Some(Duration::from_secs(5))),
        )
        .build()
}

/// Polls `attempt` until it yields `Some`, within [`FOLLOW_TIMEOUT`]; an
/// `Unavailable` error (a request to the old master while the clients
/// follow) is one more attempt.
async fn eventually<T, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: Future<Output = coord_api::Result<Option<T>>>,
{
    let deadline = Instant::now() + FOLLOW_TIMEOUT;
    loop {
        match attempt().await {
            Ok(Some(v)) => return v,
            Ok(None) | Err(Error::Unavailable { .. }) => {}
            Err(e) => panic!("{what}: {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {FOLLOW_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A grant by `client` (of `namespace`) that landed on the master `new`:
/// tries fresh keys until one is granted and is there (a grant made on
/// the old master before the client moved is lost with it).
async fn a_grant_on_the_new_master(
    set: &SentinelSet,
    new: u16,
    client: &Client,
    namespace: &str,
) -> LockGuard {
    let mut n = 0;
    eventually("a grant on the new master", || {
        n += 1;
        let lock = client.lock(&format!("fresh{n}"));
        let key = format!("coord:{{{namespace}:lock:fresh{n}}}:l");
        let new_master = set.server(new);
        async move {
            let Some(g) = lock.try_lock().await? else {
                return Ok(None);
            };
            let there = new_master.command(&["EXISTS", &key]).unwrap();
            Ok((there == redis::Value::Int(1)).then_some(g))
        }
    })
    .await
}

/// Waits until both replicas have what the master `port` holds (`WAIT`).
fn replicated(set: &SentinelSet, port: u16) {
    let acked = set.server(port).command(&["WAIT", "2", "10000"]).unwrap();
    assert_eq!(acked, redis::Value::Int(2), "replicas acknowledged");
}

/// Runs the blocking `f` (a fixture call) off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("fixture call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_through_the_sentinels_to_the_master() {
    let set = blocking(SentinelSet::start).await;
    let backend = RedisBackend::connect_url(&format!("{}?namespace=basic", set.url()))
        .await
        .unwrap();
    assert!(backend.to_string().starts_with("redis+sentinel(127.0.0.1:"));
    let c = Client::new(Arc::new(backend));
    let guard = c.lock("k").try_lock().await.unwrap().expect("free");
    assert!(c.lock("k").try_lock().await.unwrap().is_none());
    // The grant is on the master the sentinels name.
    let master = set.master_port();
    let keys = set.server(master).command(&["DBSIZE"]).unwrap();
    assert_ne!(keys, redis::Value::Int(0));
    assert!(guard.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_name_the_sentinels_do_not_know_is_an_error_naming_it() {
    let set = blocking(SentinelSet::start).await;
    let url = set.url().replace("/mymaster", "/nosuchmaster");
    let e = RedisBackend::connect_url(&url).await.unwrap_err();
    assert!(e.to_string().contains("nosuchmaster"), "{e}");
    // Sentinels that cannot be reached: Unavailable, within the connect
    // timeout.
    let dead = "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster?connect_timeout=2s";
    let started = Instant::now();
    let e = RedisBackend::connect_url(dead).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A planned failover (`SENTINEL FAILOVER`) with leases held and renewed,
/// a watch made and replication caught up. The clients follow the new
/// master on the sentinels' announcement (the old master stays writable
/// until a sentinel demotes it, and renewals sent there would be lost,
/// which a 10 s TTL would not outlive). The leases survive: held by their
/// holder, refused to others, renewed on the new master past their TTL.
/// The watch is subscribed again on the new master, and a waiter sharing
/// it is woken by a release there. Every grant after the failover carries
/// a larger token than every grant before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_failover_keeps_replicated_leases_and_tokens_increase() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    let ttl = Duration::from_secs(10);
    let a = client(&set, "planned", "a", ttl).await;
    let b = client(&set, "planned", "b", ttl).await;
    let mut guards = Vec::new();
    for i in 0..4 {
        guards.push(a.lock(&format!("k{i}")).try_lock().await.unwrap().unwrap());
    }
    // Its expiry is far off: only a notification wakes its waiter soon.
    let long = (a.lock("long").ttl(Duration::from_secs(60)))
        .try_lock()
        .await
        .unwrap()
        .unwrap();
    let term = a.election("e").try_campaign().await.unwrap().unwrap();
    let before = (guards.iter().map(|g| g.token()))
        .chain([long.token(), term.term()])
        .max()
        .unwrap();
    // A watch made before the failover (a waiter's would end with
    // `Unavailable` at its first refused attempt during the failover: the
    // caller's to retry).
    let long_key = coord_api::Key::new("long").unwrap();
    let locks = b.backend().locks().unwrap();
    let _watch = locks.subscribe(LockSpace::Lock, &long_key).await.unwrap();
    let old = set.master_port();
    let s = set.clone();
    blocking(move || replicated(&s, old)).await;

    let s = set.clone();
    let new = blocking(move || {
        s.failover();
        s.wait_for_master_other_than(old)
    })
    .await;
    let followed = Instant::now();
    // B follows: a grant lands on the new master (one made on the old
    // master before it was demoted is lost: try another key), and B's
    // waiter is subscribed there.
    let fresh = a_grant_on_the_new_master(&set, new, &b, "planned").await;
    // The watch made before is subscribed again on the new master.
    let channel = "coord:{planned:lock:long}:c";
    let one = redis::Value::Array(vec![
        redis::Value::BulkString(channel.into()),
        redis::Value::Int(1),
    ]);
    eventually("the watch subscribed again on the new master", || {
        let numsub = set.server(new).command(&["PUBSUB", "NUMSUB", channel]);
        let one = one.clone();
        async move { Ok((numsub.unwrap() == one).then_some(())) }
    })
    .await;
    // A waiter on the same channel shares that subscription.
    let waiter = {
        let lock = (b.lock("long").retry_delay(Duration::from_secs(120)))
            .wait_timeout(Some(Duration::from_secs(120)));
        tokio::spawn(async move { lock.lock().await })
    };
    assert_eq!(set.role(new).as_deref(), Some("master"));

    // The leases survived: still refused to B, still held by A and renewed
    // on the new master past their TTL.
    for i in 0..4 {
        let k = format!("k{i}");
        assert!(b.lock(&k).try_lock().await.unwrap().is_none(), "{k} taken");
    }
    tokio::time::sleep_until((followed + ttl + Duration::from_secs(1)).into()).await;
    for g in &guards {
        assert!(g.is_held(), "{g:?} was lost");
    }
    assert!(term.is_leader());
    assert!(b.election("e").try_campaign().await.unwrap().is_none());

    // A release on the new master wakes the waiter (its retry is minutes
    // away, the lease's expiry a minute), through the subscription made
    // again there.
    let released = Instant::now();
    assert!(long.release().await.unwrap());
    let got = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the waiter woke")
        .unwrap()
        .unwrap();
    assert!(released.elapsed() < Duration::from_secs(20));

    // Every grant after the failover is above every grant before.
    let mut resource = Fenced::default();
    assert!(resource.write(before));
    assert!(fresh.token() > before && got.token() > before);
    for g in guards {
        assert!(g.release().await.unwrap());
    }
    for i in 0..4 {
        let g = b.lock(&format!("k{i}")).try_lock().await.unwrap().unwrap();
        assert!(g.token() > before);
        assert!(resource.write(g.token()));
    }
    assert!(term.resign().await.unwrap());
    let term = b.election("e").try_campaign().await.unwrap().unwrap();
    assert!(term.term() > before && resource.write(term.term()));
}

/// An unplanned failover (SIGKILL of the master) right after a grant the
/// replicas never saw: that grant is lost with the master, so the key is
/// granted again (with a larger token) and its first holder gets its lost
/// signal; a fenced resource refuses the first holder's token once it saw
/// the second's. A grant replicated before the kill survives it; a
/// release the replicas never saw is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplanned_failover_loses_unreplicated_grants_and_fencing_refuses_the_stale_holder() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    // Long enough to outlive the failover (a down-after of 2 s, an
    // election among the sentinels, a promotion).
    let ttl = Duration::from_secs(30);
    let a = client(&set, "unplanned", "a", ttl).await;
    let b = client(&set, "unplanned", "b", ttl).await;
    let kept = a.lock("kept").try_lock().await.unwrap().unwrap();
    let released = a.lock("released").try_lock().await.unwrap().unwrap();
    let old = set.master_port();
    let s = set.clone();
    blocking(move || replicated(&s, old)).await;

    // The replicas frozen and cut off (a frozen replica would still read
    // what its socket received once thawed), a grant reaches the master
    // only; then the master dies.
    let replicas: Vec<u16> = (set.servers().iter().map(|s| s.port()))
        .filter(|p| *p != old)
        .collect();
    for p in &replicas {
        set.server(*p).pause();
    }
    let cut = set
        .server(old)
        .command(&["CLIENT", "KILL", "TYPE", "replica"]);
    assert_eq!(
        cut.unwrap(),
        redis::Value::Int(2),
        "both replication links cut"
    );
    let unreplicated = a.lock("lost").try_lock().await;
    let (released_by, released_token) = (released.holder().clone(), released.token());
    let unreplicated_release = released.release().await;
    let killed = set.kill_master();
    for p in &replicas {
        set.server(*p).resume();
    }
    let unreplicated = unreplicated.unwrap().unwrap();
    assert!(unreplicated_release.unwrap(), "released on the old master");
    assert_eq!(killed, old);
    let mut resource = Fenced::default();
    assert!(
        resource.write(unreplicated.token()),
        "A wrote while it held the lock"
    );

    let s = set.clone();
    blocking(move || s.wait_for_master_other_than(old)).await;
    // Granted again on the new master, with a larger token.
    let lost = b.lock("lost");
    let again = eventually("the lost grant granted again", || lost.try_lock()).await;
    assert!(again.token() > unreplicated.token());
    assert!(resource.write(again.token()));
    // A learns it lost the lease (its renewal finds someone else's), and a
    // write with its token is refused.
    tokio::time::timeout(FOLLOW_TIMEOUT, unreplicated.lost())
        .await
        .expect("the lost signal fires");
    assert!(!unreplicated.is_held());
    assert!(!resource.write(unreplicated.token()));

    failover::release_was_undone(&b, "released", &released_by, released_token).await;
    let next = failover::replicated_lease_survived(&b, "kept", kept).await;
    next.release().await.unwrap();
}

/// Item 5 of issue 20: the backend asks the server its version and
/// optional commands at connect (directly and behind sentinels), and
/// health reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_known_at_connect_and_shown_by_health() {
    let server = coord_testkit::redis::RedisServer::shared();
    let direct = RedisBackend::connect(server.config("server-info"))
        .await
        .unwrap();
    let info = direct.server_info();
    let version = info.version.expect("INFO server names the version");
    assert!(version >= coord_redis::MIN_VERSION, "{info}");
    assert_eq!(
        info.spublish,
        version >= coord_redis::Version(7, 0, 0),
        "{info}"
    );
    assert_eq!(
        info.waitaof,
        version >= coord_redis::Version(7, 2, 0),
        "{info}"
    );
    assert_eq!(info.set_nx_get, info.spublish, "{info}");

    let health = Client::new(Arc::new(direct)).operations().health().await;
    let shown = (health.checks.iter())
        .find(|c| c.name == "server")
        .expect("a server check");
    assert_eq!(shown.detail, info.to_string());

    let set = blocking(|| SentinelSet::start_with(1)).await;
    let behind = RedisBackend::connect(set.config("server-info"))
        .await
        .unwrap();
    assert_eq!(behind.server_info(), info, "the same redis-server binary");
}

/// The sentinel whose announcements a client listens to is frozen, and
/// the master is killed: the other two fail it over, and the client
/// follows on its own errors, asking the sentinels past the frozen one
/// (each has its share of the connect timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_on_errors_when_the_announcing_sentinel_is_frozen() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    let a = client(&set, "frozen", "a", Duration::from_secs(30)).await;
    let kept = a.lock("kept").try_lock().await.unwrap().unwrap();
    let old = set.master_port();
    let s = set.clone();
    blocking(move || replicated(&s, old)).await;
    // The first sentinel of the URL: the one the client listens to.
    set.pause_sentinel(0);
    set.kill_master();
    let s = set.clone();
    let new = blocking(move || s.wait_for_master_other_than(old)).await;
    let fresh = a_grant_on_the_new_master(&set, new, &a, "frozen").await;
    assert!(kept.is_held());
    assert!(fresh.token() > kept.token());
    set.resume_sentinel(0);
}

/// A planned failover a client does not hear of (the sentinel it listens
/// to is frozen): the old master, still writable until a sentinel demotes
/// it, takes the client's grant, which the new master never gets (it is
/// granted again there, and the first holder learns it lost the lease);
/// once the old master is demoted the client moves on its own errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_missed_the_announcement_loses_what_the_old_master_took() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    let a = client(&set, "missed", "a", Duration::from_secs(10)).await;
    // Its announcement listener is on the first sentinel of the URL.
    let deadline = Instant::now() + FOLLOW_TIMEOUT;
    loop {
        let clients = set.sentinel_command(0, &["CLIENT", "LIST"]).unwrap();
        let clients: String = redis::from_redis_value(clients).unwrap();
        if clients.contains("cmd=subscribe") {
            break;
        }
        assert!(Instant::now() < deadline, "no listener: {clients}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    set.pause_sentinel(0);
    let old = set.master_port();
    let s = set.clone();
    let new = blocking(move || {
        replicated(&s, old);
        s.failover();
        s.wait_for_master_other_than(old)
    })
    .await;
    // Still writable (a sentinel demotes it at its next look, seconds
    // later): A's grant lands on the old master only.
    let stale = a.lock("stale").try_lock().await.unwrap().expect("granted");
    let key = "coord:{missed:lock:stale}:l";
    let there = |port| set.server(port).command(&["EXISTS", key]).unwrap();
    assert_eq!(
        there(old),
        redis::Value::Int(1),
        "granted on the old master"
    );
    assert_eq!(there(new), redis::Value::Int(0), "not on the new one");
    // Granted again on the new master, to a client of its own (one that
    // connects through the sentinels now may still be told the old
    // master: the sentinel leading the failover lists it in `SENTINEL
    // MASTERS` until the other replica is reconfigured).
    let direct = format!("redis://127.0.0.1:{new}/0?namespace=missed");
    let b = Client::builder(Arc::new(RedisBackend::connect_url(&direct).await.unwrap()))
        .instance_id("b")
        .unwrap()
        .build();
    let again = b
        .lock("stale")
        .try_lock()
        .await
        .unwrap()
        .expect("free there");
    assert!(again.token() > stale.token());
    // A moves once the old master refuses it, and its lease is lost.
    let fresh = a_grant_on_the_new_master(&set, new, &a, "missed").await;
    tokio::time::timeout(FOLLOW_TIMEOUT, stale.lost())
        .await
        .expect("the lost signal fires");
    assert!(fresh.is_held());
    set.resume_sentinel(0);
}
