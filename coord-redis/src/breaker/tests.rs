//! Tests of `breaker`: the layout and the arguments, the decoding of
//! replies, and the script itself against the SPI's pure state machine
//! ([`Record`]) on a real redis-server: the same random operations on one
//! virtual clock (the script's clock read replaced by an argument), every
//! reply compared whole (the breaker cases of the conformance suite run the
//! script on the server's own clock, `tests/conformance.rs`).

use std::collections::HashMap;

use coord_api::spi::breaker::Record;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::{eval, keys::hash_tag};

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[test]
fn every_key_of_a_breaker_shares_its_slot_and_never_collides() {
    let ns = Namespace::new("ns").unwrap();
    let mut all = std::collections::HashSet::new();
    for name in ["b", "b:1:b", "a}:x", "{x}", "ünï", "state"] {
        let mut n = breaker_names(&ns, &k(name));
        let names: Vec<String> = PARTS.iter().chain(&['c']).map(|p| n.name(*p)).collect();
        let tag = hash_tag(&names[0]).to_owned();
        assert!(tag.starts_with("ns:breaker:"), "{tag}");
        for name in names {
            assert_eq!(hash_tag(&name), tag);
            assert!(all.insert(name.clone()), "{name} twice");
        }
    }
}

#[test]
fn evals_pass_the_layout_then_op_policy_seen_and_args() {
    let ns = Namespace::new("ns").unwrap();
    let by = InstanceId::new("web:1").unwrap();
    let step = Step::Manual {
        action: Action::ForceOpen,
        by: &by,
        why: "deploy",
    };
    let args = eval::written(&step_eval(
        &BREAKER,
        &ns,
        &k("b"),
        Some(&Policy::default()),
        7,
        step,
    ));
    assert_eq!(args[2], "5");
    assert_eq!(args[3], "coord:{ns:breaker:1:b}:h");
    assert_eq!(args[8], "manual");
    assert_eq!(parse_policy(&args[9]), Some(Policy::default()));
    assert_eq!(args[10..], ["7", "f", "web:1", "deploy"]);
    let peek = eval::written(&step_eval(&BREAKER, &ns, &k("b"), None, 7, Step::Peek));
    assert_eq!(peek[8..], ["peek", "", "7"], "a peek names no policy");
}

/// The script's constants are the SPI's.
#[test]
fn the_script_knows_the_limits() {
    use coord_api::spi::breaker::{TRANSITIONS_KEPT, window::WINDOW_BUCKETS};
    let lua = include_str!("breaker.lua");
    assert!(lua.contains(&format!("local KEPT = {TRANSITIONS_KEPT}\n")));
    assert!(lua.contains(&format!("local BUCKETS = {WINDOW_BUCKETS}\n")));
}

#[test]
fn policies_round_trip() {
    let p = Policy {
        window: WindowKind::Time {
            span: Duration::from_nanos(1_234_567_891),
        },
        slow_rate_bp: Some(8_000),
        quorum: 3,
        open_for: Duration::from_micros(1_500),
        ..Policy::default()
    };
    for p in [p, Policy::default()] {
        assert_eq!(parse_policy(&policy_arg(&p)), Some(p));
    }
    assert_eq!(parse_policy("x:1:1:n:1:1:1:1:1:1"), None);
}

#[test]
fn replies_decode() {
    use Value::{Array, BulkString as B, Int};
    let policy = B(policy_arg(&Policy::default()).into_bytes());
    let manual = "f:17:5:web:1a:b reason";
    let mut reply = vec![Int(9), Int(42), B(b"o".to_vec()), Int(1_500)];
    reply.extend([
        Int(0),
        Int(0),
        Int(0),
        Int(0),
        Int(3),
        Int(2),
        Int(1),
        Int(2),
    ]);
    reply.extend([policy, B(manual.into()), Int(40), Int(30)]);
    reply.push(B(b"41:16:c:o:t:10:5:0".to_vec()));
    reply.push(B(format!("42:17:o:f:m:{manual}").into_bytes()));
    let (flag, s) = state_reply(&Array(reply.clone())).unwrap();
    assert_eq!(flag, 9);
    assert_eq!((s.generation, s.phase), (42, Phase::Open));
    assert_eq!(s.retry_after, Some(Duration::from_micros(1_500)));
    assert_eq!(s.trials_done, Tally::new(3, 2, 1));
    assert_eq!(s.opens, 2);
    let m = Manual::new(Action::ForceOpen, "web:1".into(), "a:b reason".into(), 17);
    assert_eq!(s.manual, Some(m.clone()));
    assert_eq!((s.kept_after, s.born), (40, 30));
    let tripped = Cause::Tripped(Tally::new(10, 5, 0));
    assert_eq!(
        s.transitions,
        [
            Transition::new(41, Phase::Closed, Phase::Open, tripped, 16),
            Transition::new(42, Phase::Open, Phase::ForcedOpen, Cause::Manual(m), 17),
        ]
    );
    reply[2] = B(b"z".to_vec());
    assert!(state_reply(&Array(reply)).is_none(), "an unknown phase");
    assert!(parse_transition("1:2:c:o:t:1:2").is_none(), "a short tally");
}

// ---- The script against the SPI's Record, on one virtual clock ----

/// The script with its clock read replaced by the last argument: the
/// prelude's lazily read time is set before the family's code runs.
static CLOCKED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../lua/prelude.lua"),
        "now_us_read = tonumber(ARGV[#ARGV])\n",
        include_str!("breaker.lua"),
    ))
});

/// What one side answered to one step: the flag (counted, or the token
/// granted, 0 when not) and the state after.
type Answer = (i64, BreakerState);

/// The memory backend's way of running the Record (born, swept, the step);
/// `None` for a peek of a breaker with no record.
fn on_record(
    records: &mut HashMap<Key, Record>,
    name: &Key,
    policy: &Policy,
    seen: u64,
    step: Step<'_>,
    now: u64,
) -> Option<Answer> {
    if matches!(step, Step::Peek) && !records.contains_key(name) {
        return None;
    }
    let r = records
        .entry(name.clone())
        .or_insert_with(|| Record::born(*policy, now));
    r.sweep(now);
    let flag = match step {
        Step::State | Step::Peek => 1,
        Step::Report {
            generation,
            instance,
            tally,
        } => r.report(generation, instance.as_str(), tally, now) as i64,
        Step::Trial {
            holder,
            ttl,
            generation,
        } => {
            let (who, ttl_us) = (holder.to_string(), ttl.as_micros() as u64);
            let granted = match generation {
                Some(g) => r.trial_in(g, &who, ttl_us, now),
                None => r.trial(&who, ttl_us, now),
            };
            granted.map_or(0, |t| t.get() as i64)
        }
        Step::TrialDone {
            generation,
            holder,
            outcome,
        } => r.trial_done(generation, &holder.to_string(), outcome, now) as i64,
        Step::GiveBackTrial { generation, holder } => {
            r.give_back_trial(generation, &holder.to_string()) as i64
        }
        Step::Manual { action, by, why } => {
            r.manual(action, by.as_str(), why, *policy, now);
            1
        }
    };
    Some((flag, r.state(seen, now)))
}

fn random_policy(rng: &mut StdRng) -> Policy {
    let ms = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..=hi));
    let window = if rng.random_bool(0.5) {
        WindowKind::Count {
            calls: rng.random_range(1..=12),
        }
    } else {
        WindowKind::Time {
            span: ms(rng, 100, 3_000) + Duration::from_nanos(rng.random_range(0..1_000_000)),
        }
    };
    let open_for = ms(rng, 1, 2_000);
    Policy {
        window,
        failure_rate_bp: [0, 2_500, 5_000, 10_000, 10_001][rng.random_range(0..5)],
        slow_rate_bp: [None, Some(5_000), Some(10_001)][rng.random_range(0..3)],
        minimum_calls: rng.random_range(0..=8),
        open_for,
        max_open_for: open_for * rng.random_range(1..=8),
        trials: rng.random_range(1..=4),
        quorum: rng.random_range(1..=3),
        quorum_span: ms(rng, 1, 3_000),
    }
}

fn random_tally(rng: &mut StdRng, most: u64) -> Tally {
    let calls = rng.random_range(0..=most);
    Tally::new(
        calls,
        rng.random_range(0..=calls),
        rng.random_range(0..=calls),
    )
}

/// The same random steps on the script (with the clock an argument) and on
/// the Record, every answer compared whole: the script mirrors the rules,
/// numbers and all (windows of both kinds, minimum calls, both rates,
/// quorums, growing opens, trials with TTLs given back or ended, stale
/// generations, manual
/// actions, a joining policy, the log and its floor, a clock stepping back,
/// peeks: of no record, answering none and making none, and of one).
#[tokio::test]
async fn the_script_answers_as_the_record_does() {
    let server = coord_testkit::redis::RedisServer::start();
    let backend = RedisBackend::connect_url(&format!("{}?namespace=mirror", server.url()))
        .await
        .unwrap();
    let seed = std::env::var("BREAKER_MIRROR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let cases = 120;
    let steps = 60;
    let instances: Vec<InstanceId> = ["a", "b:1", "c"]
        .iter()
        .map(|i| InstanceId::new(i).unwrap())
        .collect();
    let holders: Vec<HolderId> = (0..5)
        .map(|n| HolderId::from_parts(instances[n % 3], n as u128 + 1))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records = HashMap::new();
    for case in 0..cases {
        let name = k(&format!("case-{seed}-{case}"));
        let policies = [random_policy(&mut rng), random_policy(&mut rng)];
        let mut now: u64 = 1_700_000_000_000_000 + rng.random_range(0..1_000_000_000);
        let mut gens: Vec<u64> = vec![0];
        for n in 0..steps {
            now = match rng.random_range(0..20) {
                0 => now - rng.random_range(0..2_000_000),
                1..=5 => now,
                _ => now + rng.random_range(0..1_500_000),
            };
            let policy = &policies[usize::from(rng.random_bool(0.2))];
            let seen = gens[rng.random_range(0..gens.len())];
            let generation = if rng.random_bool(0.85) {
                *gens.last().unwrap()
            } else {
                gens[rng.random_range(0..gens.len())]
            };
            let holder = &holders[rng.random_range(0..holders.len())];
            let step = match rng.random_range(0..20) {
                _ if n == 0 && rng.random_bool(0.5) => Step::Peek,
                0..=7 => Step::Report {
                    generation,
                    instance: &instances[rng.random_range(0..3)],
                    tally: random_tally(&mut rng, 6),
                },
                8..=11 => Step::Trial {
                    holder,
                    ttl: Duration::from_micros(rng.random_range(1_000..3_000_000)),
                    generation: rng.random_bool(0.5).then_some(generation),
                },
                12..=14 => Step::TrialDone {
                    generation,
                    holder,
                    outcome: random_tally(&mut rng, 1),
                },
                15 => Step::GiveBackTrial { generation, holder },
                16 => Step::Manual {
                    action: [Action::ForceOpen, Action::Disable, Action::Reset]
                        [rng.random_range(0..3)],
                    by: &instances[rng.random_range(0..3)],
                    why: ["", "deploy: a:b", "ünï#1"][rng.random_range(0..3)],
                },
                17 => Step::Peek,
                _ => Step::State,
            };
            let want = on_record(&mut records, &name, policy, seen, step, now);
            let named = (!matches!(step, Step::Peek)).then_some(policy);
            let mut eval = step_eval(&CLOCKED, backend.namespace(), &name, named, seen, step);
            eval.arg(now);
            let call = Traced::new(step.op(), FAMILY, &name);
            let got = backend.breaker_run(&eval, call).await.unwrap();
            assert_eq!(
                got, want,
                "seed {seed} (BREAKER_MIRROR_SEED), case {case}, step {n}: {step:?} at {now} seen {seen} under {policy:?}"
            );
            match want {
                Some((_, s)) if s.generation != *gens.last().unwrap() => gens.push(s.generation),
                _ => {}
            }
        }
    }
}
