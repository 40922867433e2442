//! Unit tests of `ops`: cursor walks while leases come and go, fenced
//! revocation in every family, presences and the audit trail.
//!
//! Time is tokio's, paused: it moves only by `advance`, so every expiry
//! here is decided, not raced.

use std::{collections::HashSet, sync::Mutex, time::Duration};

use coord_api::{
    Error, FencingToken, HolderId, InstanceId, Key, LeaseKind, Namespace,
    spi::{
        AUDIT_KEPT, Acquire, AuditRecord, Cursor, ElectionBackend, GroupBackend, JobBackend,
        LeaseId, LeaseRecord, LockBackend, OnceBegin, OpsBackend, Presence, Resource, ResourceKind,
        Revoked, Role,
    },
};
use tokio::time::advance;

use crate::{Event, Journal, Leased, MemoryBackend, MemoryStore};

const TTL: Duration = Duration::from_secs(10);
const SEC: Duration = Duration::from_secs(1);

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn holder(instance: &str) -> HolderId {
    HolderId::new(InstanceId::new(instance).unwrap())
}

fn backend() -> MemoryBackend {
    MemoryStore::new().backend(Namespace::default())
}

async fn grant(b: &MemoryBackend, kind: LeaseKind, key: &str, h: &HolderId, ttl: Duration) -> u64 {
    let id = LeaseId {
        kind,
        key: k(key),
        holder: h.clone(),
    };
    match b.acquire(&id, ttl).await.unwrap() {
        Acquire::Granted(g) => g.token.get(),
        other => panic!("{key}: expected a grant, got {other:?}"),
    }
}

/// What identifies a listed record in a walk.
fn ident(r: &LeaseRecord) -> (String, String, String, Option<FencingToken>) {
    let (resource, holder) = (r.resource.to_string(), r.holder.to_string());
    (resource, holder, r.role.to_string(), r.token)
}

/// Walks every lease with pages of `limit`, calling `between` after each
/// page; the records seen in order.
async fn walk<F, Fut>(b: &MemoryBackend, limit: u32, mut between: F) -> Vec<LeaseRecord>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let (mut seen, mut cursor, mut pages) = (Vec::new(), Cursor::start(), 0);
    loop {
        let page = b.leases(None, "", &cursor, limit).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        seen.extend(page.items);
        pages += 1;
        between(pages).await;
        match page.next {
            Some(next) => cursor = next,
            None => return seen,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn walk_sees_every_record_live_throughout_exactly_once() {
    let b = backend();
    let keep = holder("keeper");
    let mut stable = HashSet::new();
    let mut live = |r: &str, h: &HolderId, role: &str, t: Option<u64>| {
        stable.insert((
            r.to_owned(),
            h.to_string(),
            role.to_owned(),
            t.map(FencingToken),
        ))
    };
    for i in 0..12 {
        let t = grant(
            &b,
            LeaseKind::Exclusive,
            &format!("lock/{i:02}"),
            &keep,
            TTL,
        )
        .await;
        live(&format!("lock:lock/{i:02}"), &keep, "exclusive", Some(t));
    }
    for r in ["r1", "r2", "r3"] {
        let h = holder(r);
        let t = grant(&b, LeaseKind::Read, "rw", &h, TTL).await;
        live("rwlock:rw", &h, "read", Some(t));
    }
    // Two holders: one holder asking again replaces its permit lease.
    for h in [keep.clone(), holder("keeper2")] {
        let t = grant(&b, LeaseKind::Permit { limit: 3 }, "sem", &h, TTL).await;
        live("semaphore:sem", &h, "permit", Some(t));
    }
    let leader = holder("leader");
    let elected = b
        .campaign(&k("e"), &leader, "", TTL, None, false)
        .await
        .unwrap();
    let coord_api::spi::Campaign::Elected(info) = elected else {
        panic!("elected")
    };
    live("election:e", &leader, "leader", Some(info.term.get()));
    let member = holder("member");
    b.join(&k("g"), &member, "", TTL).await.unwrap();
    live("group:g", &member, "member", None);
    let runner = holder("runner");
    let begun = b.begin(&k("job"), &k("occ"), &runner, TTL).await.unwrap();
    let OnceBegin::Started { token, .. } = begun else {
        panic!("started")
    };
    live("job:job@occ", &runner, "run", Some(token.get()));
    // Some that go during the walk, and one that expired before it.
    let temp = holder("temp");
    for i in 0..6 {
        grant(
            &b,
            LeaseKind::Exclusive,
            &format!("lock/{i:02}x"),
            &temp,
            TTL,
        )
        .await;
    }
    grant(&b, LeaseKind::Exclusive, "lock/expired", &temp, SEC).await;
    advance(2 * SEC).await;

    let newcomer = holder("new");
    let records = walk(&b, 3, |page| {
        let (b, temp, newcomer) = (b.clone(), temp.clone(), newcomer.clone());
        async move {
            // Leases come and go on both sides of the cursor.
            if page <= 6 {
                let gone = LeaseId {
                    kind: LeaseKind::Exclusive,
                    key: k(&format!("lock/{:02}x", page - 1)),
                    holder: temp,
                };
                b.release(&gone).await.unwrap();
                for name in [format!("lock/00{page}"), format!("z/{page}")] {
                    grant(&b, LeaseKind::Exclusive, &name, &newcomer, TTL).await;
                }
            }
        }
    })
    .await;

    let idents: Vec<_> = records.iter().map(ident).collect();
    let distinct: HashSet<_> = idents.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        idents.len(),
        "a record seen twice: {idents:?}"
    );
    for s in &stable {
        assert!(
            distinct.contains(s),
            "{s:?} was live throughout, never seen"
        );
    }
    assert!(
        !idents.iter().any(|(r, ..)| r == "lock:lock/expired"),
        "a lease expired before the walk was listed"
    );
    let permits = records
        .iter()
        .filter(|r| r.resource.kind == ResourceKind::Semaphore);
    assert_eq!(permits.count(), 2, "both permits");
}

#[tokio::test(start_paused = true)]
async fn pages_follow_the_listing_order_and_filters() {
    let b = backend();
    let h = holder("a");
    for name in ["b/1", "a/2", "a/1", "c"] {
        grant(&b, LeaseKind::Exclusive, name, &h, TTL).await;
    }
    grant(&b, LeaseKind::Permit { limit: 2 }, "a/s", &h, TTL).await;
    b.campaign(&k("a/e"), &h, "", TTL, None, false)
        .await
        .unwrap();
    let all = walk(&b, 2, |_| async {}).await;
    let names: Vec<String> = all.iter().map(|r| r.resource.to_string()).collect();
    assert_eq!(
        names,
        [
            "lock:a/1",
            "lock:a/2",
            "lock:b/1",
            "lock:c",
            "semaphore:a/s",
            "election:a/e"
        ]
    );
    let page = b
        .leases(Some(ResourceKind::Lock), "a/", &Cursor::start(), 10)
        .await
        .unwrap();
    let names: Vec<&str> = page
        .items
        .iter()
        .map(|r| r.resource.name.as_str())
        .collect();
    assert_eq!((names, page.next), (vec!["a/1", "a/2"], None));
    for bad in [0, 1001] {
        let res = b.leases(None, "", &Cursor::start(), bad).await;
        assert!(
            matches!(res, Err(Error::InvalidArgument { .. })),
            "{bad}: {res:?}"
        );
    }
    let res = b.leases(None, "", &Cursor::from_text("nonsense"), 10).await;
    assert!(matches!(res, Err(Error::InvalidArgument { .. })), "{res:?}");
}

#[tokio::test(start_paused = true)]
async fn rwlock_lists_readers_and_writer_intents_with_waiters() {
    let b = backend();
    let (r, w) = (holder("reader"), holder("writer"));
    grant(&b, LeaseKind::Read, "rw", &r, TTL).await;
    let id = LeaseId {
        kind: LeaseKind::Write,
        key: k("rw"),
        holder: w.clone(),
    };
    assert!(matches!(
        b.acquire(&id, TTL).await.unwrap(),
        Acquire::Busy(_)
    ));
    let rw = Resource::new(ResourceKind::RwLock, k("rw"));
    let listed = b.describe(&rw).await.unwrap();
    let roles: Vec<_> = listed
        .iter()
        .map(|l| (l.role, l.token.is_some(), l.waiters))
        .collect();
    assert_eq!(
        roles,
        [
            (Role::Lock(LeaseKind::Read), true, Some(1)),
            (Role::WriterIntent, false, Some(1))
        ]
    );
    assert_eq!(listed[1].holder, w);
}

/// Every family: the revoked lease goes, the rest stays, the next grant's
/// token is larger, the old holder's renewal is refused.
#[tokio::test(start_paused = true)]
async fn revoke_removes_exactly_the_lease_with_the_token() {
    let b = backend();
    let (a, c) = (holder("a"), holder("c"));
    let sem = LeaseKind::Permit { limit: 2 };
    let ta = grant(&b, sem, "s", &a, TTL).await;
    let tc = grant(&b, sem, "s", &c, TTL).await;
    let s = Resource::new(ResourceKind::Semaphore, k("s"));
    let out = b.revoke(&s, FencingToken(ta)).await.unwrap();
    assert_eq!(out, Revoked::Released { holder: a.clone() });
    let left: Vec<_> = b
        .describe(&s)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.holder)
        .collect();
    assert_eq!(left, std::slice::from_ref(&c));
    let old = LeaseId {
        kind: sem,
        key: k("s"),
        holder: a.clone(),
    };
    assert!(
        !LockBackend::extend(&b, &old, TTL).await.unwrap(),
        "the revoked permit is gone"
    );
    assert!(grant(&b, sem, "s", &holder("d"), TTL).await > tc);
    let out = b.revoke(&s, FencingToken(ta)).await.unwrap();
    assert!(matches!(out, Revoked::NotFound { current } if current.len() == 2));

    let term = match b.campaign(&k("e"), &a, "", TTL, None, false).await.unwrap() {
        coord_api::spi::Campaign::Elected(info) => info.term,
        other => panic!("{other:?}"),
    };
    let e = Resource::new(ResourceKind::Election, k("e"));
    let stale = FencingToken(term.get() - 1);
    let out = b.revoke(&e, stale).await.unwrap();
    assert_eq!(
        out,
        Revoked::NotFound {
            current: vec![term]
        }
    );
    assert_eq!(
        b.revoke(&e, term).await.unwrap(),
        Revoked::Released { holder: a.clone() }
    );
    assert!(!b.renew(&k("e"), &a, term, TTL, None).await.unwrap());
    match b.campaign(&k("e"), &c, "", TTL, None, false).await.unwrap() {
        coord_api::spi::Campaign::Elected(info) => assert!(info.term > term),
        other => panic!("{other:?}"),
    }

    let OnceBegin::Started { token, attempt: 1 } =
        b.begin(&k("j"), &k("o"), &a, TTL).await.unwrap()
    else {
        panic!("first begin")
    };
    let run = Resource::job(k("j"), k("o"));
    assert_eq!(
        b.revoke(&run, token).await.unwrap(),
        Revoked::Released { holder: a.clone() }
    );
    assert!(
        !JobBackend::extend(&b, &k("j"), &k("o"), &a, TTL)
            .await
            .unwrap()
    );
    match b.begin(&k("j"), &k("o"), &c, TTL).await.unwrap() {
        OnceBegin::Started { token: t, attempt } => assert!((t > token, attempt) == (true, 2)),
        other => panic!("a revoked run begins again: {other:?}"),
    }

    let g = Resource::new(ResourceKind::Group, k("g"));
    b.join(&k("g"), &a, "", TTL).await.unwrap();
    let res = b.revoke(&g, FencingToken(1)).await;
    assert!(matches!(res, Err(Error::InvalidArgument { .. })), "{res:?}");
}

#[tokio::test(start_paused = true)]
async fn revoke_of_one_reader_or_reentrant_lock_leaves_the_rest() {
    let b = backend();
    let (a, c) = (holder("a"), holder("c"));
    let ta = grant(&b, LeaseKind::Read, "rw", &a, TTL).await;
    grant(&b, LeaseKind::Read, "rw", &c, TTL).await;
    let rw = Resource::new(ResourceKind::RwLock, k("rw"));
    assert_eq!(
        b.revoke(&rw, FencingToken(ta)).await.unwrap(),
        Revoked::Released { holder: a }
    );
    let left: Vec<_> = b
        .describe(&rw)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.holder)
        .collect();
    assert_eq!(left, [c]);

    let r = holder("r");
    let t = grant(&b, LeaseKind::Reentrant, "re", &r, TTL).await;
    assert_eq!(grant(&b, LeaseKind::Reentrant, "re", &r, TTL).await, t);
    let re = Resource::new(ResourceKind::Lock, k("re"));
    assert_eq!(b.describe(&re).await.unwrap()[0].holds, 2);
    assert_eq!(
        b.revoke(&re, FencingToken(t)).await.unwrap(),
        Revoked::Released { holder: r }
    );
    assert!(b.describe(&re).await.unwrap().is_empty(), "every hold went");
    assert!(grant(&b, LeaseKind::Exclusive, "re", &holder("n"), TTL).await > t);
}

#[derive(Default)]
struct Released(Mutex<Vec<String>>);

impl Journal for Released {
    fn record(&self, event: Event<'_>) {
        if let Event::Released {
            lease,
            holder,
            released: true,
            ..
        } = event
        {
            let what = match lease {
                Leased::Lock { key, .. } => format!("lock {key}"),
                Leased::Term { election } => format!("term {election}"),
                Leased::Run { job, occurrence } => format!("run {job}@{occurrence}"),
            };
            self.0
                .lock()
                .unwrap()
                .push(format!("{what} by {}", holder.instance()));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn revoke_is_journaled_as_the_holders_release() {
    let journal = std::sync::Arc::new(Released::default());
    let store =
        MemoryStore::with_journal(std::sync::Arc::new(coord_api::TokioClock), journal.clone());
    let b = store.backend(Namespace::default());
    let a = holder("a");
    let t = grant(&b, LeaseKind::Exclusive, "l", &a, TTL).await;
    let l = Resource::new(ResourceKind::Lock, k("l"));
    b.revoke(&l, FencingToken(t + 1)).await.unwrap();
    b.revoke(&l, FencingToken(t)).await.unwrap();
    assert_eq!(*journal.0.lock().unwrap(), ["lock l by a"]);
}

#[tokio::test(start_paused = true)]
async fn presence_keeps_its_first_since_and_expires_at_its_ttl() {
    let b = backend();
    let i = InstanceId::new("i-1").unwrap();
    let p = Presence::new(i, 7, "host", "v=1");
    b.announce(&p, 3 * SEC).await.unwrap();
    let first = b.presence(&[i]).await.unwrap()[0].clone().unwrap();
    advance(2 * SEC).await;
    b.announce(&p, 3 * SEC).await.unwrap();
    let again = b.presence(&[i]).await.unwrap()[0].clone().unwrap();
    assert_eq!(
        (again.since, again.pid, again.expires_in),
        (first.since, 7, 3 * SEC)
    );
    advance(3 * SEC).await;
    assert_eq!(
        b.presence(&[i]).await.unwrap(),
        [None],
        "expired at its TTL"
    );
    assert!(!b.withdraw(&i).await.unwrap(), "nothing live to withdraw");
    b.announce(&p, 3 * SEC).await.unwrap();
    let renewed = b.presence(&[i]).await.unwrap()[0].clone().unwrap();
    assert!(renewed.since > first.since, "a new presence after expiry");
    assert!(b.withdraw(&i).await.unwrap());
    assert_eq!(b.presence(&[i]).await.unwrap(), [None]);
}

/// A paused current-thread runtime (each runtime has its own clock).
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The presence task lives on the runtime of the client's first call. When
/// that runtime ends (start-up work on a runtime of its own, a restarted
/// worker runtime) the task ends with it; the client's next call, on
/// another runtime, starts it again, so a live, busy client's leases are
/// never listed stale.
#[test]
fn presence_outlives_the_runtime_of_the_first_call() {
    let backend = std::sync::Arc::new(backend());
    let presence = coord_api::PresenceOptions::default().ttl(SEC).unwrap();
    let client = coord_api::Client::builder(backend)
        .presence(presence)
        .build();
    let init = paused_runtime();
    init.block_on(async {
        let g = client.lock("init").try_lock().await.unwrap().unwrap();
        g.release().await.unwrap();
        // The presence task announces once.
        tokio::time::sleep(SEC / 10).await;
    });
    drop(init);

    paused_runtime().block_on(async {
        let guard = client.lock("work").try_lock().await.unwrap().unwrap();
        for _ in 0..6 {
            // Busy: a call every half second, for three presence TTLs.
            tokio::time::sleep(SEC / 2).await;
            assert!(guard.is_held());
            let _ = client.lock("other").try_lock().await.unwrap();
        }
        let work = Resource::new(ResourceKind::Lock, k("work"));
        let listed = client.operations().holders(&work).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(
            listed[0].holder_alive,
            "the lease of a live, busy client is listed stale: {:?}",
            listed[0]
        );
    });
}

#[tokio::test(start_paused = true)]
async fn instances_page_in_id_order_and_expired_ones_are_swept() {
    let b = backend();
    for n in 0..300 {
        let p = Presence::new(InstanceId::new(&format!("i{n:03}")).unwrap(), n, "h", "");
        b.announce(&p, if n < 290 { SEC } else { TTL })
            .await
            .unwrap();
    }
    let (mut seen, mut cursor) = (Vec::new(), Cursor::start());
    loop {
        let page = b.instances(&cursor, 7).await.unwrap();
        seen.extend(
            page.items
                .into_iter()
                .map(|p| p.instance.as_str().to_owned()),
        );
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let want: Vec<String> = (0..300).map(|n| format!("i{n:03}")).collect();
    assert_eq!(seen, want);
    // The first sweep (at 256) found none expired; the next comes at 512.
    advance(2 * SEC).await;
    for n in 0..213 {
        let p = Presence::new(InstanceId::new(&format!("late{n}")).unwrap(), 1, "h", "");
        b.announce(&p, TTL).await.unwrap();
    }
    let ops = b.ops_state();
    let kept = ops.presences.get(&Namespace::default()).unwrap().map.len();
    assert_eq!(kept, 10 + 213, "the 290 expired presences were swept");
}

fn audit_record(n: usize) -> AuditRecord {
    let i = InstanceId::new("ops").unwrap();
    let r = Resource::new(ResourceKind::Lock, k("l"));
    AuditRecord::new(
        "alice",
        i,
        "force-release",
        r,
        FencingToken(n as u64),
        "why",
        "",
    )
}

#[tokio::test(start_paused = true)]
async fn audit_keeps_exactly_the_last_audit_kept_newest_first() {
    let b = backend();
    let extra = 5;
    for n in 0..AUDIT_KEPT as usize + extra {
        b.record(&audit_record(n)).await.unwrap();
    }
    let (mut tokens, mut cursor) = (Vec::new(), Cursor::start());
    loop {
        let page = b.audit(&cursor, 1000).await.unwrap();
        tokens.extend(page.items.iter().map(|r| r.token.get()));
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let want: Vec<u64> = (extra as u64..AUDIT_KEPT as u64 + extra as u64)
        .rev()
        .collect();
    assert_eq!(tokens, want);
    let mut empty = audit_record(0);
    empty.reason = " ".into();
    let res = b.record(&empty).await;
    assert!(matches!(res, Err(Error::InvalidArgument { .. })), "{res:?}");
}

/// A task takes and frees leases on every side of the cursor while pages
/// are read on another thread: each walk still sees every lease live
/// throughout it exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_stay_exact_while_another_thread_churns() {
    let b = backend();
    let keep = holder("keeper");
    let mut stable = HashSet::new();
    for i in 0..40 {
        let t = grant(&b, LeaseKind::Exclusive, &format!("k{i:02}"), &keep, TTL).await;
        stable.insert(t);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = tokio::spawn({
        let (b, stop) = (b.clone(), stop.clone());
        async move {
            let h = holder("churn");
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = LeaseId {
                    kind: LeaseKind::Exclusive,
                    key: k(&format!("k{:02}c", n % 45)),
                    holder: h.clone(),
                };
                b.acquire(&id, TTL).await.unwrap();
                b.release(&id).await.unwrap();
                n += 1;
                tokio::task::yield_now().await;
            }
        }
    });
    for _ in 0..20 {
        let seen = walk(&b, 3, |_| tokio::task::yield_now()).await;
        let ordered: Vec<_> = seen
            .iter()
            .map(|r| (r.resource.name.clone(), r.token))
            .collect();
        assert!(ordered.windows(2).all(|w| w[0] < w[1]), "{ordered:?}");
        let kept: Vec<u64> = (seen.iter())
            .filter(|r| r.holder == keep)
            .map(|r| r.token.unwrap().get())
            .collect();
        assert_eq!(kept.len(), stable.len(), "each kept lease once");
        assert_eq!(kept.iter().copied().collect::<HashSet<_>>(), stable);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.await.unwrap();
}
