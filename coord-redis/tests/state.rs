//! Shared values on a real Redis, beyond the conformance suite: a restart
//! that lost every value (no persistence) keeps versions increasing, and a
//! watcher is told with a gap instead of keeping a stale value, as it is
//! when the log alone was lost; a gap's snapshot is in key order whatever
//! the server's locale.

use std::{sync::Arc, time::Duration};

use coord_api::{Client, LeaseOptions, StateEvent, spi::DynBackend};
use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;

async fn client(server: &RedisServer, name: &str) -> Client {
    let backend: DynBackend = Arc::new(
        RedisBackend::connect(server.config("state"))
            .await
            .expect("connect"),
    );
    let opts = LeaseOptions::default().retry_delay(Duration::from_millis(200));
    (Client::builder(backend).instance_id(name).unwrap())
        .lease_options(opts)
        .build()
}

#[tokio::test]
async fn restart_losing_data_keeps_versions_increasing_and_tells_watchers() {
    let server = RedisServer::start();
    let (a, b) = (client(&server, "a").await, client(&server, "b").await);
    let config = a.state::<String>("config");
    let v1 = config.put(&"one".into()).await.unwrap();
    let mut watch = b.state::<String>("config").watch(v1);
    let v2 = config.put(&"two".into()).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    let want = StateEvent::Put {
        key: "config".into(),
        version: v2,
        value: "two".into(),
    };
    assert_eq!(seen.expect("in time").unwrap(), want);

    server.restart();
    // The value is gone with the data; the watcher must not keep "two".
    let gap = async {
        loop {
            match watch.next().await {
                Ok(event) => return event,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), gap)
        .await
        .expect("told in time")
    {
        StateEvent::Gap { after, current, .. } => {
            assert_eq!(after, v2);
            assert!(current.is_empty(), "nothing survived: {current:?}");
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    let v3 = loop {
        match config.compare_and_set(None, &"three".into()).await {
            Ok(done) => break done.version().expect("absent after the restart"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(v3 > v2, "version {v3} after the restart is not above {v2}");
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    let want = StateEvent::Put {
        key: "config".into(),
        version: v3,
        value: "three".into(),
    };
    assert_eq!(next.expect("in time").unwrap(), want);
}

/// Deletes the log of the space `space` (as an eviction under a
/// `volatile-*` `maxmemory` policy may: it lives a day past the last
/// change), keeping its meta hash and its values.
fn lose_the_log(server: &RedisServer, space: &str) {
    lose(server, space, 'l');
}

/// Deletes the key `part` of the space `space` (`l` its log, `m` its meta
/// hash).
fn lose(server: &RedisServer, space: &str, part: char) {
    let pattern = format!("*:state:{}:{space}}}:{part}", space.len());
    let Ok(redis::Value::Array(keys)) = server.command(&["KEYS", &pattern]) else {
        panic!("KEYS {pattern}")
    };
    let [redis::Value::BulkString(log)] = &keys[..] else {
        panic!("one log for {pattern}: {keys:?}")
    };
    let log = String::from_utf8(log.clone()).unwrap();
    assert_eq!(
        server.command(&["DEL", &log]).unwrap(),
        redis::Value::Int(1)
    );
}

/// The next event of `watch`, within 5 s.
async fn next(watch: &mut coord_api::StateWatch<String>) -> StateEvent<String> {
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    event.expect("in time").expect("an event")
}

/// A log lost without its meta hash (each lives a day past the last
/// change; an eviction may take one) lost the changes after the floor the
/// meta hash still names: a watcher from before the loss is told with a
/// gap and the current value, never handed what came after as if nothing
/// were missing, whether it reads before the next change or after it.
#[tokio::test]
async fn a_log_lost_alone_is_a_gap_not_a_silent_skip() {
    let server = RedisServer::start();
    let (a, b) = (client(&server, "a").await, client(&server, "b").await);
    for (space, change_first) in [("read", false), ("changed", true)] {
        let value = a.state::<String>(space);
        let v1 = value.put(&"one".into()).await.unwrap();
        let v2 = value.put(&"two".into()).await.unwrap();
        lose_the_log(&server, space);
        let v3 = if change_first {
            Some(value.put(&"three".into()).await.unwrap())
        } else {
            None
        };
        let mut watch = b.state::<String>(space).watch(v1);
        match next(&mut watch).await {
            StateEvent::Gap { after, current, .. } => {
                assert_eq!(after, v1, "{space}");
                let (last, version) = match v3 {
                    Some(v3) => ("three", v3),
                    None => ("two", v2),
                };
                let now: Vec<_> = current
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.value.as_str(), v.version))
                    .collect();
                assert_eq!(now, [(space, last, version)], "{space}");
            }
            other => panic!("{space}: \"two\" was missed, expected a gap, got {other:?}"),
        }
        // A watcher that missed nothing reads on without a gap.
        let mut since = b.state::<String>(space).watch(v3.unwrap_or(v2));
        let v4 = value.put(&"four".into()).await.unwrap();
        let want = StateEvent::Put {
            key: space.into(),
            version: v4,
            value: "four".into(),
        };
        assert_eq!(next(&mut since).await, want, "{space}");
        assert_eq!(next(&mut watch).await, want, "{space}");
    }
}

/// A meta hash lost without the log (an eviction) takes the log with it:
/// the next change births a new log, and a reader from before is told of
/// a gap whose oldest kept version is the new log's first, not a change
/// of the lost one (which no read hands out any more).
#[tokio::test]
async fn a_meta_hash_lost_alone_takes_its_log_along() {
    let server = RedisServer::start();
    let (a, b) = (client(&server, "a").await, client(&server, "b").await);
    let value = a.state::<String>("meta");
    let v1 = value.put(&"one".into()).await.unwrap();
    value.put(&"two".into()).await.unwrap();
    lose(&server, "meta", 'm');
    let v3 = value.put(&"three".into()).await.unwrap();
    let mut watch = b.state::<String>("meta").watch(v1);
    match next(&mut watch).await {
        StateEvent::Gap { after, oldest, .. } => assert_eq!((after, oldest), (v1, Some(v3))),
        other => panic!("expected a gap, got {other:?}"),
    }
}

/// A directory holding the en_US.UTF-8 locale, made by `localedef` (`None`
/// when it cannot be made here); removed on drop.
struct Locales(std::path::PathBuf);

impl Locales {
    fn en_us() -> Option<Locales> {
        let nonce: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("coord-locales-{nonce:x}"));
        std::fs::create_dir(&dir).ok()?;
        let dir = Locales(dir);
        let made = std::process::Command::new("localedef")
            .args(["-i", "en_US", "-f", "UTF-8"])
            .arg(dir.0.join("en_US.UTF-8"))
            .output()
            .ok()?;
        made.status.success().then_some(dir)
    }
}

impl Drop for Locales {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gap's snapshot lists the keys in key order (their bytes), as every
/// backend does, also on a server running in a locale whose collation
/// differs (Redis sets LC_COLLATE from its environment, and Lua compares
/// strings with it: in en_US.UTF-8, "a" < "B" and "_z" < "Z").
#[tokio::test]
async fn gap_snapshot_in_key_order_whatever_the_servers_locale() {
    let Some(locales) = Locales::en_us() else {
        eprintln!("skipped: localedef cannot make en_US.UTF-8 here");
        return;
    };
    let path = locales.0.to_string_lossy().into_owned();
    let env = [("LOCPATH", path.as_str()), ("LC_ALL", "en_US.UTF-8")];
    let server = RedisServer::start_with_env(&[], &env);
    let collates = server.command(&["EVAL", "return ('a' < 'B') and 1 or 0", "0"]);
    assert_eq!(
        collates.unwrap(),
        redis::Value::Int(1),
        "the server runs in en_US.UTF-8"
    );
    let a = client(&server, "a").await;
    let space = a.state_space::<u32>("s");
    let keys = ["b", "B", "a", "A", "_z", "Z"];
    for (i, k) in keys.iter().enumerate() {
        space.value(k).put(&(i as u32)).await.unwrap();
    }
    let mut watch = space.watch("", 0);
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    match event.expect("in time").unwrap() {
        StateEvent::Gap { current, .. } => {
            let got: Vec<&str> = current.iter().map(|(k, _)| k.as_str()).collect();
            let mut want = keys.to_vec();
            want.sort();
            assert_eq!(got, want, "key order");
        }
        other => panic!("from version 0: expected a gap, got {other:?}"),
    }
}
