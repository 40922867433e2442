//! The listing's key layouts, patterns, cursors and cluster walk.

use super::*;

fn ns() -> Namespace {
    Namespace::new("ns").unwrap()
}

fn res(kind: ResourceKind, name: &str) -> Resource {
    Resource::new(kind, Key::new(name).unwrap())
}

#[test]
fn lease_keys_parse_back_to_their_resource() {
    let k = |s: &str| parse_key(&ns(), s).map(|f| (f.resource, f.part.map(char::from)));
    assert_eq!(
        k("coord:{ns:lock:a}:l}:l"),
        Some((res(ResourceKind::Lock, "a}:l"), Some('l')))
    );
    assert_eq!(k("coord:{ns:lock:a}:l}:t"), None);
    assert_eq!(
        k("coord:{ns:rwlock:x}:i"),
        Some((res(ResourceKind::RwLock, "x"), Some('i')))
    );
    assert_eq!(k("coord:{ns:rwlock:x}:s"), None);
    assert_eq!(
        k("coord:{ns:lead}:e:x:l:l"),
        Some((res(ResourceKind::Election, "x:l"), Some('l')))
    );
    assert_eq!(
        k("coord:{ns:lead}:g:g:m"),
        Some((res(ResourceKind::Group, "g"), Some('m')))
    );
    assert_eq!(k("coord:{ns:lead}:g:g:i"), None);
    let job = Resource::job(Key::new("a}:x").unwrap(), Key::new("y:r").unwrap());
    assert_eq!(k("coord:{ns:job:4:a}:x}:y:r:r"), Some((job, Some('r'))));
    assert_eq!(k("coord:{ns:job:4:a}:x}:t"), None);
    assert_eq!(k("coord:{ns:job:9:a}:r"), None);
    // Another namespace, another family, or no layout at all.
    assert_eq!(k("coord:{ns2:lock:a}:l"), None);
    // A queue's deliveries are listed from its in-flight set, and from no
    // other of its keys (its ready set, an item, a consumer's set).
    assert_eq!(
        k("coord:{ns:queue:4:q}:l}:l"),
        Some((res(ResourceKind::Queue, "q}:l"), Some('l')))
    );
    assert_eq!(k("coord:{ns:queue:1:q}:r"), None);
    assert_eq!(k("coord:{ns:queue:1:q}:7:i"), None);
    assert_eq!(k("coord:{ns:queue:1:q}:a#1:s"), None);
    // A subscription's deliveries: from its deliveries hash alone.
    let sub = Resource::subscription(Key::new("t}:").unwrap(), Key::new("s:f").unwrap());
    assert_eq!(k("coord:{ns:topic:3:t}:}:3:s:f:f"), Some((sub, Some('f'))));
    assert_eq!(k("coord:{ns:topic:1:t}:1:s:d"), None);
    assert_eq!(k("coord:{ns:topic:1:t}:1:s:7:y"), None);
    assert_eq!(k("coord:{ns:topic:1:t}:s"), None);
    assert_eq!(k("coord:{ns:ops}:p"), None);
    assert_eq!(k("other"), None);
}

#[test]
fn patterns_narrow_by_kind_and_escape_the_prefix() {
    assert_eq!(
        pattern(&ns(), Some(ResourceKind::Lock), "a*[b]"),
        r"coord:{ns:lock:a\*\[b\]*}:l"
    );
    assert_eq!(pattern(&ns(), None, "x"), "coord:{ns:*");
    assert_eq!(
        pattern(&ns(), Some(ResourceKind::Queue), "or"),
        "coord:{ns:queue:*:or*}:l"
    );
    assert_eq!(
        pattern(&ns(), Some(ResourceKind::RwLock), ""),
        "coord:{ns:rwlock:*}:[wri]"
    );
}

#[test]
fn a_walk_keeps_its_shard_through_failovers() {
    let m = |from: u16, to: u16, port: u16, id: &str| Master {
        ranges: vec![(from, to)],
        host: "127.0.0.1".into(),
        port,
        id: id.into(),
    };
    let masters = [
        m(0, 5460, 7000, "a"),
        m(5461, 10922, 7001, "b"),
        m(10923, 16383, 7002, "c"),
    ];
    let mut walk = Walk {
        scan: Some(0),
        ..Walk::default()
    };
    assert_eq!(walk.on_shard(&masters), Some(0));
    walk.next_shard(&masters);
    assert_eq!(
        (walk.shard.clone(), walk.scan),
        (Some((5461, "b".into())), Some(0))
    );
    walk.scan = Some(40);
    // The first shard's replica took over (listening after the others):
    // the walk stays on the second shard, where it was.
    let after = [
        m(5461, 10922, 7001, "b"),
        m(10923, 16383, 7002, "c"),
        m(0, 5460, 7003, "d"),
    ];
    let mut after = after.to_vec();
    after.sort_by_key(Master::first);
    assert_eq!(walk.on_shard(&after), Some(1));
    assert_eq!(walk.scan, Some(40));
    // Its own shard's replica took over: that shard again, from the start.
    after[1] = m(5461, 10922, 7004, "e");
    assert_eq!(walk.on_shard(&after), Some(1));
    assert_eq!(
        (walk.shard.clone(), walk.scan),
        (Some((5461, "e".into())), Some(0))
    );
    walk.scan = None;
    walk.next_shard(&after);
    assert_eq!(
        (walk.shard.clone(), walk.scan),
        (Some((10923, "c".into())), Some(0))
    );
    walk.scan = None;
    walk.next_shard(&after);
    assert!(walk.scan.is_none(), "the last shard ends the walk's SCANs");
    // Nobody serves the slot: no master to SCAN.
    assert_eq!(walk.on_shard(&after[..2]), None);
}

#[test]
fn cursors_read_back_as_written() {
    let ns = ns();
    let key = "coord:{ns:lock:a b}:l".to_owned();
    let found = parse_key(&ns, &key).unwrap();
    let mut walk = Walk {
        shard: None,
        scan: Some(17),
        after: Some("i#00".into()),
        pending: VecDeque::from([(key, found)]),
    };
    let c = walk.encode(&ns);
    assert_eq!(c.as_str(), "17\ni#00\nlock:a b}:l");
    assert_eq!(Walk::decode(&ns, &c).unwrap(), walk);
    // On a cluster: the shard being scanned, then its cursor.
    walk.shard = Some((5461, "e3f0a1".into()));
    let c = walk.encode(&ns);
    assert_eq!(c.as_str(), "5461.e3f0a1/17\ni#00\nlock:a b}:l");
    assert_eq!(Walk::decode(&ns, &c).unwrap(), walk);
    let end = Walk::default();
    assert_eq!(Walk::decode(&ns, &end.encode(&ns)).unwrap(), end);
    for bad in [
        "x",
        "1",
        "1\n\nlock:a}:t",
        "1\n\nqueue:1:q}:r",
        "x/1\n",
        "1/x\n",
        "2/17\n\n",
        "1.ab/x\n",
        "1./1\n",
        "70000.ab/1\n",
    ] {
        assert!(Walk::decode(&ns, &Cursor::from_text(bad)).is_err(), "{bad}");
    }
}
