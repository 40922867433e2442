//! Recorded histories and the checkers that judge them, one module per
//! family. Plain data, no simulator: the same checkers judge simulated runs
//! and chaos runs on a real backend.
//!
//! | checker | property |
//! |---|---|
//! | [`FencedResource::check`] | (a) per key, accepted writes never go back to a smaller token, and one token (one lock period, term or run) belongs to one client |
//! | [`ServerLog::check`] | (b) per key, tokens strictly increase in the server's order, across restarts; a renewal never succeeds and a release never frees a lease after another holder was granted the key |
//! | [`GrantLog::check`] | (b) as seen by clients: a grant requested after another was received carries a larger token |
//! | [`Beliefs::check`] | (c) no two clients believe they hold the lock at the same instant (while drift stays in bounds) |
//! | [`KeyedBeliefs::check_exclusion`], [`KeyedBeliefs::check_tokens`] | (c) and (b) for multi-locks, key by key: no two clients believe they hold one key at once; member tokens increase per key as clients saw them |
//! | [`check_liveness`] | (d) after the faults heal, a waiting client gets the lock within a bound |
//! | [`Leaderships::check`] | one holder per term, terms strictly increasing in the backend's order, and (drift in bounds) a leader stops believing before the backend elects the next one, so no two leaders believe at one instant |
//! | [`check_failovers`] | after the leader crashes, a new leader is elected within TTL plus a bound |
//! | [`OnceRuns::check`] | a run-once occurrence never runs on two instances at once nor after a run finished, a run whose lease was lost never counts as finished, no write lands after the finish |
//! | [`check_barriers`] | barriers: no trip early or counting a participant past its TTL since it last waited, every waiter of a generation returns as the backend ended it (all tripped or all broken), no wait outlives its deadline by more than a bound, generations strictly increasing across restarts |
//! | [`check_latches`] | latches: a generation reaches zero only once its count of distinct participants called, waits open only after it, each participant counted once per generation, never more count-downs than the count, no wait outlives its deadline by more than a bound, generations strictly increasing |
//! | [`check_graphs`] | job graphs: every node of every run ends once the faults heal, is completed at most once and only by its latest attempt (stale tokens refused, the resource fenced), starts only after its upstream edges hold, and ends as the edge semantics say (skips and `by`, `On::Failure`/`On::Any`, failure policies, rule 7), within `max_attempts` |
//! | [`check_queues`] | work queues: the backend's log replayed through the SPI's rules (every receive takes the ready items in order, nothing ready left out — not after an expiry, nor after a dead consumer's presence ended —, nothing delivered while its delivery is valid, only unstarted deliveries stolen, only the current unexpired token settles, attempts and tokens as the rules say); every acknowledged push acked or dead once drained, at most one accepted ack per item, every second handler start explained by an ended lease or a nack, writes fenced by started deliveries' tokens, the dead letters exactly those the rules made |
//! | [`check_topics`] | topics: every acknowledged durable event acked, dead-lettered or reported missed (trimmed) for every subscription, never skipped silently; settlements fenced by the latest delivery's token and deadline; tokens increasing across restarts; values as published; refused events among the dead |
//! | [`check_state`] | shared values: a counter incremented by `update` loses no acknowledged update (values only increase in version order, but at a data-losing restart; without restarts it ends exact), versions never repeat, and every watcher sees each change in order or a gap with the state (each put is the value it had plus one), the values acknowledged, and catches up with the final state after the heal; [`check_flag`]: a value put with TTLs, compared-and-set and deleted, watched: no change skipped without a gap, each event the write acknowledged at its version, an expiry only of a value put with a TTL, the watcher ending at the final value |
//! | [`check_breaker`] | circuit breakers: never more live trials than allowed per generation nor more counted, no trial call without a grant, once healed an open reaches every instance within the bound, every process told each transition in order or told it missed some (only where it did), and the last one by the end |
//! | [`check_ops`] | operations: every listing lists exactly the live leases, every lease of a holder down for longer than its presence TTL is listed stale, and none of a holder up and reachable for a renewal's worth is |
//! | [`OrphanRule::check`] | once the faults heal, a lease the server granted but no client received is gone (released, or expired) within a bound well below its TTL |
//!
//! | module | family |
//! |---|---|
//! | `fence` | the fenced resource, per key, for every family: [`FencedResource`], [`check_writes`] |
//! | `locks` | [`ServerLog`] (every family's grants in the server's order), [`GrantLog`], [`Beliefs`] |
//! | `multi` | [`KeyedBeliefs`]: the beliefs and grants of sets of locks, judged key by key |
//! | `election` | [`LeadLog`], [`Leaderships`], [`check_terms`], [`failovers`] |
//! | `jobs` | [`OnceRuns`], [`check_once`] |
//! | `barriers` | [`BarrierLog`] (the backend's barrier and latch events), [`BarrierWaits`], [`Downtime`], [`check_barriers`] |
//! | `latch` | [`LatchCalls`] (count-downs and waits as called), [`check_latches`] (on the barrier log's latch events) |
//! | `graphs` | [`GraphLog`] (what the backend answered to graph calls, in its order), [`Bodies`], [`FinalRun`], [`check_graphs`] |
//! | `queues` | [`QueueLog`] (what the backend answered to queue calls, with its clock, in its order), [`PushAcks`], [`Handlers`], [`check_queues`] |
//! | `topics` | [`TopicLog`] (what the backend answered to durable topic calls), [`Seen`], [`check_topics`] |
//! | `state` | [`StateHistory`] (updates as acknowledged, what watchers were handed, the final state), [`check_state`] |
//! | `breaker` | [`BreakerLog`] (the backend's trial grants, trial ends and transitions), [`BreakerProcess`] (calls admitted, transitions told), [`check_breaker`] |
//! | `ops` | [`Listing`]s (an operator's leases and stale leases), [`HolderRecord`]s (each holder's leases and downtime), [`check_ops`] |
//! | `orphans` | [`orphans`], [`OrphanRule`]: grants nobody received, and how long they outlived the heal |

use std::{fmt, time::Duration};

use coord_api::Instant;

mod barriers;
mod breaker;
mod election;
mod fair;
mod fence;
mod graphs;
mod jobs;
mod latch;
mod locks;
mod multi;
mod ops;
mod orphans;
mod queues;
mod state;
mod topics;

pub use barriers::{
    BarrierCounts, BarrierEvent, BarrierLog, BarrierRules, BarrierWait, BarrierWaits, Downtime,
    WaitOutcome, WakeRule, check_barriers,
};
pub use breaker::{
    BreakerCounts, BreakerDecision, BreakerHistory, BreakerLog, BreakerProcess, Told,
    breaker_counts, check_breaker,
};
pub use election::{
    LeadEvent, LeadLog, LeaderTerm, Leaderships, check_failovers, check_terms, failovers,
};
pub use fair::{FairCounts, FairLog, FairRules, FairWait, QueuedAttempt, check_fair};
pub use fence::{FencedResource, Write, check_writes};
pub use graphs::{
    Bodies, Body, BodyEnd, FinalRun, GraphCounts, GraphEvent, GraphHistory, GraphLog, WallMap,
    WallRate, check_graphs, resource_key,
};
pub use jobs::{OnceOutcome, OnceRun, OnceRuns, check_once};
pub use latch::{
    LatchCall, LatchCallKind, LatchCalls, LatchOutcome, LatchRules, check_latches, latch_counts,
};
pub use locks::{Belief, Beliefs, GrantLog, ObservedGrant, ServerEvent, ServerLog};
pub use multi::KeyedBeliefs;
pub use ops::{HolderRecord, Listing, OpsCounts, OpsHistory, OpsRules, check_ops};
pub use orphans::{Gone, Orphan, OrphanRule, orphans};
pub use queues::{
    Delivered, Handler, HandlerEnd, Handlers, Listed, PushAck, PushAcks, PushedItem, QueueCounts,
    QueueEvent, QueueHistory, QueueLog, QueueOp, check_queues, item_key, queue_counts,
};
pub use state::{
    FlagHistory, FlagWrite, StateCounts, StateHistory, Watched, check_flag, check_state,
    state_counts,
};
pub use topics::{
    Seen, TopicCounts, TopicEvent, TopicHistory, TopicLog, TopicOp, check_topics, topic_counts,
};

/// One broken property, found by a checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The checker that found it (`fencing`, `tokens`, `renewal`, `release`,
    /// `exclusion`, `liveness`, `terms`, `term-holders`, `leaders`,
    /// `failover`, `once-lost`, `once-after-finish`, `once-overlap`,
    /// `orphans`, `barrier-early`, `barrier-dead`, `barrier-outcome`,
    /// `barrier-hang`, `barrier-generations`, `barrier-wake`, `latch-early`,
    /// `latch-counted-once`, `latch-count`, `latch-hang`,
    /// `latch-generations`, `latch-outcome`, `graph-stranded`, `graph-once`,
    /// `graph-stale-complete`, `graph-fencing`, `graph-early`,
    /// `graph-parents`, `graph-resolution`, `graph-complete`,
    /// `graph-cancel`, `graph-attempts`, `graph-tokens`, `graph-submit`,
    /// `graph-take`, `queue-receive`, `queue-lost`, `queue-reclaim`,
    /// `queue-duplicate`, `queue-early`, `queue-dead`, `queue-steal-started`,
    /// `queue-settle`, `queue-attempts`, `queue-tokens`, `queue-push`,
    /// `queue-leave`, `queue-next-in`, `queue-unknown`, `queue-acked-twice`,
    /// `queue-handler`, `queue-fencing`, `queue-drain`, `topic-lost`,
    /// `topic-fencing`, `topic-tokens`, `topic-values`, `topic-dead`,
    /// `state-versions`, `state-lost-update`, `state-counter`,
    /// `state-watch-order`, `state-watch-skip`, `state-watch-value`,
    /// `state-watch-stale`, `state-flag-order`, `state-flag-skip`,
    /// `state-flag-value`, `state-flag-expiry`, `state-flag-stale`,
    /// `breaker-trials`, `breaker-trial-calls`, `breaker-open-bound`,
    /// `breaker-transitions`, `ops-listed`, `ops-stale-missed`,
    /// `ops-stale-false`, `fair-order`).
    pub checker: &'static str,
    /// What happened, with the clients, tokens and instants involved.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(checker: &'static str, detail: String) -> Violation {
        Violation { checker, detail }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.detail)
    }
}

/// Checker (d): after the faults healed at `healed`, the waiting client got
/// the lock (`got`, `None` if never) within `bound`.
pub fn check_liveness(healed: Instant, got: Option<Instant>, bound: Duration) -> Vec<Violation> {
    match got {
        Some(t) if t <= healed + bound => Vec::new(),
        Some(t) => vec![Violation::new(
            "liveness",
            format!(
                "the waiting client got the lock {:?} after the heal; bound {bound:?}",
                t - healed
            ),
        )],
        None => vec![Violation::new(
            "liveness",
            format!("the waiting client never got the lock (bound {bound:?} after the heal)"),
        )],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use coord_api::{HolderId, InstanceId};

    /// `ms` after a fixed origin.
    pub(crate) fn t(ms: u64) -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    /// The holder `name` (one acquisition of it).
    pub(crate) fn holder(name: &str) -> HolderId {
        HolderId::from_parts(InstanceId::new(name).unwrap(), 7)
    }

    #[test]
    fn liveness_bound() {
        assert!(check_liveness(t(0), Some(t(10)), Duration::from_millis(10)).is_empty());
        assert_eq!(
            check_liveness(t(0), Some(t(11)), Duration::from_millis(10)).len(),
            1
        );
        assert_eq!(
            check_liveness(t(0), None, Duration::from_millis(10)).len(),
            1
        );
    }
}
