//! Redis Cluster (`redis+cluster://`, decision 0037): the connection kinds
//! a backend may hold, and the scripts' sharded twins.
//!
//! - [`Conn`] is the connection every request goes through: one
//!   self-reconnecting multiplexed connection to one server, or the redis
//!   crate's cluster connection (requests routed by the slot of their first
//!   key, `MOVED` and `ASK` followed, `SCRIPT LOAD` sent to every master,
//!   the slots learnt again when they move).
//! - Every primitive's keys and its channel share one hash tag
//!   ([`keys`](crate::keys)), so each script runs on one node. On a cluster
//!   whose servers have sharded pub/sub (7.0), each script runs as its
//!   sharded twin ([`script`] builds both): the same text with every
//!   `redis.call('PUBLISH', …)` spelled `SPUBLISH`, so a wake-up goes to
//!   the shard of the channel (the script's own) instead of every node of
//!   the cluster; the hub subscribes with `SSUBSCRIBE` there. Without
//!   sharded pub/sub (a cluster older than 7.0) the scripts `PUBLISH`,
//!   which the cluster carries to every node, and the hub `SUBSCRIBE`s on
//!   any one.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use coord_api::Result;
use redis::{
    Arg, Cmd, ConnectionAddr, ErrorKind, Pipeline, ProtocolVersion, PushInfo, RedisError,
    RedisFuture, RedisResult, Script, ServerErrorKind, ToRedisArgs, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr},
    io::tcp::TcpSettings,
};

use crate::{RedisBackend, RedisConfig, error, pubsub::Channels};

/// A connection requests go through: to one server, or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server (standalone, or the master behind sentinels).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// `SUBSCRIBE` to `channels`; on a cluster with `sharded`, `SSUBSCRIBE`
    /// (the channels must then share a slot: pass one at a time).
    pub(crate) async fn subscribe(
        &mut self,
        channels: impl ToRedisArgs,
        sharded: bool,
    ) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.subscribe(channels).await,
            Conn::Cluster(c) if sharded => c.ssubscribe(channels).await,
            Conn::Cluster(c) => c.subscribe(channels).await,
        }
    }

    /// The `UNSUBSCRIBE` (or `SUNSUBSCRIBE`) matching [`subscribe`](Self::subscribe).
    pub(crate) async fn unsubscribe(
        &mut self,
        channels: impl ToRedisArgs,
        sharded: bool,
    ) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.unsubscribe(channels).await,
            Conn::Cluster(c) if sharded => c.sunsubscribe(channels).await,
            Conn::Cluster(c) => c.unsubscribe(channels).await,
        }
    }
}

/// A cluster connection through the seed `nodes`, speaking `protocol`,
/// connected within the connect timeout; with `channels`, handing them
/// what it receives as the pub/sub connection of that number
/// (subscriptions made again after a reconnection or a move of their
/// slot).
pub(crate) async fn connect(
    config: &RedisConfig,
    nodes: &[(String, u16)],
    protocol: ProtocolVersion,
    channels: Option<(&std::sync::Arc<Channels>, u64)>,
) -> Result<ClusterConnection> {
    let infos = (nodes.iter())
        .map(|(host, port)| {
            let addr = ConnectionAddr::Tcp(host.clone(), *port);
            crate::backend::connection_info(config, &addr, protocol)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut builder = ClusterClientBuilder::new(infos)
        .use_protocol(protocol)
        .connection_timeout(config.connect_timeout())
        .tcp_settings(TcpSettings::default().set_nodelay(true));
    if channels.is_none() {
        // The crate would send a request again after a lost connection,
        // when it may have run: a script run twice could answer a
        // compare-and-set's own write as a conflict.
        // `RedisBackend::until_run` repeats only what the cluster refused
        // without running it. (The pub/sub connection keeps the crate's
        // retries: a (un)subscription sent twice changes nothing, and
        // they follow MOVED there.)
        builder = builder.retries(0);
    }
    if let Some(user) = config.username() {
        builder = builder.username(user);
    }
    if let Some(password) = config.password() {
        builder = builder.password(password);
    }
    if let Some((channels, number)) = channels {
        let sink = channels.clone();
        builder = builder.push_sender(move |push: PushInfo| {
            sink.dispatch(push, number);
            Ok::<(), std::convert::Infallible>(())
        });
    }
    let client = builder
        .build()
        .map_err(|e| error::from_redis(config, "configure the cluster connection", e))?;
    match tokio::time::timeout(config.connect_timeout(), client.get_async_connection()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(error::from_redis(config, "connect to the cluster", e)),
        Err(_) => Err(error::timed_out(
            config,
            "connect to the cluster",
            config.connect_timeout(),
        )),
    }
}

/// The longest pause between two tries of [`until_run`]: short next to
/// an operation timeout (500 ms and more), so a try lands soon after a
/// slot's migration ends (`TRYAGAIN` lasts until its keys have moved; at
/// 200 ms a 300 ms migration window outlasted a 500 ms timeout).
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// What to do after a request failed with `e` on a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It may have run: give the error back.
    MayHaveRun,
    /// Refused without running (`MOVED`, `ASK`: the crate learns the
    /// slots again; `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`: a slot being
    /// migrated, the cluster down; a refused connection; no connection to
    /// the node a request is addressed to, e.g. a master just promoted
    /// that the crate's slots do not name yet — the crate learns the slots
    /// again after that answer): send it again.
    Again,
    /// A replica refused a write (`READONLY`: a script stops at its first
    /// write there, so it changed nothing): the node was the slot's master
    /// and a failover made it a replica. The crate keeps its connections in
    /// READONLY mode and learns nothing from this answer, so the
    /// connection is replaced ([`RedisBackend::rediscover`]), then the
    /// request sent again. Also `NOSCRIPT` (nothing ran) when it outlives
    /// the reload of the script on the slot's master: the crate's slots
    /// named another node than the one that answered (a failover under
    /// way).
    Rediscover,
}

/// How a cluster refused a request that failed with `e`.
pub(crate) fn not_run(e: &RedisError) -> Refused {
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::NoScript) => {
            Refused::Rediscover
        }
        ErrorKind::Server(
            ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown,
        ) => Refused::Again,
        ErrorKind::ClusterConnectionNotFound => Refused::Again,
        _ if e.is_connection_refusal() => Refused::Again,
        _ => Refused::MayHaveRun,
    }
}

impl RedisBackend {
    /// `run`'s result on the connection in use, repeating it (after a
    /// pause growing from 10 ms to [`MAX_PAUSE`]) while the cluster
    /// refuses it without running it ([`not_run`]). Unbounded here: the
    /// caller bounds it with the operation timeout.
    pub(crate) async fn until_run<T, F: Future<Output = RedisResult<T>>>(
        &self,
        run: &impl Fn(Conn) -> F,
    ) -> RedisResult<T> {
        let mut pause = Duration::from_millis(10);
        loop {
            let (conn, generation) = self.current();
            let e = match run(conn).await {
                Err(e) => e,
                res => return res,
            };
            match not_run(&e) {
                Refused::MayHaveRun => return Err(e),
                Refused::Again => {}
                Refused::Rediscover => self.rediscover(generation).await,
            }
            tracing::debug!(error = %e, ?pause, "the cluster did not run it; again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

/// How a script publishes, and how its sharded twin does.
const PUBLISH: &str = "redis.call('PUBLISH',";
const SPUBLISH: &str = "redis.call('SPUBLISH',";

/// A script's hash → its sharded twin (for scripts that publish).
static TWINS: LazyLock<Mutex<HashMap<String, &'static Script>>> = LazyLock::new(Default::default);

/// A script's hash → its code (every script of [`script`] and its twin),
/// for [`load_script`]: the redis crate keeps its own copy private.
static CODES: LazyLock<Mutex<HashMap<String, &'static str>>> = LazyLock::new(Default::default);

/// The script of `code`, its sharded twin registered (see the module's
/// docs). Called once per script (by [`script!`](crate::eval::script)),
/// so the twins leaked are a fixed few.
pub(crate) fn script(code: &'static str) -> Script {
    let script = Script::new(code);
    let mut codes = CODES.lock().unwrap();
    codes.insert(script.get_hash().to_owned(), code);
    if code.contains(PUBLISH) {
        let twin_code: &'static str = Box::leak(code.replace(PUBLISH, SPUBLISH).into_boxed_str());
        let twin: &'static Script = Box::leak(Box::new(Script::new(twin_code)));
        codes.insert(twin.get_hash().to_owned(), twin_code);
        TWINS
            .lock()
            .unwrap()
            .insert(script.get_hash().to_owned(), twin);
    }
    script
}

/// The code of `script`, one of [`script`]'s.
fn script_code(script: &Script) -> RedisResult<&'static str> {
    let code = CODES.lock().unwrap().get(script.get_hash()).copied();
    code.ok_or_else(|| {
        let what = "coord: a script not made by cluster::script";
        RedisError::from((ErrorKind::Client, what))
    })
}

/// The sharded twin of `script` (itself when it publishes nothing).
pub(crate) fn twin(script: &'static Script) -> &'static Script {
    twin_of(script.get_hash()).unwrap_or(script)
}

fn twin_of(hash: &str) -> Option<&'static Script> {
    TWINS.lock().unwrap().get(hash).copied()
}

/// `cmd` running the sharded twin of its script, if it is an `EVALSHA` of
/// a script that has one; `None` otherwise (send `cmd` as it is).
pub(crate) fn sharded_cmd(cmd: &Cmd) -> Option<Cmd> {
    let mut args = cmd.args_iter();
    if !matches!(args.next(), Some(Arg::Simple(b"EVALSHA"))) {
        return None;
    }
    let Some(Arg::Simple(hash)) = args.next() else {
        return None;
    };
    let twin = twin_of(std::str::from_utf8(hash).ok()?)?;
    let mut out = Cmd::with_capacity(args.len() + 2, 64 + args.len() * 32);
    out.arg("EVALSHA").arg(twin.get_hash());
    for a in args {
        match a {
            Arg::Simple(b) => out.arg(b),
            // Coord's scripts take no cursor arguments.
            _ => return None,
        };
    }
    Some(out)
}

/// The first key of `cmd` when it is an `EVALSHA` naming one or more.
pub(crate) fn first_key(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter();
    if !matches!(args.next(), Some(Arg::Simple(b"EVALSHA"))) {
        return None;
    }
    match (args.next(), args.next(), args.next()) {
        (Some(_), Some(Arg::Simple(n)), Some(Arg::Simple(key))) if n != b"0" => Some(key),
        _ => None,
    }
}

/// Loads `script` for the requests on `key`'s slot: on a cluster, on that
/// slot's master alone; on one server (or with no key), as `SCRIPT LOAD`
/// goes.
pub(crate) async fn load_script(
    conn: &mut Conn,
    script: &Script,
    key: Option<&[u8]>,
) -> RedisResult<()> {
    // On a cluster, SCRIPT LOAD alone goes to every master and fails while
    // any of them is down; a master that lacks the script (one restarted,
    // or a replica just promoted: replicas are not sent scripts) is the
    // only one that needs it.
    match (conn, key) {
        (Conn::Cluster(c), Some(key)) => {
            let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(script_code(script)?);
            let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
            c.route_command(load, node).await.map(drop)
        }
        (conn, _) => script.load_async(conn).await.map(drop),
    }
}

/// `pipe` with every `EVALSHA` of a script that has a sharded twin running
/// the twin instead; `None` when there is none. (Coord's pipelines ignore
/// no reply, so nothing else needs carrying over.)
pub(crate) fn sharded_pipe(pipe: &Pipeline) -> Option<Pipeline> {
    let twins: Vec<Option<Cmd>> = pipe.cmd_iter().map(sharded_cmd).collect();
    if twins.iter().all(Option::is_none) {
        return None;
    }
    let mut out = redis::pipe();
    for (cmd, twin) in pipe.cmd_iter().zip(twins) {
        out.add_command(twin.unwrap_or_else(|| cmd.clone()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script that publishes has a twin that publishes only sharded,
    /// and an EVALSHA of it is rewritten to the twin's hash with the same
    /// keys and arguments.
    #[test]
    fn twins_publish_sharded_and_commands_carry_over() {
        let script: &'static Script = &crate::locks::LOCK;
        let twin = twin(script);
        assert_ne!(twin.get_hash(), script.get_hash());
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash())
            .arg(1)
            .arg("k")
            .arg(b"v".as_slice());
        let out = sharded_cmd(&cmd).expect("a twin");
        let args: Vec<Vec<u8>> = (out.args_iter())
            .map(|a| match a {
                Arg::Simple(b) => b.to_vec(),
                _ => panic!("not a plain argument"),
            })
            .collect();
        assert_eq!(
            args,
            [
                b"EVALSHA".to_vec(),
                twin.get_hash().as_bytes().to_vec(),
                b"1".to_vec(),
                b"k".to_vec(),
                b"v".to_vec()
            ]
        );
        assert!(sharded_cmd(&redis::cmd("TIME")).is_none());
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").add_command(cmd);
        let piped = sharded_pipe(&pipe).expect("an EVALSHA to rewrite");
        assert_eq!(piped.cmd_iter().count(), 2);
    }

    /// The answers a cluster gives without running a request are sent
    /// again (READONLY after learning the slots afresh); anything else may
    /// have run and is given back.
    #[test]
    fn refusals_without_running_are_told_apart() {
        let refused = |reply: &str| {
            let v = redis::parse_redis_value(format!("-{reply}\r\n").as_bytes()).unwrap();
            not_run(&v.extract_error().unwrap_err())
        };
        for again in [
            "MOVED 3999 127.0.0.1:7001",
            "ASK 3999 127.0.0.1:7001",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "MASTERDOWN Link with MASTER is down",
        ] {
            assert_eq!(refused(again), Refused::Again, "{again}");
        }
        // No connection to the node addressed (a master just promoted):
        // the crate never sent it.
        let unknown = (
            ErrorKind::ClusterConnectionNotFound,
            "Requested connection not found",
            "127.0.0.1:7003".to_owned(),
        );
        assert_eq!(not_run(&unknown.into()), Refused::Again);
        for rediscover in [
            "READONLY You can't write against a read only replica.",
            "NOSCRIPT No matching script. Please use EVAL.",
        ] {
            assert_eq!(refused(rediscover), Refused::Rediscover, "{rediscover}");
        }
        for ran in [
            "ERR user_script:1: boom",
            "BUSY Redis is busy running a script",
        ] {
            assert_eq!(refused(ran), Refused::MayHaveRun, "{ran}");
        }
    }

    /// A script is loaded where its request's first key lives; a request
    /// with no key, or not a script, names none.
    #[test]
    fn the_first_key_of_a_script_request() {
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("abc")
            .arg(2)
            .arg("coord:{a}:l")
            .arg("coord:{a}:c")
            .arg("acquire");
        assert_eq!(first_key(&eval), Some(&b"coord:{a}:l"[..]));
        let mut keyless = redis::cmd("EVALSHA");
        keyless.arg("abc").arg(0).arg("op");
        assert_eq!(first_key(&keyless), None);
        assert_eq!(first_key(redis::cmd("GET").arg("coord:{a}:l")), None);
    }

    /// No script publishes in a way the twin would miss: every Lua file
    /// under `src/` (read from the disk, so a new one is checked too).
    #[test]
    fn every_publish_is_spelled_one_way() {
        fn lua_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    lua_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "lua") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        lua_files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        assert!(files.len() >= 19, "{files:?}");
        for file in files {
            let src = std::fs::read_to_string(&file).unwrap();
            let calls = src.matches("'PUBLISH'").count();
            assert_eq!(src.matches(PUBLISH).count(), calls, "{}", file.display());
            assert!(!src.contains("\"PUBLISH\""), "{}", file.display());
        }
    }
}
