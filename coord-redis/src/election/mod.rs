//! Leader elections on Redis ([`ElectionBackend`]): one EVALSHA of
//! `election.lua` per operation, after the prelude, `lua/deadlines.lua` and
//! `membership/group.lua` (a quorum is counted from the group's live members
//! in the same step, with the membership script's own upkeep). The server's
//! clock decides expiry (`PEXPIRE` on the leader hash); terms are fencing
//! tokens drawn by the prelude's `next_token`; new terms, resignations and
//! step-downs are PUBLISHed on the election's channel, and watches also wake
//! at the term's expiry instant (expiry publishes nothing). Proclamations
//! are published too; candidacies are not (they would wake every waiting
//! candidate for nothing).
//!
//! # Key layout and Redis Cluster slots
//!
//! ```text
//! coord:{<ns>:lead}:e:<election>:l   leader hash {holder, meta, term, since, seq}, PEXPIRE = the term's lease
//! coord:{<ns>:lead}:e:<election>:s   seq: terms granted
//! coord:{<ns>:lead}:e:<election>:t   term counter (next_token)
//! coord:{<ns>:lead}:e:<election>:w   candidates zset: holder -> deadline (server ms)
//! coord:{<ns>:lead}:e:<election>:i   candidate info hash: holder -> 'since_us|metadata'
//! coord:{<ns>:lead}:e:<election>:c   channel: elected / resigned / stepped_down / proclaimed
//! ```
//!
//! plus, for a quorum, the group's keys (see
//! [`membership`](crate::membership)).
//!
//! **Slot choice.** A quorum election's campaign and renew count the live
//! members of its group inside the same script, so the election's keys and
//! the group's keys must share a Redis Cluster slot. The group is named per
//! call, not per election, so the only tag that always co-locates them is one
//! without the key: every election and group of a namespace hashes to the
//! slot of `{<ns>:lead}`. The cost: a namespace's election and group traffic
//! lands on one cluster node instead of spreading per key. It is low-volume
//! (a renewal every ttl/3 per election, a heartbeat per member), so that is
//! accepted; applications with very many elections can spread them over
//! namespaces.
//!
//! **Key lifetimes.** The leader hash expires with the term. The seq and the
//! term counter live one `MAX_TTL` (24 h) past the latest term's lease (seq
//! and counter are kept by every renewal too): seq is exact while an election is in use,
//! and an idle one leaves nothing behind a day later. If they are lost
//! anyway (a restart without persistence), terms still increase through the
//! server clock and seq starts again from 1 (observers then report the
//! change but cannot count what they skipped). The candidate keys live as
//! long as the latest candidacy: every step that touches them drops the
//! expired ones first, and the last one's expiry takes the keys with it.

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Error, FencingToken, HolderId, Key, Namespace, Result,
    spi::{
        Backend, Campaign, Candidate, ElectionBackend, LeaderInfo, Quorum, Watch,
        election::check_leader_metadata,
    },
};
use redis::Script;

use crate::{
    RedisBackend,
    eval::{self, Eval, Traced, holder_len, millis, script, token, ttl_ms, wall},
    keys::Names,
    membership::{GROUP_PARTS, group_names},
};

pub(crate) static ELECTION: LazyLock<Script> = script!(
    "lua/deadlines.lua",
    "membership/group.lua",
    "election/election.lua"
);

/// An election's key parts, in script order (the channel is `c`).
const PARTS: [char; 5] = ['l', 's', 't', 'w', 'i'];

/// The names of `election`'s keys and channel.
fn election_names(ns: &Namespace, election: &Key) -> Names {
    Names::new(ns, &["lead"], &["e", election.as_str()])
}

/// The trace family of elections.
const FAMILY: &str = "election";

/// `holder, meta, term, since_us, seq, pttl_ms` as the script returns them.
type LeaderRow = (String, String, i64, i64, i64, i64);

/// The EVALSHA of `op` on `election`: its keys, then its quorum group's when
/// there is one (the script then counts the group's live members), the
/// operation and the channel written; then the holder, if any.
pub(crate) fn election_eval(
    ns: &Namespace,
    election: &Key,
    quorum: Option<&Quorum>,
    op: &'static str,
    holder: Option<&HolderId>,
) -> (Eval, Option<Names>) {
    let mut names = election_names(ns, election);
    let mut group = quorum.map(|q| group_names(ns, &q.group));
    let keys = PARTS.len() + group.as_ref().map_or(0, |_| GROUP_PARTS.len());
    let bytes = 8 * names.len().max(group.as_ref().map_or(0, Names::len)) + holder_len(holder);
    let mut eval = Eval::new(&ELECTION, keys, 8, bytes + 64);
    for p in PARTS {
        names.write(&mut eval, p);
    }
    if let Some(g) = &mut group {
        for p in GROUP_PARTS {
            g.write(&mut eval, p);
        }
    }
    eval.arg(op);
    names.write(&mut eval, 'c');
    if let Some(h) = holder {
        eval.holder(h);
    }
    (eval, group)
}

/// Appends what campaign and renew pass after their term argument: the TTL,
/// and the quorum's minimum and group channel (0 and none without one).
fn quorum_args(eval: &mut Eval, ttl: u64, quorum: Option<&Quorum>, group: Option<Names>) {
    eval.arg(ttl);
    match (quorum, group) {
        (Some(q), Some(mut g)) => {
            eval.arg(q.min_members);
            g.write(eval, 'c');
        }
        _ => {
            eval.arg(0).arg("");
        }
    }
}

impl RedisBackend {
    fn leader_info(&self, election: &Key, row: LeaderRow) -> Result<Option<LeaderInfo>> {
        let (holder, metadata, term, since, seq, pttl) = row;
        if holder.is_empty() {
            return Ok(None);
        }
        Ok(Some(LeaderInfo::new(
            self.stored_holder(election, &holder)?,
            metadata,
            token(term),
            wall(since),
            seq.max(0) as u64,
            millis(pttl).unwrap_or_default(),
        )))
    }
}

#[async_trait]
impl ElectionBackend for RedisBackend {
    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
        stand: bool,
    ) -> Result<Campaign> {
        let ttl = ttl_ms(election, ttl)?;
        check_leader_metadata(election, metadata)?;
        let (mut eval, group) =
            election_eval(self.namespace(), election, quorum, "campaign", Some(holder));
        eval.arg(metadata);
        quorum_args(&mut eval, ttl, quorum, group);
        eval.arg(u8::from(stand));
        type Reply = (i64, i64, String, String, i64, i64, i64, i64);
        let call = Traced::new("campaign", FAMILY, election).by(holder);
        let (elected, no_quorum, h, m, term, since, seq, pttl): Reply = self
            .eval(call, &eval, |r: &Reply| match r.0 {
                1 => ("elected", Some(token(r.4).get())),
                _ => ("busy", None),
            })
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
        let (mut eval, group) =
            election_eval(self.namespace(), election, quorum, "renew", Some(holder));
        eval.arg(term.get());
        quorum_args(&mut eval, ttl, quorum, group);
        let call = Traced::new("renew", FAMILY, election).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool> {
        let (mut eval, _) = election_eval(self.namespace(), election, None, "resign", Some(holder));
        eval.arg(term.get());
        let call = Traced::new("resign", FAMILY, election).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn withdraw_candidacy(&self, election: &Key, holder: &HolderId) -> Result<bool> {
        let (eval, _) = election_eval(self.namespace(), election, None, "withdraw", Some(holder));
        let call = Traced::new("withdraw_candidacy", FAMILY, election).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn candidates(&self, election: &Key) -> Result<Vec<Candidate>> {
        let (eval, _) = election_eval(self.namespace(), election, None, "candidates", None);
        let call = Traced::new("candidates", FAMILY, election);
        let rows: Vec<(String, String, i64)> = self.eval(call, &eval, eval::ok).await?;
        let mut all = Vec::with_capacity(rows.len());
        for (holder, info, pttl) in rows {
            let (since, metadata) = info.split_once('|').unwrap_or(("0", ""));
            let since = wall(since.parse().unwrap_or(0));
            let holder = self.stored_holder(election, &holder)?;
            let left = millis(pttl).unwrap_or_default();
            all.push(Candidate::new(holder, metadata, since, left));
        }
        all.sort_by(|a, b| (a.since, &a.holder).cmp(&(b.since, &b.holder)));
        Ok(all)
    }

    async fn proclaim(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        metadata: &str,
    ) -> Result<bool> {
        check_leader_metadata(election, metadata)?;
        let (mut eval, _) =
            election_eval(self.namespace(), election, None, "proclaim", Some(holder));
        eval.arg(term.get()).arg(metadata);
        let call = Traced::new("proclaim", FAMILY, election).by(holder);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>> {
        let (eval, _) = election_eval(self.namespace(), election, None, "leader", None);
        let call = Traced::new("leader", FAMILY, election);
        let row: LeaderRow = self.eval(call, &eval, eval::ok).await?;
        self.leader_info(election, row)
    }

    async fn terms_granted(&self, election: &Key) -> Result<Option<u64>> {
        let (eval, _) = election_eval(self.namespace(), election, None, "terms_granted", None);
        let call = Traced::new("terms_granted", FAMILY, election);
        let seq: i64 = self.eval(call, &eval, eval::ok).await?;
        Ok(Some(seq.max(0) as u64))
    }

    async fn watch(&self, election: &Key) -> Result<Box<dyn Watch>> {
        let channel = election_names(self.namespace(), election).name('c');
        let (expiry, _) = election_eval(self.namespace(), election, None, "expiry", None);
        self.expiry_watch(FAMILY, election, channel, expiry).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash_tag;

    #[test]
    fn an_election_and_its_quorum_group_share_a_slot() {
        let ns = Namespace::new("ns").unwrap();
        let quorum = Quorum {
            group: Key::new("g}{x").unwrap(),
            min_members: 2,
        };
        let holder = HolderId::new(coord_api::InstanceId::new("a").unwrap());
        let election = Key::new("e}:1").unwrap();
        let (mut eval, group) =
            election_eval(&ns, &election, Some(&quorum), "renew", Some(&holder));
        eval.arg(7u64);
        quorum_args(&mut eval, 1000, Some(&quorum), group);
        let args = eval::written(&eval);
        // EVALSHA sha numkeys, 8 keys, op, channel, holder, term, ttl, min,
        // group channel.
        assert_eq!(args[2], "8");
        let (keys, argv) = args[3..].split_at(8);
        assert!(keys.iter().all(|k| hash_tag(k) == "ns:lead"), "{keys:?}");
        assert_eq!(argv[0], "renew");
        assert_eq!(hash_tag(&argv[1]), "ns:lead");
        assert_eq!(argv[2], holder.to_string());
        assert_eq!(argv[3..6], ["7", "1000", "2"]);
        assert_eq!(hash_tag(&argv[6]), "ns:lead");
        assert_eq!(argv[6], group_names(&ns, &quorum.group).name('c'));

        let (eval, _) = election_eval(&ns, &Key::new("a").unwrap(), None, "leader", None);
        assert_eq!(
            eval::written(&eval)[2..],
            [
                "5",
                "coord:{ns:lead}:e:a:l",
                "coord:{ns:lead}:e:a:s",
                "coord:{ns:lead}:e:a:t",
                "coord:{ns:lead}:e:a:w",
                "coord:{ns:lead}:e:a:i",
                "leader",
                "coord:{ns:lead}:e:a:c"
            ]
        );
    }

    #[test]
    fn elections_and_groups_never_share_a_name() {
        let ns = Namespace::new("ns").unwrap();
        let k = |s: &str| Key::new(s).unwrap();
        let mut e = election_names(&ns, &k("x"));
        let mut g = group_names(&ns, &k("x"));
        for p in ['l', 's', 't', 'w', 'i', 'm', 'c'] {
            assert_ne!(e.name(p), g.name(p));
        }
        // An election whose name ends like another's part never meets it.
        let mut e2 = election_names(&ns, &k("x:l"));
        assert_ne!(e2.name('s'), e.name('l'));
    }
}
