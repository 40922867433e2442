//! What the Redis tools that compare coord with BullMQ (`redis_graph`,
//! `redis_queue`) share, so that each keeps only its workload:
//!
//! - the runtime (two worker threads), the environment options read the
//!   same way (`PROFILE`, numbers), the first line's description of the
//!   server, and the clients measured (each a `RedisBackend` of its own:
//!   one multiplexed connection and one pub/sub subscription, leases of
//!   [`TTL`]);
//! - a [`Counter`] the tasks bump and the driver waits on, [`Completions`]
//!   that keep each one's latency from a stamp of [`now_us`] as well, and
//!   [`stop`] for the tasks once a pass is over;
//! - the server's work between two instants ([`Window`]): `INFO
//!   commandstats` and the CPU the server (`INFO cpu`) and this process (its
//!   threads' schedstat) spent; each kind of script call's server time
//!   alone, beside an EVALSHA of `return 1` ([`Costs`]);
//! - the slow-log profile of a script's operations ([`slowlog_on`],
//!   [`slowlog_off`], [`print_ops`]);
//! - the BullMQ anchor ([`Anchor`]): `node bench.js PORT N` in its
//!   directory (`../shared/anchors/bullmq` from the workspace, or
//!   `$BULLMQ_DIR`), skipped, saying why, when `node` or the anchor's
//!   `node_modules` is missing;
//! - the medians and verdicts of the summaries.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use coord_api::{Client, LeaseOptions};
use coord_redis::{RedisBackend, RedisConfig};
use coord_testkit::redis::RedisServer;
use redis::Value;
use tokio::{sync::Notify, task::JoinHandle};

/// Lease TTL of the clients: long enough that no renewal (a third of it)
/// falls inside a pass.
pub const TTL: Duration = Duration::from_secs(30);

/// Runs `f` to its end on a runtime of two worker threads.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The number the environment variable `name` holds, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// `PROFILE`: the slow-log pass runs unless `PROFILE=0`.
pub fn profile() -> bool {
    std::env::var("PROFILE").map_or(true, |v| v != "0")
}

/// `redis-server on 127.0.0.1:PORT (no persistence), N vCPUs`: where a
/// tool runs, for its first line.
pub fn server_line(server: &RedisServer) -> String {
    format!(
        "redis-server on 127.0.0.1:{} (no persistence), {} vCPUs",
        server.port(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    )
}

/// A client named `name` on a backend of its own on `server`, leases of
/// [`TTL`].
pub async fn client(server: &RedisServer, name: &str) -> Client {
    client_with(server.config("bench"), name).await
}

/// [`client`] with a configuration of the caller's (a URL's options).
pub async fn client_with(config: RedisConfig, name: &str) -> Client {
    let backend = RedisBackend::connect(config).await.expect("connect");
    Client::builder(Arc::new(backend))
        .instance_id(name)
        .expect("instance id")
        .lease_options(LeaseOptions::default().ttl(TTL))
        .build()
}

/// A count the tasks bump and the driver waits on.
#[derive(Default)]
pub struct Counter {
    n: AtomicUsize,
    notify: Notify,
}

impl Counter {
    /// Counts one more and wakes the waiter.
    pub fn bump(&self) {
        self.n.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }

    pub fn get(&self) -> usize {
        self.n.load(Ordering::Relaxed)
    }

    /// Waits until the count reaches `target`, looking at least every
    /// 50 ms; once `deadline` has passed, panics with `late(the count)`.
    pub async fn wait(&self, target: usize, deadline: Instant, late: impl Fn(usize) -> String) {
        while self.get() < target {
            let wait = self.notify.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            if self.get() >= target {
                break;
            }
            tokio::select! {
                _ = wait => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            assert!(Instant::now() < deadline, "{}", late(self.get()));
        }
    }
}

/// The clock every stamp is read on.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// A stamp: µs on the clock of this process.
pub fn now_us() -> u64 {
    EPOCH.elapsed().as_micros() as u64
}

/// Counts completions and keeps their latencies.
#[derive(Default)]
pub struct Completions {
    n: Counter,
    latencies: Mutex<Vec<u64>>,
}

impl Completions {
    /// One completion of a job stamped `stamp` (by [`now_us`]).
    pub fn record(&self, stamp: u64) {
        let lat = now_us().saturating_sub(stamp);
        self.latencies.lock().expect("latencies").push(lat);
        self.n.bump();
    }

    /// Waits until `target` completions were counted (at most 300 s).
    pub async fn wait(&self, target: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let late = |n| format!("{what}: {n} of {target} jobs done in 300 s");
        self.n.wait(target, deadline, late).await;
    }

    /// The latencies recorded since the last call, µs.
    pub fn take_latencies(&self) -> Vec<u64> {
        std::mem::take(&mut *self.latencies.lock().expect("latencies"))
    }
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `d` in microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The `p` quantile of `sorted` latencies (µs), in ms; NaN when none.
pub fn pct_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[at] as f64 / 1000.0
}

/// Aborts `tasks` and waits until every one has ended.
pub async fn stop<T>(tasks: Vec<JoinHandle<T>>) {
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Command name -> (calls, microseconds), from `INFO commandstats`.
pub type CommandStats = BTreeMap<String, (u64, u64)>;

/// The text of `INFO section`.
pub fn info(server: &RedisServer, section: &str) -> String {
    match server.command(&["INFO", section]) {
        Ok(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(Value::VerbatimString { text, .. }) => text,
        other => panic!("INFO {section} replied {other:?}"),
    }
}

pub fn command_stats(server: &RedisServer) -> CommandStats {
    info(server, "commandstats")
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let field = |f: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(f))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some((name.to_owned(), (field("calls=")?, field("usec=")?)))
        })
        .collect()
}

/// What ran between two snapshots, without INFO itself.
pub fn diff(before: &CommandStats, after: &CommandStats) -> CommandStats {
    (after.iter())
        .filter(|(name, _)| !name.starts_with("info"))
        .filter_map(|(name, (calls, usec))| {
            let (c, u) = before.get(name).copied().unwrap_or((0, 0));
            (calls > &c).then(|| (name.clone(), (calls - c, usec - u)))
        })
        .collect()
}

/// (the server's CPU seconds, this process's CPU seconds).
pub fn cpu(server: &RedisServer) -> (f64, f64) {
    let server_s = info(server, "cpu")
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum();
    let mut client_ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            client_ns += (stat.split(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (server_s, client_ns as f64 / 1e9)
}

/// The server's command counters and both sides' CPU at the instant a
/// measurement starts.
pub struct Window {
    commands: CommandStats,
    cpu: (f64, f64),
}

/// What the server ran and the CPU both sides spent inside a [`Window`].
pub struct Work {
    /// Command name -> (calls, µs), without INFO itself.
    pub commands: CommandStats,
    /// Seconds.
    pub server_cpu: f64,
    /// This process's, seconds.
    pub client_cpu: f64,
}

impl Window {
    /// `INFO commandstats`, then the CPU.
    pub fn open(server: &RedisServer) -> Window {
        let commands = command_stats(server);
        Window {
            commands,
            cpu: cpu(server),
        }
    }

    /// `INFO commandstats`, then the CPU, against those at the opening.
    pub fn close(self, server: &RedisServer) -> Work {
        let commands = command_stats(server);
        let cpu1 = cpu(server);
        Work {
            commands: diff(&self.commands, &commands),
            server_cpu: cpu1.0 - self.cpu.0,
            client_cpu: cpu1.1 - self.cpu.1,
        }
    }
}

/// What some script calls cost the server, from the command statistics
/// between their start and end ([`diff`]).
pub struct ScriptCost {
    /// EVALSHAs made.
    pub calls: u64,
    /// Server µs per EVALSHA.
    pub per_call: f64,
    /// Of which inside the commands the scripts called.
    pub inner: f64,
    /// Those commands, and how many of each per EVALSHA; commands fewer
    /// than one per hundred EVALSHAs (another client's background work,
    /// such as presence renewals) are left out.
    pub called: Vec<(String, f64)>,
}

impl ScriptCost {
    /// The cost of the EVALSHAs in `d`.
    pub fn of(d: &CommandStats) -> ScriptCost {
        let (calls, usec) = d.get("evalsha").copied().unwrap_or((0, 0));
        let n = calls.max(1) as f64;
        let others: Vec<_> = (d.iter())
            .filter(|(k, (c, _))| k.as_str() != "evalsha" && *c as f64 * 100.0 >= n)
            .collect();
        ScriptCost {
            calls,
            per_call: usec as f64 / n,
            inner: others.iter().map(|(_, (_, u))| *u).sum::<u64>() as f64 / n,
            called: (others.iter())
                .map(|(k, (c, _))| ((*k).clone(), *c as f64 / n))
                .collect(),
        }
    }

    /// The commands called, as `name calls-per-EVALSHA, …`.
    pub fn called_list(&self) -> String {
        let list: Vec<String> = (self.called.iter())
            .map(|(k, c)| format!("{k} {c:.2}"))
            .collect();
        list.join(", ")
    }
}

/// Each kind of script call's server time alone: `INFO commandstats` around
/// the calls of each kind (one client, one call at a time, no slow log to
/// weigh on them), a row per kind.
pub struct Costs {
    before: CommandStats,
    /// (label, what the server ran for the row's calls).
    rows: Vec<(String, CommandStats)>,
}

impl Costs {
    pub fn start(server: &RedisServer) -> Costs {
        Costs {
            before: command_stats(server),
            rows: Vec::new(),
        }
    }

    /// The row of the calls made since the last row (or the start).
    pub fn row(&mut self, server: &RedisServer, label: &str) {
        let after = command_stats(server);
        let d = diff(&self.before, &after);
        self.rows.push((label.to_owned(), d));
        self.before = after;
    }

    /// The row `label` of `k` EVALSHAs of `return 1` with `keys` and `args`
    /// on a connection of their own: what any script call of that shape
    /// costs the server at least.
    pub async fn evalsha_floor(
        &mut self,
        server: &RedisServer,
        label: &str,
        keys: &[String],
        args: &[&str],
        k: usize,
    ) {
        let sha = match server.command(&["SCRIPT", "LOAD", "return 1"]) {
            Ok(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("SCRIPT LOAD replied {other:?}"),
        };
        let rc = redis::Client::open(server.url()).expect("url");
        let mut con = rc
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        self.before = command_stats(server);
        for _ in 0..k {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&sha).arg(keys.len()).arg(keys).arg(args);
            let _: i64 = cmd.query_async(&mut con).await.expect("EVALSHA");
        }
        self.row(server, label);
    }

    /// The rows as a table, `title` its first heading: per kind its
    /// EVALSHA calls, server µs per call, how much of it inside the
    /// commands the script called, and those commands per call.
    pub fn print(&self, title: &str) {
        println!(
            "| {title} | calls | server µs per call | of which inside its commands | its commands per call |"
        );
        println!("|---|---:|---:|---:|---|");
        for (label, d) in &self.rows {
            let c = ScriptCost::of(d);
            println!(
                "| {label} | {} | {:.1} | {:.1} | {} |",
                c.calls,
                c.per_call,
                c.inner,
                c.called_list()
            );
        }
    }
}

pub fn config_get(server: &RedisServer, k: &str) -> String {
    match server.command(&["CONFIG", "GET", k]) {
        Ok(Value::Array(v)) if v.len() == 2 => match &v[1] {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("CONFIG GET {k}: {other:?}"),
        },
        Ok(Value::Map(m)) if m.len() == 1 => match &m[0].1 {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("CONFIG GET {k}: {other:?}"),
        },
        other => panic!("CONFIG GET {k}: {other:?}"),
    }
}

/// Turns the slow log on for every command, keeping up to `max_len`
/// entries; returns the settings to put back.
pub fn slowlog_on(server: &RedisServer, max_len: &str) -> (String, String) {
    let old = (
        config_get(server, "slowlog-log-slower-than"),
        config_get(server, "slowlog-max-len"),
    );
    for (k, v) in [
        ("slowlog-max-len", max_len),
        ("slowlog-log-slower-than", "0"),
    ] {
        server
            .command(&["CONFIG", "SET", k, v])
            .expect("CONFIG SET");
    }
    server
        .command(&["SLOWLOG", "RESET"])
        .expect("SLOWLOG RESET");
    old
}

/// How the profile names the calls of the operation `op` of the script by
/// what they ran inside: `with` those that ran `marker`, `without` the
/// others (a receive that delivered and an idle one, say).
pub struct Split {
    pub op: &'static str,
    pub marker: &'static str,
    pub with: &'static str,
    pub without: &'static str,
}

/// Per operation of the script (`Split::op` split by its outcome): what
/// the slow log shows of its calls.
pub type Ops = BTreeMap<String, Op>;

#[derive(Default)]
pub struct Op {
    pub calls: u64,
    /// Server µs, the script's run as a whole.
    pub usec: u64,
    /// Each call's server µs.
    pub each: Vec<u64>,
    /// The commands the script ran inside, by name: (calls, µs).
    pub inner: BTreeMap<String, (u64, u64)>,
}

/// Reads the slow log (every command since [`slowlog_on`]), then puts the
/// settings back. A script's own commands are logged as they end, just
/// before the EVALSHA that ran them (consecutive ids, one thread): each
/// EVALSHA gets the commands logged since the previous one, and its
/// operation (the argument after the keys) is named by `split`.
pub fn slowlog_off(server: &RedisServer, old: (String, String), split: &Split) -> Ops {
    server
        .command(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"])
        .expect("CONFIG SET");
    let log = server
        .command(&["SLOWLOG", "GET", "-1"])
        .expect("SLOWLOG GET");
    let Value::Array(entries) = log else {
        panic!("SLOWLOG GET replied {log:?}")
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    // (id, µs, command, the script's operation for an EVALSHA)
    let mut parsed: Vec<(i64, u64, String, Option<String>)> = entries
        .iter()
        .filter_map(|e| {
            let Value::Array(f) = e else { return None };
            let (Some(Value::Int(id)), Some(Value::Int(usec)), Some(Value::Array(args))) =
                (f.first(), f.get(2), f.get(3))
            else {
                return None;
            };
            let cmd = args.first().map(text).unwrap_or_default().to_lowercase();
            // EVALSHA sha numkeys keys... op ...
            let op = (cmd == "evalsha").then(|| {
                let numkeys: usize = (args.get(2).map(text))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                args.get(3 + numkeys).map(text).unwrap_or_default()
            });
            Some((*id, *usec as u64, cmd, op))
        })
        .filter(|(_, _, cmd, _)| !["slowlog", "config", "info"].contains(&cmd.as_str()))
        .collect();
    parsed.sort_by_key(|e| e.0);
    let mut ops = Ops::new();
    let mut inner: Vec<(String, u64)> = Vec::new();
    for (_, usec, cmd, op) in parsed {
        let Some(op) = op else {
            inner.push((cmd, usec));
            continue;
        };
        let name = match op.as_str() {
            o if o == split.op && inner.iter().any(|(c, _)| c == split.marker) => {
                split.with.to_owned()
            }
            o if o == split.op => split.without.to_owned(),
            other => other.to_owned(),
        };
        let o = ops.entry(name).or_default();
        o.calls += 1;
        o.usec += usec;
        o.each.push(usec);
        for (c, u) in inner.drain(..) {
            let e = o.inner.entry(c).or_default();
            e.0 += 1;
            e.1 += u;
        }
    }
    if !inner.is_empty() {
        let o = ops.entry("(outside scripts)".to_owned()).or_default();
        for (c, u) in inner.drain(..) {
            o.calls += 1;
            o.usec += u;
            o.each.push(u);
            let e = o.inner.entry(c).or_default();
            e.0 += 1;
            e.1 += u;
        }
    }
    server
        .command(&["CONFIG", "SET", "slowlog-log-slower-than", &old.0])
        .expect("CONFIG SET");
    server
        .command(&["CONFIG", "SET", "slowlog-max-len", &old.1])
        .expect("CONFIG SET");
    server
        .command(&["SLOWLOG", "RESET"])
        .expect("SLOWLOG RESET");
    ops
}

/// The profile as a table, `title` its first heading: per operation its
/// calls, calls per `unit` (of which there were `units`, with `decimals`
/// decimals), server µs per call (mean, p50, p99), how much of it inside
/// the commands it called and those commands per call.
pub fn print_ops(ops: &Ops, title: &str, unit: &str, units: usize, decimals: usize) {
    println!(
        "| {title} | calls | per {unit} | server µs per call: mean / p50 / p99 | of which inside its commands (mean) | its commands per call |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for (name, o) in ops {
        let calls = o.calls.max(1) as f64;
        let inner_usec: u64 = o.inner.values().map(|(_, u)| u).sum();
        let mut inner: Vec<_> = o.inner.iter().collect();
        inner.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
        let list: Vec<String> = inner
            .iter()
            .map(|(c, (n, _))| format!("{c} {:.2}", *n as f64 / calls))
            .collect();
        let mut each = o.each.clone();
        each.sort_unstable();
        let at = |p: f64| {
            each.get(((each.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or(0)
        };
        println!(
            "| {name} | {} | {:.decimals$} | {:.1} / {} / {} | {:.1} | {} |",
            o.calls,
            o.calls as f64 / units as f64,
            o.usec as f64 / calls,
            at(0.5),
            at(0.99),
            inner_usec as f64 / calls,
            list.join(", ")
        );
    }
}

/// The BullMQ anchor: its directory and node's version.
pub struct Anchor {
    pub dir: PathBuf,
    pub version: String,
}

impl Anchor {
    pub fn find() -> Result<Anchor, String> {
        let dir = std::env::var_os("BULLMQ_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/anchors/bullmq"),
            PathBuf::from,
        );
        let dir = dir.canonicalize().map_err(|e| {
            format!(
                "the anchor directory {} is missing ({e}); set BULLMQ_DIR",
                dir.display()
            )
        })?;
        let version = match Command::new("node").arg("--version").output() {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            _ => {
                return Err(format!(
                    "`node` is not installed (apt-get install -y nodejs npm; then `npm install \
                     --no-audit --no-fund` in {})",
                    dir.display()
                ));
            }
        };
        if !dir.join("node_modules/bullmq").is_dir() {
            return Err(format!(
                "the anchor's node_modules is missing: run `npm install --no-audit --no-fund` in {}",
                dir.display()
            ));
        }
        Ok(Anchor {
            dir,
            version: format!("node {version}"),
        })
    }

    /// [`Anchor::find`], printing where the anchor is or why BullMQ is
    /// skipped.
    pub fn announce() -> Option<Anchor> {
        match Anchor::find() {
            Ok(a) => {
                println!("BullMQ: {} in {}", a.version, a.dir.display());
                Some(a)
            }
            Err(why) => {
                println!("BullMQ skipped: {why}");
                None
            }
        }
    }

    /// Runs `node bench.js PORT N` in the anchor's directory, with what
    /// `node_args` adds before `bench.js` (and to node's environment), and
    /// returns its output; `None` when it could not run or failed, having
    /// printed why.
    pub fn bench(
        &self,
        port: u16,
        n: usize,
        node_args: impl FnOnce(&mut Command),
    ) -> Option<String> {
        let mut cmd = Command::new("node");
        node_args(&mut cmd);
        cmd.arg("bench.js")
            .arg(port.to_string())
            .arg(n.to_string())
            .current_dir(&self.dir);
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) => {
                println!("BullMQ: cannot run node: {e}");
                return None;
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            println!(
                "BullMQ: bench.js exited with {}: {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(stdout)
    }

    /// The first line of the anchor's output that `pick` picks, printed.
    pub fn said(stdout: &str, pick: impl Fn(&str) -> bool) -> Option<&str> {
        let line = stdout.lines().find(|l| pick(l))?;
        println!("BullMQ anchor said: {}", line.replace('\t', "  "));
        Some(line)
    }
}

/// The median of `v` (of an even count, the mean of the two middle values);
/// `None` when `v` is empty. Every figure the tools print as a median is
/// this one.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// `list` joined by commas, or `none`.
pub fn or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}
