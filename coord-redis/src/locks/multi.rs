//! Several exclusive locks in one step ([`LockBackend::acquire_all`]):
//! `multi.lua` after the prelude, one EVALSHA over every lock's lease and
//! token counter (the keys of `lock.lua`), so the leases it grants are
//! ordinary locks afterwards.
//!
//! [`LockBackend::acquire_all`]: coord_api::spi::LockBackend::acquire_all

use std::{sync::LazyLock, time::Duration};

use coord_api::{
    Error, Key, Result,
    spi::{AcquireAll, Backend, Busy, Grant, LeaseId, LockSpace, check_acquire_all},
};
use redis::{Script, Value};

use crate::{
    RedisBackend,
    eval::{Eval, Traced, holder_len, millis, script, token, ttl_ms},
};

pub(crate) static MULTI: LazyLock<Script> = script!("locks/multi.lua");

/// A reply of `multi.lua` as the trace names it.
fn outcome(v: &Value) -> (&'static str, Option<u64>) {
    match v {
        Value::Array(a) => match a.as_slice() {
            [Value::Int(1), Value::Int(tok), ..] => ("granted", Some(token(*tok).get())),
            [Value::Int(0), ..] => ("busy", None),
            _ => ("refused", None),
        },
        _ => ("refused", None),
    }
}

impl RedisBackend {
    /// Whether this backend takes the locks `keys` in one atomic step
    /// ([`acquire_all`](coord_api::spi::LockBackend::acquire_all)). On a
    /// standalone server (or a sentinel's primary) always: it holds every
    /// key, so one script reaches them all. On a Redis Cluster only a
    /// single lock: each lock's keys carry their own hash tag
    /// (`{<ns>:lock:<key>}`), so several may live on several nodes; there
    /// `acquire_all` answers `NotSupported` for more, before any I/O, and
    /// the client takes them one by one in key order instead.
    pub fn acquire_all_in_one_step(&self, keys: &[&Key]) -> bool {
        !self.is_cluster() || keys.len() <= 1
    }

    /// [`LockBackend::acquire_all`](coord_api::spi::LockBackend::acquire_all).
    pub(crate) async fn acquire_all_leases(
        &self,
        leases: &[LeaseId],
        ttl: Duration,
    ) -> Result<AcquireAll> {
        check_acquire_all(leases)?;
        let first = &leases[0];
        let ttl = ttl_ms(&first.key, ttl)?;
        let keys: Vec<&Key> = leases.iter().map(|l| &l.key).collect();
        if !self.acquire_all_in_one_step(&keys) {
            return Err(Error::NotSupported {
                operation: "acquire_all",
                backend: self.to_string(),
            });
        }
        let mut all = Vec::with_capacity(leases.len());
        let mut bytes = holder_len(Some(&first.holder)) + 32;
        for lease in leases {
            let names = super::names(self.namespace(), LockSpace::Lock, &lease.key);
            bytes += 2 * names.len();
            all.push(names);
        }
        let mut eval = Eval::new(&MULTI, 2 * leases.len(), 3, bytes);
        for names in &mut all {
            names.write(&mut eval, 'l');
            names.write(&mut eval, 't');
        }
        eval.arg("acquire_all").holder(&first.holder).arg(ttl);
        let call =
            || Traced::new("acquire_all", LockSpace::Lock.as_str(), &first.key).by(&first.holder);
        let reply: Value = self.eval(call(), &eval, outcome).await?;
        let ints: Option<Vec<i64>> = match &reply {
            Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        match ints.as_deref() {
            Some([1, tokens @ ..]) if tokens.len() == leases.len() => Ok(AcquireAll::Granted(
                tokens.iter().map(|t| Grant::new(token(*t), 1)).collect(),
            )),
            Some([0, index, pttl]) if (*index as usize) < leases.len() => Ok(AcquireAll::Busy {
                index: *index as usize,
                busy: Busy::new(millis(*pttl)),
            }),
            _ => Err(self.unexpected(call(), reply)),
        }
    }
}
