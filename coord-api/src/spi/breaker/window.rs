//! The sliding window of a breaker, pure and deterministic: the same
//! integer arithmetic on every backend (the memory backend, the client's
//! local fallback, and the Redis script, which mirrors this file line by
//! line), so that two backends given the same outcomes at the same instants
//! decide the same.
//!
//! Outcomes arrive in [`Tally`]s (an instance's calls since its last
//! flush). A **count** window keeps the last `calls` calls as a queue of
//! tallies; when a new tally pushes the total past `calls`, the oldest calls
//! are dropped, a tally cut in part losing failures and slow calls in
//! proportion, rounded down (`failures * dropped / calls`). A **time**
//! window keeps [`WINDOW_BUCKETS`] buckets of `span / WINDOW_BUCKETS` each
//! on the backend's clock (as resilience4j's aggregated buckets and Polly's
//! ten windows); a bucket older than the span is dropped whole.
//!
//! Rates are compared in integers: a rate `r` basis points (1/100 of a
//! percent) is reached when `count * 10_000 >= r * calls`.

use std::{collections::VecDeque, time::Duration};

use super::{Policy, Tally, WindowKind};

/// How many buckets a time window has.
pub const WINDOW_BUCKETS: u64 = 10;

/// A breaker's window: the outcomes counted in the current closed
/// generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    /// Count window: the tallies, oldest first. Time window: one per bucket
    /// that has outcomes, with its bucket number.
    parts: VecDeque<(u64, Tally)>,
    total: Tally,
}

/// The width of a time window's bucket, in µs (at least 1).
pub fn bucket_us(span: Duration) -> u64 {
    (span.as_micros() as u64 / WINDOW_BUCKETS).max(1)
}

impl Window {
    /// An empty window.
    pub fn new() -> Window {
        Window::default()
    }

    /// What the window counts now (after [`expire`](Self::expire)).
    pub fn total(&self) -> Tally {
        self.total
    }

    /// Drops a time window's buckets that fell out of the span at `now_us`
    /// (the backend's clock). A count window keeps everything.
    pub fn expire(&mut self, kind: WindowKind, now_us: u64) {
        let WindowKind::Time { span } = kind else {
            return;
        };
        let width = bucket_us(span);
        let current = now_us / width;
        while let Some(&(bucket, tally)) = self.parts.front() {
            if bucket + WINDOW_BUCKETS > current {
                break;
            }
            self.parts.pop_front();
            self.total = self.total.minus(tally);
        }
    }

    /// Adds `tally`, counted at `now_us`, then drops what falls out.
    pub fn add(&mut self, kind: WindowKind, tally: Tally, now_us: u64) {
        if tally.calls == 0 {
            return;
        }
        self.total = self.total.plus(tally);
        match kind {
            WindowKind::Count { calls } => {
                self.parts.push_back((0, tally));
                self.trim(u64::from(calls));
            }
            WindowKind::Time { span } => {
                let bucket = now_us / bucket_us(span);
                match self.parts.back_mut() {
                    Some((b, t)) if *b == bucket => *t = t.plus(tally),
                    _ => self.parts.push_back((bucket, tally)),
                }
                self.expire(kind, now_us);
            }
        }
    }

    /// A count window: drops the oldest calls beyond `keep`.
    fn trim(&mut self, keep: u64) {
        while self.total.calls > keep {
            let excess = self.total.calls - keep;
            let (_, oldest) = self.parts.front_mut().expect("calls are in parts");
            if oldest.calls <= excess {
                let gone = *oldest;
                self.parts.pop_front();
                self.total = self.total.minus(gone);
            } else {
                let gone = oldest.part(excess);
                *oldest = oldest.minus(gone);
                self.total = self.total.minus(gone);
            }
        }
    }

    /// Whether the window's outcomes trip the breaker under `policy`: at
    /// least the minimum of calls (for a count window, at most its size) and
    /// the failure rate or the slow-call rate at or above its threshold.
    pub fn trips(&self, policy: &Policy) -> bool {
        let t = self.total;
        let mut minimum = u64::from(policy.minimum_calls.max(1));
        if let WindowKind::Count { calls } = policy.window {
            minimum = minimum.min(u64::from(calls));
        }
        t.calls >= minimum && rates_reached(t, policy)
    }
}

/// Whether `t`'s failure rate or slow-call rate reaches `policy`'s
/// threshold (`t` has calls).
pub fn rates_reached(t: Tally, policy: &Policy) -> bool {
    let reached = |count: u64, bp: u16| {
        bp <= 10_000 && u128::from(count) * 10_000 >= u128::from(bp) * u128::from(t.calls)
    };
    t.calls > 0
        && (reached(t.failures, policy.failure_rate_bp)
            || policy.slow_rate_bp.is_some_and(|bp| reached(t.slow, bp)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn count(calls: u32) -> Policy {
        Policy {
            window: WindowKind::Count { calls },
            minimum_calls: calls,
            ..Policy::default()
        }
    }

    fn ok(n: u64) -> Tally {
        Tally::new(n, 0, 0)
    }

    fn failed(n: u64) -> Tally {
        Tally::new(n, n, 0)
    }

    #[test]
    fn count_window_keeps_the_last_calls() {
        let p = count(10);
        let mut w = Window::new();
        w.add(p.window, failed(6), 0);
        w.add(p.window, ok(4), 0);
        assert_eq!(w.total(), Tally::new(10, 6, 0));
        // Six more successes push out the six failures.
        w.add(p.window, ok(6), 0);
        assert_eq!(w.total(), Tally::new(10, 0, 0));
    }

    #[test]
    fn count_window_cuts_a_tally_in_proportion() {
        let mut w = Window::new();
        let kind = WindowKind::Count { calls: 10 };
        w.add(kind, Tally::new(10, 5, 3), 0);
        w.add(kind, ok(4), 0);
        // 4 of the first 10 dropped: 5*4/10 = 2 failures, 3*4/10 = 1 slow.
        assert_eq!(w.total(), Tally::new(10, 3, 2));
    }

    #[test]
    fn time_window_drops_buckets_past_the_span() {
        let kind = WindowKind::Time {
            span: Duration::from_secs(10),
        };
        let mut w = Window::new();
        w.add(kind, failed(5), 0);
        w.add(kind, ok(5), 5_000_000);
        assert_eq!(w.total(), Tally::new(10, 5, 0));
        w.expire(kind, 9_999_999);
        assert_eq!(w.total().calls, 10);
        // At 10 s the first bucket (0..1 s) is out of the span.
        w.expire(kind, 10_000_000);
        assert_eq!(w.total(), ok(5));
        w.expire(kind, 15_000_000);
        assert_eq!(w.total(), Tally::default());
    }

    #[test]
    fn minimum_calls_before_deciding() {
        let p = Policy {
            minimum_calls: 5,
            ..count(100)
        };
        let mut w = Window::new();
        w.add(p.window, failed(4), 0);
        assert!(!w.trips(&p), "4 failures of 4 calls, below the minimum");
        w.add(p.window, failed(1), 0);
        assert!(w.trips(&p));
    }

    #[test]
    fn count_window_smaller_than_the_minimum_decides_when_full() {
        // resilience4j: with a window of 5 and a minimum of 10, 5 calls
        // decide (the minimum is capped at the window's size).
        let p = Policy {
            minimum_calls: 10,
            ..count(5)
        };
        let mut w = Window::new();
        w.add(p.window, failed(5), 0);
        assert!(w.trips(&p));
    }

    #[test]
    fn thresholds_are_at_or_above() {
        let p = Policy {
            failure_rate_bp: 5_000,
            ..count(4)
        };
        let mut w = Window::new();
        w.add(p.window, Tally::new(4, 1, 0), 0);
        assert!(!w.trips(&p), "25% < 50%");
        w.add(p.window, Tally::new(1, 1, 0), 0);
        // The window of 4 dropped one call of the first tally, and no
        // failure with it (1*1/4 rounds down): 2 failures of 4.
        assert_eq!(w.total(), Tally::new(4, 2, 0));
        assert!(w.trips(&p), "exactly 50% trips");
        let mut w = Window::new();
        w.add(p.window, Tally::new(4, 2, 0), 0);
        assert!(w.trips(&p), "exactly 50% trips");
    }

    #[test]
    fn slow_calls_trip_on_their_own_rate() {
        let p = Policy {
            slow_rate_bp: Some(8_000),
            ..count(10)
        };
        let mut w = Window::new();
        w.add(p.window, Tally::new(10, 0, 7), 0);
        assert!(!w.trips(&p), "70% slow < 80%");
        w.add(p.window, Tally::new(1, 0, 0), 0);
        assert_eq!(w.total().slow, 7, "the cut of the oldest rounded down");
        w.add(p.window, Tally::new(1, 0, 1), 0);
        assert_eq!(w.total().slow, 8);
        assert!(w.trips(&p));
    }

    #[test]
    fn a_threshold_above_one_hundred_percent_never_trips() {
        let p = Policy {
            failure_rate_bp: 10_001,
            ..count(2)
        };
        let mut w = Window::new();
        w.add(p.window, failed(2), 0);
        assert!(!w.trips(&p));
    }

    proptest! {
        /// Whatever is added, a count window holds at most its size, its
        /// total is the sum of its parts, and failures and slow calls never
        /// exceed calls.
        #[test]
        fn count_window_invariants(size in 1u32..50, adds in prop::collection::vec((0u64..30, 0u64..30, 0u64..30), 0..40)) {
            let kind = WindowKind::Count { calls: size };
            let mut w = Window::new();
            for (c, f, s) in adds {
                let t = Tally::new(c, f.min(c), s.min(c));
                w.add(kind, t, 0);
                let sum = w.parts.iter().fold(Tally::default(), |a, (_, t)| a.plus(*t));
                prop_assert_eq!(sum, w.total());
                prop_assert!(w.total().calls <= u64::from(size));
                prop_assert!(w.total().failures <= w.total().calls);
                prop_assert!(w.total().slow <= w.total().calls);
            }
        }

        /// A time window counts exactly the tallies of the last buckets.
        #[test]
        fn time_window_counts_the_span(adds in prop::collection::vec((0u64..3_000_000, 1u64..5), 1..40)) {
            let span = Duration::from_secs(1);
            let kind = WindowKind::Time { span };
            let mut w = Window::new();
            let mut at = 0;
            let mut seen = Vec::new();
            for (step, c) in adds {
                at += step;
                w.add(kind, ok(c), at);
                seen.push((at, c));
                let current = at / bucket_us(span);
                let expected: u64 = seen
                    .iter()
                    .filter(|(t, _)| t / bucket_us(span) + WINDOW_BUCKETS > current)
                    .map(|(_, c)| c)
                    .sum();
                prop_assert_eq!(w.total().calls, expected);
            }
        }
    }
}
