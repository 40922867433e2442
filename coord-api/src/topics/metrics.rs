//! What the topic family counts, through the `metrics` facade. Labels are
//! bounded: a tier or an outcome, never a topic name or an offset.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `coord_topic_published_total` | counter | `tier`: `ephemeral`, `durable` |
//! | `coord_topic_delivered_total` | counter | `kind`: `first`, `redelivery` |
//! | `coord_topic_settled_total` | counter | `outcome`: `acked`, `nacked`, `dead_lettered`, `refused` (tag or decode), `stale` |
//! | `coord_topic_missed_total` | counter | (none): durable offsets a subscription was told it missed to trimming |
//! | `coord_topic_ephemeral_gaps_total` | counter | (none): times a listener was told it may have missed ephemeral events |

/// Counts `n` events published on `tier`.
pub(crate) fn published(tier: &'static str, n: u64) {
    metrics::counter!("coord_topic_published_total", "tier" => tier).increment(n);
}

/// Counts one delivery handed to a subscriber.
pub(crate) fn delivered(redelivery: bool) {
    let kind = if redelivery { "redelivery" } else { "first" };
    metrics::counter!("coord_topic_delivered_total", "kind" => kind).increment(1);
}

/// Counts one settlement.
pub(crate) fn settled(outcome: &'static str) {
    metrics::counter!("coord_topic_settled_total", "outcome" => outcome).increment(1);
}

/// Counts `n` offsets reported missed.
pub(crate) fn missed(n: u64) {
    metrics::counter!("coord_topic_missed_total").increment(n);
}

/// Counts one ephemeral gap reported.
pub(crate) fn missed_ephemeral() {
    metrics::counter!("coord_topic_ephemeral_gaps_total").increment(1);
}

/// Describes the family's metrics (names, units, help) to the recorder
/// installed now, if any: called when a client is built.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter};
    describe_counter!(
        "coord_topic_published_total",
        Unit::Count,
        "Events published, by tier: ephemeral, durable"
    );
    describe_counter!(
        "coord_topic_delivered_total",
        Unit::Count,
        "Durable deliveries handed to subscribers, by kind: first, redelivery"
    );
    describe_counter!(
        "coord_topic_settled_total",
        Unit::Count,
        "Settlements by outcome: acked, nacked, dead_lettered, refused, stale"
    );
    describe_counter!(
        "coord_topic_missed_total",
        Unit::Count,
        "Durable offsets a subscription was told it missed (trimmed)"
    );
    describe_counter!(
        "coord_topic_ephemeral_gaps_total",
        Unit::Count,
        "Times a listener was told it may have missed ephemeral events"
    );
}
