//! Workers through the client type: what their wake-ups cost the server.

use std::sync::atomic::{AtomicUsize, Ordering};

use coord_api::{Client, LeaseOptions};
use tokio::sync::Notify;

use super::*;

/// The EVALSHA calls `server` counted since its last `CONFIG RESETSTAT`.
fn evalsha_calls(server: &RedisServer) -> u64 {
    let info = text(server.command(&["INFO", "commandstats"]).unwrap());
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("calls=")))
        .map_or(0, |n| n.parse().unwrap())
}

/// Sixteen idle workers of one `Graph` share its ready notifications: a
/// run of one node costs its submit, a take by the one worker woken, the
/// take of the worker it hands on to (finding nothing), and the completion
/// (whose own take finds nothing): about four calls, where a watch per
/// worker made every idle worker take on every notification (at least
/// seventeen). A run of eight roots is then worked by the chain of
/// hand-ons alone (the retry delay, 10 s, never passes).
#[tokio::test]
async fn idle_workers_of_one_graph_share_one_wake_up() {
    const RUNS: usize = 30;
    let server = RedisServer::start();
    let b: coord_api::spi::DynBackend = backend_on(&server, "shared").await;
    let opts = LeaseOptions::default()
        .ttl(TTL)
        .retry_delay(Duration::from_secs(10));
    let client = Client::builder(b)
        .instance_id("w")
        .unwrap()
        .lease_options(opts)
        .build();
    let mut declared = client.graph("g");
    for i in 0..8 {
        declared = declared.node(format!("n{i}").as_str());
    }
    let wide = declared.build().unwrap();
    let one = client.graph("g").node("n0").build().unwrap();
    let (done, bodies) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let worker = one.worker();
        let (done, bodies) = (done.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let body = move |_ctx: coord_api::NodeContext| {
                let (done, bodies) = (done.clone(), bodies.clone());
                async move {
                    bodies.fetch_add(1, Ordering::SeqCst);
                    done.notify_one();
                    Ok::<_, coord_api::NodeError>(1)
                }
            };
            worker.run(body).await
        }));
    }
    let ran = |n: usize| {
        let (done, bodies) = (done.clone(), bodies.clone());
        async move {
            tokio::time::timeout(WAKE, async {
                while bodies.load(Ordering::SeqCst) < n {
                    let wait = done.notified();
                    if bodies.load(Ordering::SeqCst) >= n {
                        break;
                    }
                    wait.await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{n} bodies did not run within {WAKE:?}"));
        }
    };
    // Warm-up: every worker has looked, the watch is made.
    one.submit("warm").await.unwrap();
    ran(1).await;
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    for i in 0..RUNS {
        one.submit(&format!("r{i}")).await.unwrap();
        ran(2 + i).await;
    }
    let calls = evalsha_calls(&server);
    assert!(
        calls <= 6 * RUNS as u64,
        "{calls} EVALSHA calls for {RUNS} runs of one node by 16 workers"
    );
    wide.submit("wide").await.unwrap();
    ran(RUNS + 9).await;
    for t in &tasks {
        t.abort();
    }
    let reader = backend_on(&server, "shared").await;
    let g = G::new(&reader, "g");
    for i in 0..RUNS {
        assert_eq!(g.status(&format!("r{i}")).await.state, RunState::Succeeded);
    }
}
