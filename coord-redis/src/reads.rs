//! Which requests are reads, never confirmed under confirmed writes
//! ([`Confirm`](crate::Confirm), decision 0036): classified by the traced
//! family and operation, since one operation name may be a read in one
//! family and a write in another (`read`: the operations listing reads,
//! a topic's consumer reads *and* claims). Anything not listed is a write,
//! confirmed (the safe side); a unit test requires every traced operation
//! of the crate to be listed here or among the writes on purpose, so a new
//! read cannot be forgotten.

/// A family of [`READS`] that stands for any family (the operation is
/// traced under a family chosen at run time: a lock space, a barrier
/// kind, the primitive whose expiry is watched).
const ANY: &str = "*";

/// The `(family, operation)` pairs that only answer a question, never
/// confirmed. What they may change is housekeeping (pruning what expired)
/// that a failover may lose harmlessly.
const READS: &[(&str, &str)] = &[
    (ANY, "expiry"),
    (ANY, "inspect"),
    // A barrier's, latch's or run-once occurrence's state.
    (ANY, "state"),
    // A breaker's or barrier's record, or nothing when it has none (never
    // made by a look); their sweeps are housekeeping like the others'.
    (ANY, "peek"),
    // A breaker's state: it may birth the breaker with the caller's policy
    // and make what time alone decided (open to half-open). Housekeeping
    // too: a failover that loses it leaves it to the next read on the new
    // master (a birth lost so is made again, with that caller's policy).
    // Confirmed, a replica gone would turn every instance's refresh into
    // a failure, and its breaker into the backend-unreachable fallback.
    ("breaker", "state"),
    ("election", "candidates"),
    ("election", "leader"),
    ("election", "terms_granted"),
    ("graph", "status"),
    ("group", "members"),
    ("ops", "audit"),
    ("ops", "instances"),
    ("ops", "presence"),
    ("ops", "probe"),
    // (A question too: whether the master takes a write, asked with a
    // key that lives 1 s. Confirmed, a replica gone would turn health's
    // answer into the probe's failure.)
    ("ops", "probe_write"),
    // The listing's lease records (not a topic's `read`: a write).
    ("ops", "read"),
    ("ops", "scan"),
    ("ops", "server_time"),
    ("queue", "dead_items"),
    ("queue", "stats"),
    ("state", "changes"),
    ("state", "get"),
    ("topic", "dead_events"),
    ("topic", "stats"),
];

/// Writes never confirmed either: an ephemeral event is at most once by
/// definition (decision 0036).
const AT_MOST_ONCE: &[(&str, &str)] = &[("topic", "publish_ephemeral")];

/// Whether `op` of `family` is never confirmed: one of the [`READS`] or
/// [`AT_MOST_ONCE`].
pub(crate) fn unconfirmed(family: &str, op: &str) -> bool {
    (READS.iter().chain(AT_MOST_ONCE)).any(|r| matches(*r, family, op))
}

fn matches((f, o): (&str, &str), family: &str, op: &str) -> bool {
    o == op && (f == ANY || f == family)
}

#[cfg(test)]
mod tests;
