//! `coord::connect`: scheme and query handling, and the process-wide memory store.

use std::time::Duration;

use coord::{Error, connect};

fn config_message(res: coord::Result<coord::Client>) -> String {
    match res {
        Err(Error::Config { message }) => message,
        Err(other) => panic!("expected Error::Config, got {other:?}"),
        Ok(client) => panic!("expected Error::Config, got a client {client:?}"),
    }
}

#[tokio::test]
async fn memory_url_with_namespace_gives_a_working_client() {
    let client = connect("memory://?namespace=conn-basic").await.unwrap();
    assert_eq!(client.backend().namespace().as_str(), "conn-basic");
    let guard = client.lock("a").try_lock().await.unwrap().expect("free");
    assert!(guard.is_held());
    assert!(guard.release().await.unwrap());
}

#[tokio::test]
async fn bare_memory_url_uses_the_default_namespace() {
    for url in ["memory://", "memory:///"] {
        let client = connect(url).await.unwrap();
        assert_eq!(client.backend().namespace().as_str(), "coord", "{url}");
    }
}

#[tokio::test]
async fn instance_key_sets_the_instance_id() {
    let client = connect("memory://?instance=worker-7&namespace=conn-inst")
        .await
        .unwrap();
    assert_eq!(client.instance_id().as_str(), "worker-7");
    let guard = client.lock("k").try_lock().await.unwrap().expect("free");
    assert_eq!(guard.holder().instance().as_str(), "worker-7");
    let holders = client.lock("k").holders().await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].holder.instance().as_str(), "worker-7");
}

#[tokio::test]
async fn percent_escapes_in_values_are_decoded() {
    let client = connect("memory://?instance=web%201&namespace=conn-%41")
        .await
        .unwrap();
    assert_eq!(client.instance_id().as_str(), "web 1");
    assert_eq!(client.backend().namespace().as_str(), "conn-A");
}

#[tokio::test]
async fn separate_memory_connects_share_one_store() {
    let a = connect("memory://?namespace=conn-shared&instance=a")
        .await
        .unwrap();
    let b = connect("memory://?namespace=conn-shared&instance=b")
        .await
        .unwrap();
    let held = a.lock("job").try_lock().await.unwrap().expect("free");
    assert!(b.lock("job").try_lock().await.unwrap().is_none());
    // b's waiting lock() is woken by a's release.
    let waiter = tokio::spawn(async move {
        b.lock("job")
            .wait_timeout(Some(Duration::from_secs(5)))
            .lock()
            .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = held.token();
    assert!(held.release().await.unwrap());
    let next = waiter.await.unwrap().unwrap();
    assert!(next.token() > first);
}

#[tokio::test]
async fn namespaces_of_the_shared_store_are_isolated() {
    let a = connect("memory://?namespace=conn-iso-a").await.unwrap();
    let b = connect("memory://?namespace=conn-iso-b").await.unwrap();
    let _held = a.lock("job").try_lock().await.unwrap().expect("free");
    assert!(b.lock("job").try_lock().await.unwrap().is_some());
}

#[tokio::test]
async fn process_store_is_the_memory_url_store() {
    let ns = coord::Namespace::new("conn-store").unwrap();
    let direct = coord::Client::new(std::sync::Arc::new(
        coord::memory::process_store().backend(ns),
    ));
    let via_url = connect("memory://?namespace=conn-store").await.unwrap();
    let _held = direct.lock("x").try_lock().await.unwrap().expect("free");
    assert!(via_url.lock("x").try_lock().await.unwrap().is_none());
}

#[tokio::test]
async fn unknown_scheme_is_a_config_error_naming_it() {
    let msg = config_message(connect("etcd://localhost:2379").await);
    assert!(msg.contains("`etcd`"), "{msg}");
    let msg = config_message(connect("no scheme at all").await);
    assert!(msg.contains("scheme"), "{msg}");
}

#[tokio::test]
async fn unknown_query_key_is_a_config_error_naming_it() {
    let msg = config_message(connect("memory://?namespace=x&colour=blue").await);
    assert!(msg.contains("`colour`"), "{msg}");
}

#[tokio::test]
async fn bad_values_and_malformed_queries_are_config_errors() {
    let msg = config_message(connect("memory://?namespace=a:b").await);
    assert!(msg.contains("namespace"), "{msg}");
    let msg = config_message(connect("memory://?instance=a%23b").await);
    assert!(msg.contains("instance"), "{msg}");
    let msg = config_message(connect("memory://?namespace=a&namespace=b").await);
    assert!(msg.contains("twice"), "{msg}");
    let msg = config_message(connect("memory://?namespace").await);
    assert!(msg.contains("`namespace`"), "{msg}");
    let msg = config_message(connect("memory://somehost").await);
    assert!(msg.contains("host"), "{msg}");
}
