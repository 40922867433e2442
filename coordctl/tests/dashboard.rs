//! The dashboard end to end, in a real browser: a real redis-server (its
//! own, since the test stops and restarts it), an application holding
//! locks and leading an election (`coordctl-demo-holder`) with a standby
//! candidate, `coordctl serve` as a real process, and headless Chromium
//! driving the page. The page must show the holder, follow a failover
//! live (no reload), perform an audited force release and a resign, give
//! a readable error for a stale token, an unknown resource and a malformed
//! one, and show a banner while the backend is away that clears by itself.
//! Every view is written as a screenshot under
//! `target/dashboard-screenshots/` for a reviewer.
//!
//! Waiting for something that takes time polls the page for it; the
//! deadlines only turn a hang into a failure.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use coord_testkit::redis::RedisServer;
use support::browser::Browser;

const CTL: &str = env!("CARGO_BIN_EXE_coordctl");
const HOLDER: &str = env!("CARGO_BIN_EXE_coordctl-demo-holder");
/// Only a hang guard: what is waited for comes within seconds.
const HANG: Duration = Duration::from_secs(30);
/// The holders' presence and lease TTLs (seconds): short, so that a killed
/// leader's term expires and the standby takes over within seconds.
const PRESENCE_TTL: &str = "5";
const LEASE_TTL: &str = "3";

/// A child process, killed on drop (SIGKILL: no release, no withdrawal).
struct Proc {
    child: Child,
    /// The first line it printed.
    line: String,
}

impl Proc {
    fn start(program: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .env_remove("COORD_URL")
            .env_remove("COORD_DASHBOARD_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Whatever it prints later is not read: keep the pipe drained.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Proc { child, line }
    }

    /// `name=value` of the first line.
    fn field(&self, name: &str) -> String {
        (self.line.split_whitespace())
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.line))
            .to_owned()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `coordctl serve` on a free loopback port; its address from its line.
fn dashboard(url: &str, extra: &[&str]) -> (Proc, String) {
    let args = [
        &["--url", url, "serve", "--listen", "127.0.0.1:0"][..],
        extra,
    ]
    .concat();
    let proc = Proc::start(CTL, &args);
    let addr = (proc.line.split_whitespace())
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {:?}", proc.line))
        .trim_end_matches('/')
        .to_owned();
    (proc, addr)
}

/// One plain HTTP/1.1 request; the status and the body. `Host` is `addr`
/// unless `headers` has one.
fn http(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|h| h.starts_with("Host:")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// Confirms the open confirmation dialog as `operator` with `reason`.
async fn confirm(b: &Browser, operator: &str, reason: &str) {
    b.wait_for_text("#confirm-title", |t: &str| !t.is_empty(), HANG)
        .await;
    b.fill("#confirm-operator", operator).await;
    b.fill("#confirm-reason", reason).await;
    b.click("#confirm-ok").await;
}

/// Polls until nothing on the page matches `css`.
async fn wait_gone(b: &Browser, css: &str) {
    let start = Instant::now();
    while b.exists(css).await {
        assert!(start.elapsed() < HANG, "{css} is still on the page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens `view`'s tab.
async fn tab(b: &Browser, view: &str) {
    b.click(&format!("nav button[data-view='{view}']")).await;
}

/// The manual form: force release `resource` with `token`, confirmed.
async fn manual_force(b: &Browser, resource: &str, token: &str) -> String {
    b.fill("#manual-resource", resource).await;
    b.fill("#manual-token", token).await;
    b.click("#manual-go").await;
    confirm(b, "alice", "test of a refusal").await;
    b.wait_for_text("#action-result.error", resource, HANG)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_holders_follows_a_failover_and_acts_audited() {
    let server = RedisServer::start();
    let url = format!("{}?namespace=dash", server.url());
    let app = Proc::start(HOLDER, &[&url, PRESENCE_TTL, LEASE_TTL]);
    assert!(app.line.starts_with("ready "), "{:?}", app.line);
    let mut app = app;
    let standby = Proc::start(HOLDER, &[&url, PRESENCE_TTL, LEASE_TTL, "candidate"]);
    assert!(standby.line.starts_with("waiting "), "{:?}", standby.line);
    let (a, lock_token, term) = (app.field("instance"), app.field("lock"), app.field("term"));
    let b_instance = standby.field("instance");
    let (_dash, addr) = dashboard(&url, &["--allow-actions", "--refresh", "300ms"]);

    let b = Browser::start().await;
    b.goto(&format!("http://{addr}/")).await;
    // Marked, to tell later that every change came without a reload.
    b.client()
        .execute("window.__loaded_once = true; return null;", vec![])
        .await
        .unwrap();

    // Locks: the holder, its token, alive.
    let row = "#leases tr[data-resource='lock:demo/lock']";
    b.wait_for_text(&format!("{row} .holder"), a.as_str(), HANG)
        .await;
    assert_eq!(b.text(&format!("{row} .token")).await, lock_token);
    assert_eq!(b.text(&format!("{row} .holder-alive")).await, "alive");
    b.wait_for_text("#status", "live", HANG).await;
    b.screenshot("locks").await;

    // Search by prefix: only the reentrant lock.
    b.fill("#prefix", "demo/re").await;
    wait_gone(&b, row).await;
    assert!(
        b.exists("#leases tr[data-resource='lock:demo/reentrant']")
            .await
    );
    b.fill("#prefix", "").await;
    b.wait_for_text("#leases tbody", "lock:demo/lock", HANG)
        .await;

    // Leaders: the application leads; then it is killed and the standby
    // takes over, and the page follows without a reload.
    tab(&b, "leaders").await;
    let leader = "#leaders tr[data-election='demo/election']";
    b.wait_for_text(&format!("{leader} .leader"), a.as_str(), HANG)
        .await;
    assert_eq!(b.text(&format!("{leader} .token")).await, term);
    b.screenshot("leaders").await;

    // Force release from the page: the application's lock, by its row.
    tab(&b, "locks").await;
    b.click(&format!("{row} button.force")).await;
    confirm(&b, "alice", "holder wedged, INC-1234").await;
    let said = b
        .wait_for_text("#action-result.ok", "force released", HANG)
        .await;
    assert!(said.contains(&lock_token), "{said}");
    wait_gone(&b, row).await;

    // The same token again, an unknown resource, a malformed one: one
    // readable error each, nothing changed.
    let stale = manual_force(&b, "lock:demo/lock", &lock_token).await;
    assert!(stale.contains("no live lease has token"), "{stale}");
    let unknown = manual_force(&b, "lock:no/such", "7").await;
    assert!(unknown.contains("no live lease"), "{unknown}");
    b.fill("#manual-resource", "bogus").await;
    b.fill("#manual-token", "7").await;
    b.click("#manual-go").await;
    confirm(&b, "alice", "malformed").await;
    let bad = b
        .wait_for_text("#action-result.error", "KIND:NAME", HANG)
        .await;
    assert!(bad.contains("bogus"), "{bad}");
    b.screenshot("error").await;

    // Deliveries: the application's queue item in flight, handed back
    // from its row (audited like a force release).
    tab(&b, "deliveries").await;
    let item = format!(
        "#deliveries tr[data-resource='queue:demo/queue@{}']",
        app.field("item")
    );
    b.wait_for_text(&format!("{item} .holder"), a.as_str(), HANG)
        .await;
    assert_eq!(
        b.text(&format!("{item} .token")).await,
        app.field("delivery")
    );
    assert_eq!(b.text(&format!("{item} .role")).await, "delivery");
    b.screenshot("deliveries-held").await;
    b.click(&format!("{item} button.force")).await;
    confirm(&b, "alice", "handler wedged, INC-1235").await;
    let said = b
        .wait_for_text("#action-result.ok", "force released", HANG)
        .await;
    assert!(said.contains(&app.field("delivery")), "{said}");
    wait_gone(&b, &item).await;

    // The audit trail names the operator and the reason.
    tab(&b, "audit").await;
    b.wait_for_text("#audit tbody", "holder wedged, INC-1234", HANG)
        .await;
    let audit = b.text("#audit tbody").await;
    assert!(audit.contains("alice"), "{audit}");
    assert!(audit.contains("released"), "{audit}");
    assert!(audit.contains("not found"), "{audit}");
    b.screenshot("audit").await;

    // Failover: kill -9 the leader; its term expires, the standby wins.
    tab(&b, "leaders").await;
    app.kill();
    b.wait_for_text(&format!("{leader} .leader"), b_instance.as_str(), HANG)
        .await;
    let timeline = b
        .wait_for_text("#timeline", b_instance.as_str(), HANG)
        .await;
    assert!(timeline.contains("demo/election"), "{timeline}");
    let new_term = b.text(&format!("{leader} .token")).await;
    assert!(
        new_term.parse::<u64>().unwrap() > term.parse::<u64>().unwrap(),
        "the new term's token is larger: {new_term} after {term}"
    );
    b.screenshot("failover").await;

    // Resign the standby's term from the page: audited, the row goes.
    b.click(&format!("{leader} button.resign")).await;
    confirm(&b, "bob", "drain for maintenance").await;
    let said = b.wait_for_text("#action-result.ok", "resigned", HANG).await;
    assert!(said.contains(&new_term), "{said}");
    wait_gone(&b, leader).await;

    // The other views render.
    for view in [
        "groups",
        "runs",
        "deliveries",
        "instances",
        "families",
        "health",
    ] {
        tab(&b, view).await;
        let section = format!("#view-{view}");
        b.wait_for_text(&section, |t: &str| !t.trim().is_empty(), HANG)
            .await;
        b.screenshot(view).await;
    }
    b.wait_for_text("#health-status", "Status:", HANG).await;
    tab(&b, "families").await;
    b.fill("#queue-name", "orders").await;
    b.click("#queue-form button").await;
    b.wait_for_text("#queue-result", "in flight", HANG).await;
    let gates = coord::connect(&url).await.unwrap();
    let gate = gates.barrier("release-gate", 2).participant("web-1");
    let waiting = tokio::spawn(async move { gate.wait().await });
    let arrived = async {
        let look = gates.barrier("release-gate", 2);
        while look
            .peek()
            .await
            .unwrap()
            .is_none_or(|s| s.arrivals.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(HANG, arrived)
        .await
        .expect("web-1 arrives");
    b.fill("#barrier-name", "release-gate").await;
    b.click("#barrier-form button").await;
    let shown = b.wait_for_text("#barrier-result", "web-1", HANG).await;
    assert!(shown.contains("missing: 1"), "{shown}");
    waiting.abort();
    let latch = gates.latch("warmup");
    assert!(latch.try_set_count(3).await.unwrap());
    b.fill("#latch-name", "warmup").await;
    b.click("#latch-form button").await;
    b.wait_for_text("#latch-result", "3 of 3", HANG).await;

    // The backend goes away: a banner; it comes back: the banner clears.
    tab(&b, "locks").await;
    server.stop();
    b.wait_for_text("#banner", "Backend unreachable", HANG)
        .await;
    b.screenshot("backend-down").await;
    server.restart();
    b.wait_for_text("#banner", |t: &str| t.is_empty(), HANG)
        .await;

    let reloaded = b
        .client()
        .execute("return window.__loaded_once === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        reloaded,
        serde_json::Value::Bool(true),
        "the page was never reloaded"
    );
    b.close().await;
}

/// A token beyond 2^53, where a JavaScript number stops being exact, shows
/// with every digit and goes back whole in a force release from its row.
/// The page read tokens as numbers: it showed 36028797018963970 for
/// 36028797018963968 and sent that back, which no lease carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_beyond_2_pow_53_keeps_every_digit_on_the_page() {
    let server = RedisServer::shared();
    let url = format!("{}?namespace=dash-big-token", server.url());
    // The lock's token counter run ahead to 2^55: the next grant draws it
    // (a double holds 2^55; JavaScript prints it 36028797018963970).
    let counter = "coord:{dash-big-token:lock:big/token}:t";
    server
        .command(&["SET", counter, "36028797018963968", "PX", "3600000"])
        .unwrap();
    let client = coord::connect(&url).await.unwrap();
    let lock = client.lock("big/token").ttl(Duration::from_secs(60));
    let guard = lock.try_lock().await.unwrap().expect("free");
    let token = guard.token().get().to_string();
    assert_eq!(token, "36028797018963968");
    let (_dash, addr) = dashboard(&url, &["--allow-actions", "--refresh", "300ms"]);
    let b = Browser::start().await;
    b.goto(&format!("http://{addr}/")).await;
    let row = "#leases tr[data-resource='lock:big/token']";
    b.wait_for_text(&format!("{row} .token"), |t: &str| !t.is_empty(), HANG)
        .await;
    assert_eq!(b.text(&format!("{row} .token")).await, token);
    b.click(&format!("{row} button.force")).await;
    confirm(&b, "alice", "a token beyond 2^53").await;
    let said = b
        .wait_for_text("#action-result", |t: &str| !t.is_empty(), HANG)
        .await;
    assert!(
        said.contains("force released") && said.contains(&token),
        "{said}"
    );
    wait_gone(&b, row).await;
    b.close().await;
    drop(guard);
}

#[test]
fn actions_are_off_by_default_and_a_token_is_checked() {
    let server = RedisServer::shared();
    let url = format!("{}?namespace=dash-guard", server.url());
    let body = r#"{"resource":"lock:a","token":1,"reason":"r","operator":"o"}"#;

    let (_dash, addr) = dashboard(&url, &[]);
    let (status, text) = http(&addr, "POST", "/api/force-release", &[], body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("--allow-actions"), "{text}");
    let (status, text) = http(&addr, "GET", "/api/leases?kind=nonsense", &[], "");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("nonsense"), "{text}");

    let token = "correct-horse-battery";
    let (_dash, addr) = dashboard(&url, &["--allow-actions", "--token", token]);
    assert_eq!(
        http(&addr, "GET", "/", &[], "").0,
        200,
        "the page itself is static"
    );
    let (status, text) = http(&addr, "GET", "/api/overview", &[], "");
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("#token="), "{text}");
    let wrong = "Authorization: Bearer correct-horse-battery-staple";
    assert_eq!(http(&addr, "GET", "/api/overview", &[wrong], "").0, 401);
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(http(&addr, "GET", "/api/overview", &[&bearer], "").0, 200);
    let path = format!("/api/overview?token={token}");
    assert_eq!(http(&addr, "GET", &path, &[], "").0, 200);
    let (status, text) = http(&addr, "POST", "/api/force-release", &[&bearer], body);
    assert_eq!(status, 404, "allowed, and nothing to release: {text}");

    // Off loopback without a token: refused before listening.
    let out = Command::new(CTL)
        .args(["--url", &url, "serve", "--listen", "0.0.0.0:0"])
        .env_remove("COORD_DASHBOARD_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");
}

/// On loopback the dashboard needs no token, so a web page the operator
/// has open elsewhere could use DNS rebinding (its own name resolving to
/// 127.0.0.1) to read every lease and force release them: the browser
/// treats it as same-origin. Only a Host naming the dashboard is served.
#[tokio::test(flavor = "current_thread")]
async fn a_foreign_host_header_is_refused() {
    let url = format!("{}?namespace=dash-rebind", RedisServer::shared().url());
    let client = coord::connect(&url).await.unwrap();
    let guard = client
        .lock("payments/settle")
        .try_lock()
        .await
        .unwrap()
        .unwrap();
    let (_dash, addr) = dashboard(&url, &["--allow-actions", "--allow-host", "dash.internal"]);
    let port = addr.rsplit_once(':').unwrap().1;
    let body = format!(
        r#"{{"resource":"lock:payments/settle","token":{},"reason":"pwned","operator":"evil"}}"#,
        guard.token().get()
    );
    for host in [
        "rebind.attacker.example:7070",
        &format!("evil.example:{port}"),
    ] {
        let host = format!("Host: {host}");
        for (method, path, body) in [
            ("GET", "/", ""),
            ("GET", "/api/leases", ""),
            ("POST", "/api/force-release", body.as_str()),
        ] {
            let (status, text) = http(&addr, method, path, &[&host], body);
            assert_eq!(status, 403, "{method} {path} for {host} was served: {text}");
        }
    }
    let settle = "lock:payments/settle".parse().unwrap();
    let held = client.operations().holders(&settle).await.unwrap();
    assert_eq!(held.len(), 1, "nothing was released: {held:?}");
    let local = format!("Host: localhost:{port}");
    for host in [
        &local[..],
        "Host: dash.internal",
        "Host: dash.internal:8443",
    ] {
        let (status, text) = http(&addr, "GET", "/api/overview", &[host], "");
        assert_eq!(status, 200, "{host}: {text}");
    }
    assert_eq!(http(&addr, "GET", "/api/overview", &[], "").0, 200);
    drop(guard);
}

/// Looking at a breaker that no instance has used yet answers 404 and
/// makes nothing: the application that uses it first stores its own
/// policy, which the page then shows. (A look used to birth the breaker
/// with the default policy, which the application could never replace.)
#[tokio::test(flavor = "current_thread")]
async fn a_breaker_with_no_record_is_not_made_by_a_look() {
    let url = format!("{}?namespace=dash-breaker", RedisServer::shared().url());
    let (_dash, addr) = dashboard(&url, &[]);
    let path = "/api/breaker?name=payments";
    for _ in 0..2 {
        let (status, text) = http(&addr, "GET", path, &[], "");
        assert_eq!(status, 404, "{text}");
        assert!(
            text.contains("no record") && text.contains("payments"),
            "{text}"
        );
    }
    let client = coord::connect(&url).await.unwrap();
    let app = (client.breaker("payments").count_window(10).minimum_calls(4))
        .failure_rate(20.0)
        .open_for(Duration::from_secs(30))
        .build()
        .unwrap();
    let policy = app.state().await.unwrap().policy;
    assert_eq!(
        (policy.failure_rate_bp, policy.open_for),
        (2_000, Duration::from_secs(30)),
        "the application's policy is in force"
    );
    let (status, text) = http(&addr, "GET", path, &[], "");
    assert_eq!(status, 200, "{text}");
    for shown in [
        r#""phase":"Closed""#,
        r#""failure_rate":"20%""#,
        r#""open_for":"30.0s""#,
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_locks_page_and_search_by_prefix() {
    const LOCKS: usize = 2_000;
    let url = format!("{}?namespace=dash-many", RedisServer::shared().url());
    let client = coord::connect(&url).await.unwrap();
    let mut held = Vec::with_capacity(LOCKS);
    for i in 0..LOCKS {
        let lock = client
            .lock(&format!("load/{i:04}"))
            .ttl(Duration::from_secs(60));
        held.push(lock.try_lock().await.unwrap().expect("free"));
    }
    let (_dash, addr) = dashboard(&url, &[]);
    let b = Browser::start().await;
    b.goto(&format!("http://{addr}/")).await;

    // Paged: 50 a page, in resource order.
    b.wait_for_text("#page-info", "1\u{2013}50 of 2000", HANG)
        .await;
    assert!(b.exists("#leases tr[data-resource='lock:load/0049']").await);
    assert!(!b.exists("#leases tr[data-resource='lock:load/0050']").await);
    b.click("#next").await;
    b.wait_for_text("#page-info", "51\u{2013}100 of 2000", HANG)
        .await;
    assert!(b.exists("#leases tr[data-resource='lock:load/0050']").await);
    // No action buttons: actions are off.
    assert!(!b.exists("#leases button.force").await);
    b.screenshot("many-locks").await;

    // Searchable by prefix, back on the first page.
    b.fill("#prefix", "load/19").await;
    b.wait_for_text("#page-info", "1\u{2013}50 of 100", HANG)
        .await;
    assert!(b.exists("#leases tr[data-resource='lock:load/1900']").await);
    b.fill("#prefix", "lock:load/000").await;
    b.wait_for_text("#page-info", "1\u{2013}10 of 10", HANG)
        .await;
    b.close().await;
    drop(held);
}

/// A view that reads one page (at most 500 rows) says when there are
/// more: the groups view showed 500 of 510 members without a word, as the
/// leaders' and runs' views did; the deliveries' view alone said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_with_more_rows_than_it_shows_says_so() {
    const MEMBERS: usize = 510;
    let url = format!("{}?namespace=dash-members", RedisServer::shared().url());
    let client = coord::connect(&url).await.unwrap();
    let group = client.group("big");
    let mut joined = Vec::with_capacity(MEMBERS);
    for _ in 0..MEMBERS {
        joined.push(group.join().await.unwrap());
    }
    let (_dash, addr) = dashboard(&url, &[]);
    let b = Browser::start().await;
    b.goto(&format!("http://{addr}/")).await;
    tab(&b, "groups").await;
    b.wait_for_text("#members-info", "the first 500 of 510 members", HANG)
        .await;
    b.screenshot("more-members-than-shown").await;
    b.fill("#group-prefix", "small").await;
    b.wait_for_text("#members-info", |t: &str| t.is_empty(), HANG)
        .await;
    b.close().await;
    drop(joined);
}

/// "Which barrier is stuck, and who has arrived?": a barrier nobody used
/// answers 404 and stays unmade (a second look answers 404 too); once a
/// participant waits, its generation (a string, as tokens are), parties,
/// the missing count and the arrival are shown. A name's double barrier
/// is apart.
#[tokio::test(flavor = "current_thread")]
async fn a_barrier_is_shown_by_name_and_not_made_by_a_look() {
    let url = format!("{}?namespace=dash-barrier", RedisServer::shared().url());
    let (_dash, addr) = dashboard(&url, &[]);
    let path = "/api/barrier?name=deploy";
    for _ in 0..2 {
        let (status, text) = http(&addr, "GET", path, &[], "");
        assert_eq!(status, 404, "{text}");
        assert!(
            text.contains("no record") && text.contains("deploy"),
            "{text}"
        );
    }
    let client = coord::connect(&url).await.unwrap();
    let deploy = client.barrier("deploy", 2).participant("web-1");
    let waiting = tokio::spawn(async move { deploy.wait().await });
    let shown = async {
        loop {
            let (status, text) = http(&addr, "GET", path, &[], "");
            if status == 200 && text.contains("web-1") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(5), shown)
        .await
        .expect("the arrival is shown");
    for part in [
        r#""parties":2"#,
        r#""missing":1"#,
        r#""generation":""#,
        r#""participant":"web-1""#,
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    let (status, text) = http(&addr, "GET", &format!("{path}&double=true"), &[], "");
    assert_eq!(status, 404, "kinds apart: {text}");
    waiting.abort();
}
