//! What one run of a scenario saw: its violations, the faults applied,
//! and the counts each workload reports.

use std::time::Duration;

use crate::history::{BarrierCounts, GraphCounts, QueueCounts, TopicCounts, Violation};

/// What one run saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every violation found.
    pub violations: Vec<Violation>,
    /// Faults applied, in order, for the failure message.
    pub faults: Vec<String>,
    /// Grants observed by clients (lock grants, terms, runs).
    pub grants: usize,
    /// Writes the resource accepted.
    pub writes: usize,
    /// Writes the resource refused for a stale token (fencing at work).
    pub stale_writes_refused: u64,
    /// Overlapping beliefs, terms or runs (reported, not a violation, when
    /// exclusion is not checked).
    pub belief_overlaps: usize,
    /// Grants the server made that no client received.
    pub orphans: usize,
    /// Of which the clean-up had to end for [`ORPHAN_BOUND`](super::ORPHAN_BOUND) to hold:
    /// left alone they would have outlived it (granted less than TTL minus
    /// the bound before the heal, or after; their client not killed).
    pub orphans_at_heal: usize,
    /// Failover times (crash of a leader to the next election), in order.
    pub failovers: Vec<Duration>,
    /// What the barriers did (trips, breaks, how waits returned).
    pub barriers: BarrierCounts,
    /// What the graphs did (runs, node ends, attempts, crashes).
    pub graphs: GraphCounts,
    /// What the queues did (pushes, deliveries, settlements, returns,
    /// crashes).
    pub queues: QueueCounts,
    /// What the topics did (publishes, deliveries, settlements, give-backs).
    pub topics: TopicCounts,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// A hash of everything that happened (faults, grants, accepted writes,
    /// simulated time): two runs of one seed must agree on it.
    pub digest: u64,
}
