//! Leadership, membership and run-once jobs on Redis: every operation is one
//! EVALSHA of `lua/leadership.lua`; the server's clock decides expiry
//! (`PEXPIRE` on the leader and run leases, `TIME`-based deadlines for
//! members); terms and run tokens follow the lock family's rule
//! `max(counter + 1, server time in µs)`; changes are PUBLISHed on the
//! election's / group's / occurrence's channel, and watches also wake at the
//! next expiry instant (expiry publishes nothing).
//!
//! # Key layout and Redis Cluster slots
//!
//! ```text
//! coord:{<ns>:lead}:e:<election>:l    leader hash {holder, meta, term, since, seq}, PEXPIRE = the term's lease
//! coord:{<ns>:lead}:e:<election>:s    election state {seq, tok}: terms granted, term counter
//! coord:{<ns>:lead}:e:<election>:c    channel: elected / resigned / stepped_down
//! coord:{<ns>:lead}:g:<group>:m       members zset: holder -> deadline (server ms)
//! coord:{<ns>:lead}:g:<group>:i       member info hash: holder -> "joined_us|metadata"
//! coord:{<ns>:lead}:g:<group>:s       group state {seq}: joins, leaves, expiries noticed
//! coord:{<ns>:lead}:g:<group>:c       channel: joined / left / expired
//! coord:{<ns>:once:<len>:<job>}:<occ>:r   the running attempt (holder), PEXPIRE = its lease
//! coord:{<ns>:once:<len>:<job>}:<occ>:a   attempts so far
//! coord:{<ns>:once:<len>:<job>}:<occ>:f   finished marker, PX = retention
//! coord:{<ns>:once:<len>:<job>}:<occ>:c   channel: ended
//! coord:{<ns>:once:<len>:<job>}:t         the job's token counter
//! ```
//!
//! **Slot choice.** A quorum election's campaign and renew count the live
//! members of its group inside the same script, so the election's keys and
//! the group's keys must share a Redis Cluster slot. The group is named per
//! call, not per election, so the only tag that always co-locates them is one
//! without the key: every election and group of a namespace hashes to the
//! slot of `{<ns>:lead}`. The cost: a namespace's leadership traffic lands on
//! one cluster node instead of spreading per key. Leadership is low-volume
//! (a renewal every ttl/3 per election, a heartbeat per member), so that is
//! accepted; applications with very many elections can spread them over
//! namespaces. Run-once jobs never touch a group, so they keep a per-job tag
//! (`<len>` is the job's byte length, which keeps `(job, occurrence)` pairs
//! from colliding whatever characters they hold).
//!
//! **Key lifetimes.** The leader and run keys expire with their leases.
//! State that must not go backwards while in use (an election's `seq` and
//! term counter, a group's `seq` and members, a job's token counter and an
//! occurrence's attempt count) is kept one `MAX_TTL` (24 h) past its last use
//! (past the latest lease or member deadline): `seq` and attempts are exact
//! while an election, group or occurrence is in use, and an idle one leaves
//! nothing behind a day later. If such state is lost anyway (a restart
//! without persistence), terms and tokens still increase through the server
//! clock, `seq` starts again from 1 (observers then report the change but
//! cannot count what they skipped), and an occurrence's attempts restart.
//! Expired members stay in the zset until the next operation on the group
//! drops them, so every expiry is counted in `seq` (and published).

use std::{
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use coord_api::{
    Campaign, Error, FencingToken, HolderId, Key, LeaderInfo, LeadershipBackend, LeaseWatch,
    MemberInfo, Members, Namespace, OnceBegin, Quorum, Result,
};
use redis::{FromRedisValue, Script};
use tracing::{Instrument, field::Empty};

use crate::{RedisBackend, error, keys::PREFIX, pubsub::RedisWatch};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/leadership.lua")));

/// The keys a script call touches and the channel it publishes on.
struct Layout {
    keys: Vec<String>,
    channel: String,
}

fn lead_base(ns: &Namespace) -> String {
    format!("{PREFIX}{{{ns}:lead}}")
}

/// Leader hash, state hash; channel.
fn election_layout(ns: &Namespace, election: &Key) -> Layout {
    let base = format!("{}:e:{election}", lead_base(ns));
    Layout {
        keys: vec![format!("{base}:l"), format!("{base}:s")],
        channel: format!("{base}:c"),
    }
}

/// Members zset, member info hash, state hash; channel.
fn group_layout(ns: &Namespace, group: &Key) -> Layout {
    let base = format!("{}:g:{group}", lead_base(ns));
    Layout {
        keys: vec![
            format!("{base}:m"),
            format!("{base}:i"),
            format!("{base}:s"),
        ],
        channel: format!("{base}:c"),
    }
}

/// Run, attempts, finished marker, the job's token counter; channel.
fn once_layout(ns: &Namespace, job: &Key, occurrence: &Key) -> Layout {
    let job_base = format!("{PREFIX}{{{ns}:once:{}:{job}}}", job.as_str().len());
    let base = format!("{job_base}:{occurrence}");
    Layout {
        keys: vec![
            format!("{base}:r"),
            format!("{base}:a"),
            format!("{base}:f"),
            format!("{job_base}:t"),
        ],
        channel: format!("{base}:c"),
    }
}

/// An election's keys, followed by its quorum group's when there is one
/// (the script then counts the group's live members).
fn election_with_quorum(
    ns: &Namespace,
    election: &Key,
    quorum: Option<&Quorum>,
) -> (Layout, u32, String) {
    let mut layout = election_layout(ns, election);
    match quorum {
        Some(q) => {
            let group = group_layout(ns, &q.group);
            layout.keys.extend(group.keys);
            (layout, q.min_members, group.channel)
        }
        None => (layout, 0, String::new()),
    }
}

/// A TTL in whole milliseconds, rounded up, after checking its range.
fn ttl_ms(key: &Key, ttl: Duration) -> Result<String> {
    coord_api::validate_ttl(key, ttl)?;
    Ok(ttl.as_nanos().div_ceil(1_000_000).to_string())
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

fn wall(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

/// `holder, meta, term, since_us, seq, pttl_ms` as the script returns them.
type LeaderRow = (String, String, i64, i64, i64, i64);

impl RedisBackend {
    /// Runs the leadership script's `op` on `layout`, within the operation
    /// timeout, inside a `coord.redis` span.
    async fn lead<T: FromRedisValue>(
        &self,
        op: &'static str,
        area: &'static str,
        key: &Key,
        layout: &Layout,
        args: &[&str],
        holder: Option<&HolderId>,
    ) -> Result<T> {
        let cfg = self.config();
        let (conn, _, name) = self.shared();
        let span = tracing::debug_span!(
            "coord.redis",
            op,
            backend = %name,
            family = area,
            key = %key,
            holder = holder.map(tracing::field::display),
            outcome = Empty,
        );
        let mut invocation = SCRIPT.prepare_invoke();
        for k in &layout.keys {
            invocation.key(k);
        }
        invocation.arg(op).arg(&layout.channel);
        for a in args {
            invocation.arg(*a);
        }
        let mut conn = conn.clone();
        let what = format!("{op} {area} {:?}", key.as_str());
        let res = match tokio::time::timeout(cfg.timeout(), invocation.invoke_async(&mut conn))
            .instrument(span.clone())
            .await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error::from_redis(cfg, &what, e)),
            Err(_) => Err(error::timed_out(cfg, &what, cfg.timeout())),
        };
        match &res {
            Ok(_) => span.record("outcome", "ok"),
            Err(e) => span.record("outcome", tracing::field::display(e)),
        };
        res
    }

    fn holder(&self, key: &Key, s: &str) -> Result<HolderId> {
        s.parse().map_err(|e| {
            Error::backend(
                self,
                format!("bad holder stored for {:?}: {e}", key.as_str()),
            )
        })
    }

    fn leader_info(&self, election: &Key, row: LeaderRow) -> Result<Option<LeaderInfo>> {
        let (holder, metadata, term, since, seq, pttl) = row;
        if holder.is_empty() {
            return Ok(None);
        }
        Ok(Some(LeaderInfo {
            holder: self.holder(election, &holder)?,
            metadata,
            term: FencingToken(term.max(0) as u64),
            since: wall(since),
            seq: seq.max(0) as u64,
            expires_in: millis(pttl),
        }))
    }

    /// A watch on `layout`'s channel that also wakes at the expiry the
    /// script's `expiry_op` reports (ms, or negative for none).
    async fn expiry_watch(
        &self,
        area: &'static str,
        key: &Key,
        layout: Layout,
        expiry_op: &'static str,
    ) -> Result<Box<dyn LeaseWatch>> {
        let (_, hub, name) = self.shared();
        let span = tracing::debug_span!(
            "coord.redis",
            op = "subscribe",
            backend = %name,
            family = area,
            key = %key,
        );
        let inner = hub
            .subscribe(layout.channel.clone())
            .instrument(span)
            .await?;
        Ok(Box::new(ExpiryWatch {
            backend: self.clone(),
            area,
            key: key.clone(),
            layout,
            expiry_op,
            inner,
        }))
    }
}

/// Wakes on the channel's notifications and at the next expiry instant of
/// what it watches (a term, the earliest member heartbeat, a run's lease),
/// read from the server when [`changed`](LeaseWatch::changed) starts: a
/// change after that read is published (and kept by the subscription until
/// seen), an expiry is waited for. Renewals and heartbeats publish nothing,
/// so when the instant comes the deadline is read again: if it moved, the
/// watch keeps waiting for the new one instead of waking for nothing.
struct ExpiryWatch {
    backend: RedisBackend,
    area: &'static str,
    key: Key,
    layout: Layout,
    expiry_op: &'static str,
    inner: RedisWatch,
}

impl ExpiryWatch {
    /// Milliseconds until the next expiry; negative when nothing expires.
    async fn expiry(&self) -> Result<i64> {
        self.backend
            .lead(
                self.expiry_op,
                self.area,
                &self.key,
                &self.layout,
                &[],
                None,
            )
            .await
    }
}

#[async_trait]
impl LeaseWatch for ExpiryWatch {
    async fn changed(&mut self) -> Result<()> {
        let mut left = self.expiry().await?;
        if left < 0 {
            return self.inner.changed().await;
        }
        loop {
            // The server counts a key expired once its clock is past the
            // deadline: wait until 1 ms after it.
            let expiry = millis(left) + Duration::from_millis(1);
            tokio::select! {
                biased;
                r = self.inner.changed() => return r,
                _ = tokio::time::sleep(expiry) => {}
            }
            left = self.expiry().await?;
            if left <= 0 {
                // Gone (expired, or ended with a notification we also
                // have), or expiring now.
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl LeadershipBackend for RedisBackend {
    fn namespace(&self) -> &Namespace {
        self.config().namespace()
    }

    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<Campaign> {
        let ttl = ttl_ms(election, ttl)?;
        let ns = self.config().namespace();
        let (layout, min, gchan) = election_with_quorum(ns, election, quorum);
        let (who, min) = (holder.to_string(), min.to_string());
        type Reply = (i64, i64, String, String, i64, i64, i64, i64);
        let (elected, no_quorum, h, m, term, since, seq, pttl): Reply = self
            .lead(
                "campaign",
                "election",
                election,
                &layout,
                &[&who, metadata, &ttl, &min, &gchan],
                Some(holder),
            )
            .await?;
        let leader = self.leader_info(election, (h, m, term, since, seq, pttl))?;
        Ok(match (elected, leader) {
            (1, Some(info)) => Campaign::Elected(info),
            (1, None) => {
                return Err(Error::backend(
                    self,
                    format!("campaign for {:?} elected nobody", election.as_str()),
                ));
            }
            (_, leader) => Campaign::Busy {
                leader,
                no_quorum: no_quorum == 1,
            },
        })
    }

    async fn renew(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<bool> {
        let ttl = ttl_ms(election, ttl)?;
        let ns = self.config().namespace();
        let (layout, min, gchan) = election_with_quorum(ns, election, quorum);
        let (who, term, min) = (holder.to_string(), term.get().to_string(), min.to_string());
        let ok: i64 = self
            .lead(
                "renew",
                "election",
                election,
                &layout,
                &[&who, &term, &ttl, &min, &gchan],
                Some(holder),
            )
            .await?;
        Ok(ok == 1)
    }

    async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool> {
        let layout = election_layout(self.config().namespace(), election);
        let (who, term) = (holder.to_string(), term.get().to_string());
        let ok: i64 = self
            .lead(
                "resign",
                "election",
                election,
                &layout,
                &[&who, &term],
                Some(holder),
            )
            .await?;
        Ok(ok == 1)
    }

    async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>> {
        let layout = election_layout(self.config().namespace(), election);
        let row: LeaderRow = self
            .lead("leader", "election", election, &layout, &[], None)
            .await?;
        self.leader_info(election, row)
    }

    async fn terms_granted(&self, election: &Key) -> Result<Option<u64>> {
        let layout = election_layout(self.config().namespace(), election);
        let seq: i64 = self
            .lead("terms_granted", "election", election, &layout, &[], None)
            .await?;
        Ok(Some(seq.max(0) as u64))
    }

    async fn watch_election(&self, election: &Key) -> Result<Box<dyn LeaseWatch>> {
        let layout = election_layout(self.config().namespace(), election);
        self.expiry_watch("election", election, layout, "leader_expiry")
            .await
    }

    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()> {
        let ttl = ttl_ms(group, ttl)?;
        let layout = group_layout(self.config().namespace(), group);
        let who = holder.to_string();
        let _: i64 = self
            .lead(
                "join",
                "group",
                group,
                &layout,
                &[&who, metadata, &ttl],
                Some(holder),
            )
            .await?;
        Ok(())
    }

    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
        let ttl = ttl_ms(group, ttl)?;
        let layout = group_layout(self.config().namespace(), group);
        let who = holder.to_string();
        let ok: i64 = self
            .lead(
                "heartbeat",
                "group",
                group,
                &layout,
                &[&who, "", &ttl],
                Some(holder),
            )
            .await?;
        Ok(ok == 1)
    }

    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool> {
        let layout = group_layout(self.config().namespace(), group);
        let who = holder.to_string();
        let ok: i64 = self
            .lead("leave", "group", group, &layout, &[&who], Some(holder))
            .await?;
        Ok(ok == 1)
    }

    async fn members(&self, group: &Key) -> Result<Members> {
        let layout = group_layout(self.config().namespace(), group);
        let (seq, rows): (i64, Vec<(String, i64, String, i64)>) = self
            .lead("members", "group", group, &layout, &[], None)
            .await?;
        let mut members = rows
            .into_iter()
            .map(|(holder, joined, metadata, left)| {
                Ok(MemberInfo {
                    holder: self.holder(group, &holder)?,
                    metadata,
                    joined: wall(joined),
                    expires_in: millis(left),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Oldest first (ties by id, so the order is stable).
        members.sort_by(|a, b| {
            (a.joined, a.holder.to_string()).cmp(&(b.joined, b.holder.to_string()))
        });
        Ok(Members {
            members,
            seq: seq.max(0) as u64,
        })
    }

    async fn watch_group(&self, group: &Key) -> Result<Box<dyn LeaseWatch>> {
        let layout = group_layout(self.config().namespace(), group);
        self.expiry_watch("group", group, layout, "group_expiry")
            .await
    }

    async fn begin_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin> {
        let ttl = ttl_ms(job, ttl)?;
        let layout = once_layout(self.config().namespace(), job, occurrence);
        let who = holder.to_string();
        let reply: Vec<i64> = self
            .lead(
                "begin_once",
                "once",
                job,
                &layout,
                &[&who, &ttl],
                Some(holder),
            )
            .await?;
        match reply.as_slice() {
            [0, token, attempt] => Ok(OnceBegin::Started {
                token: FencingToken((*token).max(0) as u64),
                attempt: (*attempt).clamp(1, u32::MAX as i64) as u32,
            }),
            [1, left] => Ok(OnceBegin::Running {
                retry_in: millis(*left),
            }),
            [2] => Ok(OnceBegin::Finished),
            other => Err(Error::backend(
                self,
                format!(
                    "unexpected begin_once reply {other:?} for {:?}/{:?}",
                    job.as_str(),
                    occurrence.as_str()
                ),
            )),
        }
    }

    async fn extend_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool> {
        let ttl = ttl_ms(job, ttl)?;
        let layout = once_layout(self.config().namespace(), job, occurrence);
        let who = holder.to_string();
        let ok: i64 = self
            .lead(
                "extend_once",
                "once",
                job,
                &layout,
                &[&who, &ttl],
                Some(holder),
            )
            .await?;
        Ok(ok == 1)
    }

    async fn end_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool> {
        let retention = match finished {
            Some(r) => ttl_ms(job, r)?,
            None => "0".to_owned(),
        };
        let layout = once_layout(self.config().namespace(), job, occurrence);
        let who = holder.to_string();
        let ok: i64 = self
            .lead(
                "end_once",
                "once",
                job,
                &layout,
                &[&who, &retention],
                Some(holder),
            )
            .await?;
        Ok(ok == 1)
    }

    async fn watch_once(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn LeaseWatch>> {
        let layout = once_layout(self.config().namespace(), job, occurrence);
        self.expiry_watch("once", job, layout, "once_expiry").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot-deciding part of a Redis key: between the first `{` and the
    /// next `}`.
    fn hash_tag(k: &str) -> &str {
        let open = k.find('{').unwrap();
        let close = open + 1 + k[open + 1..].find('}').unwrap();
        &k[open + 1..close]
    }

    #[test]
    fn an_election_and_its_quorum_group_share_a_slot() {
        let ns = Namespace::new("ns").unwrap();
        let quorum = Quorum {
            group: Key::new("g}{x").unwrap(),
            min_members: 2,
        };
        let (l, min, gchan) = election_with_quorum(&ns, &Key::new("e}:1").unwrap(), Some(&quorum));
        assert_eq!(min, 2);
        assert_eq!(l.keys.len(), 5);
        assert!(
            l.keys.iter().all(|k| hash_tag(k) == "ns:lead"),
            "{l:?}",
            l = l.keys
        );
        assert_eq!(hash_tag(&gchan), "ns:lead");
        assert_eq!(
            election_layout(&ns, &Key::new("a").unwrap()).keys,
            ["coord:{ns:lead}:e:a:l", "coord:{ns:lead}:e:a:s"]
        );
    }

    #[test]
    fn once_keys_share_the_job_slot_and_never_collide() {
        let ns = Namespace::new("ns").unwrap();
        let k = |s: &str| Key::new(s).unwrap();
        let a = once_layout(&ns, &k("a}:x"), &k("y"));
        let b = once_layout(&ns, &k("a"), &k("x}:y"));
        assert!(a.keys.iter().all(|x| !b.keys.contains(x)));
        assert_ne!(a.channel, b.channel);
        for l in [&a, &b] {
            let tag = hash_tag(&l.keys[0]);
            assert!(l.keys.iter().all(|x| hash_tag(x) == tag));
        }
        assert_eq!(hash_tag(&a.keys[0]), "ns:once:4:a");
        // Other occurrences of the job share its slot and token counter.
        let c = once_layout(&ns, &k("a}:x"), &k("z"));
        assert_eq!(hash_tag(&c.keys[0]), hash_tag(&a.keys[0]));
        assert_eq!(c.keys[3], a.keys[3]);
    }
}
