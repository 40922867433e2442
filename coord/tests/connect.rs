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
    let msg = config_message(connect("memory://?instance=a&instance=b").await);
    assert!(msg.contains("twice"), "{msg}");
    let msg = config_message(connect("memory://?namespace").await);
    assert!(msg.contains("`namespace`"), "{msg}");
    for url in [
        "memory://somehost",
        "memory://:1",
        "memory://u:p@h",
        "memory:///path",
    ] {
        let msg = config_message(connect(url).await);
        assert!(msg.contains("host"), "{url}: {msg}");
    }
}

// Issue 21.3: URL errors never echo a password, whatever part of the URL an
// unencoded reserved character pushes it into.

const SECRET: &str = "Tr0ub4dor";

/// The error of `connect(url)`, checked free of `secret` in `Display` and
/// `Debug`; returns its message.
async fn hidden_error(url: &str, secret: &str) -> String {
    let e = match connect(url).await {
        Err(e @ Error::Config { .. }) => e,
        other => panic!("{url}: expected Error::Config, got {other:?}"),
    };
    let (shown, debug) = (e.to_string(), format!("{e:?}"));
    assert!(!shown.contains(secret), "{url}: {shown}");
    assert!(!debug.contains(secret), "{url}: {debug}");
    shown
}

#[tokio::test]
async fn a_slash_in_a_password_is_reported_as_a_bad_port_without_the_password() {
    let msg = hidden_error("redis://app:Tr0ub4dor/x@host:6379/0", SECRET).await;
    assert!(msg.contains("port") && msg.contains("%2F"), "{msg}");
    // A password starting with digits makes a valid port; the rest is the path.
    let msg = hidden_error("redis://app:6379/Tr0ub4dor@host:6379/0", SECRET).await;
    assert!(msg.contains("path"), "{msg}");
}

#[tokio::test]
async fn a_question_mark_in_a_password_is_not_echoed_as_a_query_key() {
    let msg = hidden_error("redis://:x?Tr0ub4dor@host/0", SECRET).await;
    assert!(msg.contains("%3F"), "{msg}");
    hidden_error("redis://:1?Tr0ub4dor@host/0", SECRET).await;
    hidden_error("redis://:1?Tr0ub4dor=1@host/0", SECRET).await;
    hidden_error("memory://:1?Tr0ub4dor=1@host", SECRET).await;
}

/// Each URL's error hides the secret and says how to encode `hint`'s
/// character.
async fn hidden_errors_say(urls: &[&str], hint: &str) {
    for url in urls {
        let msg = hidden_error(url, SECRET).await;
        assert!(msg.contains(hint), "{url}: {msg}");
    }
}

#[tokio::test]
async fn an_ampersand_in_a_query_password_is_not_echoed_as_a_query_key() {
    let urls = [
        "redis://host:6379/0?password=x&Tr0ub4dor",
        "redis://host:6379/0?password=x&Tr0ub4dor=1",
        "redis://host:6379/0?password=x&instance=a&Tr0ub4dor=1",
        "redis://host:6379/0?password=x&namespace=Tr0ub4dor:",
        "unix:///run/redis.sock?password=x&Tr0ub4dor=1",
    ];
    hidden_errors_say(&urls, "%26").await;
}

#[tokio::test]
async fn a_hash_in_a_password_is_not_echoed() {
    let urls = [
        "redis://u:x#Tr0ub4dor@host/0",
        "redis://u:1#Tr0ub4dor@host/0",
    ];
    hidden_errors_say(&urls, "%23").await;
}

#[tokio::test]
async fn an_over_long_value_is_cut() {
    let long = "w".repeat(1 << 20);
    for url in [
        format!("memory://?instance={long}"),
        format!("redis://host/0?instance={long}"),
        format!("redis://host/0?timeout={long}"),
        format!("memory://?namespace={long}"),
    ] {
        let msg = hidden_error(&url, &"w".repeat(64)).await;
        assert!(msg.len() < 600, "{} bytes: {msg}", msg.len());
    }
}

#[tokio::test]
async fn duplicate_keys_are_found_after_percent_decoding_on_every_scheme() {
    for url in [
        "memory://?namespace=a&namesp%61ce=b",
        "redis://host:6379/0?namespace=a&namesp%61ce=b",
        "rediss://host:6379/0?namespace=a&namesp%61ce=b",
        "unix:///run/redis.sock?namespace=a&namesp%61ce=b",
        "memory://?instance=a&%69nstance=b",
    ] {
        let msg = config_message(connect(url).await);
        assert!(msg.contains("given twice"), "{url}: {msg}");
    }
}

#[tokio::test]
async fn a_scheme_without_slashes_may_be_a_user_name_and_is_not_named() {
    let msg = hidden_error("app:Tr0ub4dor@host:6379", "app").await;
    assert!(msg.contains("scheme"), "{msg}");
}
