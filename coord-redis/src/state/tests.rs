//! Unit tests of `state`: the layout, the arguments, the script's limits
//! and the decoding of replies (the script itself runs against a real
//! server in the conformance suite, `tests/conformance.rs`).

use coord_api::spi::{CHANGES_KEPT, MAX_SPACE_KEYS};

use super::*;
use crate::{eval, keys::hash_tag};

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[test]
fn every_key_of_a_space_shares_its_slot_and_never_collides() {
    let ns = Namespace::new("ns").unwrap();
    let mut all = std::collections::HashSet::new();
    for space in ["s", "s:1:s", "a}:x", "{x}", "ünï", "queue"] {
        let mut n = space_names(&ns, &k(space));
        let names: Vec<String> = PARTS.iter().chain(&['c']).map(|p| n.name(*p)).collect();
        let tag = hash_tag(&names[0]).to_owned();
        assert!(tag.starts_with("ns:state:"), "{tag}");
        for name in names {
            assert_eq!(hash_tag(&name), tag);
            assert!(all.insert(name.clone()), "{name} twice");
        }
    }
}

#[test]
fn evals_pass_the_layout_then_op_and_args() {
    let ns = Namespace::new("ns").unwrap();
    let mut eval = state_eval(&ns, &k("s"), "delete", 3, 0);
    let (letter, v) = expect_args(Expect::Version(7));
    eval.arg("k").arg(letter).arg(v);
    let args = eval::written(&eval);
    assert_eq!(args[2], "6");
    assert_eq!(args[3], "coord:{ns:state:1:s}:m");
    assert_eq!(args[8], "coord:{ns:state:1:s}:i");
    assert_eq!(args[9..], ["delete", "k", "v", "7"]);
}

/// The script's constants are the SPI's.
#[test]
fn the_script_knows_the_limits() {
    let lua = include_str!("state.lua");
    assert!(lua.contains(&format!("local MAX_SPACE_KEYS = {MAX_SPACE_KEYS}\n")));
    assert!(lua.contains(&format!("local CHANGES_KEPT = {CHANGES_KEPT}\n")));
}

#[test]
fn replies_decode() {
    use Value::{Array, BulkString as B, Int};
    let w = |v: Vec<Value>| written_reply(&Array(v));
    assert_eq!(w(vec![Int(1), Int(5)]), Some(Some(Written::Done(5))));
    assert_eq!(w(vec![Int(0), Int(0)]), Some(Some(Written::Conflict(None))));
    let stored = Stored::new(b"x".to_vec(), 4, Some(Duration::from_millis(9)));
    let conflict = vec![Int(0), Int(4), B(b"x".to_vec()), Int(9)];
    assert_eq!(w(conflict), Some(Some(Written::Conflict(Some(stored)))));
    assert_eq!(w(vec![Int(2)]), Some(None));
    assert_eq!(w(vec![Int(3)]), Some(Some(Written::Unchanged)));
    assert_eq!(w(vec![Int(7)]), None);
    let page = Array(vec![
        Int(0),
        Int(12),
        Int(-1),
        Int(-1),
        B(b"a".to_vec()),
        Int(11),
        B(b"p".to_vec()),
        B(b"1".to_vec()),
        B(b"b".to_vec()),
        Int(12),
        B(b"x".to_vec()),
        B(Vec::new()),
    ]);
    let c = changes_reply(&page, 10).unwrap();
    assert_eq!((c.head, c.gap, c.next_expiry_in), (12, None, None));
    assert_eq!(
        c.changes[0],
        Change::new(k("a"), 11, ChangeKind::Put(b"1".to_vec()))
    );
    assert_eq!(c.changes[1], Change::new(k("b"), 12, ChangeKind::Expired));
    let gap = Array(vec![
        Int(1),
        Int(12),
        Int(5),
        Int(9),
        B(b"a".to_vec()),
        Int(11),
        B(b"1".to_vec()),
        Int(-1),
    ]);
    let g = changes_reply(&gap, 3).unwrap();
    assert_eq!(g.gap, Some(Gap::new(3, Some(9))));
    assert_eq!(g.next_expiry_in, Some(Duration::from_millis(5)));
    assert_eq!(g.current, [(k("a"), Stored::new(b"1".to_vec(), 11, None))]);
}
