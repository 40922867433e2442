//! Following a Sentinel-managed master through what goes wrong at the
//! switch (`redis+sentinel://`, each test with sentinels of its own): a
//! new master that refuses the client for a moment is followed once it
//! answers, and every subscription is made on it once it takes them; an
//! announcement missed while the listener's sentinel was frozen is made
//! up for when the listener subscribes again elsewhere. The moment is made
//! with an ACL user the sentinels do not use (ACL changes are not
//! replicated), which also tells the client's connections from the
//! fixture's.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{Client, LeaseOptions};
use coord_redis::RedisBackend;
use coord_testkit::sentinel::SentinelSet;

const DEADLINE: Duration = Duration::from_secs(30);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A sentinel set with one replica and, on every data node, a user `app`
/// the sentinels do not use (a test narrows its rights on one node: ACL
/// changes are not replicated); the set, its master's port, the replica's
/// port, and a URL for `app` in `namespace`.
async fn set_with_app_user(namespace: &str) -> (Arc<SentinelSet>, u16, u16, String) {
    let set = Arc::new(blocking(|| SentinelSet::start_with(1)).await);
    let old = set.master_port();
    let replica = (set.servers().iter().map(|s| s.port()))
        .find(|p| *p != old)
        .unwrap();
    for s in set.servers() {
        s.command(&["ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all"])
            .unwrap();
    }
    let hosts: Vec<String> = (set.sentinel_ports().iter())
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let url = format!(
        "redis+sentinel://app:pw@{}/mymaster?namespace={namespace}&timeout=2s",
        hosts.join(",")
    );
    (set, old, replica, url)
}

/// A planned failover of `set`'s master `old`, once every replica has
/// what it took; the new master's port.
async fn fail_over(set: &Arc<SentinelSet>, old: u16) -> u16 {
    let s = set.clone();
    blocking(move || {
        let replicas = (s.servers().len() - 1).to_string();
        let acked = s
            .server(old)
            .command(&["WAIT", &replicas, "10000"])
            .unwrap();
        assert_eq!(acked, redis::Value::Int(replicas.parse().unwrap()));
        s.failover();
        s.wait_for_master_other_than(old)
    })
    .await
}

/// Client `a` on `url` (leases of 20 s), once its announcement listener
/// is subscribed on the set's first sentinel.
async fn listening_client(set: &SentinelSet, url: &str) -> Client {
    let a = Client::builder(Arc::new(RedisBackend::connect_url(url).await.unwrap()))
        .instance_id("a")
        .unwrap()
        .lease_options(LeaseOptions::default().ttl(Duration::from_secs(20)))
        .build();
    listener_on_first_sentinel(set).await;
    a
}

/// Waits until the client's announcement listener is subscribed on the
/// first sentinel of the URL.
async fn listener_on_first_sentinel(set: &coord_testkit::sentinel::SentinelSet) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let clients = set.sentinel_command(0, &["CLIENT", "LIST"]).unwrap();
        let clients: String = redis::from_redis_value(clients).unwrap();
        if clients.contains("cmd=subscribe") {
            return;
        }
        assert!(Instant::now() < deadline, "no listener: {clients}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `CLIENT LIST` of the server on `port` has a RESP3 (pub/sub) connection
/// of user `app`.
fn app_pubsub_on(set: &coord_testkit::sentinel::SentinelSet, port: u16) -> bool {
    let list = set.server(port).command(&["CLIENT", "LIST"]).unwrap();
    let list: String = redis::from_redis_value(list).unwrap();
    list.lines()
        .any(|l| l.contains("user=app") && l.contains("resp=3"))
}

/// A channel whose subscription failed at the switch (the new master
/// refuses it for a moment, as a timeout or a reset connection would) is
/// subscribed again once the master takes it: an ephemeral listener hears
/// what is published after. (Tried once only, it stayed unsubscribed for
/// good: the listener deaf, every waiter polling at `retry_delay`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_fails_at_the_switch_is_tried_again() {
    let (set, old, replica, url) = set_with_app_user("sw").await;
    let backend = RedisBackend::connect_url(&url).await.unwrap();
    let l = Client::builder(Arc::new(backend))
        .instance_id("listener")
        .unwrap()
        .build();
    let mut listener = l.topic::<String>("t").listen().await.unwrap();
    let publisher = |port: u16| async move {
        let direct = format!("redis://app:pw@127.0.0.1:{port}/0?namespace=sw");
        Client::builder(Arc::new(RedisBackend::connect_url(&direct).await.unwrap()))
            .instance_id("publisher")
            .unwrap()
            .build()
    };
    let p_old = publisher(old).await;
    p_old
        .topic::<String>("t")
        .publish_ephemeral(&"before".to_owned())
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.next()).await;
    assert!(
        matches!(&heard, Ok(Ok(coord_api::Ephemeral::Event(e))) if e == "before"),
        "{heard:?}"
    );

    // For a moment the promoted replica refuses the client's subscriptions.
    set.server(replica)
        .command(&["ACL", "SETUSER", "app", "resetchannels"])
        .unwrap();
    let new = fail_over(&set, old).await;
    assert_eq!(new, replica);
    // The listener's backend followed (its pub/sub connection is there,
    // its subscription refused), then the refusal ends.
    let deadline = Instant::now() + DEADLINE;
    while !app_pubsub_on(&set, new) {
        assert!(Instant::now() < deadline, "the listener did not follow");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    set.server(new)
        .command(&["ACL", "SETUSER", "app", "allchannels"])
        .unwrap();

    // Events published on the new master from now on must be heard.
    let p_new = publisher(new).await;
    let started = Instant::now();
    let mut heard_after = false;
    let mut reached = 0;
    while started.elapsed() < Duration::from_secs(15) && !heard_after {
        reached = p_new
            .topic::<String>("t")
            .publish_ephemeral(&"after".to_owned())
            .await
            .unwrap();
        while let Ok(Ok(e)) =
            tokio::time::timeout(Duration::from_millis(300), listener.next()).await
        {
            if matches!(&e, coord_api::Ephemeral::Event(s) if s == "after") {
                heard_after = true;
                break;
            }
        }
    }
    assert!(
        heard_after,
        "15 s after the failover's refusal ended, the listener still hears nothing \
         (the last publish reached {reached} subscribers)"
    );
}

/// A `+switch-master` the backend cannot act on at once (the new master
/// refuses a first look at it, as a refused or timed-out connection, or a
/// server not saying `master` yet would) is followed once the new master
/// answers. (Dropped at the first failure, the backend stayed on the old
/// master, which in a planned failover still takes writes, to be lost,
/// until a sentinel demotes it: 99 grants in about 10 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_master_that_fails_once_is_followed_when_it_answers() {
    let (set, old, replica, url) = set_with_app_user("an").await;
    let a = listening_client(&set, &url).await;
    // The promoted replica refuses the client's first look at it.
    set.server(replica)
        .command(&["ACL", "SETUSER", "app", "-role"])
        .unwrap();
    set.server(replica)
        .command(&["ACL", "LOG", "RESET"])
        .unwrap();
    let new = fail_over(&set, old).await;
    assert_eq!(new, replica);
    // The announcement came and the client's ROLE was refused once.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = set.server(new).command(&["ACL", "LOG"]).unwrap();
        if format!("{log:?}").contains("role") {
            break;
        }
        assert!(Instant::now() < deadline, "the client never asked: {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set.server(new)
        .command(&["ACL", "SETUSER", "app", "+role"])
        .unwrap();
    let restored = Instant::now();
    // From a moment after the refusal ended, grants must land on the new
    // master, not on the old one (which still takes them, to be lost).
    let mut n = 0;
    let mut on_old = Vec::new();
    loop {
        n += 1;
        let name = format!("k{n}");
        let key = format!("coord:{{an:lock:{name}}}:l");
        if let Ok(Some(g)) = a.lock(&name).try_lock().await {
            let there = |port: u16| set.server(port).command(&["EXISTS", &key]).ok();
            if there(new) == Some(redis::Value::Int(1)) {
                drop(g);
                break;
            }
            if there(old) == Some(redis::Value::Int(1)) {
                on_old.push(restored.elapsed());
            }
            std::mem::forget(g);
        }
        assert!(restored.elapsed() < DEADLINE, "never on the new master");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late: Vec<_> = on_old
        .iter()
        .filter(|t| **t > Duration::from_millis(1500))
        .collect();
    assert!(
        late.is_empty(),
        "the client stayed on the old master after the new one answered: {} grants \
         landed there, the last {:?} after",
        on_old.len(),
        on_old.last()
    );
}

/// A confirmed client (`confirm_replicas=1`) that missed the announcement
/// (the sentinel it listens to is frozen) learns of the failover from its
/// first `Unconfirmed` (the old master lost its replica to the new one):
/// it asks the sentinels and moves, instead of writing to the old master,
/// to be lost, until a sentinel demotes it: none lands there more than a
/// moment after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_write_asks_the_sentinels() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    let url = format!(
        "{}?namespace=uc&timeout=2s&confirm_replicas=1&confirm_timeout=200ms",
        set.url()
    );
    let a = listening_client(&set, &url).await;
    set.pause_sentinel(0);
    let old = set.master_port();
    let new = fail_over(&set, old).await;
    let started = Instant::now();
    let mut on_old = Vec::new();
    for n in 0.. {
        let (name, key) = (format!("k{n}"), format!("coord:{{uc:lock:k{n}}}:l"));
        let res = a.lock(&name).try_lock().await;
        let there = |port: u16| set.server(port).command(&["EXISTS", &key]).ok();
        if there(new) == Some(redis::Value::Int(1)) && matches!(res, Ok(Some(_))) {
            break;
        }
        if there(old) == Some(redis::Value::Int(1)) {
            on_old.push(started.elapsed());
        }
        assert!(
            started.elapsed() < DEADLINE,
            "never on the new master: {res:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set.resume_sentinel(0);
    // The first unconfirmed grant is the client's news of the failover;
    // the sentinels' answer may take a moment (the frozen one first).
    let first = on_old.first().copied().unwrap_or_default();
    let late: Vec<_> = (on_old.iter())
        .filter(|t| **t > first + Duration::from_millis(1500))
        .collect();
    assert!(
        late.is_empty(),
        "unconfirmed grants kept landing on the old master: at {on_old:?} after the failover"
    );
}

/// An announcement made while the client's listener could not hear it
/// (its sentinel frozen through the failover, then gone) is made up for
/// when the listener subscribes on another sentinel: it asks the
/// sentinels, and the client moves to the new master before sending
/// anything. (Otherwise it moves only when a request fails on the old
/// master, or, in a planned failover, writes there until a sentinel
/// demotes it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_subscribes_again_asks_the_sentinels() {
    let (set, old, replica, url) = set_with_app_user("rs").await;
    let _a = listening_client(&set, &url).await;
    set.pause_sentinel(0);
    let new = fail_over(&set, old).await;
    assert_eq!(new, replica);
    let on_new = |set: &SentinelSet| {
        let list = set.server(new).command(&["CLIENT", "LIST"]).unwrap();
        let list: String = redis::from_redis_value(list).unwrap();
        list.contains("user=app")
    };
    // The listener heard nothing: the client, sending nothing, stays.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!on_new(&set), "the client moved with no announcement heard");
    // Its sentinel gone, the listener subscribes on the next one.
    set.kill_sentinel(0);
    let deadline = Instant::now() + DEADLINE;
    while !on_new(&set) {
        assert!(
            Instant::now() < deadline,
            "the listener subscribed again and the client stayed on the old master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A write the demoted old master refuses (READONLY: not run) is sent once
/// more to the new master, so the caller gets its answer, not an error:
/// the client missed the announcement (its listener's sentinel frozen) and
/// sent nothing since, so this write is what tells it of the failover. The
/// test demotes the old master itself, at once: a sentinel's demotion also
/// kills its clients' connections, which moves the client by another path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_demoted_master_refuses_is_sent_to_the_new_one() {
    let (set, old, replica, url) = set_with_app_user("ro").await;
    // A frozen sentinel asked first answers nothing: a short share each.
    let url = url.replace("timeout=2s", "timeout=5s&connect_timeout=300ms");
    let a = listening_client(&set, &url).await;
    set.pause_sentinel(0);
    let new = fail_over(&set, old).await;
    assert_eq!(new, replica);
    let port = new.to_string();
    set.server(old)
        .command(&["REPLICAOF", "127.0.0.1", &port])
        .unwrap();
    let got = a.lock("k").try_lock().await;
    assert!(
        matches!(got, Ok(Some(_))),
        "the first write after the demotion answered {got:?}"
    );
    let key = "coord:{ro:lock:k}:l";
    let there = set.server(new).command(&["EXISTS", key]).unwrap();
    assert_eq!(there, redis::Value::Int(1), "granted on the new master");
    set.resume_sentinel(0);
}
