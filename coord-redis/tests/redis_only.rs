//! Behaviour only a real Redis has: script reload, restarts without
//! persistence, an unreachable or frozen server, key layout, a key of
//! another type (redaction is `redaction.rs`).
//! Tests that stop, freeze or restart a server start their own.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{
    Client, Error, HolderId, InstanceId, Key, LeaseOptions,
    spi::{DynBackend, LeaseId, LeaseKind, LockBackend, LockSpace, Watch},
};
use coord_redis::{RedisBackend, RedisConfig};
use coord_testkit::redis::RedisServer;
use redis::Value;

async fn backend(config: RedisConfig) -> DynBackend {
    Arc::new(RedisBackend::connect(config).await.expect("connect"))
}

/// The lock family of `b`.
fn locks(b: &DynBackend) -> &dyn LockBackend {
    b.locks().expect("the lock family")
}

fn client(backend: DynBackend, name: &str, opts: LeaseOptions) -> Client {
    Client::builder(backend)
        .instance_id(name)
        .unwrap()
        .lease_options(opts)
        .build()
}

/// `server` in `namespace`, with an operation timeout of `timeout`.
fn timing_out(server: &RedisServer, namespace: &str, timeout: Duration) -> RedisConfig {
    RedisConfig::builder()
        .with_url(server.url())
        .namespace(namespace)
        .timeout(timeout)
        .build()
        .unwrap()
}

fn opts(ttl: Duration) -> LeaseOptions {
    LeaseOptions::default()
        .ttl(ttl)
        .retry_delay(Duration::from_secs(10))
        .wait_timeout(Some(Duration::from_secs(5)))
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        other => format!("{other:?}"),
    }
}

fn keys(server: &RedisServer) -> Vec<String> {
    match server.command(&["KEYS", "*"]).unwrap() {
        Value::Array(ks) => ks.into_iter().map(text).collect(),
        other => panic!("KEYS replied {other:?}"),
    }
}

/// `name:calls` pairs of INFO commandstats for the commands clients send
/// (commands run inside scripts count too; they are not round trips).
fn command_calls(server: &RedisServer) -> Vec<(String, u64)> {
    let info = text(server.command(&["INFO", "commandstats"]).unwrap());
    info.lines()
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
        .filter(|(name, _)| name != "info" && name != "config|resetstat")
        .collect()
}

/// The calls of commands a client can send to run a script.
fn top_level(server: &RedisServer) -> Vec<(String, u64)> {
    let mut calls: Vec<_> = command_calls(server)
        .into_iter()
        .filter(|(n, _)| n.starts_with("eval") || n.starts_with("script") || n.starts_with("fcall"))
        .collect();
    calls.sort();
    calls
}

#[tokio::test]
async fn one_evalsha_per_operation_and_reload_after_script_flush() {
    let server = RedisServer::start();
    let b = backend(server.config("scripts")).await;
    let c = client(b, "a", opts(Duration::from_secs(5)).auto_extend(false));
    // Warm up: loads the lock script.
    c.lock("warm")
        .try_lock()
        .await
        .unwrap()
        .unwrap()
        .release()
        .await
        .unwrap();

    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    for i in 0..10 {
        let g = c.lock(&format!("k{i}")).try_lock().await.unwrap().unwrap();
        assert!(g.release().await.unwrap());
    }
    assert_eq!(top_level(&server), [("evalsha".to_owned(), 20)]);

    assert_eq!(server.command(&["SCRIPT", "FLUSH"]).unwrap(), Value::Okay);
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let g = c
        .lock("after-flush")
        .try_lock()
        .await
        .unwrap()
        .expect("works after SCRIPT FLUSH");
    assert!(g.release().await.unwrap());
    let calls = top_level(&server);
    // The first EVALSHA hit NOSCRIPT, the script was loaded, then both ran.
    assert_eq!(
        calls,
        [("evalsha".to_owned(), 3), ("script|load".to_owned(), 1)]
    );
}

#[tokio::test]
async fn namespaces_isolated_and_foreign_keys_untouched() {
    let server = RedisServer::start();
    for (k, v) in [
        ("k", "plain"),
        ("lock:k", "other-lib"),
        ("a:lock:k", "other-lib"),
        ("coord:k", "near-miss"),
    ] {
        server.command(&["SET", k, v]).unwrap();
    }
    server
        .command(&["HSET", "{a:lock:k}:l", "holder", "x"])
        .unwrap();
    let foreign_before = keys(&server);

    let a = client(
        backend(server.config("a")).await,
        "a",
        opts(Duration::from_secs(5)),
    );
    let b = client(
        backend(server.config("b")).await,
        "b",
        opts(Duration::from_secs(5)),
    );
    let ga = a.lock("k").try_lock().await.unwrap().expect("a gets k");
    let gb = b
        .lock("k")
        .try_lock()
        .await
        .unwrap()
        .expect("b gets its own k");
    let ra = a.rwlock("k").read().await.unwrap();
    let pa = a.semaphore("k", 2).acquire().await.unwrap();

    // Force release in a frees a's k only.
    assert_eq!(a.lock("k").force_release().await.unwrap(), 1);
    assert_eq!(b.lock("k").holders().await.unwrap().len(), 1);
    assert!(gb.extend().await.unwrap(), "b still holds its k");
    assert!(!ga.extend().await.unwrap(), "a's k was forced");

    for k in keys(&server) {
        assert!(
            foreign_before.contains(&k) || k.starts_with("coord:{a:") || k.starts_with("coord:{b:"),
            "unexpected key {k}"
        );
    }
    for (k, v) in [
        ("k", "plain"),
        ("lock:k", "other-lib"),
        ("a:lock:k", "other-lib"),
        ("coord:k", "near-miss"),
    ] {
        assert_eq!(
            text(server.command(&["GET", k]).unwrap()),
            v,
            "{k} untouched"
        );
    }
    assert_eq!(
        text(server.command(&["HGET", "{a:lock:k}:l", "holder"]).unwrap()),
        "x"
    );
    drop((ra, pa, gb));
}

#[tokio::test]
async fn tokens_increase_across_a_restart_without_persistence() {
    let server = RedisServer::start();
    let config = server.config("tokens");
    let c = client(
        backend(config.clone()).await,
        "a",
        opts(Duration::from_secs(5)),
    );
    let mut last = 0;
    for _ in 0..3 {
        let g = c.lock("k").try_lock().await.unwrap().unwrap();
        assert!(g.token().get() > last);
        last = g.token().get();
        g.release().await.unwrap();
    }
    // A released lock leaves its token counter alone, for an hour past the
    // lease's TTL. (The client's instance presence lives under
    // `{tokens:ops}`.)
    let left: Vec<String> = (keys(&server).into_iter())
        .filter(|k| !k.starts_with("coord:{tokens:ops}"))
        .collect();
    assert_eq!(left, ["coord:{tokens:lock:k}:t"]);
    let Value::Int(pttl) = server
        .command(&["PTTL", "coord:{tokens:lock:k}:t"])
        .unwrap()
    else {
        panic!("PTTL");
    };
    assert!(pttl > 3_600_000 && pttl <= 3_605_000, "{pttl}");
    assert_eq!(
        text(server.command(&["GET", "coord:{tokens:lock:k}:t"]).unwrap()),
        last.to_string(),
        "the counter holds the last token"
    );
    // Push the stored counter far beyond the clock, then lose it.
    let ahead = last + 3_600_000_000;
    server
        .command(&["SET", "coord:{tokens:lock:k}:t", &ahead.to_string()])
        .unwrap();
    let g = c.lock("k").try_lock().await.unwrap().unwrap();
    assert_eq!(
        g.token().get(),
        ahead + 1,
        "counter + 1 while it runs ahead"
    );
    g.release().await.unwrap();
    // The grant stored its token, not the clock's reading (each grant
    // stores the clock's reading first and the token only when larger).
    let g = c.lock("k").try_lock().await.unwrap().unwrap();
    assert_eq!(g.token().get(), ahead + 2, "the counter kept running ahead");
    g.release().await.unwrap();

    server.restart();
    assert!(keys(&server).is_empty(), "restart lost all data");
    let c = client(backend(config).await, "b", opts(Duration::from_secs(5)));
    let g = c.lock("k").try_lock().await.unwrap().unwrap();
    assert!(
        g.token().get() > last,
        "token {} after restart is not above {last}",
        g.token()
    );
}

#[tokio::test]
async fn restart_while_held_fires_lost_and_client_reconnects() {
    let server = RedisServer::start();
    let b = backend(server.config("restart")).await;
    let holder = client(b.clone(), "holder", opts(Duration::from_secs(5)));
    let guard = holder.lock("k").try_lock().await.unwrap().unwrap();
    let t1 = guard.token();
    // A watch made before the restart keeps working after it.
    let mut watch = locks(&b)
        .subscribe(LockSpace::Lock, &Key::new("k").unwrap())
        .await
        .unwrap();

    let restarted = Instant::now();
    server.restart();
    // Renewal (every ttl/3) finds the key gone: lost well before the local
    // validity deadline (~4.95 s after the grant).
    tokio::time::timeout(Duration::from_secs(4), guard.lost())
        .await
        .expect("lost signal fires once renewal finds the key gone");
    assert!(!guard.is_held());
    assert!(restarted.elapsed() < Duration::from_secs(4));

    let again = holder
        .lock("k")
        .try_lock()
        .await
        .unwrap()
        .expect("reconnected and granted");
    assert!(again.token() > t1, "{} > {t1}", again.token());

    // Release notifications reach the old watch once it has resubscribed.
    let other = client(b.clone(), "other", opts(Duration::from_secs(5)));
    drop(again.release().await);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Drain wake-ups from the disconnection, then expect a fresh one.
        while tokio::time::timeout(Duration::ZERO, watch.changed())
            .await
            .is_ok()
        {}
        let g = other.lock("k").try_lock().await.unwrap().unwrap();
        g.release().await.unwrap();
        if tokio::time::timeout(Duration::from_millis(200), watch.changed())
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "watch never resubscribed");
    }
}

#[tokio::test]
async fn stopped_server_is_unavailable_within_the_timeout() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(400);
    let config = RedisConfig::builder()
        .with_url(server.url())
        .namespace("down")
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .unwrap();
    let b = backend(config.clone()).await;
    let lease = LeaseId {
        kind: LeaseKind::Exclusive,
        key: Key::new("k").unwrap(),
        holder: HolderId::new(InstanceId::new("a").unwrap()),
    };
    locks(&b)
        .acquire(&lease, Duration::from_secs(1))
        .await
        .unwrap();

    server.stop();
    for _ in 0..3 {
        let start = Instant::now();
        let e = locks(&b)
            .acquire(&lease, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            start.elapsed() < timeout + Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains(&format!("127.0.0.1:{}", server.port())),
            "{e}"
        );
    }
    // Connecting anew to the dead port fails the same way.
    let start = Instant::now();
    let e = RedisBackend::connect(config).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(start.elapsed() < timeout + Duration::from_millis(300));
}

#[tokio::test]
async fn frozen_server_times_out_as_unavailable() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let config = timing_out(&server, "frozen", timeout);
    let c = client(backend(config).await, "a", opts(Duration::from_secs(1)));
    server.pause();
    let start = Instant::now();
    let e = c.lock("k").try_lock().await.unwrap_err();
    let took = start.elapsed();
    server.resume();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(300),
        "{took:?}"
    );
    // And it recovers once the server answers again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.lock("k").try_lock().await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn renewal_failing_flips_to_lost_at_local_validity() {
    let server = RedisServer::start();
    let config = timing_out(&server, "validity", Duration::from_millis(200));
    let ttl = Duration::from_secs(1);
    let o = opts(ttl);
    let validity = o.local_validity();
    let c = client(backend(config).await, "a", o);
    let sent = Instant::now();
    let guard = c.lock("k").try_lock().await.unwrap().unwrap();
    server.stop();
    tokio::time::timeout(Duration::from_secs(3), guard.lost())
        .await
        .expect("lost fires even though Redis cannot be reached");
    let at = sent.elapsed();
    assert!(!guard.is_held());
    assert!(
        at >= validity && at < validity + Duration::from_millis(250),
        "lost after {at:?}, local validity {validity:?}"
    );
}

#[tokio::test]
async fn unix_socket_url() {
    let server = RedisServer::shared();
    let url = format!(
        "redis+unix://{}?namespace=unix-test&timeout=1s",
        server.socket_path().display()
    );
    let b = RedisBackend::connect_url(&url).await.unwrap();
    assert!(b.to_string().starts_with("redis(unix:/"), "{b}");
    let c = client(Arc::new(b), "a", opts(Duration::from_secs(5)));
    let g = c.lock("k").try_lock().await.unwrap().unwrap();
    assert!(g.release().await.unwrap());
}

/// Collects everything tracing writes.
fn lease(key: &str, kind: LeaseKind, who: &str) -> LeaseId {
    LeaseId {
        kind,
        key: Key::new(key).unwrap(),
        holder: HolderId::new(InstanceId::new(who).unwrap()),
    }
}

/// Whether `watch` fires within 300 ms.
async fn fires(watch: &mut Box<dyn Watch>) -> bool {
    tokio::time::timeout(Duration::from_millis(300), watch.changed())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_release_wakes_one_lock_waiter_and_an_unused_wake_up_is_handed_on() {
    let server = RedisServer::start();
    let b = backend(server.config("wake")).await;
    let b = locks(&b);
    let holder = lease("k", LeaseKind::Exclusive, "h");
    let ttl = Duration::from_secs(30);
    let mut first = b.subscribe(LockSpace::Lock, &holder.key).await.unwrap();
    let mut second = b.subscribe(LockSpace::Lock, &holder.key).await.unwrap();

    // One release, one wake-up, for the oldest waiter.
    b.acquire(&holder, ttl).await.unwrap();
    b.release(&holder).await.unwrap();
    assert!(fires(&mut first).await, "the oldest waiter was woken");
    assert!(!fires(&mut second).await, "one release woke two waiters");

    // A watch dropped with its wake-up unused hands it on.
    b.acquire(&holder, ttl).await.unwrap();
    b.release(&holder).await.unwrap();
    assert!(!fires(&mut second).await, "the wake-up went to the oldest");
    drop(first);
    assert!(fires(&mut second).await, "the unused wake-up was handed on");

    // A forced release wakes every waiter.
    let mut third = b.subscribe(LockSpace::Lock, &holder.key).await.unwrap();
    b.acquire(&holder, ttl).await.unwrap();
    assert_eq!(
        b.force_release(LockSpace::Lock, &holder.key).await.unwrap(),
        1
    );
    assert!(fires(&mut second).await && fires(&mut third).await);
}

#[tokio::test]
async fn a_write_release_wakes_every_reader() {
    let server = RedisServer::start();
    let b = backend(server.config("wake-rw")).await;
    let b = locks(&b);
    let writer = lease("k", LeaseKind::Write, "w");
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(b.subscribe(LockSpace::RwLock, &writer.key).await.unwrap());
    }
    b.acquire(&writer, Duration::from_secs(30)).await.unwrap();
    b.release(&writer).await.unwrap();
    for r in &mut readers {
        assert!(fires(r).await, "a reader was not woken");
    }
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    let server = RedisServer::start_tls();
    let config = server.tls_config("tls");
    assert!(
        config.to_string().starts_with("rediss(localhost:"),
        "{config}"
    );
    let b = backend(config.clone()).await;
    let c = client(b.clone(), "a", opts(Duration::from_secs(5)));
    let g = c
        .lock("k")
        .try_lock()
        .await
        .unwrap()
        .expect("lock over TLS");
    // The pub/sub connection speaks TLS too: a release wakes a waiter.
    let mut watch = locks(&b).subscribe(LockSpace::Lock, g.key()).await.unwrap();
    assert!(g.release().await.unwrap());
    assert!(fires(&mut watch).await, "no release notification over TLS");

    // Through the URL too.
    let url = format!(
        "rediss://localhost:{}/0?namespace=tls&tls_ca_file={}",
        server.tls_port().unwrap(),
        server.tls_ca_file().unwrap().display()
    );
    let b = RedisBackend::connect_url(&url)
        .await
        .expect("connect by URL");
    let c = client(Arc::new(b), "b", opts(Duration::from_secs(5)));
    assert!(c.lock("k").try_lock().await.unwrap().is_some());

    // A server whose CA is not trusted is refused, with an error.
    let untrusted = RedisConfig::builder()
        .tls("localhost", server.tls_port().unwrap())
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = RedisBackend::connect(untrusted)
        .await
        .expect_err("a certificate from an unknown CA was accepted");
    assert!(err.to_string().contains("localhost"), "{err}");

    // An unreadable CA file is a configuration error naming the key.
    let missing = RedisConfig::builder()
        .tls("localhost", server.tls_port().unwrap())
        .tls_ca_file("/nonexistent/ca.pem")
        .build()
        .unwrap();
    let err = RedisBackend::connect(missing).await.unwrap_err();
    assert!(err.to_string().contains("tls_ca_file"), "{err}");
}

/// Issue 21: an acquisition sent to a frozen server times out, yet the
/// server applies it when it thaws. The client then undoes it in the
/// background, so every key is free again at once, not after the 30 s TTL:
/// for locks, write locks, permits, terms, members and runs.
#[tokio::test]
async fn acquisitions_unanswered_before_a_freeze_are_undone_after_it() {
    let server = RedisServer::start();
    let config = timing_out(&server, "undo", Duration::from_millis(500));
    let ttl = Duration::from_secs(30);
    let a = client(backend(config.clone()).await, "a", opts(ttl));
    let b = client(backend(config).await, "b", opts(ttl));
    // Load every script first, so that each frozen call is one EVALSHA.
    let warm = async {
        a.lock("w").try_lock().await?.unwrap().release().await?;
        a.rwlock("w").try_write().await?.unwrap().release().await?;
        a.semaphore("w", 1)
            .try_acquire()
            .await?
            .unwrap()
            .release()
            .await?;
        a.election("w")
            .try_campaign()
            .await?
            .unwrap()
            .resign()
            .await?;
        a.group("w").join().await?.leave().await?;
        a.job("w").run_once("w", |_| async {}).await?;
        Ok::<_, Error>(())
    };
    warm.await.unwrap();

    let (lock, rwlock, semaphore) = (a.lock("k"), a.rwlock("k"), a.semaphore("k", 1));
    let (election, group, job) = (a.election("e"), a.group("g"), a.job("j"));
    server.pause();
    let (lock, write, permit, term, member, run) = tokio::join!(
        lock.try_lock(),
        rwlock.try_write(),
        semaphore.try_acquire(),
        election.try_campaign(),
        group.join(),
        job.run_once("o", |_| async { unreachable!("ran while frozen") }),
    );
    let unavailable = |e: Error| assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    unavailable(lock.unwrap_err());
    unavailable(write.unwrap_err());
    unavailable(permit.unwrap_err());
    unavailable(term.unwrap_err());
    unavailable(member.unwrap_err());
    unavailable(run.unwrap_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.resume();

    let thawed = Instant::now();
    let all_free = async {
        loop {
            let free = async {
                let lock = b.lock("k").try_lock().await?;
                let write = b.rwlock("k").try_write().await?;
                let permit = b.semaphore("k", 1).try_acquire().await?;
                let term = b.election("e").try_campaign().await?;
                let members = b.group("g").members().await?.members.len();
                Ok::<_, Error>(
                    lock.is_some()
                        && write.is_some()
                        && permit.is_some()
                        && term.is_some()
                        && members == 0,
                )
            };
            if free.await.unwrap_or(false) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), all_free)
        .await
        .expect("the keys the frozen calls took are free again well before their TTL");
    // The run was given back: another instance runs it at once, as the
    // first attempt (no body ran under the frozen begin, decision 0072).
    let ran = tokio::time::timeout(
        Duration::from_secs(5),
        b.job("j").run_once("o", |ctx| async move { ctx.attempt }),
    )
    .await
    .expect("the run is free again well before its TTL")
    .unwrap();
    assert!(matches!(ran, coord_api::RunOnce::Ran(1)), "{ran:?}");
    assert!(thawed.elapsed() < Duration::from_secs(10));
}

/// A running topic subscriber (started at `Latest`, the default) whose
/// server restarted without persistence finds its subscription gone and
/// makes it again at the oldest event kept: the event published after the
/// restart is delivered (the contract's "a server that lost its data"),
/// not skipped by a subscription made again at `Latest`.
#[tokio::test]
async fn a_subscriber_hears_what_was_published_after_a_restart_without_persistence() {
    let server = RedisServer::start();
    let opts = opts(Duration::from_secs(5)).wait_timeout(Some(Duration::from_secs(10)));
    let c = client(backend(server.config("loss")).await, "a", opts);
    let topic = c.topic::<u64>("orders");
    let mut sub = topic.subscriber("billing");
    sub.subscribe().await.unwrap();
    topic.publish(&1).await.unwrap();
    let coord_api::Next::Event(d) = sub.next().await.unwrap() else {
        panic!("the first event");
    };
    d.ack().await.unwrap();
    server.restart();
    // (The client's connection comes back on its own; the first calls
    // after the restart may find it still down.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while topic.publish(&2).await.is_err() {
        assert!(Instant::now() < deadline, "no publish after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match sub.next().await {
        Ok(coord_api::Next::Event(d)) => assert_eq!(*d.event(), 2),
        other => panic!("the event published after the restart: {other:?}"),
    }
}

/// While another client's script runs past `busy-reply-threshold`, Redis
/// answers every other command `BUSY`: refused without running, like
/// `LOADING`, and over once the script ends. It was `Error::Backend`, not
/// retryable: a queue consumer's or graph worker's `run` loop, barrier and
/// lock waits ended with a hard error instead of waiting it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_is_unavailable_not_a_backend_error() {
    let server = Arc::new(RedisServer::start_with(&["--busy-reply-threshold", "100"]));
    let c = Client::new(backend(server.config("busy")).await);
    // Warm up (the script loaded).
    let g = c.lock("x").try_lock().await.unwrap().unwrap();
    g.release().await.unwrap();

    let s = server.clone();
    let slow = std::thread::spawn(move || {
        let script = "local s = tonumber(redis.call('TIME')[1]) \
                      while tonumber(redis.call('TIME')[1]) < s + 4 do end return 1";
        s.command(&["EVAL", script, "0"])
    });
    // Until the server says it is busy (the script started and passed the
    // threshold; it runs for seconds more).
    let s = server.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(3);
        while !matches!(s.command(&["PING"]), Err(e) if e.code() == Some("BUSY")) {
            assert!(
                Instant::now() < deadline,
                "the script never made the server busy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    let res = c.lock("x").try_lock().await;
    tokio::task::spawn_blocking(move || slow.join().unwrap().unwrap())
        .await
        .unwrap();
    match res {
        Err(e) => assert!(e.is_retryable(), "BUSY is not retryable: {e:?}"),
        Ok(g) => panic!("expected the server to be busy, got {:?}", g.is_some()),
    }
}

/// A lease key something else overwrote with another type (a list) makes
/// the server refuse the script with `WRONGTYPE`: an error no retry mends,
/// so it is `Error::Backend` naming the call and the server's message,
/// returned at once, not waited on until the wait timeout.
#[tokio::test]
async fn a_lease_key_of_another_type_is_a_backend_error_at_once() {
    let server = RedisServer::start();
    let c = Client::new(backend(server.config("wrong")).await);
    let g = c.lock("k").try_lock().await.unwrap().unwrap();
    let lease: Vec<String> = (keys(&server).into_iter())
        .filter(|k| k.starts_with("coord:{wrong:lock:k}") && !k.ends_with(":t"))
        .collect();
    assert_eq!(lease.len(), 1, "one lease key: {lease:?}");
    g.release().await.unwrap();
    server.command(&["RPUSH", &lease[0], "x"]).unwrap();

    let waiting = c.lock("k").wait_timeout(Some(Duration::from_secs(300)));
    let err = waiting.lock().await.unwrap_err();
    let said = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(
        said.contains("WRONGTYPE") && said.contains("\"k\""),
        "{said}"
    );
}
