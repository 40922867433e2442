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

use coord_api::{Client, Error, FencingToken, LeaseOptions};
use coord_redis::RedisBackend;
use coord_testkit::sentinel::SentinelSet;

/// How long clients may take to reach the new master once the sentinels
/// name it (generous: a loaded 2-core machine).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

async fn client(set: &SentinelSet, namespace: &str, name: &str, ttl: Duration) -> Client {
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
