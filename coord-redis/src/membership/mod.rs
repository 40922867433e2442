//! Membership groups on Redis ([`GroupBackend`]): one EVALSHA of
//! `membership.lua` per operation, after the prelude, `lua/deadlines.lua`
//! and `group.lua` (a group's upkeep, which the election script includes
//! too: a quorum election counts its group's live members in the same step).
//! Members are leases with deadlines on the server's clock; joins and leaves
//! are PUBLISHed on the group's channel, and expiries too once an operation
//! notices them; watches also wake at the earliest member deadline.
//!
//! # Key layout
//!
//! ```text
//! coord:{<ns>:lead}:g:<group>:m   members zset: holder -> deadline (server ms)
//! coord:{<ns>:lead}:g:<group>:i   member info hash: holder -> 'joined_us|metadata'
//! coord:{<ns>:lead}:g:<group>:s   seq: joins, leaves and expiries noticed
//! coord:{<ns>:lead}:g:<group>:c   channel: joined / left / expired
//! ```
//!
//! The hash tag `{<ns>:lead}` is the elections' too (see
//! [`election`](crate::election)): a quorum election names its group per
//! call, so the only tag that always puts both in one Redis Cluster slot is
//! one without the key. Expired members stay in the zset until the next
//! operation on the group drops them, so every expiry is counted in seq (and
//! published); every key of the group lives one `MAX_TTL` (24 h) past the
//! latest member deadline, then goes. A member whose info entry is gone
//! while it is in the zset (the hash evicted under maxmemory) is dropped as
//! an expiry is, by the listing, its heartbeat or its join again: nobody is
//! listed without a join time and metadata.

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    HolderId, Key, Namespace, Result,
    spi::{Backend, GroupBackend, MemberInfo, Members, Watch, membership::check_member_metadata},
};
use redis::Script;

use crate::{
    RedisBackend,
    eval::{self, Eval, Traced, holder_len, millis, script, ttl_ms, wall},
    keys::Names,
};

pub(crate) static MEMBERSHIP: LazyLock<Script> = script!(
    "lua/deadlines.lua",
    "membership/group.lua",
    "membership/membership.lua"
);

/// A group's key parts, in script order (the channel is `c`).
pub(crate) const GROUP_PARTS: [char; 3] = ['m', 'i', 's'];

/// The names of `group`'s keys and channel.
pub(crate) fn group_names(ns: &Namespace, group: &Key) -> Names {
    Names::new(ns, &["lead"], &["g", group.as_str()])
}

/// The trace family of groups.
const FAMILY: &str = "group";

/// `op` of the membership script on `group`: the EVALSHA with the keys, the
/// operation, the channel and the holder (if any) written.
pub(crate) fn group_eval(
    ns: &Namespace,
    group: &Key,
    op: &'static str,
    holder: Option<&HolderId>,
) -> Eval {
    let mut names = group_names(ns, group);
    let bytes = 4 * names.len() + holder_len(holder) + 32;
    let mut eval = Eval::new(&MEMBERSHIP, GROUP_PARTS.len(), 5, bytes);
    for p in GROUP_PARTS {
        names.write(&mut eval, p);
    }
    eval.arg(op);
    names.write(&mut eval, 'c');
    if let Some(h) = holder {
        eval.holder(h);
    }
    eval
}

#[async_trait]
impl GroupBackend for RedisBackend {
    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()> {
        let ttl = ttl_ms(group, ttl)?;
        check_member_metadata(group, metadata)?;
        let mut eval = group_eval(self.namespace(), group, "join", Some(holder));
        eval.arg(ttl).arg(metadata);
        let call = Traced::new("join", FAMILY, group).by(holder);
        let _: i64 = self.eval(call, &eval, eval::ok).await?;
        Ok(())
    }

    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
        let ttl = ttl_ms(group, ttl)?;
        let mut eval = group_eval(self.namespace(), group, "heartbeat", Some(holder));
        eval.arg(ttl);
        let call = Traced::new("heartbeat", FAMILY, group).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool> {
        let eval = group_eval(self.namespace(), group, "leave", Some(holder));
        let call = Traced::new("leave", FAMILY, group).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn members(&self, group: &Key) -> Result<Members> {
        let eval = group_eval(self.namespace(), group, "members", None);
        let call = Traced::new("members", FAMILY, group);
        let (seq, rows): (i64, Vec<(String, i64, String, i64)>) =
            self.eval(call, &eval, eval::ok).await?;
        let mut members = rows
            .into_iter()
            .map(|(holder, joined, metadata, left)| {
                Ok(MemberInfo::new(
                    self.stored_holder(group, &holder)?,
                    metadata,
                    wall(joined),
                    millis(left).unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        // Oldest first (ties by id, so the order is stable).
        members.sort_by(|a, b| {
            (a.joined, a.holder.to_string()).cmp(&(b.joined, b.holder.to_string()))
        });
        Ok(Members::new(members, seq.max(0) as u64))
    }

    async fn watch(&self, group: &Key) -> Result<Box<dyn Watch>> {
        let channel = group_names(self.namespace(), group).name('c');
        let expiry = group_eval(self.namespace(), group, "expiry", None);
        self.expiry_watch(FAMILY, group, channel, expiry).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_evals_pass_the_layout_then_op_channel_holder() {
        let ns = Namespace::new("ns").unwrap();
        let holder = HolderId::new(coord_api::InstanceId::new("a").unwrap());
        let mut eval = group_eval(&ns, &Key::new("g").unwrap(), "join", Some(&holder));
        eval.arg(1000u64).arg("meta");
        assert_eq!(
            eval::written(&eval)[2..],
            [
                "3".into(),
                "coord:{ns:lead}:g:g:m".into(),
                "coord:{ns:lead}:g:g:i".into(),
                "coord:{ns:lead}:g:g:s".into(),
                "join".into(),
                "coord:{ns:lead}:g:g:c".into(),
                holder.to_string(),
                "1000".into(),
                "meta".into(),
            ]
        );
    }
}
