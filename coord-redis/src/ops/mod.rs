//! Operations on Redis ([`OpsBackend`], decision 0028): instance presence
//! (`ops.lua`), leases listed by walking the keyspace (`listing`), fenced
//! revocation through each family's `revoke` operation, the audit trail (a
//! Redis Stream) and the health probe.
//!
//! # Key layout
//!
//! All under the hash tag `{<ns>:ops}` (one Redis Cluster slot):
//!
//! ```text
//! coord:{<ns>:ops}:p   presence deadlines zset: instance -> expiry (server ms)
//! coord:{<ns>:ops}:i   presence hash: instance -> 'since_us|pid|host_len|host metadata'
//! coord:{<ns>:ops}:n   instance names zset (score 0: the order `instances` pages by)
//! coord:{<ns>:ops}:a   audit stream (XADD MAXLEN ~ AUDIT_KEPT + 10 %), newest last
//! coord:{<ns>:ops}:h   the health probe's write (PX 1000)
//! ```
//!
//! The presence keys expire with the latest presence; every announcement
//! drops up to 100 expired ones. Nothing is written on a lease's hot path:
//! listing reads the families' own keys (see `listing`).
//!
//! The `instances` cursor is the last instance name of the page (names are
//! paged in lexical order, from the names zset). The audit cursor is the
//! stream id of the page's oldest record.

mod listing;

use std::{
    sync::LazyLock,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use coord_api::{
    Error, FencingToken, InstanceId, Key, Namespace, Result,
    spi::{
        AUDIT_KEPT, AuditRecord, Backend, Cursor, LeaseRecord, MAX_PAGE, OpsBackend, Page,
        Presence, Probe, Resource, ResourceKind, Revoked, ops::check_limit,
    },
};
use redis::{Script, Value};

use crate::{
    RedisBackend,
    eval::{self, Eval, Request, Traced, millis, script, ttl_ms, wall},
    keys::Names,
};

pub(crate) static OPS: LazyLock<Script> = script!("lua/deadlines.lua", "ops/ops.lua");

/// The trace family of operations.
const FAMILY: &str = "ops";

/// The names under `{<ns>:ops}`.
fn ops_names(ns: &Namespace) -> Names {
    Names::new(ns, &["ops"], &[])
}

/// `op` of the presence script: the EVALSHA with its keys and the operation
/// written.
fn presence_eval(ns: &Namespace, op: &'static str, args: usize, bytes: usize) -> Eval {
    let mut names = ops_names(ns);
    let mut eval = Eval::new(&OPS, 3, args + 1, 3 * names.len() + bytes + 16);
    for p in ['p', 'i', 'n'] {
        names.write(&mut eval, p);
    }
    eval.arg(op);
    eval
}

/// A presence as stored: `since_us|pid|host_len|host metadata`, read back
/// with `ms_left` to live.
fn decode_presence(instance: InstanceId, stored: &str, ms_left: i64) -> Option<Presence> {
    let mut it = stored.splitn(4, '|');
    let since: i64 = it.next()?.parse().ok()?;
    let pid: u32 = it.next()?.parse().ok()?;
    let host_len: usize = it.next()?.parse().ok()?;
    let rest = it.next()?;
    let (host, metadata) = (rest.get(..host_len)?, rest.get(host_len..)?);
    Some(
        Presence::new(instance, pid, host, metadata)
            .live(wall(since), millis(ms_left).unwrap_or_default()),
    )
}

/// Every script this backend runs (the probe asks whether they are loaded).
pub(crate) fn all_scripts() -> [&'static Script; 15] {
    [
        &crate::locks::LOCK,
        &crate::locks::RWLOCK,
        &crate::locks::SEMAPHORE,
        &crate::locks::multi::MULTI,
        &crate::election::ELECTION,
        &crate::membership::MEMBERSHIP,
        &crate::jobs::JOBS,
        &crate::barriers::BARRIER,
        &crate::barriers::LATCH_SCRIPT,
        &crate::graphs::GRAPH,
        &crate::queues::QUEUE,
        &crate::topics::TOPIC,
        &crate::state::STATE,
        &crate::breaker::BREAKER,
        &OPS,
    ]
}

/// The fields of an audit entry, in order.
const AUDIT_FIELDS: [&str; 7] = [
    "operator", "instance", "action", "resource", "token", "reason", "outcome",
];

impl RedisBackend {
    /// An audit record from a stream entry (`id`, then field, value pairs).
    fn audit_entry(&self, id: &str, fields: &[Value]) -> Result<AuditRecord> {
        let bad = |what: &str| Error::backend(self, format!("audit entry {id}: {what}"));
        let get = |name: &str| {
            (fields.chunks(2))
                .find(|kv| kv.first().and_then(eval::text) == Some(name))
                .and_then(|kv| kv.get(1).and_then(eval::text))
                .ok_or_else(|| bad(&format!("no {name}")))
        };
        let ms: u64 = (id.split_once('-').and_then(|(ms, _)| ms.parse().ok()))
            .ok_or_else(|| bad("unreadable id"))?;
        let resource: Resource = get("resource")?.parse()?;
        let instance = InstanceId::new(get("instance")?)?;
        let token = FencingToken(get("token")?.parse().map_err(|_| bad("unreadable token"))?);
        Ok(AuditRecord::new(
            get("operator")?,
            instance,
            get("action")?,
            resource,
            token,
            get("reason")?,
            get("outcome")?,
        )
        .at(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
    }
}

#[async_trait]
impl OpsBackend for RedisBackend {
    async fn announce(&self, presence: &Presence, ttl: Duration) -> Result<()> {
        presence.check()?;
        let key = Key::new(presence.instance.as_str())?;
        let ttl = ttl_ms(&key, ttl)?;
        let info = format!(
            "{}|{}|{}{}",
            presence.pid,
            presence.host.len(),
            presence.host,
            presence.metadata
        );
        let mut eval = presence_eval(
            self.namespace(),
            "announce",
            3,
            info.len() + key.as_str().len(),
        );
        eval.arg(key.as_str()).arg(ttl).arg(info);
        let _: i64 = self
            .eval(Traced::new("announce", FAMILY, &key), &eval, eval::ok)
            .await?;
        Ok(())
    }

    async fn withdraw(&self, instance: &InstanceId) -> Result<bool> {
        let key = Key::new(instance.as_str())?;
        let mut eval = presence_eval(self.namespace(), "withdraw", 1, key.as_str().len());
        eval.arg(key.as_str());
        let call = Traced::new("withdraw", FAMILY, &key);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn presence(&self, instances: &[InstanceId]) -> Result<Vec<Option<Presence>>> {
        if instances.len() > MAX_PAGE as usize {
            return Err(Error::invalid(format!(
                "presence: at most {MAX_PAGE} instances at once (asked for {})",
                instances.len()
            )));
        }
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = instances.iter().map(|i| i.as_str().len()).sum();
        let mut eval = presence_eval(self.namespace(), "presence", instances.len(), bytes);
        for i in instances {
            eval.arg(i.as_str());
        }
        let trace = Key::new("presence")?;
        let call = Traced::new("presence", FAMILY, &trace);
        let rows: Vec<Vec<Value>> = self.eval(call, &eval, eval::ok).await?;
        if rows.len() != instances.len() {
            return Err(self.unexpected(call, rows.len()));
        }
        (instances.iter().zip(rows))
            .map(|(i, row)| match row.as_slice() {
                [] => Ok(None),
                [info, left] => eval::text(info)
                    .zip(eval::int(left))
                    .and_then(|(info, left)| decode_presence(*i, info, left))
                    .map(Some)
                    .ok_or_else(|| self.unexpected(call, &row)),
                _ => Err(self.unexpected(call, &row)),
            })
            .collect()
    }

    async fn instances(&self, cursor: &Cursor, limit: u32) -> Result<Page<Presence>> {
        check_limit("instances", limit)?;
        let after = cursor.as_str();
        let mut eval = presence_eval(self.namespace(), "instances", 2, after.len() + 8);
        eval.arg(after).arg(limit);
        let trace = Key::new("instances")?;
        let call = Traced::new("instances", FAMILY, &trace);
        let (read, rows, last): (u32, Vec<(String, String, i64)>, String) =
            self.eval(call, &eval, eval::ok).await?;
        let items = (rows.into_iter())
            .map(|(name, info, left)| {
                let instance = InstanceId::new(&name)?;
                decode_presence(instance, &info, left)
                    .ok_or_else(|| self.unexpected(call, format!("presence {info:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let next = (read == limit).then(|| Cursor::from_text(last));
        Ok(Page::new(items, next))
    }

    async fn leases(
        &self,
        kind: Option<ResourceKind>,
        prefix: &str,
        cursor: &Cursor,
        limit: u32,
    ) -> Result<Page<LeaseRecord>> {
        self.lease_page(kind, prefix, cursor, limit).await
    }

    async fn describe(&self, resource: &Resource) -> Result<Vec<LeaseRecord>> {
        self.describe_resource(resource).await
    }

    async fn revoke(&self, resource: &Resource, token: FencingToken) -> Result<Revoked> {
        self.revoke_lease(resource, token).await
    }

    async fn record(&self, record: &AuditRecord) -> Result<()> {
        record.check()?;
        let stream = ops_names(self.namespace()).name('a');
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(AUDIT_KEPT + AUDIT_KEPT / 10)
            .arg("*");
        let values = [
            record.operator.clone(),
            record.instance.to_string(),
            record.action.clone(),
            record.resource.to_string(),
            record.token.get().to_string(),
            record.reason.clone(),
            record.outcome.clone(),
        ];
        for (field, value) in AUDIT_FIELDS.iter().zip(values) {
            cmd.arg(*field).arg(value);
        }
        let call = Traced::new("record", FAMILY, &record.resource.name);
        let _: String = self.query(call, Request::Cmd(&cmd), &[]).await?;
        Ok(())
    }

    async fn audit(&self, cursor: &Cursor, limit: u32) -> Result<Page<AuditRecord>> {
        check_limit("audit", limit)?;
        let stream = ops_names(self.namespace()).name('a');
        let end = if cursor.is_start() {
            "+".to_owned()
        } else {
            let id = cursor.as_str();
            let ok = id
                .split_once('-')
                .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok());
            if !ok {
                return Err(Error::invalid(format!(
                    "audit: cursor {id:?} is not one this backend gave (MS-SEQ)"
                )));
            }
            format!("({id}")
        };
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&stream).arg(end).arg("-").arg("COUNT").arg(limit);
        let trace = Key::new("audit")?;
        let call = Traced::new("audit", FAMILY, &trace);
        let entries: Vec<(String, Vec<Value>)> = self.query(call, Request::Cmd(&cmd), &[]).await?;
        let next = (entries.len() == limit as usize)
            .then(|| entries.last().map(|(id, _)| Cursor::from_text(id.clone())))
            .flatten();
        let items = (entries.iter())
            .map(|(id, fields)| self.audit_entry(id, fields))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::new(items, next))
    }

    async fn server_time(&self) -> Result<SystemTime> {
        let trace = Key::new("probe")?;
        let call = Traced::new("server_time", FAMILY, &trace);
        let (secs, micros): (u64, u64) =
            (self.query(call, Request::Cmd(&redis::cmd("TIME")), &[])).await?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
    }

    async fn probe(&self) -> Result<Probe> {
        let scripts = all_scripts();
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").cmd("SCRIPT").arg("EXISTS");
        for s in scripts {
            pipe.arg(self.script_for(s).get_hash());
        }
        let trace = Key::new("probe")?;
        let call = Traced::new("probe", FAMILY, &trace);
        let ((secs, micros), loaded): ((u64, u64), Vec<i64>) =
            self.query(call, Request::Pipe(&pipe), &[]).await?;
        let missing: Vec<&'static Script> = (scripts.iter().zip(&loaded))
            .filter(|(_, l)| **l != 1)
            .map(|(s, _)| *s)
            .collect();
        // Scripts load on first use (and again after a flush or a restart):
        // load what is missing now. The backend is ready unless the server
        // refuses them (an ACL without SCRIPT, out of memory); a replica
        // loads them, and is told by the write below.
        let ready = missing.is_empty() || {
            let call = Traced::new("load_scripts", FAMILY, &trace);
            match self.load_scripts(call, &missing).await {
                Ok(()) => true,
                Err(e @ Error::Unavailable { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(backend = %self, error = %e, "scripts cannot be loaded");
                    false
                }
            }
        };
        let writable = self.probe_write(&trace).await?;
        let server_time =
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
        Ok(Probe::new(server_time, Some(ready))
            .with_server(self.server_info().to_string())
            .with_writable(writable))
    }
}

impl RedisBackend {
    /// Writes `coord:{<ns>:ops}:h` (expiring in 1 s), as every coordination
    /// call writes: `Err(reason)` when the server answers with a refusal (a
    /// replica's READONLY, OOM under `noeviction`, MISCONF, NOREPLICAS),
    /// whereas reads (`TIME`, `SCRIPT EXISTS`/`LOAD`) still answer there.
    /// An error that is not the server's answer (the connection) is the
    /// probe's error.
    async fn probe_write(&self, trace: &Key) -> Result<std::result::Result<(), String>> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(ops_names(self.namespace()).name('h'))
            .arg(1)
            .arg("PX")
            .arg(1000);
        let call = Traced::new("probe_write", FAMILY, trace);
        match self.query::<()>(call, Request::Cmd(&cmd), &[]).await {
            Ok(()) => Ok(Ok(())),
            Err(e) => {
                let refused = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<redis::RedisError>())
                    .and_then(|r| r.code().map(|code| (code.to_owned(), r.detail())));
                match refused {
                    Some((code, detail)) => Ok(Err(match detail {
                        Some(d) => format!("{code} {d}"),
                        None => code,
                    })),
                    None => Err(e),
                }
            }
        }
    }
}
