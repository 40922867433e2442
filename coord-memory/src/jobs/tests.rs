//! Unit tests of `jobs`.
//!
//! Time is tokio's, paused: it moves only by `advance`, so every expiry
//! here is decided, not raced.

use std::time::Duration;

use coord_api::{HolderId, InstanceId, Key, MAX_TTL, Namespace, spi::OnceBegin};
use tokio::time::advance;

use super::*;
use crate::MemoryStore;

const TTL: Duration = Duration::from_secs(10);
const SEC: Duration = Duration::from_secs(1);

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn holder() -> HolderId {
    HolderId::new(InstanceId::new("a").unwrap())
}

fn backend() -> MemoryBackend {
    MemoryStore::new().backend(Namespace::default())
}

/// Begins `occ` of job `j` for `who`; panics unless it started: the
/// attempt.
async fn start(b: &MemoryBackend, occ: &str, who: &HolderId) -> u32 {
    match b.begin(&k("j"), &k(occ), who, TTL).await.unwrap() {
        OnceBegin::Started { attempt, .. } => attempt,
        other => panic!("{occ}: expected a start, got {other:?}"),
    }
}

/// The store's sweep forgets an occurrence a day after it was last in use
/// (its run's deadline, its finished marker's end, its last step): one per
/// cron tick would otherwise stay for ever. It kept every occurrence that
/// finished (its marker, past, was never dropped) or whose run crashed (its
/// run, expired, neither).
#[tokio::test(start_paused = true)]
async fn the_sweep_forgets_occurrences_idle_for_a_day() {
    let b = backend();
    let retention = Duration::from_secs(3600);
    for i in 0..300 {
        let (occ, who) = (format!("o{i}"), holder());
        start(&b, &occ, &who).await;
        let finished = match i % 3 {
            0 => Some(retention),
            1 => None,
            _ => continue, // crashed: its run expires
        };
        assert!(b.end(&k("j"), &k(&occ), &who, finished).await.unwrap());
    }
    advance(MAX_TTL + retention + TTL + SEC).await;
    // The first sweep, at 256 records, came before they were idle; the
    // next is at 512.
    for i in 0..300 {
        start(&b, &format!("late-{i}"), &holder()).await;
    }
    let left = b.store.jobs().map.len();
    assert_eq!(left, 300, "only the late occurrences are remembered");
}

/// An occurrence in use is never forgotten, nor its attempts within a day
/// of its last use: a run renewed for longer than a day, a finished marker
/// whose retention has not passed, a run that crashed less than a day ago.
#[tokio::test(start_paused = true)]
async fn the_sweep_keeps_what_is_in_use_and_attempts_for_a_day() {
    let b = backend();
    let (long, crashed, done) = (holder(), holder(), holder());
    start(&b, "long", &long).await;
    start(&b, "crashed", &crashed).await;
    start(&b, "done", &done).await;
    assert!(
        b.end(&k("j"), &k("done"), &done, Some(MAX_TTL))
            .await
            .unwrap()
    );
    // The long run is renewed for a day and a half; the crashed one for
    // three quarters of a day, then no more.
    let mut t = Duration::ZERO;
    while t < MAX_TTL + MAX_TTL / 2 {
        advance(TTL / 2).await;
        t += TTL / 2;
        assert!(b.extend(&k("j"), &k("long"), &long, TTL).await.unwrap());
        if t < MAX_TTL * 3 / 4 {
            assert!(
                b.extend(&k("j"), &k("crashed"), &crashed, TTL)
                    .await
                    .unwrap()
            );
        }
    }
    // Sweeps at 256 and 512 records.
    for i in 0..600 {
        start(&b, &format!("filler-{i}"), &holder()).await;
    }
    let kept = |occ: &str| {
        let key = (Namespace::default(), k("j"), k(occ));
        b.store.jobs().map.contains_key(&key)
    };
    assert!(kept("long"), "a run in use was forgotten");
    assert!(kept("done"), "a finished marker in force was forgotten");
    assert!(
        kept("crashed"),
        "a run crashed less than a day ago was forgotten"
    );
    assert_eq!(
        start(&b, "crashed", &holder()).await,
        2,
        "the retry counts on"
    );
}
