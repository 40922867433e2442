//! What the barrier family counts, through the `metrics` facade (the
//! application installs a recorder; without one each costs a load and a
//! branch). Labels are bounded: the kind and the outcome, never a name.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `coord_barrier_waits_total` | counter | `kind` (`barrier`, `double_barrier`, `latch`), `outcome` (`tripped`, `broken`, `stale`, `timeout`, `error`; a latch's `opened`, `expired`) |
//! | `coord_barrier_wait_seconds` | histogram | `kind`: from the call to its return |

use std::time::Duration;

use crate::Result;

/// The outcome label of a wait's result.
pub(crate) fn outcome<T>(res: &Result<T>, ok: &'static str) -> &'static str {
    use crate::Error;
    match res {
        Ok(_) => ok,
        Err(Error::Broken(_)) => "broken",
        Err(Error::StaleGeneration { .. }) => "stale",
        Err(Error::Timeout { .. }) => "timeout",
        Err(_) => "error",
    }
}

/// Counts one wait of `kind` that ended as `outcome` after `waited`.
pub(crate) fn wait_ended(kind: &'static str, outcome: &'static str, waited: Duration) {
    metrics::counter!("coord_barrier_waits_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("coord_barrier_wait_seconds", "kind" => kind).record(waited.as_secs_f64());
}

/// Describes the family's metrics (names, units, help) to the recorder
/// installed now, if any: called when a client is built.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "coord_barrier_waits_total",
        Unit::Count,
        "Barrier, double barrier and latch waits by kind and outcome"
    );
    describe_histogram!(
        "coord_barrier_wait_seconds",
        Unit::Seconds,
        "How long barrier-family waits lasted, by kind"
    );
}
