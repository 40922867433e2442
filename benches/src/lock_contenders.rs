//! `redis_load`'s contenders: one lock + release each on a key of their
//! own, as the lock a user would otherwise pick does it.
//!
//! - `baseline`: `SET key holder NX PX ttl`, then an EVALSHA
//!   compare-and-delete, on one multiplexed `ConnectionManager` set up like
//!   coord's (TCP_NODELAY, RESP2, the same retry settings and timeouts, one
//!   timer per request);
//! - `floor`: the least a lock with fencing tokens on the server's clock can
//!   send: an EVALSHA of `TIME` + `SET NX PX` returning the token, then the
//!   baseline's release, on the baseline's connection;
//! - `rslock`: rslock 0.10's `LockManager::new(vec![url])`, `lock(key, ttl)`
//!   then `unlock(&lock)`, as its README shows. It keeps one multiplexed
//!   connection (opened on first use, no per-call connect; redis's default
//!   settings: RESP2, no TCP_NODELAY, no response timeout); per call it
//!   takes its manager's `tokio::sync::Mutex` (twice per lock, once per
//!   unlock) and the connection's, clones the server list, draws 20 random
//!   bytes, and builds its unlock `Script` anew (a SHA-1 of the script per
//!   unlock). It sends `SET NX PX` and an EVALSHA compare-and-delete, like
//!   the baseline;
//! - `coord`: `coord::connect(url)` with default options (what users get:
//!   namespace `coord`, an instance id of host name, pid and a random
//!   suffix, 3 s timeouts, 30 s leases, auto-extension on), then
//!   `client.lock(key).lock()` and `guard.release()`;
//! - `coord-built`: the same calls on a client built over
//!   `RedisBackend::connect(config)` with the testkit's configuration
//!   (namespace `load`, instance `load`, 2 s timeout; auto-extension off
//!   with `NO_EXTEND=1`), as this tool measured before `coord::connect`;
//! - `SPI`: `coord-built`'s backend alone (`acquire` + `release`, no client
//!   layer).

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use coord_api::{
    Client, HolderId, InstanceId, Key, LeaseOptions,
    spi::{Acquire, DynBackend, LeaseId, LeaseKind, Release},
};
use coord_redis::{RedisBackend, RedisConfig};
use redis::{
    IntoConnectionInfo, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
    io::tcp::TcpSettings,
};
use rslock::LockManager;

/// The leases' TTL (coord's default too): no renewal falls inside a round.
pub const TTL: Duration = Duration::from_secs(30);

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;
/// One lock + release on the key it is given.
pub type Op = Arc<dyn Fn(String) -> BoxFut + Send + Sync>;

/// One lock the tool measures.
#[derive(Clone)]
pub struct Contender {
    pub name: &'static str,
    /// Its keys' prefix (each contender locks keys of its own).
    pub prefix: &'static str,
    pub op: Op,
    /// The commands it sends itself (INFO commandstats also counts those
    /// its scripts call, which this tells apart).
    pub top_level: &'static [&'static str],
}

/// What the baseline and rslock send: SET, then EVALSHA (SCRIPT LOAD on a
/// NOSCRIPT).
pub const SET_THEN_SCRIPT: &[&str] = &["set", "evalsha", "eval", "script|load"];
/// What coord and the floor send: EVALSHAs (SCRIPT LOAD on a NOSCRIPT).
pub const SCRIPTS_ONLY: &[&str] = &["evalsha", "eval", "script|load"];

/// An [`Op`] running `f` on a clone of `state` and the key.
fn op<S, F, Fut>(state: &S, f: F) -> Op
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let state = state.clone();
    Arc::new(move |key: String| -> BoxFut { Box::pin(f(state.clone(), key)) })
}

/// The hand-written lock and the floor.
#[derive(Clone)]
pub struct Baseline {
    conn: ConnectionManager,
    release: Arc<Script>,
    /// The floor's acquire: a fencing token from the server's clock.
    fenced_acquire: Arc<Script>,
}

impl Baseline {
    /// A connection set up like `RedisBackend`'s (same manager settings,
    /// TCP_NODELAY, RESP2), with `config`'s timeouts.
    pub async fn connect(url: &str, config: &RedisConfig) -> Baseline {
        let info = url
            .into_connection_info()
            .expect("url")
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).expect("client");
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_response_timeout(Some(config.timeout()))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500));
        Baseline {
            conn: ConnectionManager::new_with_config(client, manager)
                .await
                .expect("connect the baseline"),
            release: Arc::new(Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            )),
            fenced_acquire: Arc::new(Script::new(
                "local t = redis.call('TIME') \
                 if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
                 return t[1] * 1000000 + t[2] end return -1",
            )),
        }
    }

    /// The floor: a fenced acquire script, then the baseline's release.
    async fn fenced_lock_release(&self, key: &str, holder: &str) {
        let mut conn = self.conn.clone();
        let token: i64 = self
            .fenced_acquire
            .key(key)
            .arg(holder)
            .arg(TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .expect("fenced acquire script");
        assert!(token > 0, "floor key {key} was taken");
        self.release(&mut conn, key, holder).await;
    }

    /// The compare-and-delete release both locks here use.
    async fn release(&self, conn: &mut ConnectionManager, key: &str, holder: &str) {
        let n: i64 = self
            .release
            .key(key)
            .arg(holder)
            .invoke_async(conn)
            .await
            .expect("release script");
        assert_eq!(n, 1);
    }

    async fn lock_release(&self, key: &str, holder: &str) {
        let mut conn = self.conn.clone();
        let ok: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .expect("SET NX PX");
        assert!(ok.is_some(), "baseline key {key} was taken");
        self.release(&mut conn, key, holder).await;
    }
}

/// The backend alone (the SPI, no client layer): one acquire, one release.
async fn spi_lock_release(backend: &DynBackend, key: &str) {
    let lease = LeaseId {
        kind: LeaseKind::Exclusive,
        key: Key::new(key).expect("key"),
        holder: HolderId::new(InstanceId::new("spi").expect("instance")),
    };
    let locks = backend.locks().expect("the lock family");
    let granted = locks.acquire(&lease, TTL).await.expect("spi acquire");
    assert!(matches!(granted, Acquire::Granted(_)));
    let released = locks.release(&lease).await.expect("spi release");
    assert_eq!(released, Release::Released { remaining: 0 });
}

async fn coord_lock_release(client: &Client, key: &str) {
    let guard = client.lock(key).lock().await.expect("coord lock");
    assert!(guard.release().await.expect("coord release"));
}

async fn rslock_lock_release(manager: &LockManager, key: &str) {
    let lock = manager.lock(key, TTL).await.expect("rslock lock");
    manager.unlock(&lock).await;
}

/// Which contenders to build.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Every one.
    All,
    /// What users would pick: baseline, floor, rslock, coord.
    Users,
}

/// The contenders on the server at `url` (`config`: the testkit's
/// configuration for `coord-built`; `auto_extend` for it).
pub async fn contenders(
    url: &str,
    config: RedisConfig,
    set: Set,
    auto_extend: bool,
) -> Vec<Contender> {
    // The baseline's timeouts are coord::connect's (the defaults).
    let defaults = RedisConfig::from_url(url).expect("url");
    let baseline = Baseline::connect(url, &defaults).await;
    let manager = LockManager::new(vec![url.to_owned()]);
    let client = coord::connect(url).await.expect("coord::connect");
    let mut all = vec![
        Contender {
            name: "baseline",
            prefix: "bl",
            top_level: SET_THEN_SCRIPT,
            op: op(&baseline, |b, key| async move {
                b.lock_release(&key, "holder").await
            }),
        },
        Contender {
            name: "floor",
            prefix: "fl",
            top_level: SCRIPTS_ONLY,
            op: op(&baseline, |b, key| async move {
                b.fenced_lock_release(&key, "holder").await
            }),
        },
        Contender {
            name: "rslock",
            prefix: "rs",
            top_level: SET_THEN_SCRIPT,
            op: op(&manager, |m, key| async move {
                rslock_lock_release(&m, &key).await
            }),
        },
        Contender {
            name: "coord",
            prefix: "co",
            top_level: SCRIPTS_ONLY,
            op: op(&client, |c, key| async move {
                coord_lock_release(&c, &key).await
            }),
        },
    ];
    if set == Set::All {
        let backend: DynBackend = Arc::new(RedisBackend::connect(config).await.expect("backend"));
        let built = Client::builder(backend.clone())
            .instance_id("load")
            .expect("instance id")
            .lease_options(LeaseOptions::default().ttl(TTL).auto_extend(auto_extend))
            .build();
        all.push(Contender {
            name: "coord-built",
            prefix: "cb",
            top_level: SCRIPTS_ONLY,
            op: op(&built, |c, key| async move {
                coord_lock_release(&c, &key).await
            }),
        });
        all.push(Contender {
            name: "SPI",
            prefix: "spi",
            top_level: SCRIPTS_ONLY,
            op: op(&backend, |b, key| async move {
                spi_lock_release(&b, &key).await
            }),
        });
    }
    all
}

/// `coord::connect(url)` alone, named `name` (the cluster scenario).
pub async fn coord_only(url: &str, name: &'static str, prefix: &'static str) -> Contender {
    let client = coord::connect(url).await.expect("coord::connect");
    Contender {
        name,
        prefix,
        top_level: SCRIPTS_ONLY,
        op: op(&client, |c, key| async move {
            coord_lock_release(&c, &key).await
        }),
    }
}
