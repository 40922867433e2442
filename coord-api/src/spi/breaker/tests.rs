//! Unit tests of the breaker SPI's limits and tallies.

use super::*;

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[test]
fn policy_limits_name_the_breaker_and_the_limit() {
    assert!(Policy::default().check(&k("b")).is_ok());
    let cases = [
        (
            Policy {
                window: WindowKind::Count { calls: 0 },
                ..Policy::default()
            },
            "100000",
        ),
        (
            Policy {
                window: WindowKind::Time {
                    span: Duration::from_millis(99),
                },
                ..Policy::default()
            },
            "100ms",
        ),
        (
            Policy {
                failure_rate_bp: 10_002,
                ..Policy::default()
            },
            "10000",
        ),
        (
            Policy {
                slow_rate_bp: Some(20_000),
                ..Policy::default()
            },
            "10000",
        ),
        (
            Policy {
                trials: 0,
                ..Policy::default()
            },
            "1000",
        ),
        (
            Policy {
                quorum: 1_001,
                ..Policy::default()
            },
            "1000",
        ),
        (
            Policy {
                open_for: Duration::ZERO,
                ..Policy::default()
            },
            "1ms",
        ),
        (
            Policy {
                max_open_for: Duration::from_secs(1),
                ..Policy::default()
            },
            "below",
        ),
    ];
    for (p, limit) in cases {
        let text = p.check(&k("payments")).unwrap_err().to_string();
        assert!(text.contains("payments") && text.contains(limit), "{text}");
    }
    let text = check_why(&k("b"), &"x".repeat(MAX_WHY_BYTES + 1))
        .unwrap_err()
        .to_string();
    assert!(text.contains("256"), "{text}");
    assert!(Tally::new(1, 2, 0).check(&k("b")).is_err());
    assert!(Tally::new(2, 2, 1).check(&k("b")).is_ok());
}

#[test]
fn tallies_add_subtract_and_cut() {
    let t = Tally::new(10, 5, 3);
    assert_eq!(t.plus(Tally::one(true, false)), Tally::new(11, 6, 3));
    assert_eq!(t.minus(Tally::new(20, 1, 1)), Tally::new(0, 4, 2));
    assert_eq!(t.part(4), Tally::new(4, 2, 1));
    assert_eq!(Tally::default().part(0), Tally::default());
}
