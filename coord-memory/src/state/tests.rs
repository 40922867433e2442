//! Unit tests of the space's log: trimming raises the floor, a read below
//! the floor or above the head is a gap with the current entries.

use coord_api::spi::{CHANGES_KEPT, Written};

use super::*;

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn step(now: Instant, wall_us: u64) -> Step {
    Step {
        now,
        wall_us,
        logged: false,
    }
}

#[tokio::test]
async fn the_log_keeps_the_last_changes_and_raises_its_floor() {
    let now = Instant::now();
    let mut s = Space::default();
    let mut st = step(now, 1_000);
    let first = match s.put(
        &k("s"),
        &k("a"),
        b"0".to_vec(),
        Expect::Any,
        None,
        0,
        &mut st,
    ) {
        Ok(Written::Done(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!((first, s.floor), (1_000, 999), "born at its first change");
    for i in 0..CHANGES_KEPT as u64 + 9 {
        let v = format!("{i}").into_bytes();
        s.put(&k("s"), &k("a"), v, Expect::Any, None, 0, &mut st)
            .unwrap();
    }
    assert_eq!(s.log.len(), CHANGES_KEPT);
    assert_eq!(s.floor, s.log.front().unwrap().version - 1);
    let all = Select::Prefix(String::new());
    let gap = s.changes(&all, first, 10, &st);
    assert_eq!(gap.gap, Some(Gap::new(first, Some(s.floor + 1))));
    assert_eq!(gap.current.len(), 1);
    assert_eq!(gap.head, s.head);
    let fine = s.changes(&all, s.floor, 10, &st);
    assert!(fine.gap.is_none() && fine.changes.len() == 10);
    assert_eq!(fine.head, fine.changes[9].version, "cut by the limit");
    let ahead = s.changes(&all, s.head + 1, 10, &st);
    assert!(
        ahead.gap.is_some(),
        "a reader ahead of the head saw lost data"
    );
}

#[tokio::test]
async fn expiries_are_logged_in_deadline_order() {
    let now = Instant::now();
    let mut s = Space::default();
    let mut st = step(now, 5);
    let ttl = |ms| Some(Duration::from_millis(ms));
    s.put(
        &k("s"),
        &k("b"),
        b"1".to_vec(),
        Expect::Any,
        ttl(20),
        0,
        &mut st,
    )
    .unwrap();
    s.put(
        &k("s"),
        &k("a"),
        b"1".to_vec(),
        Expect::Any,
        ttl(10),
        0,
        &mut st,
    )
    .unwrap();
    let head = s.head;
    let read = s.changes(&Select::Key(k("b")), head, 10, &st);
    assert_eq!(read.next_expiry_in, Some(Duration::from_millis(20)));
    let mut later = step(now + Duration::from_millis(30), 6);
    s.sweep(&mut later);
    let kinds: Vec<_> = (s.log.iter().skip(2))
        .map(|c| (c.key.as_str().to_owned(), c.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a".into(), ChangeKind::Expired),
            ("b".into(), ChangeKind::Expired)
        ]
    );
    assert!(s.entries.is_empty() && s.deadlines.is_empty() && later.logged);
}

#[tokio::test(start_paused = true)]
async fn reads_of_unknown_spaces_leave_nothing_behind() {
    let b = crate::MemoryStore::new().backend(Namespace::default());
    for i in 0..300 {
        let space = k(&format!("space-{i}"));
        assert!(b.get(&space, &k("a")).await.unwrap().is_none());
        let missing = b.delete(&space, &k("a"), Expect::Any).await.unwrap();
        assert_eq!(missing, Written::Unchanged);
    }
    assert_eq!(b.store.spaces().map.len(), 0);
    b.put(&k("kept"), &k("a"), b"1".to_vec(), Expect::Any, None, 0)
        .await
        .unwrap();
    assert_eq!(b.store.spaces().map.len(), 1, "a space with an entry stays");
}

async fn put(b: &MemoryBackend, space: &Key, key: &str) -> u64 {
    match b
        .put(space, &k(key), b"v".to_vec(), Expect::Any, None, 0)
        .await
    {
        Ok(Written::Done(version)) => version,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_day_without_a_change_forgets_the_log_and_keeps_the_entries() {
    let b = crate::MemoryStore::new().backend(Namespace::default());
    let (space, all) = (k("s"), Select::Prefix(String::new()));
    let kept = put(&b, &space, "kept").await;
    let gone = put(&b, &space, "gone").await;
    let Written::Done(deleted) = b.delete(&space, &k("gone"), Expect::Any).await.unwrap() else {
        panic!("delete")
    };
    assert!(gone < deleted);
    // Still within the day: the log answers from the first version on.
    tokio::time::advance(MAX_TTL).await;
    let read = b.changes(&space, &all, kept - 1, 10).await.unwrap();
    assert!(read.gap.is_none() && read.changes.len() == 3, "{read:?}");
    tokio::time::advance(Duration::from_millis(1)).await;
    // A day and a moment idle: the log went, the entry stayed, and a
    // reader from before is told of the gap, with the entry as it is.
    let read = b.changes(&space, &all, deleted, 10).await.unwrap();
    let gap = read.gap.expect("the log was forgotten");
    assert_eq!(gap, Gap::new(deleted, None));
    assert_eq!(read.current.len(), 1);
    assert_eq!(
        (&read.current[0].0, read.current[0].1.version),
        (&k("kept"), kept)
    );
    assert!(read.head > deleted, "born again above every version given");
    assert!(put(&b, &space, "gone").await > read.head);

    // A space whose entries all went is forgotten whole a day later, by the
    // store's sweep (which runs once enough spaces were made).
    b.delete(&space, &k("kept"), Expect::Any).await.unwrap();
    b.delete(&space, &k("gone"), Expect::Any).await.unwrap();
    assert_eq!(b.store.spaces().map.len(), 1, "the log is still kept");
    tokio::time::advance(MAX_TTL + Duration::from_millis(1)).await;
    for i in 0..256 {
        b.put(
            &k(&format!("other-{i}")),
            &k("a"),
            b"1".to_vec(),
            Expect::Any,
            None,
            0,
        )
        .await
        .unwrap();
    }
    let spaces = b.store.spaces();
    assert_eq!(spaces.map.len(), 256, "the idle empty space was forgotten");
    assert!(!spaces.map.contains_key(&(Namespace::default(), space)));
}

/// A put's call is answered with the version it made, whatever the
/// expectation, while its change is in the log; then forgotten, so the
/// calls kept never outgrow the log.
#[tokio::test]
async fn a_call_is_remembered_while_its_change_is_in_the_log() {
    let mut s = Space::default();
    let mut st = step(Instant::now(), 1_000);
    let put = |s: &mut Space, expect, call, st: &mut Step| match s.put(
        &k("s"),
        &k("a"),
        b"1".to_vec(),
        expect,
        None,
        call,
        st,
    ) {
        Ok(Written::Done(v)) => v,
        other => panic!("{other:?}"),
    };
    let made = put(&mut s, Expect::Absent, 7, &mut st);
    assert_eq!(put(&mut s, Expect::Absent, 7, &mut st), made, "its retry");
    assert_eq!((s.log.len(), s.head), (1, made), "nothing changed");
    for call in 100..100 + CHANGES_KEPT as u64 {
        put(&mut s, Expect::Any, call, &mut st);
    }
    assert!(!s.calls.contains_key(&7), "its change left the log");
    assert_eq!(
        (s.calls.len(), s.called.len()),
        (CHANGES_KEPT, CHANGES_KEPT)
    );
    assert!(put(&mut s, Expect::Any, 7, &mut st) > made, "a new put");
}
