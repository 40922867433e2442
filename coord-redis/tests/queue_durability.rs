//! Durability of work queues across a server crash (issue 15, item 5): a
//! redis-server with `--appendonly yes --appendfsync always` is killed
//! (SIGKILL) in the middle of a push load (8 pushers, one item per push,
//! once 500 pushes were acknowledged) and started again on the same port
//! with the same directory; the load goes on until 3,000 were acknowledged,
//! then the queue is drained and counted.
//!
//! What must hold: every push the client saw acknowledged is there (none
//! lost), and nothing is there twice. Pushes that failed (the connection
//! dropped by the kill, refused while the server was down, or `LOADING`
//! while it read its file back) may or may not be there: the script may
//! have run and been written to the file before the reply was lost, and
//! the test counts how many were. Nothing else may be there.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use coord_api::{
    HolderId, InstanceId, Key,
    spi::{Backend, NewItem, Pushed, ReceiveOptions},
};
use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;

/// Acknowledged pushes to reach (after the restart) before stopping the
/// load.
const TARGET: usize = 3_000;
/// Concurrent pushers, one item per push.
const PUSHERS: usize = 8;
/// The kill comes once this many pushes were acknowledged, or after
/// `BEFORE_KILL`, whichever is first.
const KILL_AT: usize = 500;
const BEFORE_KILL: Duration = Duration::from_secs(2);
/// The whole load stops by then, target reached or not.
const LOAD_LIMIT: Duration = Duration::from_secs(12);

#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<String>>,
    failed: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pushes_survive_a_sigkill_and_restart() {
    let started = Instant::now();
    let server = Arc::new(RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]));
    let backend = Arc::new(
        RedisBackend::connect(server.config("durable"))
            .await
            .expect("connect"),
    );
    let queue = Key::new("jobs").unwrap();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicUsize::new(0));

    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (backend, queue, tally) = (backend.clone(), queue.clone(), tally.clone());
        let (stop, restarted) = (stop.clone(), restarted.clone());
        let acked_count = acked_count.clone();
        pushers.push(tokio::spawn(async move {
            let queues = backend.queues().unwrap();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let payload = format!("w{p}-{seq}");
                let item = NewItem::new(payload.clone().into_bytes(), 1);
                match queues.push(&queue, vec![item]).await {
                    Ok(out) => {
                        assert!(matches!(out[..], [Pushed::Pushed(_)]), "{out:?}");
                        tally.acked.lock().unwrap().push(payload);
                        if acked_count.fetch_add(1, Ordering::Relaxed) + 1 >= TARGET
                            && restarted.load(Ordering::Relaxed)
                        {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        assert!(e.is_retryable(), "{e:?}");
                        tally.failed.lock().unwrap().push(payload);
                        // Down: do not spin.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }));
    }

    let kill_by = Instant::now() + BEFORE_KILL;
    while acked_count.load(Ordering::Relaxed) < KILL_AT && Instant::now() < kill_by {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = acked_count.load(Ordering::Relaxed);
    assert!(before > 0, "no push acknowledged before the kill");
    // SIGKILL, then the same port and directory: the server reads its
    // append-only file back.
    let restarting = server.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();
    restarted.store(true, Ordering::Relaxed);
    let load_ends = Instant::now() + LOAD_LIMIT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < load_ends {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        p.await.unwrap();
    }
    let acked = std::mem::take(&mut *tally.acked.lock().unwrap());
    let failed = std::mem::take(&mut *tally.failed.lock().unwrap());
    assert!(
        acked.len() > before,
        "no push acknowledged after the restart ({} before, {} failed)",
        before,
        failed.len()
    );

    // Drain: every item, received (leases held, never acked) in pages.
    let queues = backend.queues().unwrap();
    let consumer = HolderId::new(InstanceId::new("drain").unwrap());
    let opts = ReceiveOptions::new(Duration::from_secs(600), Duration::from_secs(600)).max(1000);
    let mut found = Vec::new();
    let mut ids = HashSet::new();
    loop {
        let r = queues
            .receive(&queue, &consumer, opts)
            .await
            .expect("drain");
        if r.deliveries.is_empty() {
            break;
        }
        for d in r.deliveries {
            assert!(ids.insert(d.id), "item {} delivered twice", d.id);
            found.push(String::from_utf8(d.payload).unwrap());
        }
    }
    let found_set: HashSet<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found_set.len(), found.len(), "a payload is there twice");
    let lost: Vec<&String> = acked
        .iter()
        .filter(|p| !found_set.contains(p.as_str()))
        .collect();
    let failed_set: HashSet<&str> = failed.iter().map(String::as_str).collect();
    let acked_set: HashSet<&str> = acked.iter().map(String::as_str).collect();
    let strangers: Vec<&&str> = found_set
        .iter()
        .filter(|p| !acked_set.contains(**p) && !failed_set.contains(**p))
        .collect();
    let failed_but_there = failed.iter().filter(|p| found_set.contains(p.as_str()));
    eprintln!(
        "durability: {} pushes acknowledged ({before} before the kill), {} failed ({} of them \
         there after all), {} items drained, {} lost, in {:?}",
        acked.len(),
        failed.len(),
        failed_but_there.count(),
        found.len(),
        lost.len(),
        started.elapsed()
    );
    assert_eq!(lost, Vec::<&String>::new(), "acknowledged pushes lost");
    assert_eq!(strangers, Vec::<&&str>::new(), "items nobody pushed");
    let stats = queues.stats(&queue).await.unwrap();
    assert_eq!((stats.ready, stats.delayed), (0, 0));
    assert_eq!(stats.in_flight, found.len() as u64);
}
