//! Barriers and latches on a real redis-server, through the SPI directly:
//! trips, idempotent arrivals, expiring arrivals, stale generations, breaks,
//! double barriers, latches, the remembered history, key lifetimes, one
//! EVALSHA per operation and one Cluster slot per barrier. Every test runs in
//! a namespace of its own on the shared server (tests that count commands or
//! need cluster mode start their own).
//!
//! Waits for expiry are never guesses: an arrival's deadline is the server's
//! clock at the arrival plus its TTL, and the server runs on this machine's
//! clock, so sleeping past the TTL (with a margin) after the reply came back
//! is past the deadline.

// The tests, by theme; the fixtures they share are below.
mod cyclic;
mod double;
mod latches;
mod storage;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{
    Key,
    spi::{
        Arrive, Backend, BarrierBackend, BarrierKind, Break, BreakReason, Broken, CountDown, Ended,
        EndedGeneration, LATCH_SETS_KEPT, LatchSet, LatchState, Leave, Trip,
    },
};
use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;
use redis::Value;

use BarrierKind::{Cyclic, Double};

const TTL: Duration = Duration::from_secs(10);
/// The prelude's KEEP_MS: how long a barrier's keys outlive its last use.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// The barrier script's KEEP_SLACK_MS: how much longer they may live.
const KEEP_SLACK: Duration = Duration::from_secs(3600);

async fn backend_on(server: &RedisServer, ns: &str) -> Arc<RedisBackend> {
    Arc::new(
        RedisBackend::connect(server.config(ns))
            .await
            .expect("connect"),
    )
}

async fn backend(ns: &str) -> Arc<RedisBackend> {
    backend_on(RedisServer::shared(), ns).await
}

fn barriers(b: &RedisBackend) -> &dyn BarrierBackend {
    b.barriers().expect("barriers")
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn ended(a: Arrive) -> EndedGeneration {
    match a {
        Arrive::Ended(e) => e,
        other => panic!("not ended: {other:?}"),
    }
}

fn broke(b: Break) -> EndedGeneration {
    match b {
        Break::Ended(e) => e,
        other => panic!("not ended: {other:?}"),
    }
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        other => format!("{other:?}"),
    }
}

fn int(v: Value) -> i64 {
    match v {
        Value::Int(i) => i,
        other => panic!("not an integer: {other:?}"),
    }
}
