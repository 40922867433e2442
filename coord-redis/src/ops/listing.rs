//! Listing live leases across families without a registry: the keyspace is
//! the registry. A page walks `SCAN cursor MATCH coord:{<ns>:… COUNT n`
//! (never `KEYS`), recognises each family's lease-bearing keys by their
//! layout, and reads them through the family's own read path (lock and
//! semaphore `list`: `inspect` and how many wait in a fair key's queue,
//! read-write lock `list`, election `listed`: the leader and how many
//! candidates wait, group `members`, job `run`, queue and topic `leases`:
//! their live deliveries), pipelined: one round trip per batch of keys.
//!
//! | kind | key a lease is listed from (one key, one set of records) |
//! |---|---|
//! | lock | `coord:{<ns>:lock:<key>}:l` |
//! | rwlock | `…:w` (the writer), `…:r` (readers), `…:i` (writer intents) |
//! | semaphore | `coord:{<ns>:semaphore:<key>}:p` (permits) |
//! | election | `coord:{<ns>:lead}:e:<election>:l` (the term) |
//! | group | `coord:{<ns>:lead}:g:<group>:m` (members) |
//! | job | `coord:{<ns>:job:<len>:<job>}:<occurrence>:r` (the run) |
//! | queue | `coord:{<ns>:queue:<len>:<queue>}:l` (deliveries in flight) |
//! | topic | `coord:{<ns>:topic:<len>:<topic>}:<len>:<subscription>:f` (deliveries) |
//!
//! # The cursor
//!
//! Lines joined by `\n` (keys and holders hold no control characters):
//! the SCAN cursor to continue from (`-` once SCAN is done), the holder of
//! the last record taken from the first pending key (empty: none; for a
//! queue or a subscription, whose deliveries are taken in token order, its
//! token), then
//! the keys SCAN returned that the page had no room for (without the
//! `coord:{<ns>:` prefix). So `limit` bounds a page while nothing SCAN
//! returned is dropped; pending keys are read again when their turn comes
//! (a lease gone by then is not listed), and a key's records are taken in
//! holder order, so one whose holders outnumber a page resumes after the
//! last holder taken. A record live for the whole walk is listed once,
//! unless SCAN itself returns its key twice (it may while the keyspace's
//! table is resized during the walk); the cursor holds at most one SCAN
//! batch of keys.
//!
//! On a Redis Cluster the walk SCANs every shard in turn, in the order of
//! the lowest slot each master serves (from `CLUSTER SLOTS`), and reads
//! each key in a request of its own, all at once (keys of several slots
//! cannot share a pipeline). The cursor's first line is then `<the shard's
//! lowest slot>.<its master's node id>/<SCAN cursor>`: a shard is named by
//! its slots, not by its master's place among the masters, so a failover
//! elsewhere does not shift the walk onto another shard, and when another
//! master serves the shard's slot (its replica took over), the shard is
//! SCANned again from the start on it (a SCAN cursor means nothing on
//! another server): records listed twice, none missed. Slots that move to
//! another shard during a walk (resharding) may still make it list a
//! record twice or miss one that moved.

use std::collections::VecDeque;

use coord_api::{
    Error, FencingToken, Key, Namespace, Result,
    spi::{
        Backend, Cursor, LeaseRecord, LockSpace, Page, Resource, ResourceKind, Revoked, Role,
        ops::check_limit,
    },
};
use redis::Value;

use crate::{
    RedisBackend,
    election::election_eval,
    eval::{self, Eval, Request, Traced, count, millis, token, wall},
    jobs::job_eval,
    locks::{besides_acquire, fair::list_eval, lock_eval, stored_kind},
    membership::group_eval,
    queues::queue_eval,
    topics::topic_eval,
};

/// The most round trips one page makes before it answers (possibly with
/// fewer records than asked: a sparse MATCH may need many SCAN calls).
const MAX_TRIPS: usize = 32;

mod keys;

use keys::base;
pub(crate) use keys::{Found, parse_key, pattern};

/// Where a walk stands (see the module's docs).
#[derive(Debug, Default, PartialEq, Eq)]
struct Walk {
    /// On a cluster, the shard being scanned: the lowest slot its master
    /// serves, and that master's node id; `None` on one server (and at
    /// the start of a cluster walk).
    shard: Option<(u16, String)>,
    /// The SCAN cursor to continue from; `None` once SCAN is done.
    scan: Option<u64>,
    /// The holder of the last record taken from `pending[0]`.
    after: Option<String>,
    /// Keys returned by SCAN and not yet listed, with what they bear.
    pending: VecDeque<(String, Found)>,
}

impl Walk {
    fn decode(ns: &Namespace, cursor: &Cursor) -> Result<Walk> {
        if cursor.is_start() {
            return Ok(Walk {
                scan: Some(0),
                ..Walk::default()
            });
        }
        let bad = || {
            Error::invalid(format!(
                "leases: cursor {:?} is not one this backend gave",
                cursor.as_str().chars().take(64).collect::<String>()
            ))
        };
        let mut lines = cursor.as_str().split('\n');
        let first = lines.next().ok_or_else(bad)?;
        let (shard, scan) = match first.split_once('/') {
            Some((shard, s)) => {
                let (slot, id) = shard.split_once('.').ok_or_else(bad)?;
                let slot = slot.parse().map_err(|_| bad())?;
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(bad());
                }
                (Some((slot, id.to_owned())), s)
            }
            None => (None, first),
        };
        let scan = match scan {
            "-" => None,
            s => Some(s.parse().map_err(|_| bad())?),
        };
        let after = lines.next().ok_or_else(bad)?;
        let b = base(ns);
        let pending = lines
            .map(|rest| {
                let key = format!("{b}{rest}");
                parse_key(ns, &key).map(|f| (key, f)).ok_or_else(bad)
            })
            .collect::<Result<VecDeque<_>>>()?;
        Ok(Walk {
            shard,
            scan,
            after: (!after.is_empty()).then(|| after.to_owned()),
            pending,
        })
    }

    fn encode(&self, ns: &Namespace) -> Cursor {
        let skip = base(ns).len();
        let mut text = match &self.shard {
            None => String::new(),
            Some((slot, id)) => format!("{slot}.{id}/"),
        };
        text.push_str(&self.scan.map_or("-".to_owned(), |c| c.to_string()));
        text.push('\n');
        text.push_str(self.after.as_deref().unwrap_or(""));
        for (key, _) in &self.pending {
            text.push('\n');
            text.push_str(&key[skip..]);
        }
        Cursor::from_text(text)
    }

    fn done(&self) -> bool {
        self.scan.is_none() && self.pending.is_empty()
    }

    /// Where the shard this walk is on lives among `masters` (in the order
    /// of their lowest slots): the first shard at the start; when another
    /// master serves the shard's slot now (its replica took over), that
    /// one, from the start of a SCAN. `None` when no master serves it.
    fn on_shard(&mut self, masters: &[Master]) -> Option<usize> {
        let Some((slot, id)) = &self.shard else {
            let first = masters.first()?;
            self.shard = Some((first.first(), first.id.clone()));
            return Some(0);
        };
        let slot = *slot;
        let i = masters.iter().position(|m| m.serves(slot))?;
        if masters[i].id != *id {
            self.shard = Some((slot, masters[i].id.clone()));
            self.scan = Some(0);
        }
        Some(i)
    }

    /// On to the shard after this one (by lowest slot), from the start of
    /// its SCAN; the walk's SCANs are done after the last.
    fn next_shard(&mut self, masters: &[Master]) {
        let slot = self.shard.as_ref().map_or(0, |(slot, _)| *slot);
        if let Some(next) = masters.iter().find(|m| m.first() > slot) {
            self.shard = Some((next.first(), next.id.clone()));
            self.scan = Some(0);
        }
    }
}

/// A master of the cluster: the slot ranges it serves, where it listens
/// and its node id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Master {
    ranges: Vec<(u16, u16)>,
    host: String,
    port: u16,
    id: String,
}

impl Master {
    /// The lowest slot it serves: the name of its shard in a walk.
    fn first(&self) -> u16 {
        self.ranges.iter().map(|(from, _)| *from).min().unwrap_or(0)
    }

    fn serves(&self, slot: u16) -> bool {
        (self.ranges.iter()).any(|&(from, to)| (from..=to).contains(&slot))
    }
}

/// A lease record and its holder's text (the order within a key).
type Row = (String, LeaseRecord);

impl RedisBackend {
    /// One page of the listing (see the module's docs).
    pub(crate) async fn lease_page(
        &self,
        kind: Option<ResourceKind>,
        prefix: &str,
        cursor: &Cursor,
        limit: u32,
    ) -> Result<Page<LeaseRecord>> {
        check_limit("leases", limit)?;
        let ns = self.namespace();
        let mut walk = Walk::decode(ns, cursor)?;
        let pat = pattern(ns, kind, prefix);
        let limit = limit as usize;
        let trace = Key::new("leases")?;
        let mut items = Vec::new();
        for _ in 0..MAX_TRIPS {
            if items.len() == limit || walk.done() {
                break;
            }
            if walk.pending.is_empty() {
                self.scan_batch(&mut walk, &pat, kind, prefix, limit, &trace)
                    .await?;
                continue;
            }
            let n = walk.pending.len().min(limit);
            let found: Vec<&Found> = walk.pending.iter().take(n).map(|(_, f)| f).collect();
            // One more record per key than a page holds: a key that has
            // more than fit says so, and the walk resumes inside it.
            let page = Some((walk.after.as_deref(), limit + 1));
            let read = self.read_leases(&found, page, &trace).await?;
            for mut rows in read {
                if let Some(after) = walk.after.take() {
                    rows.retain(|(h, _)| *h > after);
                }
                let room = limit - items.len();
                if rows.len() > room {
                    walk.after = rows.get(room.wrapping_sub(1)).map(|(h, _)| h.clone());
                    items.extend(rows.into_iter().take(room).map(|(_, r)| r));
                    break;
                }
                items.extend(rows.into_iter().map(|(_, r)| r));
                walk.pending.pop_front();
            }
        }
        let next = (!walk.done()).then(|| walk.encode(ns));
        Ok(Page::new(items, next))
    }

    /// One SCAN call: its keys that bear leases of `kind` named with
    /// `prefix` join the pending ones (once each).
    async fn scan_batch(
        &self,
        walk: &mut Walk,
        pat: &str,
        kind: Option<ResourceKind>,
        prefix: &str,
        limit: usize,
        trace: &Key,
    ) -> Result<()> {
        let call = Traced::new("scan", "ops", trace);
        // On a cluster, the shard's master now (the walk starts the shard
        // again on another one).
        let cluster = match self.is_cluster() {
            true => {
                let masters = self.cluster_masters(trace).await?;
                let Some(i) = walk.on_shard(&masters) else {
                    let slot = walk.shard.as_ref().map_or(0, |(slot, _)| *slot);
                    let what =
                        format!("leases: no master serves slot {slot} (the cluster is down?)");
                    return Err(Error::unavailable(self, what));
                };
                Some((masters, i))
            }
            false => None,
        };
        let Some(at) = walk.scan else { return Ok(()) };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(at)
            .arg("MATCH")
            .arg(pat)
            .arg("COUNT")
            .arg(limit.max(20));
        let request = match &cluster {
            Some((masters, i)) => Request::At(&cmd, &masters[*i].host, masters[*i].port),
            None => Request::Cmd(&cmd),
        };
        let (next, keys): (String, Vec<Vec<u8>>) = self.query(call, request, &[]).await?;
        let next: u64 = next
            .parse()
            .map_err(|_| Error::backend(self, format!("SCAN answered the cursor {next:?}")))?;
        walk.scan = (next != 0).then_some(next);
        if walk.scan.is_none()
            && let Some((masters, _)) = &cluster
        {
            walk.next_shard(masters);
        }
        let ns = self.namespace();
        for key in keys {
            let Ok(key) = String::from_utf8(key) else {
                continue;
            };
            let Some(found) = parse_key(ns, &key) else {
                continue;
            };
            let r = &found.resource;
            if kind.is_some_and(|k| k != r.kind) || !r.name.as_str().starts_with(prefix) {
                continue;
            }
            if !walk.pending.iter().any(|(k, _)| *k == key) {
                walk.pending.push_back((key, found));
            }
        }
        Ok(())
    }

    /// The masters of the cluster (`CLUSTER SLOTS`), in the order of the
    /// lowest slot each serves: a cluster walk SCANs each in turn.
    async fn cluster_masters(&self, trace: &Key) -> Result<Vec<Master>> {
        let call = Traced::new("scan", "ops", trace);
        let cmd = redis::cmd("CLUSTER").arg("SLOTS").to_owned();
        let ranges: Vec<Value> = self.query(call, Request::Cmd(&cmd), &[]).await?;
        let mut masters: Vec<Master> = Vec::new();
        for r in &ranges {
            let parsed = (|| {
                let r = eval::array(r)?;
                let (from, to) = (eval::uint(r.first()?)?, eval::uint(r.get(1)?)?);
                let node = eval::array(r.get(2)?)?;
                let (host, port) = (eval::text(node.first()?)?, eval::uint(node.get(1)?)?);
                Some((
                    from,
                    to,
                    host.to_owned(),
                    port,
                    eval::text(node.get(2)?)?.to_owned(),
                ))
            })();
            let Some((from, to, host, port, id)) = parsed else {
                return Err(self.unexpected(call, ranges));
            };
            match masters.iter_mut().find(|m| m.id == id) {
                Some(m) => m.ranges.push((from, to)),
                None => masters.push(Master {
                    ranges: vec![(from, to)],
                    host,
                    port,
                    id,
                }),
            }
        }
        masters.sort_by_key(Master::first);
        if masters.is_empty() {
            return Err(self.unexpected(call, ranges));
        }
        Ok(masters)
    }

    /// The records each of `found` bears, in holder order, read in one
    /// pipelined round trip (on a cluster, one request per key, all at
    /// once: the keys live in several slots).
    ///
    /// `page`: the holder (row key) the first key's records resume after,
    /// and how many records of each key are wanted at most (`None`: every
    /// record). Queues and subscriptions read only that many; the other
    /// families' keys hold few records and are read whole.
    pub(crate) async fn read_leases(
        &self,
        found: &[&Found],
        page: Option<(Option<&str>, usize)>,
        trace: &Key,
    ) -> Result<Vec<Vec<Row>>> {
        let eval_of = |i: usize, f: &Found| {
            let after = page.and_then(|(after, _)| after.filter(|_| i == 0));
            let after = after.and_then(|a| a.parse::<u64>().ok());
            self.read_eval(&f.resource, after, page.map(|(_, limit)| limit))
        };
        let call = Traced::new("read", "ops", trace);
        let replies: Vec<Value> = if self.is_cluster() {
            let reads = found.iter().enumerate().map(|(i, f)| {
                let eval = eval_of(i, f);
                async move { (self.query(call, Request::Cmd(eval.cmd()), &[eval.script()])).await }
            });
            futures_util::future::try_join_all(reads).await?
        } else {
            let mut pipe = redis::pipe();
            let mut scripts: Vec<&'static redis::Script> = Vec::new();
            for (i, f) in found.iter().enumerate() {
                let eval = eval_of(i, f);
                if !scripts.iter().any(|s| std::ptr::eq(*s, eval.script())) {
                    scripts.push(eval.script());
                }
                pipe.add_command(eval.cmd().clone());
            }
            self.query(call, Request::Pipe(&pipe), &scripts).await?
        };
        if replies.len() != found.len() {
            return Err(self.unexpected(call, replies.len()));
        }
        found
            .iter()
            .zip(replies)
            .map(|(f, v)| {
                let mut rows = self.decode_leases(f, v)?;
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(rows)
            })
            .collect()
    }

    /// The read of every lease of `r` (the family's inspect-style path); of
    /// a queue's or subscription's, those whose token is past `after`, at
    /// most `limit`.
    fn read_eval(&self, r: &Resource, after: Option<u64>, limit: Option<usize>) -> Eval {
        let text = |n: Option<u64>| n.map_or(String::new(), |n| n.to_string());
        let (after, limit) = (text(after), text(limit.map(|l| l as u64)));
        let ns = self.namespace();
        match (r.kind, &r.occurrence) {
            (ResourceKind::RwLock, _) => {
                let rw = LockSpace::RwLock;
                lock_eval(ns, rw, &r.name, besides_acquire(rw), "list", None).0
            }
            (ResourceKind::Semaphore, _) => list_eval(ns, LockSpace::Semaphore, &r.name),
            (ResourceKind::Election, _) => election_eval(ns, &r.name, None, "listed", None).0,
            (ResourceKind::Group, _) => group_eval(ns, &r.name, "members", None),
            (ResourceKind::Job, Some(occ)) => job_eval(ns, &r.name, occ, "run", None),
            (ResourceKind::Queue, _) => {
                let mut e = queue_eval(ns, &r.name, "leases", 3, 60);
                e.arg(text(r.item)).arg(&after).arg(&limit);
                e
            }
            (ResourceKind::Topic, _) => {
                let mut e = topic_eval(ns, &r.name, r.subscription.as_ref(), "leases", 3);
                e.arg(text(r.item)).arg(&after).arg(&limit);
                e
            }
            _ => list_eval(ns, LockSpace::Lock, &r.name),
        }
    }

    /// The records of `found` in a reply of its read.
    fn decode_leases(&self, found: &Found, v: Value) -> Result<Vec<Row>> {
        let r = &found.resource;
        let call = Traced::new("decode", r.kind.as_str(), &r.name);
        let bad = |v: &dyn std::fmt::Debug| self.unexpected(call, format!("{v:?}"));
        let holder = |text: &str| self.stored_holder(&r.name, text);
        let record = |text: String, role, tok: Option<i64>, left: i64| -> Result<Row> {
            let left = millis(left).unwrap_or_default();
            let rec = LeaseRecord::new(r.clone(), role, holder(&text)?, tok.map(token), left);
            Ok((text, rec))
        };
        let rows = match r.kind {
            ResourceKind::Lock | ResourceKind::RwLock | ResourceKind::Semaphore => {
                type LockRow = (String, String, i64, i64, i64, i64);
                let rows: Vec<LockRow> = redis::from_redis_value(v).map_err(|e| bad(&e))?;
                let space = match r.kind {
                    ResourceKind::Lock => LockSpace::Lock,
                    ResourceKind::RwLock => LockSpace::RwLock,
                    _ => LockSpace::Semaphore,
                };
                let intents = rows.iter().filter(|row| row.0 == "i").count();
                // A fair key's live places in its queue (fair.lua's list).
                let queued = rows.iter().find(|row| row.0 == "q").map(|row| row.3);
                let mut out = Vec::with_capacity(rows.len());
                for (kind, who, tok, holds, left, limit) in rows {
                    if kind == "q" {
                        continue;
                    }
                    if found
                        .part
                        .is_some_and(|p| space == LockSpace::RwLock && kind.as_bytes() != [p])
                    {
                        continue;
                    }
                    let (role, tok) = match stored_kind(space, &kind, limit, holds) {
                        Some(k) => (Role::Lock(k), Some(tok)),
                        None if kind == "i" => (Role::WriterIntent, None),
                        None => return Err(bad(&kind)),
                    };
                    let (text, mut rec) = record(who, role, tok, left)?;
                    rec = rec.holds(count(holds, 1));
                    if space == LockSpace::RwLock {
                        rec = rec.waiters(count(intents as i64, 0));
                    } else if let Some(queued) = queued {
                        rec = rec.waiters(count(queued, 0));
                    }
                    out.push((text, rec));
                }
                out
            }
            ResourceKind::Election => {
                type Listed = (String, String, i64, i64, i64, i64, i64);
                let (who, _meta, term, since, _seq, left, candidates): Listed =
                    redis::from_redis_value(v).map_err(|e| bad(&e))?;
                if who.is_empty() {
                    return Ok(Vec::new());
                }
                let (text, rec) = record(who, Role::Leader, Some(term), left)?;
                let rec = rec.since(wall(since)).waiters(count(candidates, 0));
                vec![(text, rec)]
            }
            ResourceKind::Group => {
                let (_seq, rows): (i64, Vec<(String, i64, String, i64)>) =
                    redis::from_redis_value(v).map_err(|e| bad(&e))?;
                (rows.into_iter())
                    .map(|(who, joined, _meta, left)| {
                        let (text, rec) = record(who, Role::Member, None, left)?;
                        Ok((text, rec.since(wall(joined))))
                    })
                    .collect::<Result<_>>()?
            }
            ResourceKind::Queue => {
                let rows: Vec<(u64, i64, i64, i64, String)> =
                    redis::from_redis_value(v).map_err(|e| bad(&e))?;
                (rows.into_iter())
                    .map(|(item, tok, left, started, who)| {
                        let role = if started == 1 {
                            Role::Delivery
                        } else {
                            Role::Prefetched
                        };
                        let (_, mut rec) = record(who, role, Some(tok), left)?;
                        rec.resource.item = Some(item);
                        Ok((format!("{tok:020}"), rec))
                    })
                    .collect::<Result<_>>()?
            }
            ResourceKind::Topic => {
                let rows: Vec<(u64, i64, i64, String)> =
                    redis::from_redis_value(v).map_err(|e| bad(&e))?;
                (rows.into_iter())
                    .map(|(offset, tok, left, who)| {
                        let (_, mut rec) = record(who, Role::Delivery, Some(tok), left)?;
                        rec.resource.item = Some(offset);
                        Ok((format!("{tok:020}"), rec))
                    })
                    .collect::<Result<_>>()?
            }
            _ => {
                let run: Vec<Value> = redis::from_redis_value(v).map_err(|e| bad(&e))?;
                match run.as_slice() {
                    [] => Vec::new(),
                    [who, tok, left] => {
                        let who = eval::text(who).ok_or_else(|| bad(&run))?;
                        let (tok, left) = (eval::int(tok), eval::int(left));
                        let (tok, left) = tok.zip(left).ok_or_else(|| bad(&run))?;
                        vec![record(who.to_owned(), Role::Run, Some(tok), left)?]
                    }
                    _ => return Err(bad(&run)),
                }
            }
        };
        Ok(rows)
    }

    /// The live leases of `resource`.
    pub(crate) async fn describe_resource(&self, resource: &Resource) -> Result<Vec<LeaseRecord>> {
        resource.check()?;
        let found = Found {
            resource: resource.clone(),
            part: None,
        };
        let mut read = self.read_leases(&[&found], None, &resource.name).await?;
        Ok(read
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Removes `r`'s live lease carrying `tok` through its family's
    /// `revoke` operation.
    pub(crate) async fn revoke_lease(&self, r: &Resource, tok: FencingToken) -> Result<Revoked> {
        r.check()?;
        let ns = self.namespace();
        let lock = |space: LockSpace| {
            let (mut eval, mut names) =
                lock_eval(ns, space, &r.name, besides_acquire(space), "revoke", None);
            if space == LockSpace::Lock {
                eval.arg(tok.get());
                names.write(&mut eval, 'c');
            } else {
                names.write(&mut eval, 'c');
                eval.arg(tok.get());
            }
            eval
        };
        let eval = match (r.kind, &r.occurrence) {
            (ResourceKind::Lock, _) => lock(LockSpace::Lock),
            (ResourceKind::RwLock, _) => lock(LockSpace::RwLock),
            (ResourceKind::Semaphore, _) => lock(LockSpace::Semaphore),
            (ResourceKind::Election, _) => {
                let mut e = election_eval(ns, &r.name, None, "revoke", None).0;
                e.arg(tok.get());
                e
            }
            (ResourceKind::Job, Some(occ)) => {
                let mut e = job_eval(ns, &r.name, occ, "revoke", None);
                e.arg(tok.get());
                e
            }
            (ResourceKind::Queue, _) => {
                let Some(item) = r.item else {
                    return Err(Error::invalid(format!(
                        "{r}: name the item whose delivery to revoke ({r}@ITEM; \
                         `describe` lists them)"
                    )));
                };
                let mut e = queue_eval(ns, &r.name, "revoke", 2, 40);
                e.arg(item).arg(tok.get());
                e
            }
            (ResourceKind::Topic, _) => {
                let (Some(sub), Some(offset)) = (&r.subscription, r.item) else {
                    return Err(Error::invalid(format!(
                        "{r}: name the event whose delivery to revoke ({r}@OFFSET; \
                         `describe` lists them)"
                    )));
                };
                let mut e = topic_eval(ns, &r.name, Some(sub), "revoke", 2);
                e.arg(offset).arg(tok.get());
                e
            }
            _ => {
                return Err(Error::invalid(format!(
                    "{r}: its leases carry no fencing token, so none can be revoked"
                )));
            }
        };
        let call = Traced::new("revoke", r.kind.as_str(), &r.name);
        let reply: Value = self
            .eval(call, &eval, |v: &Value| {
                match eval::array(v).map(|a| a.first()) {
                    Some(Some(Value::Int(1))) => ("revoked", None),
                    _ => ("not_found", None),
                }
            })
            .await?;
        let bad = || self.unexpected(call, &reply);
        match eval::array(&reply).ok_or_else(bad)? {
            [Value::Int(1), who] => Ok(Revoked::Released {
                holder: self.stored_holder(&r.name, eval::text(who).ok_or_else(bad)?)?,
            }),
            [Value::Int(0), Value::Array(live)] => Ok(Revoked::NotFound {
                current: live.iter().filter_map(eval::int).map(token).collect(),
            }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests;
