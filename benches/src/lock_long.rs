//! `redis_load`'s `long` scenario: the shape of issue 20's independent
//! measurement (interleaved runs of several seconds of every contender
//! through `coord::connect` and its peers, on one server that is never
//! emptied) with what the server ran per cycle in each run and how many
//! keys the database held after it; then `FLUSHALL` and one more run of
//! each, to tell the cost of a grown keyspace from the rest.
//!
//! coord leaves a token counter per lock key (kept an hour past the lease,
//! `LOCK_COUNTER_KEEP_MS` in coord-redis's prelude): a run on distinct keys
//! grows the database by one key per cycle; the other contenders delete
//! what they wrote.

use std::time::Duration;

use coord_testkit::redis::RedisServer;
use redis::Value;

use crate::{
    lock_contenders::{Contender, Set, contenders},
    lock_rounds::{Sample, measure},
};

/// Keys in the server's database.
fn dbsize(server: &RedisServer) -> i64 {
    match server.command(&["DBSIZE"]) {
        Ok(Value::Int(n)) => n,
        other => panic!("DBSIZE replied {other:?}"),
    }
}

/// µs per EVALSHA and EVALSHAs per cycle.
fn per_evalsha(s: &Sample) -> (f64, f64) {
    let (calls, usec) = s.commands.get("evalsha").copied().unwrap_or((0, 0));
    (
        usec as f64 / calls.max(1) as f64,
        calls as f64 / s.total.max(1) as f64,
    )
}

fn row(run: &str, c: &Contender, s: &Sample, keys: i64) {
    let in_commands = s.command_us(c);
    let (evalsha_us, evalshas) = per_evalsha(s);
    let others: Vec<String> = (s.commands.iter())
        .filter(|(name, _)| !c.top_level.contains(&name.as_str()))
        .map(|(name, (calls, _))| format!("{name} {:.2}", *calls as f64 / s.total as f64))
        .collect();
    println!(
        "| {run} | {} | {:.0} | {:.1} | {in_commands:.1} | {:.1} | {evalshas:.2} × {evalsha_us:.2} | {} | {keys} |",
        c.name,
        s.ops,
        s.server_us,
        s.server_us - in_commands,
        others.join(", "),
    );
}

/// `runs` interleaved runs of `time` with `tasks` tasks of each contender
/// on `url` (the server `server`), never emptied; then `FLUSHALL` and one
/// more run of each.
pub async fn long_runs(server: &RedisServer, url: &str, runs: usize, time: Duration, tasks: usize) {
    let cs = contenders(url, server.config("load"), Set::Users, true).await;
    println!(
        "| {tasks} tasks, runs of {time:?} | who | ops/s | server CPU µs/op | in commands µs/op | outside µs/op | EVALSHA per op × µs each | called in scripts, per op | keys in the db after |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|---:|");
    for run in 0..runs {
        for j in 0..cs.len() {
            let c = &cs[(run + j) % cs.len()];
            let s = measure(&[server], tasks, time, c, &format!("long:{run}")).await;
            row(&format!("run {run}"), c, &s, dbsize(server));
        }
    }
    for c in &cs {
        server.command(&["FLUSHALL"]).expect("FLUSHALL");
        let s = measure(&[server], tasks, time, c, "long:flushed").await;
        row("each after FLUSHALL", c, &s, dbsize(server));
    }
}
