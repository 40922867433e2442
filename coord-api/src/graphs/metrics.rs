//! What the job graph family counts, through the `metrics` facade (the
//! application installs a recorder; without one each costs a load and a
//! branch). Labels are bounded: an outcome, never a graph, run or node name.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `coord_graph_runs_submitted_total` | counter | (none): runs created (not an idempotent re-submission) |
//! | `coord_graph_attempts_total` | counter | `outcome`: the node's state after the attempt (`succeeded`, `failed`, `retry` (ready again), `cancelled`), or `stale` (the completion was refused: the lease had ended) |
//! | `coord_graph_takes_total` | counter | `via` (`take`, or `complete`: taken by a completion in its step), `outcome` (`taken` or `idle`: nothing to take) |
//! | `coord_graph_attempt_seconds` | histogram | `outcome` `ok` or `error`: how long the body ran |

use std::time::Duration;

use crate::spi::{NodeState, Take};

/// Counts one run created.
pub(crate) fn runs_submitted() {
    metrics::counter!("coord_graph_runs_submitted_total").increment(1);
}

/// Counts one attempt that ended with the node in `state` (`None`: its
/// completion was refused or unanswered), whose body failed or not, after
/// running `ran`.
pub(crate) fn attempt_ended(state: Option<NodeState>, failed: bool, ran: Duration) {
    let outcome = match state {
        Some(NodeState::Ready) => "retry",
        Some(s) => s.as_str(),
        None => "stale",
    };
    metrics::counter!("coord_graph_attempts_total", "outcome" => outcome).increment(1);
    let body = if failed { "error" } else { "ok" };
    metrics::histogram!("coord_graph_attempt_seconds", "outcome" => body).record(ran.as_secs_f64());
}

/// Counts one take made `via` a take or a completion, by what it got.
pub(crate) fn took(via: &'static str, take: &Take) {
    let outcome = match take {
        Take::Taken(_) => "taken",
        _ => "idle",
    };
    metrics::counter!("coord_graph_takes_total", "via" => via, "outcome" => outcome).increment(1);
}

/// Describes the family's metrics (names, units, help) to the recorder
/// installed now, if any: called when a client is built.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "coord_graph_runs_submitted_total",
        Unit::Count,
        "Graph runs created (not idempotent re-submissions)"
    );
    describe_counter!(
        "coord_graph_attempts_total",
        Unit::Count,
        "Node attempts by outcome: succeeded, failed, retry, cancelled, stale"
    );
    describe_counter!(
        "coord_graph_takes_total",
        Unit::Count,
        "Takes by via (take, complete) and outcome (taken, idle)"
    );
    describe_histogram!(
        "coord_graph_attempt_seconds",
        Unit::Seconds,
        "How long node bodies ran, by outcome: ok, error"
    );
}
