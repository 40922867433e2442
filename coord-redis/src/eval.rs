//! The one way coord-redis talks to its scripts, and what every family shares
//! around it.
//!
//! - [`script!`](crate::eval::script) assembles a family's script: the shared
//!   Lua prelude (`lua/prelude.lua`: the operation, the server's clock read
//!   lazily, the fencing-token rule `next_token`) followed by the pieces the
//!   family names.
//! - [`Eval`] builds one `EVALSHA` in one buffer sized up front: key names,
//!   the channel and the holder are written straight into it.
//! - [`RedisBackend::eval`] runs it: inside a `coord.redis` span, within the
//!   operation timeout (past it: `Error::Unavailable` naming the endpoint),
//!   loading the script again and repeating once after a NOSCRIPT reply (a
//!   `SCRIPT FLUSH`, a restarted server), redis errors mapped by
//!   [`error`](crate::error) with the password redacted.
//! - Confirmed writes ([`Confirm`](crate::Confirm)): every request but
//!   the reads ([`reads`](crate::reads), by family and operation) is
//!   followed, in the same pipeline on the same connection, by `WAIT` or
//!   `WAITAOF`; a shortfall is `Error::Unconfirmed`, never a plain success.
//!   Classifying by operation keeps it out of every family's code; an
//!   operation not listed is a write (confirmed: the safe side).
//! - [`ttl_ms`] is the one TTL conversion; [`millis`], [`token`], [`wall`]
//!   and [`RedisBackend::stored_holder`] decode what replies carry.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord_api::{Error, FencingToken, HolderId, Key, Result};
use redis::{
    ErrorKind, FromRedisValue, RedisWrite, Script, ServerErrorKind, ToRedisArgs, Value,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};
use tracing::{Instrument, Span, field::Empty};

use crate::{
    Confirm, RedisBackend,
    cluster::{self, Conn},
    error,
    lender::Lender,
    reads, sentinel,
};

/// A family's script as a `LazyLock<redis::Script>`: the prelude, then the
/// files named (paths under `src/`), concatenated.
macro_rules! script {
    ($($file:literal),+ $(,)?) => {
        ::std::sync::LazyLock::new(|| {
            $crate::cluster::script(concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua/prelude.lua")),
                $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/", $file))),+
            ))
        })
    };
}
pub(crate) use script;

/// One `EVALSHA` of a script: `EVALSHA <sha> <numkeys>`, then the keys and
/// arguments in the order the script reads them.
#[derive(Clone)]
pub(crate) struct Eval {
    script: &'static Script,
    cmd: redis::Cmd,
}

impl Eval {
    /// An `EVALSHA` of `script` that will pass `keys` keys, with room for
    /// `args` more arguments of `bytes` bytes in all.
    pub(crate) fn new(script: &'static Script, keys: usize, args: usize, bytes: usize) -> Eval {
        let mut cmd = redis::Cmd::with_capacity(3 + keys + args, 64 + bytes);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        Eval { script, cmd }
    }

    /// Appends an argument.
    pub(crate) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Eval {
        self.cmd.arg(arg);
        self
    }

    /// The command as built (to pipeline it).
    pub(crate) fn cmd(&self) -> &redis::Cmd {
        &self.cmd
    }

    /// The script it runs.
    pub(crate) fn script(&self) -> &'static Script {
        self.script
    }

    /// Appends an argument of raw bytes.
    pub(crate) fn arg_bytes(&mut self, arg: &[u8]) -> &mut Eval {
        self.cmd.write_arg(arg);
        self
    }

    /// Appends `holder`'s text form (`instance#nonce-in-hex`, as
    /// [`HolderId`]'s `Display` spells it and the scripts store and compare
    /// it), without the formatting machinery.
    pub(crate) fn holder(&mut self, holder: &HolderId) -> &mut Eval {
        use std::io::Write;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 33];
        hex[0] = b'#';
        let mut n = holder.nonce();
        for b in hex[1..].iter_mut().rev() {
            *b = HEX[(n & 0xf) as usize];
            n >>= 4;
        }
        let mut w = self.cmd.writer_for_next_arg();
        // Writing into the command's Vec cannot fail.
        let _ = w.write_all(holder.instance().as_str().as_bytes());
        let _ = w.write_all(&hex);
        drop(w);
        self
    }
}

/// The bytes [`Eval::holder`] writes for `holder`, for sizing a command.
pub(crate) fn holder_len(holder: Option<&HolderId>) -> usize {
    holder.map_or(0, |h| h.instance().as_str().len() + 33)
}

/// A request [`RedisBackend::query`] runs.
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    /// One command.
    Cmd(&'a redis::Cmd),
    /// A pipeline (not a transaction).
    Pipe(&'a redis::Pipeline),
    /// One keyless read sent to the node at this host and port of a
    /// cluster (`SCAN` of one master); on one server, to it. Never
    /// confirmed.
    At(&'a redis::Cmd, &'a str, u16),
}

/// What the trace of a call names: the operation, the family, the key and
/// the holder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Traced<'a> {
    /// The operation (`acquire`, `campaign`, `subscribe`, `expiry`…).
    pub(crate) op: &'static str,
    /// The family or key space (`lock`, `rwlock`, `semaphore`, `election`,
    /// `group`, `job`, `barrier`, `double_barrier`, `latch`).
    pub(crate) family: &'static str,
    /// The key (the job, for a run-once occurrence).
    pub(crate) key: &'a Key,
    /// The holder acting, if any.
    pub(crate) holder: Option<&'a HolderId>,
}

impl<'a> Traced<'a> {
    /// `op` on `key` of `family`, by nobody in particular.
    pub(crate) fn new(op: &'static str, family: &'static str, key: &'a Key) -> Traced<'a> {
        Traced {
            op,
            family,
            key,
            holder: None,
        }
    }

    /// The same, by `holder`.
    pub(crate) fn by(self, holder: &'a HolderId) -> Traced<'a> {
        Traced {
            holder: Some(holder),
            ..self
        }
    }

    /// `op family "key"`, for error messages.
    fn describe(&self) -> String {
        format!("{} {} {:?}", self.op, self.family, self.key.as_str())
    }
}

/// What a reply means, for the trace: an outcome (`granted`, `busy`, `ok`…)
/// and, for a grant, its token.
pub(crate) type Outcome<T> = fn(&T) -> (&'static str, Option<u64>);

/// The outcome of a call whose reply says nothing worth tracing.
pub(crate) fn ok<T>(_: &T) -> (&'static str, Option<u64>) {
    ("ok", None)
}

/// The outcome of a call answering 1 (done) or 0 (not held, not leader…).
pub(crate) fn done(v: &i64) -> (&'static str, Option<u64>) {
    (if *v == 1 { "ok" } else { "not_held" }, None)
}

impl RedisBackend {
    /// The `coord.redis` span of a call.
    pub(crate) fn span(&self, call: &Traced<'_>) -> Span {
        tracing::debug_span!(
            "coord.redis",
            op = call.op,
            backend = %self.name(),
            family = call.family,
            key = %call.key,
            holder = call.holder.map(tracing::field::display),
            token = Empty,
            outcome = Empty,
        )
    }

    /// Runs `eval` for `call` within the operation timeout, inside its
    /// `coord.redis` span (recording what `outcome` says of the reply);
    /// after a NOSCRIPT reply, loads the script and runs it once more.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        call: Traced<'_>,
        eval: &Eval,
        outcome: Outcome<T>,
    ) -> Result<T> {
        let span = self.span(&call);
        let req = Request::Cmd(&eval.cmd);
        let res = self
            .request(&call, &span, req, std::slice::from_ref(&eval.script))
            .await;
        if !span.is_disabled() {
            match &res {
                Ok(v) => {
                    let (what, token) = outcome(v);
                    span.record("outcome", what);
                    if let Some(t) = token {
                        span.record("token", t);
                    }
                }
                Err(e) => {
                    span.record("outcome", tracing::field::display(e));
                }
            }
        }
        res
    }

    /// Runs `req` (a plain command, or a pipeline of commands and EVALSHAs
    /// of `scripts`) for `call`, as [`eval`](RedisBackend::eval) runs a
    /// script: in its span, within the operation timeout, errors mapped;
    /// after a NOSCRIPT reply, loads `scripts` and runs it once more.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        call: Traced<'_>,
        req: Request<'_>,
        scripts: &[&'static Script],
    ) -> Result<T> {
        let span = self.span(&call);
        let res = self.request(&call, &span, req, scripts).await;
        if !span.is_disabled() {
            span.record(
                "outcome",
                match &res {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.to_string(),
                },
            );
        }
        res
    }

    /// What [`eval`](RedisBackend::eval) and [`query`](RedisBackend::query)
    /// share: `req` (with the confirmation `call` waits for, if any) on the
    /// connection in use, bounded; after a NOSCRIPT reply, loads `scripts`
    /// and sends it once more; a shortfall of confirmations is
    /// `Unconfirmed`.
    async fn request<T: FromRedisValue>(
        &self,
        call: &Traced<'_>,
        span: &Span,
        req: Request<'_>,
        scripts: &[&'static Script],
    ) -> Result<T> {
        let confirm = self.confirming(call);
        let wait = confirm.map(|c| c.command());
        let wait = wait.as_ref();
        // On a sharded cluster every script runs as its sharded twin.
        let (mut cmd, mut pipe) = (None, None);
        let req = match req {
            Request::Cmd(c) if self.sharded() => match cluster::sharded_cmd(c) {
                Some(c) => Request::Cmd(&*cmd.insert(c)),
                None => req,
            },
            Request::Pipe(p) if self.sharded() => match cluster::sharded_pipe(p) {
                Some(p) => Request::Pipe(&*pipe.insert(p)),
                None => req,
            },
            _ => req,
        };
        let run = |mut conn: Conn| async move {
            match send::<T>(&mut conn, req, wait).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    let key = match req {
                        Request::Cmd(c) => cluster::first_key(c),
                        Request::Pipe(p) => p.cmd_iter().find_map(cluster::first_key),
                        Request::At(..) => None,
                    };
                    for s in scripts {
                        cluster::load_script(&mut conn, self.script_for(s), key).await?;
                    }
                    send(&mut conn, req, wait).await
                }
                res => res,
            }
        };
        let generation = (confirm.is_some() && self.sentinels().is_some()).then(|| self.server().0);
        let (v, acks) = self.bounded(call, span, confirm.is_some(), run).await?;
        let confirmed = self.confirmed(call, confirm, acks);
        if let (Err(_), Some(generation)) = (&confirmed, generation) {
            // Behind sentinels, a master that lost its replicas may be one
            // demoted by a failover this backend did not hear of (its
            // announcement missed): it takes writes, to be lost, until a
            // sentinel demotes it. Ask them (at most one resolution per
            // `sentinel::MIN_INTERVAL`).
            self.follow_master_later(generation);
        }
        confirmed?;
        Ok(v)
    }

    /// The confirmation `call` waits for: the configured one, unless `call`
    /// is never confirmed ([`reads::unconfirmed`]: a read, an ephemeral
    /// publish).
    fn confirming(&self, call: &Traced<'_>) -> Option<Confirm> {
        self.config()
            .confirm()
            .filter(|_| !reads::unconfirmed(call.family, call.op))
    }

    /// `Ok` when `acks` (the reply to `confirm`'s command) reaches what
    /// `confirm` wants; else `Error::Unconfirmed` naming both numbers.
    fn confirmed(
        &self,
        call: &Traced<'_>,
        confirm: Option<Confirm>,
        acks: Option<Value>,
    ) -> Result<()> {
        let (Some(confirm), Some(acks)) = (confirm, acks) else {
            return Ok(());
        };
        let Some((by, acked, wanted)) = shortfall(confirm, &acks) else {
            return Ok(());
        };
        let err = Error::Unconfirmed {
            what: call.describe(),
            backend: self.name().to_string(),
            by,
            acked,
            wanted,
        };
        tracing::warn!(error = %err, "write not confirmed");
        Err(err)
    }

    /// `script` as this backend runs it: its sharded twin on a sharded
    /// cluster (see [`cluster`]).
    pub(crate) fn script_for(&self, script: &'static Script) -> &'static Script {
        if self.sharded() {
            cluster::twin(script)
        } else {
            script
        }
    }

    /// Loads `scripts` (SCRIPT LOAD each, as [`script_for`](Self::script_for)
    /// runs them) for `call`, within the operation timeout, in its span.
    pub(crate) async fn load_scripts(
        &self,
        call: Traced<'_>,
        scripts: &[&'static Script],
    ) -> Result<()> {
        let run = |mut conn: Conn| async move {
            for s in scripts {
                self.script_for(s).load_async(&mut conn).await?;
            }
            Ok(())
        };
        self.bounded(&call, &self.span(&call), false, run).await
    }

    /// `run` on the connection in use for `call`, inside `span`, within
    /// the operation timeout (past it: `Unavailable` naming the endpoint),
    /// redis errors mapped. On a cluster, `run` is repeated while the
    /// cluster answers that it did not run it (see [`cluster::not_run`]).
    /// Behind sentinels, an error saying the server may be gone or
    /// read-only (or no answer in time) asks them where the master is (see
    /// [`sentinel`](crate::sentinel)); `run` is repeated on the new master
    /// only when the server refused it without running it. `own`: a
    /// confirmed write, run on a connection of its own (see
    /// [`lender`](crate::lender)) where the server has a lender.
    async fn bounded<T, F: Future<Output = redis::RedisResult<T>>>(
        &self,
        call: &Traced<'_>,
        span: &Span,
        own: bool,
        run: impl Fn(Conn) -> F,
    ) -> Result<T> {
        let cfg = self.config();
        let (conn, generation, lender) = self.current_for(own);
        let attempt = async {
            if self.is_cluster() {
                return self.until_run(&run).await;
            }
            match run_on(&run, conn, lender).await {
                Err(e) if self.sentinels().is_some() && error::is_unavailable(&e) => {
                    if !sentinel::not_run(&e) {
                        self.follow_master_later(generation);
                        return Err(e);
                    }
                    if !self.follow_master(generation).await {
                        return Err(e);
                    }
                    let (conn, _, lender) = self.current_for(own);
                    run_on(&run, conn, lender).await
                }
                res => res,
            }
        };
        match tokio::time::timeout(cfg.timeout(), attempt)
            .instrument(span.clone())
            .await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error::from_redis(cfg, &call.describe(), e)),
            Err(_) => {
                self.follow_master_later(generation);
                Err(error::timed_out(cfg, &call.describe(), cfg.timeout()))
            }
        }
    }

    /// The holder stored for `key`, parsed; a backend error if unreadable.
    pub(crate) fn stored_holder(&self, key: &Key, stored: &str) -> Result<HolderId> {
        stored.parse().map_err(|e| {
            Error::backend(
                self,
                format!("bad holder stored for {:?}: {e}", key.as_str()),
            )
        })
    }

    /// A reply the script never gives: a backend error naming it.
    pub(crate) fn unexpected(&self, call: Traced<'_>, reply: impl std::fmt::Debug) -> Error {
        Error::backend(
            self,
            format!("unexpected reply {reply:?} to {}", call.describe()),
        )
    }
}

/// `run` on `conn`, or, given a `lender`, on a connection it lends this
/// request alone, given back once answered (dropped, cancelled, it is
/// closed).
async fn run_on<T, F: Future<Output = redis::RedisResult<T>>>(
    run: &impl Fn(Conn) -> F,
    conn: Conn,
    lender: Option<Arc<Lender>>,
) -> redis::RedisResult<T> {
    let Some(lender) = lender else {
        return run(conn).await;
    };
    let lent = lender.lend().await?;
    let res = run(Conn::Single(lent.conn())).await;
    lent.give_back();
    res
}

/// Sends `req`, followed by `wait` (a confirmation) in the same pipeline
/// when there is one; the reply to `req` and the confirmation's.
async fn send<T: FromRedisValue>(
    conn: &mut Conn,
    req: Request<'_>,
    wait: Option<&redis::Cmd>,
) -> redis::RedisResult<(T, Option<Value>)> {
    if let Request::At(c, host, port) = req {
        return match conn {
            Conn::Cluster(conn) => {
                let node = SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port,
                };
                let reply = conn
                    .route_command(c.clone(), RoutingInfo::SingleNode(node))
                    .await?;
                T::from_redis_value(reply).map_err(Into::into)
            }
            Conn::Single(_) => c.query_async::<T>(conn).await,
        }
        .map(|v| (v, None));
    }
    let Some(wait) = wait else {
        return match req {
            Request::Cmd(c) => c.query_async::<T>(conn).await,
            Request::Pipe(p) => p.query_async::<T>(conn).await,
            Request::At(..) => unreachable!("sent above"),
        }
        .map(|v| (v, None));
    };
    let mut pipe = match req {
        Request::Cmd(c) => {
            let mut pipe = redis::pipe();
            pipe.add_command(c.clone());
            pipe
        }
        Request::Pipe(p) => p.clone(),
        Request::At(..) => unreachable!("sent above"),
    };
    // Every reply on its own: the request's errors are its own, and the
    // confirmation is read even when the request failed.
    pipe.add_command(wait.clone()).ignore_errors();
    let mut replies: Vec<Value> = match pipe.query_async(conn).await {
        // The cluster crate answers a pipeline with any element's
        // redirect-class error, and MASTERDOWN may be the confirmation's
        // own, after the request ran. (MOVED, ASK, TRYAGAIN, CLUSTERDOWN
        // and READONLY answer keyed writes only: the request's.)
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::MasterDown) => {
            return Err(may_have_run(e));
        }
        replies => replies?,
    };
    let acks = replies.pop();
    if let Some(Value::ServerError(e)) = replies.iter().find(|v| matches!(v, Value::ServerError(_)))
    {
        return Err(e.clone().into());
    }
    if let Some(Value::ServerError(e)) = &acks {
        return Err(may_have_run(e.clone().into()));
    }
    let reply = match req {
        Request::Pipe(_) => Value::Array(replies),
        _ => replies.pop().unwrap_or(Value::Nil),
    };
    Ok((T::from_redis_value(reply)?, acks))
}

/// `e`, an error of a confirmation sent after its request, as one that
/// says the request may have run (an I/O error: `Unavailable`, never sent
/// again; an answer such as MASTERDOWN would read as a refusal to run it,
/// and the request could run twice).
fn may_have_run(e: redis::RedisError) -> redis::RedisError {
    let what = format!("{e} (answering the confirmation: the request may have run)");
    std::io::Error::other(what).into()
}

/// What `confirm` lacks according to `acks`, the reply to its command:
/// what confirms, how many did, how many were wanted. `None`: enough.
pub(crate) fn shortfall(confirm: Confirm, acks: &Value) -> Option<(&'static str, u32, u32)> {
    let n = |v: Option<&Value>| v.and_then(int).map_or(0, |i| count(i, 0));
    match confirm {
        Confirm::Replicas { count: wanted, .. } => {
            let acked = n(Some(acks));
            (acked < wanted).then_some(("replicas", acked, wanted))
        }
        Confirm::Fsync {
            local, replicas, ..
        } => {
            let a = array(acks).unwrap_or(&[]);
            let (fsynced, on_replicas) = (n(a.first()), n(a.get(1)));
            if local && fsynced < 1 {
                Some(("local fsyncs", fsynced, 1))
            } else if on_replicas < replicas {
                Some(("replica fsyncs", on_replicas, replicas))
            } else {
                None
            }
        }
    }
}

/// A TTL (or a retention) in whole milliseconds, rounded up so that the
/// server keeps a lease at least as long as the client counts on it. Out of
/// range ([`coord_api::validate_ttl`]) is `InvalidArgument` naming `key`.
pub(crate) fn ttl_ms(key: &Key, ttl: Duration) -> Result<u64> {
    coord_api::validate_ttl(key, ttl)?;
    Ok(u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// A duration the server counted in milliseconds; `None` when negative
/// (Redis' "no expiry" and "no key").
pub(crate) fn millis(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// A fencing token as a script returns it.
pub(crate) fn token(v: i64) -> FencingToken {
    FencingToken(v.max(0) as u64)
}

/// A count as a script returns it, clamped into `u32` and at least `min`.
pub(crate) fn count(v: i64, min: u32) -> u32 {
    v.clamp(min.into(), u32::MAX.into()) as u32
}

/// A server wall-clock instant given in microseconds since the epoch.
pub(crate) fn wall(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

/// A duration in whole milliseconds, rounded up.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

// Reading replies (shared by the families whose scripts reply with
// arrays): `None` is a reply the script never gives.

pub(crate) fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

pub(crate) fn uint<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    T::try_from(int(v)?).ok()
}

pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(crate) fn text(v: &Value) -> Option<&str> {
    std::str::from_utf8(bytes(v)?).ok()
}

/// The arguments of `eval` as text, `EVALSHA` first (for tests of layouts).
#[cfg(test)]
pub(crate) fn written(eval: &Eval) -> Vec<String> {
    eval.cmd
        .args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
            _ => panic!("not a plain argument"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use coord_api::InstanceId;

    use super::*;

    static SCRIPT: std::sync::LazyLock<Script> = script!("jobs/jobs.lua");

    /// A confirmation's MASTERDOWN (a master demoted after it ran the
    /// request) is not read as a refusal to run it: never sent again, on a
    /// cluster or behind sentinels; `Unavailable` to the caller.
    #[test]
    fn a_failed_confirmation_says_its_request_may_have_run() {
        let reply = b"-MASTERDOWN Link with MASTER is down\r\n";
        let masterdown = redis::parse_redis_value(reply).unwrap();
        let masterdown = masterdown.extract_error().unwrap_err();
        assert_eq!(cluster::not_run(&masterdown), cluster::Refused::Again);
        let e = may_have_run(masterdown);
        assert_eq!(cluster::not_run(&e), cluster::Refused::MayHaveRun);
        assert!(!crate::sentinel::not_run(&e));
        assert!(error::is_unavailable(&e));
        assert!(e.to_string().contains("Link with MASTER is down"), "{e}");
    }

    /// The scripts store and compare the holder as `HolderId`'s `Display`
    /// spells it; `Eval::holder` writes it without the formatter.
    #[test]
    fn holder_arg_writes_the_display_form() {
        let instance = InstanceId::new("web-1").unwrap();
        for nonce in [0, 1, 0xabc, u128::MAX, rand::random()] {
            let holder = HolderId::from_parts(instance, nonce);
            let mut eval = Eval::new(&SCRIPT, 0, 1, 0);
            eval.holder(&holder);
            assert_eq!(written(&eval)[3..], [holder.to_string()]);
            assert_eq!(holder_len(Some(&holder)), holder.to_string().len());
        }
    }

    /// `WAIT` answers a count, `WAITAOF` a pair (local, replicas); a
    /// shortfall names what confirms and both numbers.
    #[test]
    fn shortfall_reads_wait_and_waitaof_replies() {
        let t = Duration::from_millis(10);
        let wait = Confirm::Replicas {
            count: 2,
            timeout: t,
        };
        assert_eq!(shortfall(wait, &Value::Int(2)), None);
        assert_eq!(shortfall(wait, &Value::Int(3)), None);
        assert_eq!(shortfall(wait, &Value::Int(1)), Some(("replicas", 1, 2)));
        assert_eq!(shortfall(wait, &Value::Nil), Some(("replicas", 0, 2)));
        let aof = |local, replicas| Confirm::Fsync {
            local,
            replicas,
            timeout: t,
        };
        let reply = |l, r| Value::Array(vec![Value::Int(l), Value::Int(r)]);
        assert_eq!(shortfall(aof(true, 1), &reply(1, 1)), None);
        assert_eq!(
            shortfall(aof(true, 1), &reply(0, 1)),
            Some(("local fsyncs", 0, 1))
        );
        assert_eq!(
            shortfall(aof(true, 2), &reply(1, 1)),
            Some(("replica fsyncs", 1, 2))
        );
        assert_eq!(shortfall(aof(false, 1), &reply(0, 1)), None);
        assert_eq!(
            shortfall(aof(false, 1), &Value::Nil),
            Some(("replica fsyncs", 0, 1))
        );
    }

    /// Every operation taken as a read is one some family traces, and
    /// no operation that grants, renews or releases is among them.
    #[test]
    fn ttl_rounds_up_and_checks_the_range() {
        let k = Key::new("k").unwrap();
        assert_eq!(ttl_ms(&k, Duration::from_micros(1_000_001)).unwrap(), 1001);
        assert_eq!(ttl_ms(&k, Duration::from_millis(1)).unwrap(), 1);
        assert!(ttl_ms(&k, Duration::ZERO).is_err());
        assert!(ttl_ms(&k, coord_api::MAX_TTL + Duration::from_millis(1)).is_err());
    }
}
