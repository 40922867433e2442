//! A Sentinel-managed Redis of the test's own ([`SentinelSet`]): one
//! master, replicas and three sentinels (quorum 2), all on free loopback
//! ports, announcing 127.0.0.1, quick to fail over (a server unanswered for
//! [`DOWN_AFTER`] is down). Every process is killed when the set drops (or
//! when the test process dies, as [`RedisServer`]'s are) and its files live
//! in temporary directories.
//!
//! ```no_run
//! use coord_testkit::sentinel::SentinelSet;
//! let set = SentinelSet::start();
//! let old = set.master_port();
//! set.failover(); // SENTINEL FAILOVER: a planned failover
//! let new = set.wait_for_master_other_than(old);
//! assert_ne!(old, new);
//! ```

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use coord_redis::RedisConfig;

use crate::redis::{
    RedisServer, free_port, info_field, log_tail, ping, poll_until, redis_server_binary, role,
    spawn_tied_to_process,
};

/// The master's name in the sentinels' configuration.
pub const MASTER_NAME: &str = "mymaster";
/// How long a server may go unanswered before a sentinel counts it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(2000);
/// How long the fixture waits for the set to form, or to fail over.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One master, its replicas and three sentinels. Killed on drop.
pub struct SentinelSet {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

struct SentinelProcess {
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
    /// Frozen by [`SentinelSet::pause_sentinel`]: not asked.
    paused: std::sync::atomic::AtomicBool,
}

impl SentinelSet {
    /// One master, two replicas, three sentinels; returns once every
    /// sentinel knows the other two and both replicas, and both replicas
    /// are in sync. Panics (with the logs' last lines) otherwise.
    pub fn start() -> SentinelSet {
        SentinelSet::start_with(2)
    }

    /// One master, `replicas` replicas (at least 1), three sentinels.
    pub fn start_with(replicas: usize) -> SentinelSet {
        assert!(replicas >= 1, "a failover needs a replica");
        let common = [
            "--replica-announce-ip",
            "127.0.0.1",
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ];
        let master = RedisServer::start_with(&common);
        let master_port = master.port().to_string();
        let mut servers = vec![master];
        for _ in 0..replicas {
            let mut args = common.to_vec();
            args.extend(["--replicaof", "127.0.0.1", &master_port]);
            servers.push(RedisServer::start_with(&args));
        }
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(servers[0].port()))
            .collect();
        let set = SentinelSet { servers, sentinels };
        set.wait_until_formed(replicas);
        set
    }

    /// `redis+sentinel://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = (self.sentinels.iter())
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// A configuration for this set in `namespace`, with a 2 s operation
    /// timeout.
    pub fn config(&self, namespace: &str) -> RedisConfig {
        RedisConfig::builder()
            .with_url(self.url())
            .namespace(namespace)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("valid sentinel test configuration")
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The data servers (the first was the master at start).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The data server on `port`.
    pub fn server(&self, port: u16) -> &RedisServer {
        (self.servers.iter())
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no server of this set on port {port}"))
    }

    /// Freezes sentinel `i` (SIGSTOP; in the order of [`url`](Self::url)):
    /// its connections stay open, nothing answers. The fixture stops
    /// asking it until [`resume_sentinel`](Self::resume_sentinel).
    pub fn pause_sentinel(&self, i: usize) {
        self.sentinels[i].signal(libc::SIGSTOP);
        (self.sentinels[i].paused).store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Thaws sentinel `i` (SIGCONT).
    pub fn resume_sentinel(&self, i: usize) {
        self.sentinels[i].signal(libc::SIGCONT);
        (self.sentinels[i].paused).store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Kills sentinel `i` (SIGKILL, frozen or not): its connections close.
    /// The fixture no longer asks it.
    pub fn kill_sentinel(&self, i: usize) {
        self.sentinels[i].signal(libc::SIGKILL);
        (self.sentinels[i].paused).store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sends a command to sentinel `i` (in the order of [`url`](Self::url)).
    pub fn sentinel_command(&self, i: usize, args: &[&str]) -> redis::RedisResult<redis::Value> {
        self.sentinels[i].command(args)
    }

    /// The sentinels not paused.
    fn answering(&self) -> impl Iterator<Item = &SentinelProcess> {
        (self.sentinels.iter()).filter(|s| !s.paused.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The master's port as the first sentinel that answers says.
    pub fn master_port(&self) -> u16 {
        for s in self.answering() {
            if let Some(port) = s.master_port() {
                return port;
            }
        }
        panic!("no sentinel names a master");
    }

    /// A planned failover (`SENTINEL FAILOVER mymaster`), asked of the
    /// sentinels in turn until one takes it (a sentinel that does not know
    /// a good replica yet says so): does not wait for it to finish.
    pub fn failover(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            for s in self.answering() {
                match s.command(&["SENTINEL", "FAILOVER", MASTER_NAME]) {
                    Ok(_) => return,
                    Err(e) if Instant::now() > deadline => {
                        panic!("SENTINEL FAILOVER refused: {e}; {}", self.logs())
                    }
                    Err(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the current master (SIGKILL): an unplanned failover follows
    /// after [`DOWN_AFTER`]. Returns its port.
    pub fn kill_master(&self) -> u16 {
        let port = self.master_port();
        self.server(port).stop();
        port
    }

    /// Waits until every sentinel not paused names the same master, on a
    /// port other than `old`, and that server says it is a master; returns
    /// its port. Panics after [`SETTLE_TIMEOUT`].
    pub fn wait_for_master_other_than(&self, old: u16) -> u16 {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let named: Vec<Option<u16>> = self.answering().map(|s| s.master_port()).collect();
            if let Some(Some(port)) = named.first()
                && *port != old
                && named.iter().all(|n| *n == Some(*port))
                && self.role(*port).as_deref() == Some("master")
            {
                return *port;
            }
            assert!(
                Instant::now() < deadline,
                "no failover away from {old} within {SETTLE_TIMEOUT:?} (sentinels name {named:?}); {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server on `port` says it is (`master`, `slave`), if it
    /// answers.
    pub fn role(&self, port: u16) -> Option<String> {
        role(self.servers.iter().find(|s| s.port() == port)?)
    }

    fn wait_until_formed(&self, replicas: usize) {
        let formed = || {
            self.sentinels.iter().all(|s| {
                s.master_info().is_some_and(|m| {
                    m.get("num-other-sentinels").map(String::as_str) == Some("2")
                        && m.get("num-slaves").and_then(|n| n.parse::<usize>().ok())
                            == Some(replicas)
                })
            }) && self.servers[1..].iter().all(|r| {
                info_field(r, "replication", "master_link_status").as_deref() == Some("up")
            })
        };
        let failed = "the sentinel set did not form";
        poll_until(SETTLE_TIMEOUT, failed, || self.logs(), formed);
    }

    /// The last lines of every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let servers = (self.servers.iter()).map(|s| format!("server {}: {}", s.port(), s.log()));
        let sentinels = (self.sentinels.iter())
            .map(|s| format!("sentinel {}: {}", s.port, log_tail(s.dir.path())));
        servers.chain(sentinels).collect::<Vec<_>>().join("\n")
    }
}

impl std::fmt::Debug for SentinelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSet")
            .field(
                "servers",
                &self.servers.iter().map(|s| s.port()).collect::<Vec<_>>(),
            )
            .field("sentinels", &self.sentinel_ports())
            .finish()
    }
}

impl SentinelProcess {
    fn start(master_port: u16) -> SentinelProcess {
        let mut last_err = String::new();
        for _ in 0..5 {
            let s = SentinelProcess {
                port: free_port(),
                dir: tempfile::Builder::new()
                    .prefix("coord-sentinel-")
                    .tempdir()
                    .expect("create a temporary directory for a sentinel"),
                child: Mutex::new(None),
                paused: Default::default(),
            };
            match s.spawn(master_port) {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server --sentinel did not start: {last_err}");
    }

    fn spawn(&self, master_port: u16) -> Result<(), String> {
        let dir = self.dir.path();
        let conf = dir.join("sentinel.conf");
        // The sentinel rewrites this file as it learns the set.
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {dir}/redis.log\n\
                 sentinel announce-ip 127.0.0.1\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 2\n",
                port = self.port,
                dir = dir.display(),
                down = DOWN_AFTER.as_millis(),
            ),
        )
        .map_err(|e| format!("write {}: {e}", conf.display()))?;
        let bin = redis_server_binary();
        let mut cmd = Command::new(&bin);
        cmd.arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child =
            spawn_tied_to_process(cmd).map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("sentinel exited with {status}: {}", log_tail(dir)));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("sentinel did not answer: {}", log_tail(dir)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        *self.child.lock().unwrap() = Some(child);
        Ok(())
    }

    fn command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(5))?;
        con.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut con)
    }

    fn master_port(&self) -> Option<u16> {
        let v = self
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
            .ok()?;
        let (_, port): (String, String) = redis::from_redis_value(v).ok()?;
        port.parse().ok()
    }

    fn master_info(&self) -> Option<HashMap<String, String>> {
        let v = self.command(&["SENTINEL", "MASTER", MASTER_NAME]).ok()?;
        redis::from_redis_value(v).ok()
    }
}

impl SentinelProcess {
    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = self.child.lock().unwrap().as_ref() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
