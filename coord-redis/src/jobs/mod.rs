//! Run-once jobs on Redis ([`JobBackend`]): one EVALSHA of `jobs.lua` per
//! operation, after the prelude. A run is a lease (`PEXPIRE` on the run key)
//! with a fencing token drawn by the prelude's `next_token` from the job's
//! counter; the end of a run is PUBLISHed on the occurrence's channel, and
//! watches also wake at the run's expiry instant (expiry publishes nothing).
//!
//! # Key layout
//!
//! ```text
//! coord:{<ns>:job:<len>:<job>}:<occurrence>:r   the running attempt (holder), PEXPIRE = its lease
//! coord:{<ns>:job:<len>:<job>}:<occurrence>:a   attempts so far
//! coord:{<ns>:job:<len>:<job>}:<occurrence>:f   finished marker, PX = retention
//! coord:{<ns>:job:<len>:<job>}:<occurrence>:k   the running attempt's token, PEXPIRE = its lease
//! coord:{<ns>:job:<len>:<job>}:<occurrence>:c   channel: ended
//! coord:{<ns>:job:<len>:<job>}:t                the job's token counter
//! ```
//!
//! Every key of a job (all its occurrences, and its token counter, so that
//! a later occurrence's runs get larger tokens than an earlier one's) shares
//! the tag `{<ns>:job:<len>:<job>}`, one Redis Cluster slot per job. `<len>`
//! is the job's byte length, which keeps `(job, occurrence)` pairs from
//! colliding whatever characters they hold (`}` included).
//!
//! **Key lifetimes.** The run key and the run's token expire with its
//! lease, or are deleted when the run ends or is revoked; the finished
//! marker expires with its retention. The attempt count and the token counter live
//! one `MAX_TTL` (24 h) past the latest lease or retention: attempts are
//! exact while an occurrence is in use, and an idle job leaves nothing
//! behind. If they are lost anyway (a restart without persistence), tokens
//! still increase through the server clock and attempts restart.

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    HolderId, Key, Namespace, Result,
    spi::{Backend, JobBackend, OnceBegin, OnceState, Watch},
};
use redis::Script;

use crate::{
    RedisBackend,
    eval::{self, Eval, Traced, count, holder_len, millis, script, token, ttl_ms},
    keys::Names,
};

pub(crate) static JOBS: LazyLock<Script> = script!("jobs/jobs.lua");

/// An occurrence's key parts, in script order (the channel is `c`); the
/// job's counter (`t`, on the job's names) follows them, then the run's
/// token (`k`, read by operations: listing and fenced revocation).
const PARTS: [char; 3] = ['r', 'a', 'f'];

/// The names of `occurrence` of `job`, and of `job` itself (its counter).
fn job_names(ns: &Namespace, job: &Key, occurrence: &Key) -> (Names, Names) {
    let len = job.as_str().len().to_string();
    let tag = ["job", &len, job.as_str()];
    (
        Names::new(ns, &tag, &[occurrence.as_str()]),
        Names::new(ns, &tag, &[]),
    )
}

/// The trace family of jobs.
const FAMILY: &str = "job";

/// `op` of the jobs script on `occurrence` of `job`: the EVALSHA with the
/// keys, the operation, the channel and the holder (if any) written.
pub(crate) fn job_eval(
    ns: &Namespace,
    job: &Key,
    occurrence: &Key,
    op: &'static str,
    holder: Option<&HolderId>,
) -> Eval {
    let (mut occ, mut job) = job_names(ns, job, occurrence);
    let bytes = 5 * occ.len() + job.len() + holder_len(holder) + 32;
    let mut eval = Eval::new(&JOBS, PARTS.len() + 2, 4, bytes);
    for p in PARTS {
        occ.write(&mut eval, p);
    }
    job.write(&mut eval, 't');
    occ.write(&mut eval, 'k');
    eval.arg(op);
    occ.write(&mut eval, 'c');
    if let Some(h) = holder {
        eval.holder(h);
    }
    eval
}

#[async_trait]
impl JobBackend for RedisBackend {
    async fn begin(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin> {
        let ttl = ttl_ms(job, ttl)?;
        let mut eval = job_eval(self.namespace(), job, occurrence, "begin", Some(holder));
        eval.arg(ttl);
        let call = Traced::new("begin", FAMILY, job).by(holder);
        let reply: Vec<i64> = self
            .eval(call, &eval, |r: &Vec<i64>| match r.as_slice() {
                [0, tok, _] => ("started", Some(token(*tok).get())),
                [1, _] => ("running", None),
                _ => ("finished", None),
            })
            .await?;
        match reply.as_slice() {
            [0, tok, attempt] => Ok(OnceBegin::Started {
                token: token(*tok),
                attempt: count(*attempt, 1),
            }),
            [1, left] => Ok(OnceBegin::Running {
                retry_in: millis(*left).unwrap_or_default(),
            }),
            [2] => Ok(OnceBegin::Finished),
            other => Err(self.unexpected(call, other)),
        }
    }

    async fn extend(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool> {
        let ttl = ttl_ms(job, ttl)?;
        let mut eval = job_eval(self.namespace(), job, occurrence, "extend", Some(holder));
        eval.arg(ttl);
        let call = Traced::new("extend", FAMILY, job).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn end(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool> {
        let retention = match finished {
            Some(r) => ttl_ms(job, r)?,
            None => 0,
        };
        let mut eval = job_eval(self.namespace(), job, occurrence, "end", Some(holder));
        eval.arg(retention);
        let call = Traced::new("end", FAMILY, job).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn give_back(&self, job: &Key, occurrence: &Key, holder: &HolderId) -> Result<bool> {
        let eval = job_eval(self.namespace(), job, occurrence, "give_back", Some(holder));
        let call = Traced::new("give_back", FAMILY, job).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn state(&self, job: &Key, occurrence: &Key) -> Result<OnceState> {
        let eval = job_eval(self.namespace(), job, occurrence, "state", None);
        let call = Traced::new("state", FAMILY, job);
        let reply: Vec<i64> = self
            .eval(call, &eval, |r: &Vec<i64>| match r.as_slice() {
                [2] => ("finished", None),
                [1, _] => ("running", None),
                _ => ("idle", None),
            })
            .await?;
        match reply.as_slice() {
            [0] => Ok(OnceState::Idle),
            [1, left] => Ok(OnceState::Running {
                retry_in: millis(*left).unwrap_or_default(),
            }),
            [2] => Ok(OnceState::Finished),
            other => Err(self.unexpected(call, other)),
        }
    }

    async fn watch(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn Watch>> {
        let channel = job_names(self.namespace(), job, occurrence).0.name('c');
        let expiry = job_eval(self.namespace(), job, occurrence, "expiry", None);
        self.expiry_watch(FAMILY, job, channel, expiry).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash_tag;

    /// The keys and channel of `occurrence` of `job`, as the EVALSHA passes
    /// them: run, attempts, finished, the job's counter; then the channel.
    fn layout(ns: &Namespace, job: &Key, occurrence: &Key) -> (Vec<String>, String) {
        let (mut occ, mut job) = job_names(ns, job, occurrence);
        let mut keys: Vec<String> = PARTS.iter().map(|p| occ.name(*p)).collect();
        keys.push(job.name('t'));
        keys.push(occ.name('k'));
        (keys, occ.name('c'))
    }

    #[test]
    fn job_keys_share_the_job_slot_and_never_collide() {
        let ns = Namespace::new("ns").unwrap();
        let k = |s: &str| Key::new(s).unwrap();
        let a = layout(&ns, &k("a}:x"), &k("y"));
        let b = layout(&ns, &k("a"), &k("x}:y"));
        assert!(a.0.iter().all(|x| !b.0.contains(x)));
        assert_ne!(a.1, b.1);
        for (keys, channel) in [&a, &b] {
            let tag = hash_tag(&keys[0]);
            assert!(keys.iter().all(|x| hash_tag(x) == tag));
            assert_eq!(hash_tag(channel), tag);
        }
        assert_eq!(hash_tag(&a.0[0]), "ns:job:4:a");
        // Other occurrences of the job share its slot and token counter.
        let c = layout(&ns, &k("a}:x"), &k("z"));
        assert_eq!(hash_tag(&c.0[0]), hash_tag(&a.0[0]));
        assert_eq!(c.0[3], a.0[3]);
        assert_eq!(
            layout(&ns, &k("job"), &k("2024")).0,
            [
                "coord:{ns:job:3:job}:2024:r",
                "coord:{ns:job:3:job}:2024:a",
                "coord:{ns:job:3:job}:2024:f",
                "coord:{ns:job:3:job}:t",
                "coord:{ns:job:3:job}:2024:k",
            ]
        );
    }

    #[test]
    fn job_evals_pass_the_layout_then_op_channel_holder() {
        let ns = Namespace::new("ns").unwrap();
        let k = |s: &str| Key::new(s).unwrap();
        let holder = HolderId::new(coord_api::InstanceId::new("a").unwrap());
        let mut eval = job_eval(&ns, &k("j"), &k("o"), "begin", Some(&holder));
        eval.arg(1000u64);
        let (keys, channel) = layout(&ns, &k("j"), &k("o"));
        let args = eval::written(&eval);
        assert_eq!(args[2], "5");
        assert_eq!(args[3..8], keys[..]);
        assert_eq!(
            args[8..],
            ["begin".into(), channel, holder.to_string(), "1000".into()]
        );
    }
}
