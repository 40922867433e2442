//! loom: the lease table never grants two holders, under every interleaving
//! of concurrent acquires, releases and extensions.
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p coord-memory --test loom`
#![cfg(loom)]

use std::{sync::Arc, time::Duration};

use coord_api::{
    Clock, HolderId, InstanceId, Instant, Key, LeaseKind, LockSpace, Namespace, Sleep,
    spi::{Acquire, LeaseId, Release},
};
use coord_memory::table::LeaseTable;
use loom::sync::atomic::{AtomicUsize, Ordering};

/// A clock that never moves: loom explores interleavings, not time.
#[derive(Debug)]
struct Frozen(Instant);

impl Clock for Frozen {
    fn now(&self) -> Instant {
        self.0
    }
    fn wall(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH
    }
    fn sleep_until(&self, _: Instant) -> Sleep {
        Box::pin(std::future::pending())
    }
}

fn lease(kind: LeaseKind, who: &str) -> LeaseId {
    LeaseId {
        kind,
        key: Key::new("k").unwrap(),
        holder: HolderId::from_parts(InstanceId::new(who).unwrap(), 7),
    }
}

const TTL: Duration = Duration::from_secs(10);

#[test]
fn exclusive_never_granted_twice() {
    let now = Instant::now();
    loom::model(move || {
        let table = Arc::new(LeaseTable::new(&Frozen(now)));
        let inside = Arc::new(AtomicUsize::new(0));
        let ns = Namespace::default();
        let threads: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|who| {
                let (table, inside, ns) = (table.clone(), inside.clone(), ns.clone());
                loom::thread::spawn(move || {
                    let id = lease(LeaseKind::Exclusive, who);
                    if let Acquire::Granted(_) = table.acquire(&ns, &id, TTL, now).unwrap() {
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        inside.fetch_sub(1, Ordering::SeqCst);
                        let (r, _) = table.release(&ns, &id, now);
                        assert_eq!(r, Release::Released { remaining: 0 });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Whatever happened, nothing stays held.
        assert!(
            table
                .inspect(&ns, LockSpace::Lock, &Key::new("k").unwrap(), now)
                .is_empty()
        );
    });
}

#[test]
fn writer_and_reader_never_overlap() {
    let now = Instant::now();
    loom::model(move || {
        let table = Arc::new(LeaseTable::new(&Frozen(now)));
        let writers = Arc::new(AtomicUsize::new(0));
        let readers = Arc::new(AtomicUsize::new(0));
        let ns = Namespace::default();
        let threads: Vec<_> = [("w", LeaseKind::Write), ("r", LeaseKind::Read)]
            .into_iter()
            .map(|(who, kind)| {
                let (table, writers, readers, ns) =
                    (table.clone(), writers.clone(), readers.clone(), ns.clone());
                loom::thread::spawn(move || {
                    let id = lease(kind, who);
                    if let Acquire::Granted(_) = table.acquire(&ns, &id, TTL, now).unwrap() {
                        let (mine, other) = if kind == LeaseKind::Write {
                            (&writers, &readers)
                        } else {
                            (&readers, &writers)
                        };
                        mine.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(other.load(Ordering::SeqCst), 0, "reader and writer overlap");
                        mine.fetch_sub(1, Ordering::SeqCst);
                    }
                    table.release(&ns, &id, now);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn semaphore_never_exceeds_limit_and_tokens_differ() {
    let now = Instant::now();
    loom::model(move || {
        let table = Arc::new(LeaseTable::new(&Frozen(now)));
        let ns = Namespace::default();
        let threads: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|who| {
                let (table, ns) = (table.clone(), ns.clone());
                loom::thread::spawn(move || {
                    let id = lease(LeaseKind::Permit { limit: 2 }, who);
                    match table.acquire(&ns, &id, TTL, now).unwrap() {
                        Acquire::Granted(g) => Some(g.token),
                        Acquire::Busy(_) => None,
                        other => {
                            panic!("acquire answered {other:?}, which this test does not know")
                        }
                    }
                })
            })
            .collect();
        let mut tokens: Vec<_> = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(tokens.len(), 2, "exactly two of three get a permit");
        tokens.dedup();
        assert_eq!(tokens.len(), 2, "tokens are distinct");
    });
}

#[test]
fn extend_by_stale_holder_never_revives() {
    let now = Instant::now();
    loom::model(move || {
        let table = Arc::new(LeaseTable::new(&Frozen(now)));
        let ns = Namespace::default();
        let a = lease(LeaseKind::Exclusive, "a");
        assert!(matches!(
            table.acquire(&ns, &a, TTL, now).unwrap(),
            Acquire::Granted(_)
        ));
        let t1 = {
            let (table, ns, a) = (table.clone(), ns.clone(), a.clone());
            loom::thread::spawn(move || {
                table.release(&ns, &a, now);
                table.extend(&ns, &a, TTL, now).unwrap()
            })
        };
        let t2 = {
            let (table, ns) = (table.clone(), ns.clone());
            loom::thread::spawn(move || {
                let b = lease(LeaseKind::Exclusive, "b");
                table.acquire(&ns, &b, TTL, now).unwrap()
            })
        };
        assert!(!t1.join().unwrap(), "extend after release never succeeds");
        let _ = t2.join().unwrap();
        let holders = table.inspect(&ns, LockSpace::Lock, &Key::new("k").unwrap(), now);
        assert!(holders.len() <= 1);
        assert!(holders.iter().all(|h| h.holder.instance().as_str() == "b"));
    });
}
