//! A record Redis lost part of: under `maxmemory` with an eviction policy
//! that may evict any key, the server can evict one key of a record kept in
//! two (a members set and its info hash) and keep the other. What was
//! named without its info is gone, as after an expiry, in the step that
//! finds it (decision 0064): a group member, a quorum's member, a candidacy.
//! (An instance's presence: `ops.rs`.)

use std::{sync::Arc, time::Duration};

use coord_api::{
    HolderId, InstanceId, Key, Quorum,
    spi::{Backend, Campaign, ElectionBackend, GroupBackend},
};
use coord_redis::{RedisBackend, RedisConfig};
use coord_testkit::redis::RedisServer;
use redis::Value;

async fn backend(config: RedisConfig) -> Arc<RedisBackend> {
    Arc::new(RedisBackend::connect(config).await.expect("connect"))
}

/// The families of `b` these tests use.
fn families(b: &RedisBackend) -> (&dyn ElectionBackend, &dyn GroupBackend) {
    (
        b.elections().expect("elections"),
        b.groups().expect("groups"),
    )
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn holder(name: &str) -> HolderId {
    HolderId::new(InstanceId::new(name).unwrap())
}

fn elected(c: Campaign) -> coord_api::LeaderInfo {
    match c {
        Campaign::Elected(info) => info,
        busy => panic!("not elected: {busy:?}"),
    }
}

/// A member whose info entry is gone (the group's info hash evicted under
/// maxmemory, its members zset kept) is never listed without its join time
/// and metadata (it was listed as joined in 1970 with none): it is gone as
/// after an expiry, counted in `seq`, its next heartbeat refused, and a
/// join of its holder again is a new join, listed with its own join time.
#[tokio::test]
async fn a_member_whose_info_was_lost_is_gone() {
    let server = RedisServer::shared();
    let b = backend(server.config("group-lost-info")).await;
    let (_, gr) = families(&b);
    let g = key("g");
    let ttl = Duration::from_secs(30);
    let (a, c) = (holder("a"), holder("c"));
    gr.join(&g, &a, "meta-a", ttl).await.unwrap();
    gr.join(&g, &c, "meta-c", ttl).await.unwrap();
    assert_eq!(gr.members(&g).await.unwrap().seq, 2);
    server
        .command(&["DEL", "coord:{group-lost-info:lead}:g:g:i"])
        .unwrap();
    assert!(
        !gr.heartbeat(&g, &a, ttl).await.unwrap(),
        "a member without its info is gone"
    );
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    gr.join(&g, &c, "meta-c2", ttl).await.unwrap();
    let m = gr.members(&g).await.unwrap();
    let listed: Vec<_> = (m.members.iter())
        .map(|i| (i.holder.clone(), i.metadata.clone()))
        .collect();
    assert_eq!(listed, [(c.clone(), "meta-c2".to_owned())], "{m:?}");
    assert!(m.members[0].joined > before, "joined afresh: {m:?}");
    assert_eq!(m.seq, 5, "a's and c's losses and c's join again: {m:?}");
    assert!(!gr.heartbeat(&g, &a, ttl).await.unwrap());
    assert!(gr.heartbeat(&g, &c, ttl).await.unwrap());
    // Lost while nobody heartbeats: the listing drops it.
    server
        .command(&["DEL", "coord:{group-lost-info:lead}:g:g:i"])
        .unwrap();
    let m = gr.members(&g).await.unwrap();
    assert!(m.members.is_empty(), "{m:?}");
    assert_eq!(m.seq, 6, "{m:?}");
    assert!(!gr.leave(&g, &c).await.unwrap(), "already gone");
}

/// An election's quorum counts no member whose info entry is gone, as a
/// listing lists none (decision 0064): with the group's info hash evicted,
/// a leader's renewal finds the quorum missing and a campaign is refused,
/// and the members go in that step (counted in `seq`), not at the next
/// heartbeat or listing.
#[tokio::test]
async fn a_quorum_counts_no_member_whose_info_was_lost() {
    let server = RedisServer::shared();
    let b = backend(server.config("quorum-lost-info")).await;
    let (el, gr) = families(&b);
    let (e, g) = (key("e"), key("g"));
    let ttl = Duration::from_secs(30);
    let (a, c) = (holder("a"), holder("c"));
    let quorum = Quorum {
        group: g.clone(),
        min_members: 2,
    };
    let zcard = || {
        server
            .command(&["ZCARD", "coord:{quorum-lost-info:lead}:g:g:m"])
            .unwrap()
    };
    gr.join(&g, &a, "meta-a", ttl).await.unwrap();
    gr.join(&g, &c, "meta-c", ttl).await.unwrap();
    let info = elected(
        el.campaign(&e, &a, "", ttl, Some(&quorum), false)
            .await
            .unwrap(),
    );
    server
        .command(&["DEL", "coord:{quorum-lost-info:lead}:g:g:i"])
        .unwrap();
    assert!(
        !el.renew(&e, &a, info.term, ttl, Some(&quorum))
            .await
            .unwrap(),
        "two members without their info are no quorum"
    );
    assert_eq!(zcard(), Value::Int(0), "dropped by the renewal itself");
    assert_eq!(el.leader(&e).await.unwrap(), None);
    // Joined again, one of them loses its info once more: one member counted.
    gr.join(&g, &a, "meta-a", ttl).await.unwrap();
    gr.join(&g, &c, "meta-c", ttl).await.unwrap();
    server
        .command(&[
            "HDEL",
            "coord:{quorum-lost-info:lead}:g:g:i",
            &c.to_string(),
        ])
        .unwrap();
    assert!(matches!(
        el.campaign(&e, &a, "", ttl, Some(&quorum), false)
            .await
            .unwrap(),
        Campaign::Busy {
            leader: None,
            no_quorum: true
        }
    ));
    assert_eq!(zcard(), Value::Int(1), "c dropped by the campaign");
    let m = gr.members(&g).await.unwrap();
    assert_eq!(
        m.seq, 7,
        "two joins, two losses, two joins again, c's loss: {m:?}"
    );
    assert!(!gr.heartbeat(&g, &c, ttl).await.unwrap());
}

/// A candidacy whose info entry is gone (the election's candidate info
/// hash evicted under maxmemory) is never listed without its since and
/// metadata (it was listed first, waiting since 1970, with none): it is
/// dropped by the read that finds it (decision 0064), and the candidate's
/// next round stands afresh.
#[tokio::test]
async fn a_candidacy_whose_info_was_lost_is_gone() {
    let server = RedisServer::shared();
    let b = backend(server.config("cand-lost-info")).await;
    let (el, _) = families(&b);
    let e = key("e");
    let ttl = Duration::from_secs(30);
    let (leader, c, d) = (holder("l"), holder("c"), holder("d"));
    let info = elected(
        el.campaign(&e, &leader, "", ttl, None, false)
            .await
            .unwrap(),
    );
    for (who, meta) in [(&c, "meta-c"), (&d, "meta-d")] {
        el.campaign(&e, who, meta, ttl, None, true).await.unwrap();
    }
    assert_eq!(el.candidates(&e).await.unwrap().len(), 2);
    let (cands, infos) = (
        "coord:{cand-lost-info:lead}:e:e:w",
        "coord:{cand-lost-info:lead}:e:e:i",
    );
    server.command(&["HDEL", infos, &c.to_string()]).unwrap();
    let listed = el.candidates(&e).await.unwrap();
    let holders: Vec<_> = listed
        .iter()
        .map(|x| (&x.holder, x.metadata.as_str()))
        .collect();
    assert_eq!(holders, [(&d, "meta-d")], "{listed:?}");
    assert_eq!(
        server.command(&["ZCARD", cands]).unwrap(),
        Value::Int(1),
        "dropped by the read"
    );
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    el.campaign(&e, &c, "meta-c2", ttl, None, true)
        .await
        .unwrap();
    let listed = el.candidates(&e).await.unwrap();
    let again = listed
        .iter()
        .find(|x| x.holder == c)
        .expect("c stands again");
    assert_eq!(again.metadata, "meta-c2");
    assert!(again.since > before, "afresh: {again:?}");
    // The whole hash lost: nobody is listed.
    server.command(&["DEL", infos]).unwrap();
    assert!(el.candidates(&e).await.unwrap().is_empty());
    assert_eq!(server.command(&["ZCARD", cands]).unwrap(), Value::Int(0));
    assert!(el.resign(&e, &leader, info.term).await.unwrap());
}
