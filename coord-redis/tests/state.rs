//! Shared values on a real Redis, beyond the conformance suite: a restart
//! that lost every value (no persistence) keeps versions increasing, and a
//! watcher is told with a gap instead of keeping a stale value.

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
