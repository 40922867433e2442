//! Redis Cluster specifics (`redis+cluster://`) on a cluster of the test's
//! own (`coord_testkit::cluster`: 3 masters, 3 replicas): what the
//! conformance suite (`cluster_conformance`) cannot see from the outside.
//! One cluster for the whole file (starting one takes seconds), so one
//! test running the checks in turn; the unplanned failover last (it leaves
//! a master without its replica).

use std::{collections::HashSet, sync::Arc, time::Duration};

use coord_api::{
    Client, Error, Key, LeaseOptions, LockGuard,
    spi::{
        Backend, Cursor, ResourceKind,
        topics::{Heard, Listener, NewEvent, Tag},
    },
};
use coord_redis::RedisBackend;
use coord_testkit::{
    cluster::ClusterSet,
    failover::{self, Fenced},
    redis::RedisServer,
};
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// How long a message may take to arrive (generous: a loaded machine).
const DELIVERY: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_backend() {
    let set = tokio::task::spawn_blocking(ClusterSet::start)
        .await
        .unwrap();
    connects_through_seed_nodes(&set).await;
    primitives_spread_over_masters_and_are_all_listed(&set).await;
    wake_ups_are_sharded_to_the_channels_shard(&set).await;
    an_ephemeral_publish_follows_a_moved_slot(&set).await;
    a_planned_failover_is_followed(&set).await;
    a_listing_walk_survives_a_failover(&set).await;
    an_unplanned_failover_loses_only_what_the_replica_lacked(&set).await;
}

async fn backend(set: &ClusterSet, namespace: &str) -> RedisBackend {
    RedisBackend::connect(set.config(namespace))
        .await
        .expect("connect through the seed nodes")
}

/// The URL form connects, says it is a cluster, and found sharded
/// pub/sub on the servers (7.0).
async fn connects_through_seed_nodes(set: &ClusterSet) {
    let b = RedisBackend::connect_url(&format!("{}?namespace=seeds", set.url()))
        .await
        .expect("connect by URL");
    assert!(b.is_cluster());
    assert!(b.server_info().spublish, "{}", b.server_info());
    assert!(b.to_string().starts_with("redis+cluster(127.0.0.1:"), "{b}");
    let other = backend(set, "seeds").await;
    let a = Client::new(Arc::new(b));
    let c = Client::new(Arc::new(other));
    let g = a.lock("k").try_lock().await.unwrap().expect("free");
    assert!(c.lock("k").try_lock().await.unwrap().is_none(), "held");
    g.release().await.unwrap();
}

/// Locks on many keys land on every master (each lock's keys in its own
/// slot), and the lease listing walks every master to find them all.
async fn primitives_spread_over_masters_and_are_all_listed(set: &ClusterSet) {
    let b = backend(set, "spread").await;
    let client = Client::new(Arc::new(b.clone()));
    let mut guards = Vec::new();
    for i in 0..24 {
        let g = client.lock(&format!("k{i}")).try_lock().await.unwrap();
        guards.push(g.expect("a fresh key is free"));
    }
    let masters = set.masters();
    let holding = (masters.iter())
        .filter(|m| !keys_on(m, "coord:{spread:lock:*").is_empty())
        .count();
    assert_eq!(holding, masters.len(), "24 locks over every master");

    let ops = b.ops().expect("operations");
    let (mut listed, mut cursor) = (HashSet::new(), Cursor::start());
    loop {
        let page = (ops.leases(Some(ResourceKind::Lock), "", &cursor, 5))
            .await
            .unwrap();
        for r in page.items {
            assert!(listed.insert(r.resource.name.to_string()), "listed twice");
        }
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let want: HashSet<String> = (0..24).map(|i| format!("k{i}")).collect();
    assert_eq!(listed, want);
    for g in guards {
        g.release().await.unwrap();
    }
}

/// A release publishes on the lock's channel with SPUBLISH: a sharded
/// subscriber on the shard gets it; a plain subscriber on another master
/// gets only what is published there (a PUBLISH from the script would
/// have reached every node of the cluster).
async fn wake_ups_are_sharded_to_the_channels_shard(set: &ClusterSet) {
    let channel = "coord:{wake:lock:k}:c";
    let mut owner = None;
    let mut other = None;
    for m in set.masters() {
        let (mut con, rx) = subscriber(m).await;
        let sharded = redis::cmd("SSUBSCRIBE")
            .arg(channel)
            .exec_async(&mut con)
            .await;
        match sharded {
            Ok(()) if owner.is_none() => owner = Some((con, rx)),
            // MOVED: another master serves the channel's slot.
            Err(_) if other.is_none() => {
                let (mut con, rx) = subscriber(m).await;
                redis::cmd("SUBSCRIBE")
                    .arg(channel)
                    .exec_async(&mut con)
                    .await
                    .unwrap();
                other = Some((m.port(), con, rx));
            }
            _ => {}
        }
    }
    let (_owner_con, mut owner_rx) = owner.expect("one master serves the slot");
    let (other_port, _other_con, mut other_rx) = other.expect("another master");

    let client = Client::new(Arc::new(backend(set, "wake").await));
    client
        .lock("k")
        .lock()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let (kind, msg) = next_message(&mut owner_rx).await;
    assert_eq!((kind, msg.as_str()), (PushKind::SMessage, "released"));

    // Published on the other master after the release's message was out:
    // the plain subscriber sees it first, so nothing came before it.
    let publish = redis::Client::open(format!("redis://127.0.0.1:{other_port}")).unwrap();
    let mut publish = publish.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = (redis::cmd("PUBLISH").arg(channel).arg("marker"))
        .query_async(&mut publish)
        .await
        .unwrap();
    let (kind, msg) = next_message(&mut other_rx).await;
    assert_eq!((kind, msg.as_str()), (PushKind::Message, "marker"));
}

/// `publish_ephemeral` sent its `SPUBLISH` on the cluster connection
/// directly, outside the request path that follows a moved slot (the
/// crate's own retries are off: decision 0037): the first publish after
/// the channel's slot moved failed with the server's `MOVED` as a plain
/// `Error::Backend` (not retryable) while every other request followed.
async fn an_ephemeral_publish_follows_a_moved_slot(set: &ClusterSet) {
    let b = backend(set, "mv").await;
    let topics = b.topics().unwrap();
    let topic = Key::new("t").unwrap();
    let event = || NewEvent::new(Tag::new("E", 1), b"x".to_vec());
    topics.publish_ephemeral(&topic, event()).await.unwrap();

    let channel = "coord:{mv:topic:1:t}:e";
    let from = set.master_of(channel).port();
    let to = (set.masters().into_iter())
        .find(|m| m.port() != from)
        .unwrap();
    tokio::task::block_in_place(|| set.move_slot(set.slot_of(channel), to, Duration::ZERO));

    let res = topics.publish_ephemeral(&topic, event()).await;
    assert!(res.is_ok(), "the first publish after the move: {res:?}");
}

/// After a planned failover of the master serving a lock, requests reach
/// the new master (the old one answers MOVED, which is sent again once
/// the slots are learnt again): the holder releases, and the next grant's
/// token is above the first.
async fn a_planned_failover_is_followed(set: &ClusterSet) {
    let a = Client::new(Arc::new(backend(set, "fo").await));
    let b = Client::new(Arc::new(backend(set, "fo").await));
    let g = a.lock("f").try_lock().await.unwrap().expect("free");
    let first = g.token();
    let key = "coord:{fo:lock:f}:l".to_owned();
    let old = set.master_of(&key).port();
    // Polls the nodes (blocking) until the replica took over.
    let new = tokio::task::block_in_place(|| set.fail_over(&key));
    assert_ne!(old, new);
    assert!(
        g.release().await.unwrap(),
        "the lease survived the failover"
    );
    let g = b.lock("f").try_lock().await.unwrap().expect("released");
    assert!(g.token() > first, "{} after {first}", g.token());
    g.release().await.unwrap();
}

/// A lease listing walked across a failover lists every lease that lived
/// through the walk (some maybe twice: a shard whose master changed is
/// SCANned again): a shard is named by its slots in the cursor, so the
/// failover of the master first in address order, after the walk's first
/// page, neither moves the walk onto another shard nor skips the rest of
/// one (with masters named by their place in address order, it did).
async fn a_listing_walk_survives_a_failover(set: &ClusterSet) {
    let b = backend(set, "walk").await;
    let client = Client::new(Arc::new(b.clone()));
    let mut guards = Vec::new();
    for i in 0..24 {
        let g = client.lock(&format!("w{i}")).try_lock().await.unwrap();
        guards.push(g.expect("a fresh key is free"));
    }
    let ops = b.ops().expect("operations");
    let page = |cursor: Cursor| async move {
        (ops.leases(Some(ResourceKind::Lock), "", &cursor, 5).await).unwrap()
    };
    let first = page(Cursor::start()).await;
    let mut listed: HashSet<String> = (first.items.iter())
        .map(|r| r.resource.name.to_string())
        .collect();
    let mut cursor = first.next.expect("24 locks take more than a page");
    let lowest = (set.masters().iter().map(|m| m.port()).min()).expect("masters");
    let key = (0..24)
        .map(|i| format!("coord:{{walk:lock:w{i}}}:l"))
        .find(|k| set.master_of(k).port() == lowest)
        .expect("a lock on every master");
    tokio::task::block_in_place(|| set.fail_over(&key));
    loop {
        let next = page(cursor).await;
        listed.extend(next.items.iter().map(|r| r.resource.name.to_string()));
        match next.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let want: HashSet<String> = (0..24).map(|i| format!("w{i}")).collect();
    let missed: Vec<_> = want.difference(&listed).collect();
    assert!(missed.is_empty(), "the walk missed {missed:?}");
    for g in guards {
        g.release().await.unwrap();
    }
}

/// The contract's "Failover" section on a cluster, for a master SIGKILLed
/// (issue 20 item 2): a lease the promoted replica had survives (held,
/// refused to others, released on the new master); a grant and a release
/// it lacked are lost: the key is granted again with a larger token, the
/// first holder's lost signal fires and a fenced resource refuses its
/// writes; the released key is held again by its last holder. Another
/// shard stays available meanwhile; a listener on the dead master's shard
/// hears what is published after the failover.
async fn an_unplanned_failover_loses_only_what_the_replica_lacked(set: &ClusterSet) {
    // Outlives the failover (5 s to mark the master failed, an election).
    let ttl = LeaseOptions::default().ttl(Duration::from_secs(30));
    let client = async |name: &str| {
        Client::builder(Arc::new(backend(set, "uf").await))
            .instance_id(name)
            .unwrap()
            .lease_options(ttl.clone())
            .build()
    };
    let (a, b) = (client("a").await, client("b").await);
    let key = |name: &str| format!("coord:{{uf:lock:{name}}}:l");
    let victim = set.master_of(&key("kept")).port();
    // Two more locks on the same master.
    let on_victim = |prefix: &str| {
        (0..)
            .map(|n| format!("{prefix}{n}"))
            .find(|name| set.master_of(&key(name)).port() == victim)
            .unwrap()
    };
    let (released_name, lost_name) = (on_victim("released"), on_victim("lost"));
    // And one on another master.
    let elsewhere = (0..)
        .map(|n| format!("elsewhere{n}"))
        .find(|name| set.master_of(&key(name)).port() != victim)
        .unwrap();
    let other_master = set.master_of(&key(&elsewhere)).port();
    let kept = a.lock("kept").try_lock().await.unwrap().expect("free");
    let released = a.lock(&released_name).try_lock().await.unwrap();
    let released = released.expect("free");
    let (listening, topic, mut listener) = listening_on(set, victim).await;
    tokio::task::block_in_place(|| set.wait_until_replicated(victim));

    // The replica frozen and cut off, a grant and a release reach the
    // master only; then the master dies and the replica is promoted.
    let replica = set.replica_of(victim).port();
    set.node(replica).pause();
    let cut = set
        .node(victim)
        .command(&["CLIENT", "KILL", "TYPE", "replica"]);
    assert_eq!(cut.unwrap(), Value::Int(1), "the replication link cut");
    let unreplicated = a.lock(&lost_name).try_lock().await.unwrap().unwrap();
    let mut resource = Fenced::default();
    assert!(resource.write(unreplicated.token()), "written while held");
    let (released_by, released_token) = (released.holder().clone(), released.token());
    assert!(released.release().await.unwrap(), "released on the master");
    set.node(victim).stop();
    another_shard_loads_its_scripts_alone(set.node(other_master), &a, &elsewhere).await;
    set.node(replica).resume();
    tokio::task::block_in_place(|| set.wait_until_promoted(replica));

    // Granted again on the new master, with a larger token; the first
    // holder learns it lost the lease.
    let lost = b.lock(&lost_name);
    let again = eventually(|| lost.try_lock()).await;
    assert!(again.token() > unreplicated.token());
    assert!(resource.write(again.token()));
    tokio::time::timeout(Duration::from_secs(30), unreplicated.lost())
        .await
        .expect("the lost signal fires");
    assert!(!unreplicated.is_held());
    // The stale holder's write is refused.
    assert!(!resource.write(unreplicated.token()));
    failover::release_was_undone(&b, &released_name, &released_by, released_token).await;
    let next = failover::replicated_lease_survived(&b, "kept", kept).await;
    for g in [again, next] {
        g.release().await.unwrap();
    }
    heard_after_the_failover(&listening, &topic, &mut listener).await;
}

/// While a master is dead (and not yet marked failed), lock `name` of
/// another `master` that lost its scripts is still taken: the script is
/// loaded on that master alone (a `SCRIPT LOAD` to every master fails on
/// the dead one).
async fn another_shard_loads_its_scripts_alone(master: &RedisServer, client: &Client, name: &str) {
    let flushed = master.command(&["SCRIPT", "FLUSH"]);
    assert_eq!(flushed.unwrap(), Value::Okay);
    let guard = client.lock(name).try_lock().await;
    let guard = guard.expect("another shard available").expect("free");
    guard.release().await.unwrap();
}

/// A backend listening to a topic whose channel lives on master `port`.
async fn listening_on(set: &ClusterSet, port: u16) -> (RedisBackend, Key, Box<dyn Listener>) {
    let b = backend(set, "uf").await;
    let channel = |name: &str| format!("coord:{{uf:topic:{}:{name}}}:c", name.len());
    let name = (0..)
        .map(|n| format!("t{n}"))
        .find(|name| set.master_of(&channel(name)).port() == port)
        .unwrap();
    let topic = Key::new(&name).unwrap();
    let listener = b.topics().unwrap().listen(&topic).await.unwrap();
    (b, topic, listener)
}

/// An event published on the new master reaches a listener made before
/// the failover (told first that it may have missed some): the pub/sub
/// connection lost the dead master, and the hub made a new one that
/// learnt the promoted replica and subscribed there. (The old connection
/// kept redialling the dead master: every publish reached nobody.)
async fn heard_after_the_failover(b: &RedisBackend, topic: &Key, listener: &mut Box<dyn Listener>) {
    let topics = b.topics().unwrap();
    let event = || NewEvent::new(Tag::new("After", 1), b"failover".to_vec());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while topics.publish_ephemeral(topic, event()).await.unwrap_or(0) == 0 {
        let late = tokio::time::Instant::now() >= deadline;
        assert!(!late, "no subscriber 30 s after the promotion");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut missed = 0;
    loop {
        let heard = tokio::time::timeout(DELIVERY, listener.next()).await;
        match heard.expect("heard within DELIVERY").unwrap() {
            Heard::Event(tag, _) if tag.kind == "After" => break,
            Heard::MayHaveMissed => missed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(missed > 0, "told that events may have been missed");
}

/// `attempt`'s grant, tried until the clients reach the new master (an
/// `Unavailable` or a refusal is one more try), within 30 s.
async fn eventually<F>(mut attempt: impl FnMut() -> F) -> LockGuard
where
    F: Future<Output = coord_api::Result<Option<LockGuard>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match attempt().await {
            Ok(Some(g)) => return g,
            Ok(None) | Err(Error::Unavailable { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "no grant in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A RESP3 connection to `node` whose pushes go to the receiver.
async fn subscriber(
    node: &RedisServer,
) -> (
    redis::aio::MultiplexedConnection,
    UnboundedReceiver<PushInfo>,
) {
    let (tx, rx) = unbounded_channel();
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", node.port())).unwrap();
    let config = AsyncConnectionConfig::new().set_push_sender(tx);
    let con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    (con, rx)
}

/// The next message pushed (subscription confirmations skipped).
async fn next_message(rx: &mut UnboundedReceiver<PushInfo>) -> (PushKind, String) {
    loop {
        let push = tokio::time::timeout(DELIVERY, rx.recv())
            .await
            .expect("a message in time")
            .expect("the connection is open");
        if matches!(push.kind, PushKind::Message | PushKind::SMessage) {
            let text = match push.data.get(1) {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("a message without a body: {other:?}"),
            };
            return (push.kind, text);
        }
    }
}

/// The keys on `node` matching `pattern` (KEYS: a test's small keyspace).
fn keys_on(node: &RedisServer, pattern: &str) -> Vec<String> {
    let v = node.command(&["KEYS", pattern]).expect("KEYS");
    redis::from_redis_value(v).expect("key names")
}
