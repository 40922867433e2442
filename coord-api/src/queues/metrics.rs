//! What the queue family counts, through the `metrics` facade (the
//! application installs a recorder; without one each costs a load and a
//! branch). Labels are bounded: an outcome, never a queue name or an id.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `coord_queue_pushed_total` | counter | (none): items sent in pushes (duplicates included) |
//! | `coord_queue_delivered_total` | counter | `kind`: `first`, `redelivery` (an item started before), `stolen` |
//! | `coord_queue_settled_total` | counter | `outcome`: `acked`, `nacked`, `dead_lettered`, `undecodable`, `stale` (refused: the delivery was no longer current) |

/// Counts `n` items pushed.
pub(crate) fn pushed(n: u64) {
    metrics::counter!("coord_queue_pushed_total").increment(n);
}

/// Counts one delivery handed to a handler.
pub(crate) fn delivered(redelivery: bool, stolen: bool) {
    let kind = match (stolen, redelivery) {
        (true, _) => "stolen",
        (false, true) => "redelivery",
        (false, false) => "first",
    };
    metrics::counter!("coord_queue_delivered_total", "kind" => kind).increment(1);
}

/// Counts one settlement.
pub(crate) fn settled(outcome: &'static str) {
    metrics::counter!("coord_queue_settled_total", "outcome" => outcome).increment(1);
}

/// Describes the family's metrics (names, units, help) to the recorder
/// installed now, if any: called when a client is built.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter};
    describe_counter!(
        "coord_queue_pushed_total",
        Unit::Count,
        "Items sent in pushes (duplicates included)"
    );
    describe_counter!(
        "coord_queue_delivered_total",
        Unit::Count,
        "Deliveries handed to handlers, by kind: first, redelivery, stolen"
    );
    describe_counter!(
        "coord_queue_settled_total",
        Unit::Count,
        "Settlements by outcome: acked, nacked, dead_lettered, undecodable, stale"
    );
}
