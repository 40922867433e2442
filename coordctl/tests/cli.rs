//! coordctl end to end: the real binary against a real redis-server (the
//! testkit's fixture, one per test binary, a namespace per test) and a
//! live application process holding leases (`coordctl-demo-holder`).
//!
//! Waiting for something that takes time (a killed holder's presence to
//! expire, a watch to print) polls for the condition; the deadline only
//! turns a hang into a failure.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use coord_testkit::redis::RedisServer;
use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_coordctl");
const HOLDER: &str = env!("CARGO_BIN_EXE_coordctl-demo-holder");
/// Only a hang guard: the conditions waited for come within seconds.
const HANG: Duration = Duration::from_secs(60);
/// The holder's presence TTL (seconds): its leases look stale this long
/// after a kill -9 (long enough that a renewal delayed by a busy machine
/// does not make a live holder look stale).
const PRESENCE_TTL: &str = "5";

/// One coordctl run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not one JSON document ({e}): {self:?}"))
    }

    /// Asserts exit `code` and exactly one line on stderr, `coordctl: …`.
    fn fails_with_one_line(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
        assert!(self.stderr.starts_with("coordctl: "), "{self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        &self.stderr
    }
}

fn ctl(url: &str, args: &[&str]) -> Run {
    let out = Command::new(CTL)
        .args(args)
        .arg("--url")
        .arg(url)
        .env_remove("COORD_URL")
        .output()
        .expect("run coordctl");
    Run {
        code: out.status.code().expect("coordctl exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `coordctl force-release RESOURCE --token TOKEN --reason REASON EXTRA…`.
fn force(url: &str, resource: &str, token: u64, reason: &str, extra: &[&str]) -> Run {
    let token = token.to_string();
    let args = [
        "force-release",
        resource,
        "--token",
        &token,
        "--reason",
        reason,
    ];
    ctl(url, &[&args[..], extra].concat())
}

/// A URL of the shared server in a namespace of the test's own.
fn url(namespace: &str) -> String {
    format!("{}?namespace={namespace}", RedisServer::shared().url())
}

/// A running `coordctl-demo-holder`, killed on drop.
struct Holder {
    child: Child,
    instance: String,
    lock: u64,
    reentrant: u64,
    term: u64,
}

impl Holder {
    fn start(url: &str) -> Holder {
        let mut child = Command::new(HOLDER)
            .args([url, PRESENCE_TTL])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start coordctl-demo-holder");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let field = |name: &str| {
            (line.split_whitespace())
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in the holder's line {line:?}"))
                .to_owned()
        };
        assert!(line.starts_with("ready "), "the holder said {line:?}");
        let token = |name| field(name).parse::<u64>().unwrap();
        Holder {
            instance: field("instance"),
            lock: token("lock"),
            reentrant: token("reentrant"),
            term: token("term"),
            child,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no release, no withdrawal
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The listed leases (`--json`) as (resource, role, instance, alive).
fn leases(run: &Run) -> Vec<(String, String, String, bool)> {
    assert_eq!(run.code, 0, "{run:?}");
    let s = |v: &Value| v.as_str().unwrap().to_owned();
    (run.json().as_array().unwrap().iter())
        .map(|l| {
            let alive = l["alive"].as_bool().unwrap();
            (s(&l["resource"]), s(&l["role"]), s(&l["instance"]), alive)
        })
        .collect()
}

/// Polls `f` until it returns `Some`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < HANG, "never happened: {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_live_holder_is_listed_alive_then_stale_once_killed() {
    let url = url("ctl-live");
    let mut holder = Holder::start(&url);
    let me = holder.instance.clone();
    let expected = [
        ("election:demo/election", "leader"),
        ("group:demo/group", "member"),
        ("lock:demo/lock", "exclusive"),
        ("lock:demo/reentrant", "reentrant"),
        ("queue:demo/queue@1", "delivery"),
    ];
    let mut listed = leases(&ctl(&url, &["locks", "--json"]));
    listed.sort();
    let want: Vec<_> = (expected.iter())
        .map(|(r, role)| (r.to_string(), role.to_string(), me.clone(), true))
        .collect();
    assert_eq!(listed, want);

    // The table: a header, one aligned line per lease, all alive.
    let table = ctl(&url, &["locks"]);
    assert_eq!(table.code, 0, "{table:?}");
    let lines: Vec<_> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("RESOURCE"), "{}", table.stdout);
    assert!(lines[0].contains("TTL-LEFT") && lines[0].ends_with("WAITERS"));
    assert_eq!(lines.len(), 1 + expected.len(), "{}", table.stdout);
    let holder_col = lines[0].find("HOLDER").unwrap();
    for line in &lines[1..] {
        assert_eq!(line.find(me.as_str()), Some(holder_col), "{}", table.stdout);
        assert!(line.contains("alive"), "{line}");
    }
    assert!(table.stdout.contains("reentrant(2)"), "{}", table.stdout);
    assert!(table.stdout.contains(&holder.lock.to_string()));

    let leaders = leases(&ctl(&url, &["leaders", "--json"]));
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0].0, "election:demo/election");
    let term = ctl(&url, &["leaders", "--json"]).json()[0]["token"].as_u64();
    assert_eq!(term, Some(holder.term));
    let members = leases(&ctl(&url, &["members", "demo/group", "--json"]));
    assert_eq!(
        members,
        [("group:demo/group".into(), "member".into(), me.clone(), true)]
    );
    let held = ctl(&url, &["holders", "lock:demo/reentrant", "--json"]).json();
    assert_eq!(held[0]["token"].as_u64(), Some(holder.reentrant));
    assert_eq!(held[0]["holds"].as_u64(), Some(2));
    let instances = ctl(&url, &["instances", "--json"]).json();
    let ours = (instances.as_array().unwrap().iter())
        .find(|i| i["instance"] == me.as_str())
        .unwrap_or_else(|| panic!("{me} not among {instances}"));
    assert_eq!(ours["metadata"], "role=coordctl-test-holder");
    assert!(leases(&ctl(&url, &["locks", "--stale", "--json"])).is_empty());
    let locks_only = leases(&ctl(&url, &["locks", "--kind", "lock", "--json"]));
    assert_eq!(locks_only.len(), 2, "{locks_only:?}");

    holder.kill();
    let stale = eventually("the killed holder's leases look stale", || {
        let stale = leases(&ctl(&url, &["locks", "--stale", "--json"]));
        (stale.len() == expected.len()).then_some(stale)
    });
    assert!(stale.iter().all(|(_, _, i, alive)| *i == me && !alive));
    let table = ctl(&url, &["locks", "--stale"]);
    assert_eq!(table.stdout.matches("STALE").count(), expected.len());
}

#[tokio::test(flavor = "current_thread")]
async fn force_release_is_fenced_audited_and_frees_the_lock() {
    let url = url("ctl-force");
    let holder = Holder::start(&url);
    let run = force(
        &url,
        "lock:demo/lock",
        holder.lock + 1,
        "test: wrong token",
        &[],
    );
    let line = run.fails_with_one_line(3);
    assert!(
        line.contains(&holder.lock.to_string()),
        "names the live token: {line}"
    );
    assert_eq!(
        ctl(&url, &["holders", "lock:demo/lock"]).code,
        0,
        "still held"
    );

    let extra = ["--operator", "alice@ops", "--json"];
    let run = force(
        &url,
        "lock:demo/lock",
        holder.lock,
        "test: holder wedged",
        &extra,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let outcome = run.json();
    assert_eq!(outcome["outcome"], "released");
    assert!(
        outcome["holder"]
            .as_str()
            .unwrap()
            .starts_with(&holder.instance)
    );
    let run = ctl(&url, &["holders", "lock:demo/lock"]);
    assert!(
        run.fails_with_one_line(3)
            .contains("lock:demo/lock has no live lease")
    );
    assert_eq!(run.stdout, "");

    // Free for anyone, with a larger token.
    let client = coord::connect(&url).await.unwrap();
    let guard = client.lock("demo/lock").try_lock().await.unwrap();
    let guard = guard.expect("the lock is free after the force release");
    assert!(guard.token().get() > holder.lock);
    guard.release().await.unwrap();

    let audit = ctl(&url, &["audit", "--json"]).json();
    let audit = audit.as_array().unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0]["operator"], "alice@ops");
    assert_eq!(audit[0]["reason"], "test: holder wedged");
    assert_eq!(audit[0]["resource"], "lock:demo/lock");
    assert_eq!(audit[0]["token"].as_u64(), Some(holder.lock));
    assert!(
        audit[0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("released")
    );
    assert_eq!(audit[1]["reason"], "test: wrong token");
    assert!(
        audit[1]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("not found")
    );
    let table = ctl(&url, &["audit", "--limit", "1"]);
    assert_eq!(table.stdout.lines().count(), 2, "{table:?}");
    assert!(table.stdout.contains("test: holder wedged"));
    // The default operator is $USER@$HOSTNAME.
    let run = Command::new(CTL)
        .args([
            "force-release",
            "lock:demo/reentrant",
            "--token",
            "1",
            "--reason",
            "r",
        ])
        .args(["--url", &url])
        .env("USER", "bob")
        .env("HOSTNAME", "pager")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3));
    assert_eq!(
        ctl(&url, &["audit", "--json"]).json()[0]["operator"],
        "bob@pager"
    );
}

/// A queue's deliveries: `holders queue:NAME` lists each item in flight as
/// `queue:NAME@ITEM` with its consumer's instance and token, and
/// `force-release queue:NAME@ITEM` hands the item back (the consumer's lost
/// signal fires; the item comes again as attempt 2).
#[tokio::test(flavor = "current_thread")]
async fn queue_deliveries_are_listed_and_force_released_by_item() {
    let url = url("ctl-queue");
    let client = coord::connect(&url).await.unwrap();
    let queue = client.queue::<u64>("jobs");
    let id = queue.push(&7).await.unwrap().id();
    // Renewed every 200 ms: the revocation is noticed at once.
    let opts = coord::LeaseOptions::default()
        .ttl(Duration::from_secs(30))
        .extend_interval(Some(Duration::from_millis(200)));
    let mut consumer = queue.consumer().with_options(opts);
    let d = consumer.receive().await.unwrap();
    let resource = format!("queue:jobs@{id}");
    let run = ctl(&url, &["holders", "queue:jobs", "--json"]);
    let listed = leases(&run);
    assert_eq!(listed.len(), 1, "{run:?}");
    assert_eq!(
        (&listed[0].0, listed[0].1.as_str()),
        (&resource, "delivery")
    );
    assert_eq!(listed[0].2, consumer.holder().instance().as_str());
    assert_eq!(run.json()[0]["token"].as_u64(), Some(d.token().get()));
    let run = force(
        &url,
        &resource,
        d.token().get(),
        "test: handler wedged",
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let lost = tokio::time::timeout(HANG, d.lost().wait()).await;
    lost.expect("the consumer's lost signal fires");
    let again = consumer.receive().await.unwrap();
    assert_eq!((again.id(), again.attempt()), (id, 2));
    again.ack().await.unwrap();
    let run = ctl(&url, &["holders", "queue:jobs"]);
    assert!(
        run.fails_with_one_line(3).contains("no live lease"),
        "{run:?}"
    );
}

#[test]
fn bad_inputs_give_one_line_and_a_nonzero_exit() {
    let url = url("ctl-bad");
    let line = ctl(&url, &["holders", "table:x"])
        .fails_with_one_line(2)
        .to_owned();
    assert!(line.contains("unknown resource kind"), "{line}");
    ctl(&url, &["holders", "lock"]).fails_with_one_line(2);
    ctl(&url, &["holders", "job:nightly"]).fails_with_one_line(2);
    ctl(&url, &["locks", "--kind", "table"]).fails_with_one_line(2);
    force(&url, "group:g", 1, "r", &[]).fails_with_one_line(2);
    force(&url, "lock:x", 1, " ", &[]).fails_with_one_line(2);
    ctl(&url, &["holders", "lock:nobody/holds/this"]).fails_with_one_line(3);
    ctl(&url, &["members", "empty-group"]).fails_with_one_line(3);
    let line = ctl("redis://127.0.0.1:99999/0", &["locks"])
        .fails_with_one_line(2)
        .to_owned();
    assert!(line.contains("URL"), "{line}");
    ctl("etcd://localhost:2379", &["locks"]).fails_with_one_line(2);
    ctl("not a url", &["locks"]).fails_with_one_line(2);
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = format!("redis://127.0.0.1:{closed}/0");
    for cmd in ["locks", "health", "audit"] {
        ctl(&down, &[cmd]).fails_with_one_line(1);
    }
    let run = Command::new(CTL)
        .arg("locks")
        .env_remove("COORD_URL")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&run.stderr).lines().count(), 1);
}

#[test]
fn passwords_are_never_printed() {
    let server = RedisServer::start_with_password("right-pw");
    let url = |pw: &str| {
        format!(
            "redis://:{pw}@127.0.0.1:{}/0?namespace=ctl-pw",
            server.port()
        )
    };
    let run = ctl(&url("wrong-pw"), &["locks"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(!format!("{run:?}").contains("wrong-pw"), "{run:?}");
    let run = ctl(&url("right-pw"), &["health"]);
    assert!(!format!("{run:?}").contains("right-pw"), "{run:?}");
    let help = Command::new(CTL)
        .arg("--help")
        .env("COORD_URL", url("right-pw"))
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("COORD_URL") && !text.contains("right-pw"),
        "{text}"
    );
    // COORD_URL stands in for --url.
    let run = Command::new(CTL)
        .args(["audit", "--json"])
        .env("COORD_URL", url("right-pw"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
}

#[test]
fn health_is_degraded_until_the_scripts_are_loaded_then_ready() {
    let url = url("ctl-health");
    // A server that has not loaded every script yet (the holder's calls
    // loaded only their own) is Degraded (exit 4) by the scripts check
    // alone; the probe loads them, so the next one is Ready (exit 0).
    let _holder = Holder::start(&url);
    let first = ctl(&url, &["health", "--json"]);
    let report = first.json();
    let degraded: Vec<_> = (report["checks"].as_array().unwrap().iter())
        .filter(|c| c["status"] != "ready")
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    match first.code {
        0 => assert!(degraded.is_empty(), "{report}"),
        4 => {
            assert_eq!(report["status"], "degraded");
            assert_eq!(degraded, ["scripts"], "{report}");
        }
        _ => panic!("{first:?}"),
    }
    assert_eq!(first.stderr, "");
    let run = ctl(&url, &["health", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["status"], "ready");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<_> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "round_trip",
            "scripts",
            "writable",
            "server",
            "renewal_lag",
            "clock_offset"
        ]
    );
    let table = ctl(&url, &["health"]);
    assert_eq!(table.code, 0);
    let mut lines = table.stdout.lines();
    assert!(lines.next().unwrap().ends_with(": ready"), "{table:?}");
    assert!(lines.next().unwrap().starts_with("CHECK"), "{table:?}");
    assert_eq!(lines.count(), 6, "{table:?}");
}

/// `health --json` is what a readiness probe or a monitoring script
/// parses: with the backend down at connect it is still a report,
/// unavailable by its `round_trip` check (exit 1), the table too; a
/// malformed URL stays a usage error (exit 2).
#[test]
fn health_reports_unavailable_when_the_backend_is_down_at_connect() {
    // Nothing listens on port 1.
    let run = ctl("redis://127.0.0.1:1", &["health", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report = run.json();
    assert_eq!(report["status"], "unavailable", "{report}");
    let check = &report["checks"][0];
    assert_eq!(check["name"], "round_trip", "{report}");
    assert_eq!(check["status"], "unavailable", "{report}");
    assert!(
        check["detail"].as_str().unwrap().contains("refused"),
        "{report}"
    );
    let table = ctl("redis://127.0.0.1:1", &["health"]);
    assert_eq!(table.code, 1, "{table:?}");
    assert!(
        table
            .stdout
            .lines()
            .next()
            .unwrap()
            .ends_with(": unavailable"),
        "{table:?}"
    );
    ctl("redis://127.0.0.1:1?nonsense=1", &["health", "--json"]).fails_with_one_line(2);
}

#[test]
fn watch_prints_appeared_and_gone_leases_as_json_lines() {
    let url = url("ctl-watch");
    let holder = Holder::start(&url);
    let mut watch = Command::new(CTL)
        .args([
            "watch",
            "--interval",
            "200ms",
            "--kind",
            "lock",
            "--json",
            "--url",
            &url,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next_event = |event: &str, resource: &str| loop {
        let line = rx.recv_timeout(HANG).expect("watch printed nothing more");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["event"] == event && v["lease"]["resource"] == resource {
            return v;
        }
    };
    let appeared = next_event("appeared", "lock:demo/lock");
    assert_eq!(appeared["lease"]["token"].as_u64(), Some(holder.lock));
    let run = force(&url, "lock:demo/lock", holder.lock, "watch test", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let gone = next_event("gone", "lock:demo/lock");
    assert_eq!(gone["lease"]["token"].as_u64(), Some(holder.lock));
    let _ = watch.kill();
    let _ = watch.wait();
    // --polls ends it; the first poll lists what is there.
    let run = ctl(&url, &["watch", "--polls", "1", "--kind", "lock"]);
    assert_eq!(run.code, 0, "{run:?}");
    let line = format!(
        " + lock:demo/reentrant reentrant holder={} token={} holds=2 ttl-left=",
        holder.instance, holder.reentrant
    );
    assert!(run.stdout.contains(&line), "{run:?}");
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "the force-released lock is gone"
    );
}
