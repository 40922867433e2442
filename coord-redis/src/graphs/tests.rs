//! Unit tests of `graphs`: the layout, the spec's encoding, the arguments
//! and the decoding of replies (the script itself runs against a real server
//! in `tests/graphs/`).

use coord_api::spi::{Edge, NodeSpec};

use super::*;
use crate::{eval, keys::hash_tag};

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// The keys of `graph` (and `run`) as the EVALSHA passes them, then the
/// graph's and the run's channels.
fn layout(ns: &Namespace, graph: &str, run: &str) -> (Vec<String>, String, String) {
    let mut g = graph_names(ns, &k(graph));
    let mut r = run_names(ns, &k(graph), &k(run));
    let mut keys: Vec<String> = PARTS.iter().map(|p| g.name(*p)).collect();
    keys.push(r.name('h'));
    (keys, g.name('c'), r.name('c'))
}

#[test]
fn every_key_of_a_graph_shares_its_slot_and_never_collides() {
    let ns = Namespace::new("ns").unwrap();
    assert_eq!(
        layout(&ns, "g", "r1"),
        (
            vec![
                "coord:{ns:graph:1:g}:q".to_owned(),
                "coord:{ns:graph:1:g}:l".to_owned(),
                "coord:{ns:graph:1:g}:t".to_owned(),
                "coord:{ns:graph:1:g}:r1:h".to_owned(),
            ],
            "coord:{ns:graph:1:g}:c".to_owned(),
            "coord:{ns:graph:1:g}:r1:c".to_owned(),
        )
    );
    let pairs = [
        ("g", "r"),
        ("g", "x"),
        ("a}:x", "y"),
        ("a", "x}:y"),
        ("g}", "r"),
        ("g", "}r"),
        ("g", "q"),
        ("g:1:g", "q"),
        ("{x}", "r/1"),
        ("ünï", "c"),
    ];
    let mut all = std::collections::HashSet::new();
    let mut count = 0;
    for (graph, run) in pairs {
        let (keys, ready, run_channel) = layout(&ns, graph, run);
        let tag = hash_tag(&keys[0]);
        assert!(keys.iter().all(|x| hash_tag(x) == tag), "{keys:?}");
        assert_eq!(hash_tag(&ready), tag);
        assert_eq!(hash_tag(&run_channel), tag);
        // Every run of a graph is in the graph's slot.
        let other = layout(&ns, graph, "another run").0;
        assert_eq!(hash_tag(&other[3]), tag);
        for name in keys.into_iter().chain([ready, run_channel]) {
            if all.insert(name.clone()) {
                count += 1;
            }
        }
    }
    // Graph-level names repeat across the pairs of one graph; run names
    // never do, and no name of one graph is another's.
    let distinct_graphs = 7;
    assert_eq!(count, distinct_graphs * 4 + pairs.len() * 2);
}

#[test]
fn evals_pass_the_layout_then_op_run_args() {
    let ns = Namespace::new("ns").unwrap();
    let mut eval = graph_eval(&ns, &k("g"), Some(&k("r")), "renew", 3, 0);
    eval.arg("n").arg(7u64).arg(1000u64);
    let (keys, _, _) = layout(&ns, "g", "r");
    let args = eval::written(&eval);
    assert_eq!(args[2], "4");
    assert_eq!(args[3..7], keys[..]);
    assert_eq!(args[7..], ["renew", "r", "n", "7", "1000"]);
    let mut eval = graph_eval(&ns, &k("g"), None, "take", 2, 0);
    eval.arg("w").arg(5u64);
    let args = eval::written(&eval);
    assert_eq!(args[2], "3");
    assert_eq!(args[3..6], keys[..3]);
    assert_eq!(args[6..], ["take", "", "w", "5"]);
}

fn spec(nodes: Vec<NodeSpec>) -> GraphSpec {
    GraphSpec::new(&k("g"), nodes).unwrap()
}

#[test]
fn the_spec_encoding_is_canonical_and_complete() {
    let make = || {
        spec(vec![
            NodeSpec::new(k("a b")),
            NodeSpec::new(k("c")).max_attempts(3),
            NodeSpec::new(k("d/ü"))
                .after(vec![Edge::new(0, On::Success), Edge::new(1, On::Any)])
                .on_failure(OnFailure::CancelRun),
            NodeSpec::new(k("e")).after(vec![Edge::new(2, On::Failure)]),
        ])
    };
    let bytes = encode_spec(&make()).unwrap();
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        "a b\t1\tc\t\nc\t3\tc\t\nd/ü\t1\tr\t0s,1a\ne\t1\tc\t2f\n"
    );
    assert_eq!(encode_spec(&make()).unwrap(), bytes);
    // Any difference shows.
    let variants = [
        spec(vec![NodeSpec::new(k("a b"))]),
        spec(vec![NodeSpec::new(k("a b")).max_attempts(2)]),
        spec(vec![
            NodeSpec::new(k("a b")).on_failure(OnFailure::CancelRun),
        ]),
        spec(vec![
            NodeSpec::new(k("a")),
            NodeSpec::new(k("b")).after(vec![Edge::new(0, On::Any)]),
        ]),
        spec(vec![
            NodeSpec::new(k("a")),
            NodeSpec::new(k("b")).after(vec![Edge::new(0, On::Success)]),
        ]),
        spec(vec![
            NodeSpec::new(k("b")).after(vec![Edge::new(1, On::Success)]),
            NodeSpec::new(k("a")),
        ]),
    ];
    let encoded: std::collections::HashSet<Vec<u8>> =
        variants.iter().map(|s| encode_spec(s).unwrap()).collect();
    assert_eq!(encoded.len(), variants.len());
}

#[test]
fn results_over_the_limit_are_refused_naming_run_node_and_limit() {
    let ok = NodeResult::Success(vec![0; MAX_RESULT_BYTES]);
    assert!(check_result(&k("g"), &k("r"), &k("n"), &ok).is_ok());
    let big = NodeResult::Success(vec![0; MAX_RESULT_BYTES + 1]);
    let err = check_result(&k("g"), &k("r7"), &k("n3"), &big).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(
        text.contains("\"r7\"") && text.contains("\"n3\"") && text.contains("65536"),
        "{text}"
    );
}

#[test]
fn delays_round_up_to_whole_milliseconds() {
    assert_eq!(retry_ms(Duration::from_micros(1_001)), 2);
    assert_eq!(retry_ms(Duration::ZERO), 0);
    assert_eq!(retry_ms(Duration::MAX), MAX_RETRY_MS);
}

#[test]
fn replies_decode() {
    let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
    let a = Value::Array;
    let i = Value::Int;
    assert_eq!(submit_reply(&a(vec![s("created")])), Some(Submit::Created));
    assert_eq!(
        submit_reply(&a(vec![s("exists"), i(0)])),
        Some(Submit::Exists { same_graph: false })
    );
    let taken = a(vec![
        s("taken"),
        s("r"),
        s("n"),
        i(2),
        i(99),
        a(vec![
            s("a"),
            s("S"),
            Value::BulkString(vec![0, 255]),
            s("b"),
            s("F"),
            s("boom"),
            s("c"),
            s("K"),
            s("a"),
            s("d"),
            s("C"),
            s(""),
        ]),
    ]);
    assert_eq!(
        take_reply(&taken),
        Some(Take::Taken(Box::new(Taken::new(
            k("r"),
            k("n"),
            2,
            FencingToken(99),
            vec![
                (k("a"), Outcome::Succeeded(vec![0, 255])),
                (k("b"), Outcome::Failed("boom".into())),
                (k("c"), Outcome::Skipped(k("a"))),
                (k("d"), Outcome::Cancelled),
            ]
        ))))
    );
    assert_eq!(tagged(&taken), ("taken", Some(99)));
    assert_eq!(
        take_reply(&a(vec![s("idle"), i(-1)])),
        Some(Take::Idle { next_in: None })
    );
    assert_eq!(
        take_reply(&a(vec![s("idle"), i(1500)])),
        Some(Take::Idle {
            next_in: Some(Duration::from_millis(1500))
        })
    );
    assert_eq!(
        complete_reply(&a(vec![s("recorded"), s("R"), s("R")])),
        Some(Complete::Recorded {
            state: NodeState::Ready,
            run: RunState::Running,
            next: None,
        })
    );
    assert_eq!(
        complete_reply(&a(vec![
            s("recorded"),
            s("S"),
            s("R"),
            a(vec![s("idle"), i(-1)])
        ])),
        Some(Complete::Recorded {
            state: NodeState::Succeeded,
            run: RunState::Running,
            next: Some(Take::Idle { next_in: None }),
        })
    );
    assert_eq!(
        complete_reply(&a(vec![s("stale"), s("")])),
        Some(Complete::Stale { state: None })
    );
    assert_eq!(
        complete_reply(&a(vec![s("already"), s("R")])),
        Some(Complete::Already {
            state: NodeState::Ready
        })
    );
    assert_eq!(complete_reply(&a(vec![s("already"), s("")])), None);
    assert_eq!(
        cancel_reply(&a(vec![s("ended"), s("F")])),
        Some(Cancel::AlreadyEnded(RunState::Failed))
    );
    assert_eq!(cancel_reply(&a(vec![s("absent")])), Some(Cancel::NotFound));
    assert_eq!(status_reply(&a(vec![])), Some(None));
    let row = a(vec![
        s("n"),
        s("U"),
        i(1),
        i(77),
        s("w-1"),
        i(900),
        i(-1),
        i(1_000_000),
        i(0),
        Value::Nil,
        Value::Nil,
        Value::Nil,
    ]);
    let status = status_reply(&a(vec![s("R"), i(3), Value::Nil, i(1_000_000), i(0), row]))
        .unwrap()
        .unwrap();
    assert_eq!(status.state, RunState::Running);
    assert_eq!(status.transitions, 3);
    assert_eq!(status.ended_at, None);
    let n = &status.nodes[0];
    assert_eq!(n.state, NodeState::Running);
    assert_eq!(n.token, Some(FencingToken(77)));
    assert_eq!(n.worker.as_ref().map(|w| w.as_str()), Some("w-1"));
    assert_eq!(n.expires_in, Some(Duration::from_millis(900)));
    assert_eq!(n.ready_in, None);
    assert_eq!(n.started_at, Some(wall(1_000_000)));
    assert_eq!(
        (n.ended_at, &n.error, &n.by, &n.result),
        (None, &None, &None, &None)
    );
    // What the script never answers is refused, not guessed at.
    assert_eq!(take_reply(&a(vec![s("taken")])), None);
    assert_eq!(
        complete_reply(&a(vec![s("recorded"), s("X"), s("R")])),
        None
    );
    assert_eq!(cancel_reply(&a(vec![s("cancelled"), i(-1)])), None);
    assert_eq!(tagged(&i(1)).0, "other");
}
