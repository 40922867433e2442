//! What the shared-value family counts, through the `metrics` facade (the
//! application installs a recorder; without one each costs a load and a
//! branch). Labels are bounded: an operation and an outcome, never a key.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `coord_state_written_total` | counter | `op`: `put`, `compare_and_set`, `delete`; `outcome`: `done`, `conflict`, `unchanged` |
//! | `coord_state_update_total` | counter | `outcome`: `done`, `conflict` (every attempt lost the race: `Error::Conflict`) |
//! | `coord_state_update_retries_total` | counter | (none): attempts of `update` after its first |
//! | `coord_state_watch_events_total` | counter | `kind`: `put`, `deleted`, `expired`, `gap` |

use crate::spi::Written;

/// Counts one write and how it ended.
pub(crate) fn written(op: &'static str, written: &Written) {
    let outcome = match written {
        Written::Done(_) => "done",
        Written::Conflict(_) => "conflict",
        Written::Unchanged => "unchanged",
    };
    metrics::counter!("coord_state_written_total", "op" => op, "outcome" => outcome).increment(1);
}

/// Counts one `update` and its retries.
pub(crate) fn updated(done: bool, attempts: u32) {
    let outcome = if done { "done" } else { "conflict" };
    metrics::counter!("coord_state_update_total", "outcome" => outcome).increment(1);
    if attempts > 1 {
        metrics::counter!("coord_state_update_retries_total").increment(u64::from(attempts - 1));
    }
}

/// Counts one event a watch handed out.
pub(crate) fn event(kind: &'static str) {
    metrics::counter!("coord_state_watch_events_total", "kind" => kind).increment(1);
}

/// Describes the family's metrics (names, units, help) to the recorder
/// installed now, if any: called when a client is built.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter};
    describe_counter!(
        "coord_state_written_total",
        Unit::Count,
        "Shared-value writes by op (put, compare_and_set, delete) and outcome (done, conflict, unchanged)"
    );
    describe_counter!(
        "coord_state_update_total",
        Unit::Count,
        "update calls by outcome: done, conflict"
    );
    describe_counter!(
        "coord_state_update_retries_total",
        Unit::Count,
        "Attempts of update after its first"
    );
    describe_counter!(
        "coord_state_watch_events_total",
        Unit::Count,
        "Watch events by kind: put, deleted, expired, gap"
    );
}
