//! `redis_load`'s `long` scenario: the shape of issue 20's independent
//! measurement (interleaved runs of several seconds of every contender
//! through `coord::connect` and its peers, on one server that is never
//! emptied) with what the server ran per cycle in each run and how many
//! keys the database held after it; then `FLUSHALL` and one more run of
//! each, to tell the cost of a grown keyspace from the rest.
//!
//! Then what a script call costs the server by itself ([`script_costs`]):
//! coord's lock script (its text built as coord-redis builds it: the
//! prelude, `fair.lua`, `lock.lua`) run for an operation that finds the key
//! free, beside the baseline's compare-and-delete and an EVALSHA of
//! `return 1` of the same shape, one call at a time on one connection.
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
    lock_rounds::median,
    lock_rounds::{Sample, measure},
    redis_tool::{ScriptCost, command_stats, diff},
};

/// coord's exclusive-lock script, as coord-redis concatenates it
/// (`LOCK` in `coord-redis/src/locks/mod.rs`).
const COORD_LOCK: &str = concat!(
    include_str!("../../coord-redis/src/lua/prelude.lua"),
    include_str!("../../coord-redis/src/locks/fair.lua"),
    include_str!("../../coord-redis/src/locks/lock.lua"),
);
/// Its first parts alone, then `return 0`: what their top level costs.
const PRELUDE_ONLY: &str = concat!(
    include_str!("../../coord-redis/src/lua/prelude.lua"),
    "\nreturn 0\n"
);
const PRELUDE_AND_FAIR: &str = concat!(
    include_str!("../../coord-redis/src/lua/prelude.lua"),
    include_str!("../../coord-redis/src/locks/fair.lua"),
    "\nreturn 0\n"
);
/// The floor's acquire (as `lock_contenders`' floor sends it).
const FENCED_ACQUIRE: &str = "local t = redis.call('TIME') \
     if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
     return t[1] * 1000000 + t[2] end return -1";
/// The baseline's and rslock's release.
const COMPARE_AND_DELETE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Keys in the server's database.
fn dbsize(server: &RedisServer) -> i64 {
    match server.command(&["DBSIZE"]) {
        Ok(Value::Int(n)) => n,
        other => panic!("DBSIZE replied {other:?}"),
    }
}

/// Forks the server made so far (a BGSAVE forks).
fn forks(server: &RedisServer) -> String {
    let stats = crate::redis_tool::info(server, "stats");
    (stats.lines())
        .find_map(|l| l.strip_prefix("total_forks:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

/// µs per EVALSHA and EVALSHAs per cycle.
fn per_evalsha(s: &Sample) -> (f64, f64) {
    let (calls, usec) = s.commands.get("evalsha").copied().unwrap_or((0, 0));
    (
        usec as f64 / calls.max(1) as f64,
        calls as f64 / s.total.max(1) as f64,
    )
}

fn row(run: &str, c: &Contender, s: &Sample, server: &RedisServer) {
    let keys = dbsize(server);
    let in_commands = s.command_us(c);
    let (evalsha_us, evalshas) = per_evalsha(s);
    let others: Vec<String> = (s.commands.iter())
        .filter(|(name, _)| !c.top_level.contains(&name.as_str()))
        // Not another client's background work (presence renewals).
        .filter(|(_, (calls, _))| calls * 100 >= s.total)
        .map(|(name, (calls, _))| format!("{name} {:.2}", *calls as f64 / s.total as f64))
        .collect();
    println!(
        "| {run} | {} | {:.0} | {:.1} | {in_commands:.1} | {:.1} | {evalshas:.2} × {evalsha_us:.2} | {} | {keys} | {} |",
        c.name,
        s.ops,
        s.server_us,
        s.server_us - in_commands,
        others.join(", "),
        forks(server),
    );
}

/// `runs` interleaved runs of `time` with `tasks` tasks of each contender
/// on `url` (the server `server`), never emptied; then `FLUSHALL` and one
/// more run of each.
pub async fn long_runs(server: &RedisServer, url: &str, runs: usize, time: Duration, tasks: usize) {
    let cs = contenders(url, server.config("load"), Set::Users, true).await;
    println!(
        "| {tasks} tasks, runs of {time:?} | who | ops/s | server CPU µs/op | in commands µs/op | outside µs/op | EVALSHA per op × µs each | called in scripts, per op | keys in the db after | server forks so far |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|---:|---:|");
    for run in 0..runs {
        for j in 0..cs.len() {
            let c = &cs[(run + j) % cs.len()];
            let s = measure(&[server], tasks, time, c, &format!("long:{run}")).await;
            row(&format!("run {run}"), c, &s, server);
        }
    }
    for c in &cs {
        server.command(&["FLUSHALL"]).expect("FLUSHALL");
        let s = measure(&[server], tasks, time, c, "long:flushed").await;
        row("each after FLUSHALL", c, &s, server);
    }
}

/// `EVALSHA script keys args`.
fn evalsha(script: &redis::Script, keys: &[&str], args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

/// What a script call costs the server by itself, one call at a time on
/// one connection, `INFO commandstats` around each row: on a key nobody
/// holds (each call reads it and stops), coord's lock script against the
/// baseline's compare-and-delete and `return 1`, and coord's parts alone;
/// then whole cycles on a fresh key each, coord's and the floor's.
pub async fn script_costs(server: &RedisServer, calls: usize) {
    let rc = redis::Client::open(server.url()).expect("url");
    let mut con = rc
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let coord = redis::Script::new(COORD_LOCK);
    let cad = redis::Script::new(COMPARE_AND_DELETE);
    let one = redis::Script::new("return 1");
    let prelude = redis::Script::new(PRELUDE_ONLY);
    let fair = redis::Script::new(PRELUDE_AND_FAIR);
    let fenced = redis::Script::new(FENCED_ACQUIRE);
    for s in [&coord, &cad, &one, &prelude, &fair, &fenced] {
        let _: String = (s.prepare_invoke().load_async(&mut con).await).expect("SCRIPT LOAD");
    }
    let free = "coord:{coord:lock:free}:l";
    let holder = "host-1234-abcdef:0123456789abcdef";
    let channel = "coord:{coord:lock:free}:c";
    let release: &[&str] = &["release", holder, channel];
    let same = |cmd: redis::Cmd| move |_: &str| vec![cmd.clone()];
    type Row<'a> = (&'a str, Box<dyn Fn(&str) -> Vec<redis::Cmd> + 'a>);
    let rows: Vec<Row> = vec![
        (
            "`return 1`, 1 key, 3 args",
            Box::new(same(evalsha(&one, &[free], release))),
        ),
        (
            "compare-and-delete, key free",
            Box::new(same(evalsha(&cad, &[free], &[holder]))),
        ),
        (
            "coord's prelude.lua, `return 0`",
            Box::new(same(evalsha(&prelude, &[free], release))),
        ),
        (
            "prelude.lua + fair.lua, `return 0`",
            Box::new(same(evalsha(&fair, &[free], release))),
        ),
        (
            "coord's lock script, `release`, key free",
            Box::new(same(evalsha(&coord, &[free], release))),
        ),
        (
            "coord's lock script, `acquire` + `release`, a fresh key",
            Box::new(|k: &str| {
                let (l, t, c) = (format!("{k}:l"), format!("{k}:t"), format!("{k}:c"));
                vec![
                    evalsha(&coord, &[&l, &t], &["acquire", holder, "30000", "e"]),
                    evalsha(&coord, &[&l], &["release", holder, &c]),
                ]
            }),
        ),
        (
            "floor: fenced acquire + compare-and-delete, a fresh key",
            Box::new(|k: &str| {
                vec![
                    evalsha(&fenced, &[k], &[holder, "30000"]),
                    evalsha(&cad, &[k], &[holder]),
                ]
            }),
        ),
    ];
    // Rows interleaved, REPS times; the median of each row's µs per call.
    const REPS: usize = 7;
    let mut per_call = vec![Vec::new(); rows.len()];
    let mut inner = vec![Vec::new(); rows.len()];
    let mut called = vec![String::new(); rows.len()];
    for rep in 0..REPS {
        for (i, (_, cmds)) in rows.iter().enumerate() {
            let before = command_stats(server);
            for j in 0..calls / REPS {
                for cmd in cmds(&format!("coord:{{coord:lock:sc:{rep}:{i}:{j}}}")) {
                    let _: Value = cmd.query_async(&mut con).await.expect("EVALSHA");
                }
            }
            let cost = ScriptCost::of(&diff(&before, &command_stats(server)));
            per_call[i].push(cost.per_call);
            inner[i].push(cost.inner);
            called[i] = cost.called_list();
        }
    }
    println!(
        "| script call alone ({} calls a row, one at a time, rows interleaved {REPS} times) | server µs per EVALSHA (median; min–max) | of which in its redis.call()s | redis.call()s per EVALSHA |",
        calls / REPS * REPS
    );
    println!("|---|---:|---:|---|");
    for (i, (label, _)) in rows.iter().enumerate() {
        let v = &per_call[i];
        println!(
            "| {label} | {:.1} ({:.1}–{:.1}) | {:.1} | {} |",
            median(v.iter().copied()),
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max),
            median(inner[i].iter().copied()),
            called[i],
        );
    }
}
