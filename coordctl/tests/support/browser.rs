//! A headless Chromium driven through WebDriver, for the dashboard's end to
//! end tests.
//!
//! [`Browser::start`] runs Debian's `/usr/bin/chromedriver` on a free loopback
//! port and opens a session on `/usr/bin/chromium`: headless, a fresh profile
//! in a temporary directory, and Chromium's own background traffic (updates,
//! sync, field trials) switched off, since this machine has no network and
//! those connections are only refused. No host name resolves but `localhost`
//! and `127.0.0.1`: open pages at those. `scripts/test` installs both
//! packages; without them starting a browser panics saying so (browser tests
//! fail, they never skip).
//!
//! Nothing here sleeps by luck: [`Browser::wait_for_text`] polls an element
//! until its text is the expected one, and its deadline only turns a hang
//! into a failure that shows the last text seen and saves a screenshot.
//! [`click`](Browser::click), [`fill`](Browser::fill) and
//! [`text`](Browser::text) likewise wait (up to [`FIND_TIMEOUT`]) for their
//! element to appear. Screenshots go to `target/dashboard-screenshots/` under
//! the workspace root.
//!
//! Chromium does not exit when chromedriver dies, so dropping a [`Browser`]
//! (a test that passes or one that panics) kills chromedriver and every
//! process it started; [`Browser::close`] first ends the session, the
//! orderly way. Only a test process killed outright (SIGKILL) leaves them.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element, wd::Capabilities};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Debian's chromium-driver package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's chromium package.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long [`Browser::click`], [`Browser::fill`] and [`Browser::text`] wait
/// for their element to appear. Only a hang guard.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long chromedriver may take to answer that it is ready.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Between two looks at a condition being waited for.
const POLL: Duration = Duration::from_millis(25);
/// Attempts at starting chromedriver and a session (a free port found by
/// binding and releasing it may be taken before chromedriver binds it).
const START_ATTEMPTS: usize = 3;

/// A headless Chromium session, with the chromedriver serving it. Fields
/// drop in order: the session, then the processes, then the profile.
pub struct Browser {
    client: Client,
    driver: Driver,
    /// Chromium's profile (`profile/`) and chromedriver's log.
    dir: tempfile::TempDir,
    /// The test's name (its thread's), for failure screenshots.
    name: String,
}

/// What [`Browser::wait_for_text`] waits for: a `&str` or `String` is a
/// substring the text must contain; a closure `Fn(&str) -> bool` is any
/// predicate on the text.
pub trait Expected {
    /// Whether `text` is what is waited for.
    fn matches(&self, text: &str) -> bool;
    /// What is waited for, for the failure message.
    fn describe(&self) -> String;
}

impl Expected for &str {
    fn matches(&self, text: &str) -> bool {
        text.contains(*self)
    }
    fn describe(&self) -> String {
        format!("a text containing {self:?}")
    }
}

impl Expected for String {
    fn matches(&self, text: &str) -> bool {
        text.contains(self.as_str())
    }
    fn describe(&self) -> String {
        format!("a text containing {self:?}")
    }
}

impl<F: Fn(&str) -> bool> Expected for F {
    fn matches(&self, text: &str) -> bool {
        self(text)
    }
    fn describe(&self) -> String {
        "a text the predicate accepts".to_owned()
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless
    /// Chromium session on it. Panics in one line naming `scripts/test` when
    /// chromedriver or chromium is missing, and with chromedriver's last log
    /// lines when they do not start.
    pub async fn start() -> Browser {
        for (package, path) in [("chromium-driver", CHROMEDRIVER), ("chromium", CHROMIUM)] {
            assert!(
                Path::new(path).is_file(),
                "{path} is missing: the browser tests need Debian's `{package}` package; \
                 scripts/test installs it (apt-get install -y chromium chromium-driver)"
            );
        }
        let name = test_name();
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Browser::try_start(&name).await {
                Ok(browser) => return browser,
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "headless Chromium did not start ({START_ATTEMPTS} attempts):\n{}",
            errors.join("\n---\n")
        );
    }

    async fn try_start(name: &str) -> Result<Browser, String> {
        let dir = tempfile::Builder::new()
            .prefix("coordctl-chromium-")
            .tempdir()
            .map_err(|e| format!("create a temporary directory: {e}"))?;
        let profile = dir.path().join("profile");
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("run {CHROMEDRIVER}: {e}"))?;
        // Killed (with all it started) on every early return below.
        let mut driver = Driver { child };

        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                return Err(format!(
                    "chromedriver on port {port} exited ({status}) before it was ready{}",
                    log_tail(&log)
                ));
            }
            if driver_ready(port).await {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "chromedriver on port {port} was not ready within \
                     {DRIVER_START_TIMEOUT:?}{}",
                    log_tail(&log)
                ));
            }
            tokio::time::sleep(POLL).await;
        }

        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    // Chromium's own connections (component updates, sync,
                    // field trials...) are refused on this machine's closed
                    // network; these keep it from trying.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1400,1000",
                    // No host resolves but localhost and 127.0.0.1 (an
                    // address goes through the rules too): a lookup fails at
                    // once. The first tab is Debian's default search engine's
                    // new tab page (start.duckduckgo.com); while its load
                    // failed slowly, chromedriver held the first command
                    // (waiting for pending navigations) for 5 s, in about one
                    // start of three with two browsers starting together.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| format!("open a Chromium session: {e}{}", log_tail(&log)))?;
        Ok(Browser {
            client,
            driver,
            dir,
            name: name.to_owned(),
        })
    }

    /// The WebDriver client, for what this module does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("{}", self.failure(format!("open {url}: {e}"), "goto").await);
        }
    }

    /// Clicks the element matching `css` (waiting for it to appear). A
    /// live page may replace the element between the find and the click
    /// ("stale element"): then it is found again, until [`FIND_TIMEOUT`].
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            match self.find(css).await.click().await {
                Ok(_) => return,
                Err(e) if is_stale(&e) && Instant::now() < deadline => {}
                Err(e) => panic!(
                    "{}",
                    self.failure(format!("click {css:?}: {e}"), "click").await
                ),
            }
        }
    }

    /// Replaces the value of the input matching `css` (waiting for it to
    /// appear) with `text`, typed as keys (found again if it went stale).
    pub async fn fill(&self, css: &str, text: &str) {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            let element = self.find(css).await;
            let typed = match element.clear().await {
                Ok(()) => element.send_keys(text).await,
                Err(e) => Err(e),
            };
            match typed {
                Ok(()) => return,
                Err(e) if is_stale(&e) && Instant::now() < deadline => {}
                Err(e) => panic!(
                    "{}",
                    self.failure(format!("type into {css:?}: {e}"), "fill")
                        .await
                ),
            }
        }
    }

    /// The rendered text of the element matching `css` (waiting for it to
    /// appear; found again if it went stale).
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) if is_stale(&e) && Instant::now() < deadline => {}
                Err(e) => panic!(
                    "{}",
                    self.failure(format!("read {css:?}: {e}"), "text").await
                ),
            }
        }
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        match self.client.find_all(Locator::Css(css)).await {
            Ok(elements) => !elements.is_empty(),
            Err(e) => panic!(
                "{}",
                self.failure(format!("look for {css:?}: {e}"), "exists")
                    .await
            ),
        }
    }

    /// Polls the text of the element matching `css` until it is `expected`
    /// (contains the substring, or satisfies the predicate) and returns it.
    /// The element may appear later. After `timeout`, saves the screenshot
    /// `<test name>-timeout.png` and panics with the last text seen.
    pub async fn wait_for_text(
        &self,
        css: &str,
        expected: impl Expected,
        timeout: Duration,
    ) -> String {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut last_seen = "nothing (no answer from the browser)".to_owned();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.current_text(css)).await {
                Ok(Ok(text)) if expected.matches(&text) => return text,
                Ok(Ok(text)) => last_seen = format!("{text:?}"),
                Ok(Err(e)) => last_seen = format!("no text ({e})"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                let message = format!(
                    "waited {:?} for {css:?} to show {}; last seen: {last_seen}",
                    start.elapsed(),
                    expected.describe()
                );
                panic!("{}", self.failure(message, "timeout").await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves a PNG screenshot of the window as
    /// `target/dashboard-screenshots/<name>.png` under the workspace root and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        match self.try_screenshot(name).await {
            Ok(path) => path,
            Err(e) => panic!("screenshot {name:?}: {e}"),
        }
    }

    /// Ends the WebDriver session (Chromium quits), then stops chromedriver.
    pub async fn close(self) {
        let Browser {
            client,
            driver,
            dir,
            ..
        } = self;
        let closed = client.close().await;
        drop(driver);
        drop(dir);
        if let Err(e) = closed {
            panic!("end the WebDriver session: {e}");
        }
    }

    async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(FIND_TIMEOUT)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => {
                let message = format!("no element matches {css:?} within {FIND_TIMEOUT:?}: {e}");
                panic!("{}", self.failure(message, "missing").await)
            }
        }
    }

    async fn current_text(&self, css: &str) -> Result<String, fantoccini::error::CmdError> {
        self.client.find(Locator::Css(css)).await?.text().await
    }

    async fn try_screenshot(&self, name: &str) -> Result<PathBuf, String> {
        let png = self.client.screenshot().await.map_err(|e| e.to_string())?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// `message`, with where the screenshot `<test name>-<suffix>.png` of the
    /// failure went: what a test panics with.
    async fn failure(&self, message: String, suffix: &str) -> String {
        match self
            .try_screenshot(&format!("{}-{suffix}", self.name))
            .await
        {
            Ok(path) => format!("{message} (screenshot: {})", path.display()),
            Err(e) => format!("{message} (no screenshot: {e})"),
        }
    }
}

/// Whether `e` says the element was replaced since it was found (a live
/// page re-rendered it).
fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    e.to_string().contains("stale element")
}

/// `target/dashboard-screenshots` under the workspace root.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("coordctl sits in the workspace")
        .join("target")
        .join("dashboard-screenshots")
}

/// The chromedriver process. Dropping it kills chromedriver and every
/// process it started (Chromium outlives a killed chromedriver otherwise).
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Found before chromedriver dies: then its children belong to init.
        for pid in descendants(self.child.id()) {
            // SAFETY: kill(2) has no memory effects; these are processes this
            // test's chromedriver started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes descended from `root` (not `root` itself), parents first,
/// from `/proc/<pid>/stat`.
fn descendants(root: u32) -> Vec<libc::pid_t> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root as libc::pid_t];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// Whether chromedriver answers `GET /status` with `"ready": true`.
async fn driver_ready(port: u16) -> bool {
    let ask = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request =
            format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // chromedriver answers `Connection: close` but keeps the connection
        // open: the body is read by its Content-Length, not to the end.
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })?;
            if body.len() >= length {
                let status: Value = serde_json::from_str(body).ok()?;
                return status["value"]["ready"].as_bool();
            }
        }
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ask).await,
        Ok(Some(true))
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free loopback port")
}

/// The test's name (libtest names each test's thread after it), fit for a
/// file name.
fn test_name() -> String {
    let thread = std::thread::current();
    let name = thread.name().filter(|n| *n != "main").unwrap_or("browser");
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// chromedriver's last log lines, for a start failure.
fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("\nchromedriver's last log lines:\n{tail}")
}
