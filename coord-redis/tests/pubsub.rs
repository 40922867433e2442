//! The pub/sub connection shared by a backend's watches: what becomes of
//! them when it is lost, for a moment or for minutes, and how long a new
//! watch may take. Each test starts its own server (they stop, restart or
//! freeze it).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{
    Key,
    spi::{Backend, Watch, state::Expect},
};
use coord_redis::{RedisBackend, RedisConfig};
use coord_testkit::redis::RedisServer;

/// Another client puts a value in `space` (its script publishes on the
/// space's channel).
async fn put_from_another_client(server: &RedisServer, namespace: &str, space: &Key) {
    let writer = RedisBackend::connect(server.config(namespace))
        .await
        .unwrap();
    let key = Key::new("k").unwrap();
    (writer.state().unwrap())
        .put(space, &key, b"v".to_vec(), Expect::Any, None, 0)
        .await
        .unwrap();
}

/// Whether `watch` wakes within `within`.
async fn wakes(watch: &mut Box<dyn Watch>, within: Duration) -> bool {
    tokio::time::timeout(within, watch.changed()).await.is_ok()
}

/// Rule 3 ("a spurious wake-up is allowed; a missed one is not") across a
/// lost connection. The watches are woken when the connection drops, but
/// their re-reads come before the subscriptions are in effect again (the
/// redis crate subscribed again on its own, after its reconnection
/// back-off, without a word): a change published in that gap reached no
/// one, and a watch slept until some later change (here: for ever). The
/// hub now subscribes again itself and wakes every watch once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_before_the_subscriptions_are_back_wakes_the_watch() {
    let server = Arc::new(RedisServer::start());
    let waiter = RedisBackend::connect(server.config("p1")).await.unwrap();
    let space = Key::new("space").unwrap();
    let mut watch = waiter.state().unwrap().watch(&space).await.unwrap();

    // Down long enough for the crate's reconnection back-off to grow.
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    assert!(
        wakes(&mut watch, Duration::from_secs(5)).await,
        "woken at the drop"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .unwrap();

    // (The waiter has read again and waits on the same watch.)
    put_from_another_client(&server, "p1", &space).await;
    assert!(
        wakes(&mut watch, Duration::from_secs(8)).await,
        "the watch was never woken after the change"
    );
}

/// Stops `server` (waiting for the drop to wake `watch`), waits `outage`,
/// then starts it again (empty, on the same port).
async fn outage(server: &Arc<RedisServer>, watch: &mut Box<dyn Watch>, outage: Duration) {
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    assert!(
        wakes(watch, Duration::from_secs(5)).await,
        "woken at the drop"
    );
    tokio::time::sleep(outage).await;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .unwrap();
}

/// The channels `server` has subscribers for.
fn subscribed(server: &RedisServer) -> redis::Value {
    server.command(&["PUBSUB", "CHANNELS"]).unwrap()
}

/// An outage longer than the redis crate's reconnection attempts (made
/// short here: none after the first) left the pub/sub connection down for
/// good: the crate tries again only when a request is sent on it, and the
/// hub sent one only to subscribe a channel not watched yet. The watches
/// of channels already watched never heard anything again. The hub's own
/// resubscription sends requests until it succeeds, whatever the crate's
/// retry limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriptions_come_back_after_the_crate_stops_reconnecting() {
    let server = Arc::new(RedisServer::start());
    let config = server.config("p2").with_pubsub_retries(0);
    let waiter = RedisBackend::connect(config).await.unwrap();
    let space = Key::new("space").unwrap();
    let mut watch = waiter.state().unwrap().watch(&space).await.unwrap();

    // (The crate's one attempt, right after the drop, is refused.)
    outage(&server, &mut watch, Duration::from_secs(1)).await;
    assert!(
        wakes(&mut watch, Duration::from_secs(10)).await,
        "not woken once subscribed again (PUBSUB CHANNELS: {:?})",
        subscribed(&server)
    );
    assert_ne!(subscribed(&server), redis::Value::Array(vec![]));
    put_from_another_client(&server, "p2", &space).await;
    assert!(
        wakes(&mut watch, Duration::from_secs(5)).await,
        "the change woke nobody"
    );
}

/// The same with the crate's own retry limit (about three minutes of
/// attempts): slow, so not in the default run. Run it alone with
/// `cargo test -p coord-redis --test pubsub -- --ignored after_a_long_outage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow (about 4.5 minutes); run with --ignored"]
async fn after_a_long_outage_the_subscriptions_come_back() {
    let server = Arc::new(RedisServer::start());
    let waiter = RedisBackend::connect(server.config("p3")).await.unwrap();
    let space = Key::new("space").unwrap();
    let mut watch = waiter.state().unwrap().watch(&space).await.unwrap();

    outage(&server, &mut watch, Duration::from_secs(250)).await;
    assert!(
        wakes(&mut watch, Duration::from_secs(10)).await,
        "not woken once subscribed again (PUBSUB CHANNELS: {:?})",
        subscribed(&server)
    );
    put_from_another_client(&server, "p3", &space).await;
    assert!(
        wakes(&mut watch, Duration::from_secs(5)).await,
        "the change woke nobody"
    );
}

/// "Every operation … bounded by the configured operation timeout" (the
/// backend's docs). A new watch's subscription waited for the hub's other
/// subscribe commands outside that bound: with the server frozen,
/// concurrent watches of different channels failed one after another, the
/// k-th after k timeouts (a lock's `wait_timeout` overshot the same way).
/// The wait and the subscription share one deadline now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subscriptions_each_fail_within_the_operation_timeout() {
    let server = Arc::new(RedisServer::start());
    let config = RedisConfig::builder()
        .with_url(server.url())
        .namespace("p4")
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let backend = Arc::new(RedisBackend::connect(config).await.unwrap());
    // The pub/sub connection is open (it opens on first use).
    let first = (backend.state().unwrap())
        .watch(&Key::new("s0").unwrap())
        .await
        .unwrap();

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.pause())
        .await
        .unwrap();
    let started = Instant::now();
    let watches = (1..=6).map(|i| {
        let backend = backend.clone();
        async move {
            let space = Key::new(&format!("s{i}")).unwrap();
            let r = backend.state().unwrap().watch(&space).await;
            (r.is_err(), started.elapsed())
        }
    });
    let results = futures_util::future::join_all(watches).await;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.resume())
        .await
        .unwrap();
    drop(first);
    let slowest = results.iter().map(|(_, t)| *t).max().unwrap();
    assert!(results.iter().all(|(failed, _)| *failed), "{results:?}");
    assert!(
        slowest < Duration::from_millis(1500),
        "with a 500 ms operation timeout a subscription failed only after {slowest:?}: {results:?}"
    );
}
