//! A `redis-server` of the test's own on a free loopback port
//! ([`RedisServer`]), and a conformance [`Harness`] on it ([`RedisHarness`]).
//!
//! The server runs without persistence (`--save '' --appendonly no`), keeps
//! its files in a temporary directory, also listens on a unix socket, and is
//! killed when the [`RedisServer`] drops — or, through `PR_SET_PDEATHSIG`,
//! when the test process dies, so no server outlives its tests. Servers are
//! started from one long-lived thread, because the death signal follows the
//! thread that forked, not the process.
//!
//! If `redis-server` cannot be found (on `PATH`, or at `$REDIS_SERVER`),
//! starting one panics with a message saying how to install it: tests that
//! need Redis fail, they never skip.
//!
//! ```no_run
//! use coord_testkit::redis::RedisServer;
//! let server = RedisServer::start();
//! let config = server.config("my-test");
//! assert!(config.to_string().starts_with("redis(127.0.0.1:"));
//! ```

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock, mpsc},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use coord_api::{Namespace, spi::DynBackend};
use coord_conformance::Harness;
use coord_redis::{RedisBackend, RedisConfig};

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process owned by a test. Killed on drop.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Environment variables given to the server process.
    env: Vec<(String, String)>,
    password: Option<String>,
    tls: Option<TlsFiles>,
    child: Mutex<Option<Child>>,
}

/// The TLS port and the throwaway CA and server certificate of a
/// [`RedisServer::start_tls`] server.
struct TlsFiles {
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free loopback port. Panics with instructions when
    /// `redis-server` is missing or does not come up.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server that requires `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> RedisServer {
        let mut s = RedisServer::start_with(&["--requirepass", password]);
        s.password = Some(password.to_owned());
        s
    }

    /// Starts a server that also accepts TLS on a second loopback port, with
    /// a certificate for `localhost` and `127.0.0.1` signed by a CA made for
    /// this server alone (by `openssl`, in a temporary directory). Clients
    /// are not asked for certificates. Panics with instructions when
    /// `openssl` is missing.
    pub fn start_tls() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("coord-redis-tls-")
            .tempdir()
            .expect("create a temporary directory for TLS files");
        make_test_certificates(dir.path());
        let port = free_port();
        let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
        let mut server = RedisServer::start_with(&[
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ]);
        server.tls = Some(TlsFiles { port, dir });
        server
    }

    /// The TLS port of a [`start_tls`](Self::start_tls) server.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|t| t.port)
    }

    /// The PEM file of the CA that signed a [`start_tls`](Self::start_tls)
    /// server's certificate.
    pub fn tls_ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.dir.path().join("ca.pem"))
    }

    /// A `rediss://localhost:<tls port>` configuration trusting this server's
    /// CA, in `namespace`, with a 2 s operation timeout. Panics unless the
    /// server was started with [`start_tls`](Self::start_tls).
    pub fn tls_config(&self, namespace: &str) -> RedisConfig {
        let port = self.tls_port().expect("a server started with start_tls");
        RedisConfig::builder()
            .tls("localhost", port)
            .tls_ca_file(self.tls_ca_file().unwrap())
            .namespace(namespace)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("valid test TLS configuration")
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        RedisServer::start_with_env(extra_args, &[])
    }

    /// Starts a server with extra `redis-server` arguments and environment
    /// variables (a locale, say: Redis takes its collation from it).
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..5 {
            let server = RedisServer {
                port: free_port(),
                dir: tempfile::Builder::new()
                    .prefix("coord-redis-")
                    .tempdir()
                    .expect("create a temporary directory for redis-server"),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                env: (env.iter())
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                password: None,
                tls: None,
                child: Mutex::new(None),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    /// A server shared by every test of this test binary, started on first
    /// use. It lives until the process exits.
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(RedisServer::start)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines of the server's log (for failure messages).
    pub fn log(&self) -> String {
        log_tail(self.dir.path())
    }

    /// The unix socket the server also listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// `redis://127.0.0.1:<port>/0` (with the password, if any).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// A configuration for this server in `namespace` (panics on an invalid
    /// namespace), with a 2 s operation timeout.
    pub fn config(&self, namespace: &str) -> RedisConfig {
        RedisConfig::builder()
            .with_url(self.url())
            .namespace(namespace)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("valid test configuration")
    }

    /// Runs one command on a fresh connection (for tests that inspect or
    /// tamper with the server behind the backend's back).
    pub fn command(&self, args: &[&str]) -> ::redis::RedisResult<::redis::Value> {
        let client = ::redis::Client::open(self.url())?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(5))?;
        let mut cmd = ::redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut con)
    }

    /// Asserts that the server ran exactly `calls` EVALSHA since it started
    /// or its last `CONFIG RESETSTAT`, and neither EVAL nor any SCRIPT
    /// command: every operation was one EVALSHA of a script already loaded.
    pub fn assert_evalsha_only(&self, calls: u64) {
        let info = match self
            .command(&["INFO", "commandstats"])
            .expect("INFO commandstats")
        {
            ::redis::Value::BulkString(b) => String::from_utf8(b).expect("UTF-8 INFO"),
            ::redis::Value::VerbatimString { text, .. } => text,
            other => panic!("INFO answered {other:?}"),
        };
        let evalsha = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
            .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("calls=")))
            .map(|n| n.parse::<u64>().expect("a count"));
        assert_eq!(evalsha, Some(calls), "EVALSHA calls: {info}");
        assert!(
            !info.contains("cmdstat_script") && !info.contains("cmdstat_eval:"),
            "{info}"
        );
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Its data is gone:
    /// there is no persistence.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a [`paused`](Self::pause) server (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = self.child.lock().unwrap().as_ref() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        match self.child.lock().unwrap().as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn(&self) -> Result<(), String> {
        let bin = redis_server_binary();
        let dir = self.dir.path();
        let mut cmd = Command::new(&bin);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--unixsocket")
            .arg(self.socket_path())
            .args(["--unixsocketperm", "700"])
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(["--daemonize", "no"])
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child =
            spawn_tied_to_process(cmd).map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "redis-server exited with {status} on port {}; log: {}",
                    self.port,
                    log_tail(dir)
                ));
            }
            if ping(self.port) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server did not answer PING on port {} within {START_TIMEOUT:?}; log: {}",
                    self.port,
                    log_tail(dir)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        *self.child.lock().unwrap() = Some(child);
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// A conformance [`Harness`]: every `open` is a new [`RedisBackend`] (its own
/// connections) on the server of `config`, bound to the asked namespace.
#[derive(Debug, Clone)]
pub struct RedisHarness {
    config: RedisConfig,
}

impl RedisHarness {
    /// A harness on the server `config` names.
    pub fn new(config: RedisConfig) -> RedisHarness {
        RedisHarness { config }
    }

    /// A harness on [`RedisServer::shared`].
    pub fn shared() -> RedisHarness {
        RedisHarness::new(RedisServer::shared().config(Namespace::DEFAULT))
    }
}

#[async_trait]
impl Harness for RedisHarness {
    async fn open(&self, namespace: &Namespace) -> coord_api::Result<DynBackend> {
        let config = self.config.clone().with_namespace(namespace.clone());
        Ok(std::sync::Arc::new(RedisBackend::connect(config).await?))
    }
}

/// `redis-server` from `$REDIS_SERVER` or `PATH` (or the usual system
/// places). Panics with instructions if there is none.
pub fn redis_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join("redis-server"));
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "redis-server not found (searched $REDIS_SERVER and PATH). The Redis tests need a real \
         server: install it with `apt-get install -y redis-server` (Debian/Ubuntu) or \
         `brew install redis`, or point REDIS_SERVER at the binary."
    );
}

/// Spawns `cmd` from one long-lived thread, with `PR_SET_PDEATHSIG` set to
/// SIGKILL: the child dies with this process, however it ends.
pub(crate) fn spawn_tied_to_process(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name("redis-server-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        // SAFETY: prctl and getppid are async-signal-safe;
                        // nothing else runs between fork and exec.
                        unsafe {
                            cmd.pre_exec(|| {
                                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                    return Err(std::io::Error::last_os_error());
                                }
                                // The parent may have died before prctl.
                                if libc::getppid() == 1 {
                                    return Err(std::io::Error::other("parent exited"));
                                }
                                Ok(())
                            });
                        }
                        let _ = reply.send(cmd.spawn());
                    }
                    // The sender lives in a static: this thread never ends,
                    // so the death signal fires only when the process exits.
                })
                .expect("start the redis-server spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .unwrap()
        .clone();
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// Writes `ca.pem` (a throwaway CA), `server.pem` and `server.key` (a
/// certificate for `localhost` and `127.0.0.1` it signed) into `dir`.
fn make_test_certificates(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the certificate extensions");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=coord-redis test CA",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run openssl ({e}); the TLS test makes its certificates with it: \
                     install it with `apt-get install -y openssl`"
                )
            });
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free loopback port")
}

pub(crate) fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    // Any reply (+PONG, or -NOAUTH when a password is required) means it is up.
    s.write_all(b"PING\r\n").is_ok() && matches!(s.read(&mut buf), Ok(n) if n > 0)
}

pub(crate) fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// The text `server` answers to `args` (`INFO`, `CLUSTER INFO`), if it
/// answers with text.
pub(crate) fn text_reply(server: &RedisServer, args: &[&str]) -> Option<String> {
    match server.command(args).ok()? {
        ::redis::Value::BulkString(b) => String::from_utf8(b).ok(),
        ::redis::Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// One field of `INFO <section>` of `server`, if it answers.
pub(crate) fn info_field(server: &RedisServer, section: &str, field: &str) -> Option<String> {
    text_reply(server, &["INFO", section])?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// What `server` says it is (`master`, `slave`), if it answers `ROLE`.
pub(crate) fn role(server: &RedisServer) -> Option<String> {
    match server.command(&["ROLE"]).ok()? {
        ::redis::Value::Array(v) => match v.first()? {
            ::redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Asks `done` every 50 ms until it answers true; past `within`, panics
/// saying `failed` (what did not happen) and the processes' `logs`.
pub(crate) fn poll_until(
    within: Duration,
    failed: &str,
    logs: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{failed} within {within:?}; {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
