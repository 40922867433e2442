//! Latches: set, count down, set again at zero (above its generation
//! without its counter), expiry; 1000 participants.

use super::*;

#[tokio::test]
async fn latch_set_count_down_rearm_and_expiry() {
    let b = backend("latch").await;
    let br = barriers(&b);
    let name = key("l");
    let (a, c, d, x) = (key("a"), key("c"), key("d"), key("x"));
    assert_eq!(br.latch_state(&name).await.unwrap(), None);
    assert_eq!(
        br.latch_count_down(&name, &a, None, 0).await.unwrap(),
        CountDown::Absent
    );
    let LatchSet::Set { generation: g } = br.latch_set(&name, 3, TTL, 0).await.unwrap() else {
        panic!("not set")
    };
    // Set only when absent or at zero.
    let LatchSet::Busy(busy) = br.latch_set(&name, 5, TTL, 0).await.unwrap() else {
        panic!("not busy")
    };
    assert_eq!(
        (
            busy.generation,
            busy.first_generation,
            busy.initial,
            busy.remaining
        ),
        (g, g, 3, 3)
    );
    assert!(busy.expires_in > Duration::from_secs(5) && busy.expires_in <= TTL);
    assert_eq!(
        br.latch_count_down(&name, &a, None, 0).await.unwrap(),
        CountDown::Counted {
            generation: g,
            remaining: 2
        }
    );
    assert_eq!(
        br.latch_count_down(&name, &a, Some(g), 0).await.unwrap(),
        CountDown::Already {
            generation: g,
            remaining: 2
        }
    );
    assert_eq!(
        br.latch_count_down(&name, &c, Some(g + 1), 0)
            .await
            .unwrap(),
        CountDown::Stale { current: g }
    );
    assert_eq!(
        br.latch_count_down(&name, &c, Some(g), 0).await.unwrap(),
        CountDown::Counted {
            generation: g,
            remaining: 1
        }
    );
    let mut watch = br.latch_watch(&name).await.unwrap();
    assert_eq!(
        br.latch_count_down(&name, &d, None, 0).await.unwrap(),
        CountDown::Counted {
            generation: g,
            remaining: 0
        }
    );
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken at zero")
        .unwrap();
    assert_eq!(
        br.latch_count_down(&name, &x, None, 0).await.unwrap(),
        CountDown::Already {
            generation: g,
            remaining: 0
        }
    );

    // At zero it may be set again: a new generation, the same record.
    let mut watch = br.latch_watch(&name).await.unwrap();
    let LatchSet::Set { generation: g2 } = br.latch_set(&name, 2, TTL, 0).await.unwrap() else {
        panic!("not set again")
    };
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken by the setting")
        .unwrap();
    assert!(g2 > g);
    let state = br.latch_state(&name).await.unwrap().unwrap();
    assert_eq!(
        (
            state.generation,
            state.first_generation,
            state.initial,
            state.remaining
        ),
        (g2, g, 2, 2)
    );
    assert_eq!(
        br.latch_count_down(&name, &a, Some(g), 0).await.unwrap(),
        CountDown::Stale { current: g2 }
    );
    // Who counted in the last generation counts again in this one.
    assert_eq!(
        br.latch_count_down(&name, &a, Some(g2), 0).await.unwrap(),
        CountDown::Counted {
            generation: g2,
            remaining: 1
        }
    );

    // Expiry: the whole record goes, waiters wake, and a latch set again
    // after that gets a greater generation.
    let short_name = key("short");
    let short = Duration::from_millis(300);
    let LatchSet::Set { generation: s1 } = br.latch_set(&short_name, 2, short, 0).await.unwrap()
    else {
        panic!("not set")
    };
    br.latch_count_down(&short_name, &a, None, 0).await.unwrap();
    let mut watch = br.latch_watch(&short_name).await.unwrap();
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken at the expiry")
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    tokio::time::sleep(short).await;
    assert_eq!(br.latch_state(&short_name).await.unwrap(), None);
    assert_eq!(
        br.latch_count_down(&short_name, &c, None, 0).await.unwrap(),
        CountDown::Absent
    );
    let LatchSet::Set { generation: s2 } = br.latch_set(&short_name, 1, TTL, 0).await.unwrap()
    else {
        panic!("not set")
    };
    assert!(s2 > s1);
    let state = br.latch_state(&short_name).await.unwrap().unwrap();
    assert_eq!(state, LatchState::new(s2, s2, 1, 1, state.expires_in));
    // Nobody's count survived the expiry.
    assert_eq!(
        br.latch_count_down(&short_name, &a, None, 0).await.unwrap(),
        CountDown::Counted {
            generation: s2,
            remaining: 0
        }
    );
}

#[tokio::test]
async fn a_latch_of_1000_counted_down_by_1000_participants() {
    let b = backend("latch-1000").await;
    let name = key("big");
    let LatchSet::Set { generation: g } = barriers(&b)
        .latch_set(&name, 1000, Duration::from_secs(60), 0)
        .await
        .unwrap()
    else {
        panic!("not set")
    };
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let b = b.clone();
            let name = name.clone();
            tokio::spawn(async move {
                barriers(&b)
                    .latch_count_down(&name, &key(&format!("p{i}")), Some(g), 0)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut left = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            CountDown::Counted {
                generation,
                remaining,
            } => {
                assert_eq!(generation, g);
                left.push(remaining);
            }
            other => panic!("not counted: {other:?}"),
        }
    }
    left.sort_unstable();
    assert_eq!(left, (0..1000).collect::<Vec<u32>>());
    let state = barriers(&b).latch_state(&name).await.unwrap().unwrap();
    assert_eq!((state.initial, state.remaining), (1000, 0));
    // Everyone again: nothing changes.
    for i in [0, 500, 999] {
        assert_eq!(
            barriers(&b)
                .latch_count_down(&name, &key(&format!("p{i}")), None, 0)
                .await
                .unwrap(),
            CountDown::Already {
                generation: g,
                remaining: 0
            }
        );
    }
}

/// A latch set again at zero draws a generation above its record's even
/// when its counter was lost while the record lives (evicted; or the
/// server's clock behind the generation the record holds): the record's
/// generation is pushed an hour past the clock and the counter deleted.
#[tokio::test]
async fn latch_set_again_above_its_generation_without_its_counter() {
    let server = RedisServer::shared();
    let b = backend("latch-floor").await;
    let br = barriers(&b);
    let name = key("l");
    let LatchSet::Set { generation: g } = br.latch_set(&name, 1, TTL, 0).await.unwrap() else {
        panic!("set");
    };
    br.latch_count_down(&name, &key("a"), None, 0)
        .await
        .unwrap();
    let ahead = (g + 3_600_000_000).to_string();
    let rec = "coord:{latch-floor:latch:l}:s";
    server.command(&["HSET", rec, "gen", &ahead]).unwrap();
    server
        .command(&["DEL", "coord:{latch-floor:latch:l}:t"])
        .unwrap();
    let LatchSet::Set { generation } = br.latch_set(&name, 1, TTL, 0).await.unwrap() else {
        panic!("set again at zero");
    };
    assert!(generation > g + 3_600_000_000, "{generation} after {ahead}");
}

/// A latch whose record alone was lost (evicted under `maxmemory`; its set
/// of who counted kept) and which is set again begins from nothing, as a
/// latch that expired does: who counted the lost record's generation counts
/// the new one. The new record took the old set over, so those participants
/// were answered `Already` and the latch could never reach zero: its
/// waiters hung until it expired.
#[tokio::test]
async fn a_latch_whose_record_was_lost_counts_everyone_again() {
    let server = RedisServer::shared();
    let b = backend("latch-lost").await;
    let br = barriers(&b);
    let (name, a) = (key("l"), key("a"));
    br.latch_set(&name, 2, TTL, 0).await.unwrap();
    br.latch_count_down(&name, &a, None, 0).await.unwrap();
    server
        .command(&["DEL", "coord:{latch-lost:latch:l}:s"])
        .unwrap();
    let LatchSet::Set { generation } = br.latch_set(&name, 1, TTL, 0).await.unwrap() else {
        panic!("the lost latch is set again");
    };
    assert_eq!(
        br.latch_count_down(&name, &a, None, 0).await.unwrap(),
        CountDown::Counted {
            generation,
            remaining: 0
        },
        "a, who counted the lost record, counts the new one"
    );
}
