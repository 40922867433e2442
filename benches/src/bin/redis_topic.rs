//! Durable topics on Redis: publish-to-delivery latency with 16
//! subscriptions, against a raw Redis Streams consumer-group loop written
//! by hand, on the same redis-server in one run.
//!
//! - **coord**: one publisher (`Topic<u64>::publish`, one event at a time,
//!   each stamped with the time it was sent, paced at `RATE` events per
//!   second, default 500), 16 subscriptions made before the clock starts
//!   (`Start::Latest`), one `Subscriber` each (default options: batch 1,
//!   presence 10 s), as tasks on `CLIENTS` subscriber clients (default 1:
//!   one multiplexed connection and one pub/sub subscription); each acks
//!   with `ack_and_next` (the ack and the next read in one step), and
//!   calls `next` (which waits) when that found nothing; `ACK=alone` makes
//!   it `next` then `ack` instead (two steps per event). Latency: from the
//!   stamp to the event handed to the subscriber (before its ack), for
//!   every (event, subscription).
//! - **raw**: the same shape with the redis crate and no coord: `XADD` of
//!   the stamp (`MAXLEN ~` the same retention), 16 consumer groups, each
//!   read by a task on a connection of its own (a blocking read holds its
//!   connection) doing `XREADGROUP ... BLOCK 1000 COUNT 1 STREAMS s >` then
//!   `XACK`. No leases, no tokens, no missed-offset bookkeeping, no typed
//!   decode.
//!
//! `EVENTS` events per pass (default 2,000) after 100 of warm-up; `REPS`
//! repetitions (default 3), each printing both; the medians at the end,
//! against the target (coord's p99 at most 5 ms on loopback).
//!
//! ```text
//! cargo build --release -p coord-benches --bin redis_topic
//! taskset -c 0 target/release/redis_topic
//! ```

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    coord_benches::redis_tool::block_on(bench::run());
}

#[cfg(not(madsim))]
mod bench {
    use std::{sync::Arc, time::Duration};

    use coord_api::{Next, spi::Retention, spi::Start};
    use coord_benches::redis_tool::{
        Completions, client, env_usize, median, now_us, pct_ms, server_line, stop,
    };
    use coord_testkit::redis::RedisServer;

    const SUBSCRIPTIONS: usize = 16;
    const WARMUP: usize = 100;
    const RETENTION: u64 = 100_000;
    /// The target: coord's p99, ms.
    const TARGET_P99_MS: f64 = 5.0;

    struct Pass {
        p50: f64,
        p99: f64,
        max: f64,
    }

    fn summary(mut lat: Vec<u64>) -> Pass {
        lat.sort_unstable();
        Pass {
            p50: pct_ms(&lat, 0.50),
            p99: pct_ms(&lat, 0.99),
            max: pct_ms(&lat, 1.0),
        }
    }

    async fn paced(rate: usize, events: usize, mut publish: impl AsyncFnMut(u64)) {
        let every = Duration::from_secs_f64(1.0 / rate as f64);
        let start = tokio::time::Instant::now();
        for i in 0..events {
            tokio::time::sleep_until(start + every * i as u32).await;
            publish(now_us()).await;
        }
    }

    async fn coord_pass(server: &RedisServer, name: &str, events: usize, rate: usize) -> Pass {
        let clients = env_usize("CLIENTS", 1).max(1);
        let ack_alone = std::env::var("ACK").is_ok_and(|a| a == "alone");
        let publisher = client(server, "publisher").await;
        let topic = publisher
            .topic::<u64>(name)
            .retention(Retention::count(RETENTION));
        let mut subs_clients = Vec::new();
        for c in 0..clients {
            subs_clients.push(client(server, &format!("subscribers-{c}")).await);
        }
        let done = Arc::new(Completions::default());
        let mut tasks = Vec::new();
        for s in 0..SUBSCRIPTIONS {
            let c = &subs_clients[s % clients];
            let mut sub = c
                .topic::<u64>(name)
                .subscriber(&format!("s{s}"))
                .start(Start::Latest)
                .wait_timeout(None);
            sub.subscribe().await.expect("subscribe");
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let mut next = None;
                loop {
                    let got = match next.take() {
                        Some(n) => n,
                        None => sub.next().await.expect("next"),
                    };
                    match got {
                        Next::Event(d) => {
                            done.record(*d.event());
                            if ack_alone {
                                d.ack().await.expect("ack");
                            } else {
                                next = sub.ack_and_next(d).await.expect("ack_and_next");
                            }
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }));
        }
        let topic = &topic;
        paced(rate, WARMUP, async |stamp| {
            topic.publish(&stamp).await.expect("publish");
        })
        .await;
        done.wait(WARMUP * SUBSCRIPTIONS, "coord warm-up").await;
        done.take_latencies();
        paced(rate, events, async |stamp| {
            topic.publish(&stamp).await.expect("publish");
        })
        .await;
        done.wait((WARMUP + events) * SUBSCRIPTIONS, "coord").await;
        stop(tasks).await;
        summary(done.take_latencies())
    }

    async fn raw_pass(server: &RedisServer, name: &str, events: usize, rate: usize) -> Pass {
        let client = redis::Client::open(server.url()).expect("url");
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        let connect = || async {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .expect("connect")
        };
        let key = format!("raw:{name}");
        let mut producer = connect().await;
        let done = Arc::new(Completions::default());
        let mut tasks = Vec::new();
        for s in 0..SUBSCRIPTIONS {
            let group = format!("g{s}");
            let _: redis::Value = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&key)
                .arg(&group)
                .arg("$")
                .arg("MKSTREAM")
                .query_async(&mut producer)
                .await
                .expect("XGROUP CREATE");
            let mut con = connect().await;
            let (key, done) = (key.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let got: redis::Value = redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(&group)
                        .arg("c")
                        .arg("BLOCK")
                        .arg(1000)
                        .arg("COUNT")
                        .arg(1)
                        .arg("STREAMS")
                        .arg(&key)
                        .arg(">")
                        .query_async(&mut con)
                        .await
                        .expect("XREADGROUP");
                    for (id, stamp) in entries(&got) {
                        done.record(stamp);
                        let _: i64 = redis::cmd("XACK")
                            .arg(&key)
                            .arg(&group)
                            .arg(&id)
                            .query_async(&mut con)
                            .await
                            .expect("XACK");
                    }
                }
            }));
        }
        let key = &key;
        let producer = &producer;
        let publish = async |stamp: u64| {
            let mut con = producer.clone();
            let _: String = redis::cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(RETENTION)
                .arg("*")
                .arg("p")
                .arg(stamp)
                .query_async(&mut con)
                .await
                .expect("XADD");
        };
        paced(rate, WARMUP, publish).await;
        done.wait(WARMUP * SUBSCRIPTIONS, "raw warm-up").await;
        done.take_latencies();
        paced(rate, events, publish).await;
        done.wait((WARMUP + events) * SUBSCRIPTIONS, "raw").await;
        stop(tasks).await;
        summary(done.take_latencies())
    }

    /// (id, stamp) of every entry of an XREADGROUP reply.
    fn entries(v: &redis::Value) -> Vec<(String, u64)> {
        use redis::Value::{Array, BulkString, Map};
        let streams: Vec<&redis::Value> = match v {
            Array(a) => a.iter().collect(),
            Map(m) => m.iter().map(|(_, v)| v).collect(),
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        for s in streams {
            let list = match s {
                Array(pair) if pair.len() == 2 => &pair[1],
                other => other,
            };
            let Array(list) = list else { continue };
            for e in list {
                let Array(e) = e else { continue };
                let (Some(BulkString(id)), Some(Array(fields))) = (e.first(), e.get(1)) else {
                    continue;
                };
                if let Some(BulkString(stamp)) = fields.get(1)
                    && let Some(stamp) =
                        std::str::from_utf8(stamp).ok().and_then(|s| s.parse().ok())
                {
                    out.push((String::from_utf8_lossy(id).into_owned(), stamp));
                }
            }
        }
        out
    }

    pub(super) async fn run() {
        let events = env_usize("EVENTS", 2_000);
        let rate = env_usize("RATE", 500).max(1);
        let reps = env_usize("REPS", 3).max(1);
        let server = RedisServer::start();
        println!(
            "redis_topic: {}; {events} events at {rate}/s to {SUBSCRIPTIONS} durable subscriptions, \
             {reps} repetition(s)",
            server_line(&server),
        );
        let (mut coord, mut raw) = (Vec::new(), Vec::new());
        for r in 0..reps {
            let c = coord_pass(&server, &format!("bench/topic-{r}"), events, rate).await;
            println!(
                "  rep {r}: coord publish-to-delivery p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                c.p50, c.p99, c.max
            );
            let w = raw_pass(&server, &format!("bench/topic-{r}"), events, rate).await;
            println!(
                "  rep {r}: raw XADD + XREADGROUP + XACK p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                w.p50, w.p99, w.max
            );
            coord.push(c);
            raw.push(w);
        }
        let med =
            |v: &[Pass], f: fn(&Pass) -> f64| median(v.iter().map(f).collect()).unwrap_or(f64::NAN);
        let (c50, c99) = (med(&coord, |p| p.p50), med(&coord, |p| p.p99));
        let (r50, r99) = (med(&raw, |p| p.p50), med(&raw, |p| p.p99));
        println!(
            "median of {reps}: coord p50 {c50:.3} ms, p99 {c99:.3} ms; raw p50 {r50:.3} ms, p99 {r99:.3} ms"
        );
        println!(
            "target: coord p99 <= {TARGET_P99_MS} ms: {} ({c99:.3} ms; raw's p99 {r99:.3} ms, coord/raw {:.2}x)",
            if c99 <= TARGET_P99_MS {
                "met"
            } else {
                "NOT met"
            },
            c99 / r99
        );
    }
}
