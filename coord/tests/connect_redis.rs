//! `coord::connect` with Redis URLs, against a redis-server the fixture starts
//! on a free loopback port (fails with a clear message when redis-server is
//! missing: `scripts/test` installs it).
#![cfg(all(not(madsim), feature = "redis"))]

use std::time::Duration;

use coord::{Error, connect};
use coord_testkit::redis::RedisServer;

fn url(query: &str) -> String {
    format!("{}?{query}", RedisServer::shared().url())
}

#[tokio::test]
async fn redis_url_gives_a_client_with_namespace_and_instance() {
    let client = connect(&url("namespace=facade-a&instance=worker-9"))
        .await
        .unwrap();
    assert_eq!(client.backend().namespace().as_str(), "facade-a");
    assert_eq!(client.instance_id().as_str(), "worker-9");
    assert!(client.backend().to_string().starts_with("redis("));
    let guard = client.lock("job").try_lock().await.unwrap().expect("free");
    assert_eq!(guard.holder().instance().as_str(), "worker-9");
    assert!(guard.release().await.unwrap());
}

#[tokio::test]
async fn separate_redis_connects_exclude_each_other() {
    let a = connect(&url("namespace=facade-b&instance=a"))
        .await
        .unwrap();
    let b = connect(&url("namespace=facade-b&instance=b"))
        .await
        .unwrap();
    let held = a.lock("job").try_lock().await.unwrap().expect("free");
    assert!(b.lock("job").try_lock().await.unwrap().is_none());
    let waiter = tokio::spawn(async move {
        b.lock("job")
            .wait_timeout(Some(Duration::from_secs(5)))
            .lock()
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let first = held.token();
    assert!(held.release().await.unwrap());
    let next = waiter.await.unwrap().unwrap();
    assert!(next.token() > first);
    next.release().await.unwrap();
}

#[tokio::test]
async fn unknown_redis_query_key_is_a_config_error_naming_it() {
    match connect("redis://127.0.0.1:1/0?namespace=x&colour=blue").await {
        Err(Error::Config { message }) => {
            assert!(message.contains("`colour`"), "{message}");
            // The keys the facade reads are listed with the backend's.
            assert!(
                message.contains("instance") && message.contains("timeout"),
                "{message}"
            );
        }
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_not_config() {
    let started = tokio::time::Instant::now();
    let res = match connect("redis://127.0.0.1:1/0?connect_timeout=500ms&timeout=500ms").await {
        Ok(client) => client.lock("job").try_lock().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match res {
        Err(e @ Error::Unavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_url_finds_the_master_with_instance_and_namespace() {
    let set = tokio::task::spawn_blocking(|| coord_testkit::sentinel::SentinelSet::start_with(1))
        .await
        .unwrap();
    connects_as_named(&set.url(), "facade-s", "worker-s", "redis+sentinel(").await;
    // Sentinel keys are refused on a plain URL; a host list too.
    let e = connect(&format!(
        "{}?sentinel_password=x",
        RedisServer::shared().url()
    ))
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    let e = connect("redis://127.0.0.1:1,127.0.0.1:2/0")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_url_reaches_the_cluster_with_instance_and_namespace() {
    let set = tokio::task::spawn_blocking(coord_testkit::cluster::ClusterSet::start)
        .await
        .unwrap();
    connects_as_named(&set.url(), "facade-c", "worker-c", "redis+cluster(").await;
    // A cluster has only database 0.
    let e = connect(&format!("{}/1", set.url())).await.unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
}

/// `connect(url?namespace=…&instance=…)` gives a client in that namespace
/// with that instance id, over a backend shown as `shown…`, that takes and
/// releases a lock.
async fn connects_as_named(url: &str, namespace: &str, instance: &str, shown: &str) {
    let client = connect(&format!("{url}?namespace={namespace}&instance={instance}"))
        .await
        .unwrap();
    assert_eq!(client.backend().namespace().as_str(), namespace);
    assert_eq!(client.instance_id().as_str(), instance);
    let backend = client.backend().to_string();
    assert!(backend.starts_with(shown), "{backend}");
    let guard = client.lock("job").try_lock().await.unwrap().expect("free");
    assert!(guard.release().await.unwrap());
}
