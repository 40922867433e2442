//! Resign → next leader on Redis: the time from a leader's `resign()` call
//! until a candidate already waiting in `campaign()` holds the next term,
//! over 100 hand-overs (two candidates taking turns), as median, p90 and
//! worst. The waiting candidate is woken by the resignation's PUBLISH (its
//! retry delay is 60 s and the term's TTL 30 s, so nothing else could wake it
//! in time). A measurement, not a test: it asserts nothing about speed.
//!
//! It starts its own `redis-server` (the coord-testkit fixture):
//!
//! ```text
//! taskset -c 0,1 cargo run --release -p coord-benches --bin redis_failover
//! ```

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(failover::run());
}

#[cfg(not(madsim))]
mod failover {
    use std::time::{Duration, Instant};

    use coord_api::{Client, LeaseOptions};
    use coord_redis::RedisBackend;
    use coord_testkit::redis::RedisServer;

    const HANDOVERS: usize = 100;

    async fn candidate(server: &RedisServer, name: &str) -> Client {
        let backend = RedisBackend::connect(server.config("failover"))
            .await
            .expect("connect");
        Client::builder(std::sync::Arc::new(backend))
            .instance_id(name)
            .expect("instance id")
            .lease_options(
                LeaseOptions::default()
                    .ttl(Duration::from_secs(30))
                    .retry_delay(Duration::from_secs(60))
                    .wait_timeout(Some(Duration::from_secs(30))),
            )
            .build()
    }

    pub async fn run() {
        let server = RedisServer::start();
        let clients = [candidate(&server, "a").await, candidate(&server, "b").await];
        let mut leader = clients[0]
            .election("scheduler")
            .campaign()
            .await
            .expect("first term");
        let mut times = Vec::with_capacity(HANDOVERS);
        for i in 0..=HANDOVERS {
            let next = clients[(i + 1) % 2].clone();
            let waiting = tokio::spawn(async move { next.election("scheduler").campaign().await });
            // Let the candidate reach its wait (refused, subscribed, asleep).
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert!(!waiting.is_finished(), "the term is still held");
            let term = leader.term();
            let start = Instant::now();
            assert!(leader.resign().await.expect("resign"), "still leader");
            leader = waiting.await.expect("join").expect("next term");
            let took = start.elapsed();
            assert!(leader.term() > term);
            if i > 0 {
                // The first hand-over warms up connections and scripts.
                times.push(took);
            }
        }
        times.sort();
        let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
        println!(
            "redis resign -> next leader over {HANDOVERS} hand-overs: median {:?}, p90 {:?}, worst {:?}",
            pct(50),
            pct(90),
            times[times.len() - 1]
        );
        let _ = leader.resign().await;
    }
}
