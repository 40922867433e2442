//! What the breaker family counts, through the `metrics` facade. Labels
//! are bounded: an outcome or a phase, never a breaker's name.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `coord_breaker_calls_total` | counter | `outcome`: `success`, `failure`, `refused` |
//! | `coord_breaker_transitions_total` | counter | `to`: `closed`, `open`, `half_open`, `forced_open`, `disabled` |
//! | `coord_breaker_flushes_total` | counter | `outcome`: `counted`, `stale`, `error` |
//! | `coord_breaker_unreachable_total` | counter | (none): times the backend was lost |

use crate::spi::Phase;

pub(crate) fn call(failed: bool) {
    let outcome = if failed { "failure" } else { "success" };
    metrics::counter!("coord_breaker_calls_total", "outcome" => outcome).increment(1);
}

pub(crate) fn refused() {
    metrics::counter!("coord_breaker_calls_total", "outcome" => "refused").increment(1);
}

pub(crate) fn transition(to: Phase) {
    metrics::counter!("coord_breaker_transitions_total", "to" => to.as_str()).increment(1);
}

pub(crate) fn flush(outcome: &'static str) {
    metrics::counter!("coord_breaker_flushes_total", "outcome" => outcome).increment(1);
}

pub(crate) fn unreachable() {
    metrics::counter!("coord_breaker_unreachable_total").increment(1);
}

/// Describes the family's metrics (names, units, help) to the recorder
/// installed now, if any: called when a client is built.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter};
    describe_counter!(
        "coord_breaker_calls_total",
        Unit::Count,
        "Calls through breakers by outcome: success, failure, refused"
    );
    describe_counter!(
        "coord_breaker_transitions_total",
        Unit::Count,
        "Breaker transitions by phase entered"
    );
    describe_counter!(
        "coord_breaker_flushes_total",
        Unit::Count,
        "Counts flushed to the shared breaker by outcome: counted, stale, error"
    );
    describe_counter!(
        "coord_breaker_unreachable_total",
        Unit::Count,
        "Times a breaker lost its backend"
    );
}
