//! The checkers catch bugs: each deliberately broken sim server or client
//! (`coord_sim::scenario::Bug`, feature `broken`: a decorator around the
//! store or around a client's connection, or a clock without the wall-clock
//! floor) is reported by the simulator with a seed, within the usual
//! 200-seed sweep.
//!
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test --profile sim -p coord-sim --features broken --test broken`
#![cfg(all(madsim, feature = "broken"))]

use coord_sim::scenario::{Bug, Scenario, seeds_from_env, sweep_with};

/// Sweeps until the first failing seed; the bug must be caught, by one of
/// the expected checkers. Returns the checkers that reported it.
fn caught(s: Scenario, bug: Bug, test: &str, checkers: &[&str]) -> Vec<String> {
    let s = s.with_bug(bug);
    let child = std::env::var_os("COORD_SIM_CHILD").is_some();
    let out = sweep_with(&s, seeds_from_env(), test, true);
    if child {
        // One seed of the parent's sweep: report, do not judge.
        return Vec::new();
    }
    println!("{bug:?} in {}: {out}", s.name);
    let Some((seed, violations)) = out.failures.first() else {
        panic!(
            "{bug:?} was not caught in {} seeds of {}",
            out.seeds, s.name
        );
    };
    let text = violations.join("\n");
    assert!(
        checkers.iter().any(|c| text.contains(&format!("[{c}]"))),
        "{bug:?} caught on seed {seed}, but not by {checkers:?}:\n{text}"
    );
    println!("{bug:?} caught on seed {seed} (after {} seeds)", out.seeds);
    // The checkers named in the failure: each violation is a line
    // `  [checker] detail`.
    let mut by: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('[')?.split_once(']'))
        .map(|(c, _)| c.to_owned())
        .collect();
    by.sort();
    by.dedup();
    by
}

#[test]
fn release_ignoring_the_holder_is_caught() {
    caught(
        Scenario::partitions_in_bounds(),
        Bug::ReleaseIgnoresHolder,
        "release_ignoring_the_holder_is_caught",
        &["release", "exclusion"],
    );
}

#[test]
fn tokens_restarting_after_a_restart_are_caught() {
    caught(
        Scenario::server_restarts(),
        Bug::NoTokenFloor,
        "tokens_restarting_after_a_restart_are_caught",
        &["tokens"],
    );
}

#[test]
fn renewal_after_takeover_is_caught() {
    caught(
        Scenario::drift_beyond_bounds(),
        Bug::RenewAfterTakeover,
        "renewal_after_takeover_is_caught",
        &["renewal", "exclusion"],
    );
}

#[test]
fn expiry_never_notified_is_caught() {
    caught(
        Scenario::partitions_in_bounds(),
        Bug::NoExpiryWake,
        "expiry_never_notified_is_caught",
        &["liveness"],
    );
}

#[test]
fn renewal_after_a_new_term_is_caught() {
    caught(
        Scenario::leadership_partitions(),
        Bug::RenewAlways,
        "renewal_after_a_new_term_is_caught",
        &["leaders", "renewal"],
    );
}

#[test]
fn campaign_deposing_the_leader_is_caught() {
    caught(
        Scenario::leadership_partitions(),
        Bug::CampaignDeposes,
        "campaign_deposing_the_leader_is_caught",
        &["leaders"],
    );
}

#[test]
fn a_lost_run_marked_finished_is_caught() {
    caught(
        Scenario::run_once_faults(),
        Bug::EndOnceFinishes,
        "a_lost_run_marked_finished_is_caught",
        &["once-lost"],
    );
}

/// The client's clean-up of unanswered acquisitions removed: grants whose
/// reply was lost, came too late or whose call was cancelled outlive the
/// heal by nearly a TTL. Only the orphan checker can see it (the leases
/// are safe, merely stuck until they expire).
fn orphans_caught(s: Scenario, test: &str) {
    let by = caught(s, Bug::NoCleanup, test, &["orphans"]);
    if std::env::var_os("COORD_SIM_CHILD").is_none() {
        assert_eq!(by, ["orphans"], "reported by other checkers too");
    }
}

#[test]
fn orphaned_locks_left_to_expire_are_caught() {
    orphans_caught(
        Scenario::partitions_in_bounds(),
        "orphaned_locks_left_to_expire_are_caught",
    );
}

#[test]
fn orphaned_terms_left_to_expire_are_caught() {
    orphans_caught(
        Scenario::leadership_partitions(),
        "orphaned_terms_left_to_expire_are_caught",
    );
}

#[test]
fn a_tripped_generation_reported_broken_is_caught() {
    caught(
        Scenario::barrier_faults(),
        Bug::BreakAfterTrip,
        "a_tripped_generation_reported_broken_is_caught",
        &["barrier-outcome"],
    );
}

#[test]
fn arrivals_kept_past_their_ttl_are_caught() {
    caught(
        Scenario::barrier_faults(),
        Bug::ArrivalOutlivesTtl,
        "arrivals_kept_past_their_ttl_are_caught",
        &["barrier-dead"],
    );
}

#[test]
fn a_retried_count_down_counted_twice_is_caught() {
    caught(
        Scenario::latch_faults(),
        Bug::LatchRetryCountsTwice,
        "a_retried_count_down_counted_twice_is_caught",
        &["latch-counted-once", "latch-early"],
    );
}

#[test]
fn a_stale_completion_recorded_is_caught() {
    caught(
        Scenario::graph_faults(),
        Bug::CompleteIgnoresToken,
        "a_stale_completion_recorded_is_caught",
        &["graph-stale-complete"],
    );
}

#[test]
fn a_dependent_run_whatever_its_edge_says_is_caught() {
    caught(
        Scenario::graph_faults(),
        Bug::ResolveSkipsCondition,
        "a_dependent_run_whatever_its_edge_says_is_caught",
        &["graph-early"],
    );
}

#[test]
fn a_fan_in_started_after_one_parent_is_caught() {
    caught(
        Scenario::graph_faults(),
        Bug::FanInWaitsForOne,
        "a_fan_in_started_after_one_parent_is_caught",
        // A node started after one of its parents is told fewer parents
        // than its edges name (graph-parents), and runs though a parent
        // failed (graph-early) when that parent ends badly later: which
        // shows first depends on the seed.
        &["graph-early", "graph-parents"],
    );
}

#[test]
fn attempts_beyond_the_maximum_are_caught() {
    caught(
        Scenario::graph_faults(),
        Bug::AttemptsBeyondMax,
        "attempts_beyond_the_maximum_are_caught",
        &["graph-attempts"],
    );
}

#[test]
fn a_stale_ack_accepted_is_caught() {
    caught(
        Scenario::queue_faults(),
        Bug::AckIgnoresToken,
        "a_stale_ack_accepted_is_caught",
        &["queue-settle"],
    );
}

#[test]
fn a_started_delivery_stolen_is_caught() {
    caught(
        Scenario::queue_faults(),
        Bug::StealStarted,
        "a_started_delivery_stolen_is_caught",
        &["queue-steal-started"],
    );
}

#[test]
fn an_expired_delivery_dropped_is_caught() {
    caught(
        Scenario::queue_faults(),
        Bug::ExpiryLosesItem,
        "an_expired_delivery_dropped_is_caught",
        &["queue-lost"],
    );
}

#[test]
fn a_dead_consumers_deliveries_kept_until_their_deadline_are_caught() {
    caught(
        Scenario::queue_faults(),
        Bug::PresenceIgnored,
        "a_dead_consumers_deliveries_kept_until_their_deadline_are_caught",
        &["queue-reclaim"],
    );
}

#[test]
fn queue_tokens_restarting_after_a_restart_are_caught() {
    caught(
        Scenario::queue_server_restarts(),
        Bug::NoTokenFloor,
        "queue_tokens_restarting_after_a_restart_are_caught",
        &["queue-tokens"],
    );
}

#[test]
fn a_topic_skipping_trimmed_events_silently_is_caught() {
    caught(
        Scenario::topic_faults(),
        Bug::TopicSkipsMissed,
        "a_topic_skipping_trimmed_events_silently_is_caught",
        &["topic-lost"],
    );
}

#[test]
fn a_compare_and_set_ignoring_the_version_is_caught() {
    caught(
        Scenario::state_faults(),
        Bug::CasIgnoresVersion,
        "a_compare_and_set_ignoring_the_version_is_caught",
        &["state-lost-update", "state-counter"],
    );
}

#[test]
fn a_stale_topic_ack_accepted_is_caught() {
    caught(
        Scenario::topic_faults(),
        Bug::TopicAckIgnoresToken,
        "a_stale_topic_ack_accepted_is_caught",
        &["topic-fencing"],
    );
}

#[test]
fn a_change_log_skipping_changes_is_caught() {
    caught(
        Scenario::state_faults(),
        Bug::LogSkipsChanges,
        "a_change_log_skipping_changes_is_caught",
        &["state-watch-skip"],
    );
}

#[test]
fn state_versions_restarting_after_a_restart_are_caught() {
    caught(
        Scenario::state_server_restarts(),
        Bug::NoTokenFloor,
        "state_versions_restarting_after_a_restart_are_caught",
        &[
            "state-versions",
            "state-lost-update",
            "state-watch-order",
            "state-watch-skip",
            "state-watch-stale",
        ],
    );
}

#[test]
fn a_fair_lock_ignoring_its_queue_is_caught() {
    caught(
        Scenario::fair_lock(),
        Bug::FairIgnoresQueue,
        "a_fair_lock_ignoring_its_queue_is_caught",
        &["fair-order"],
    );
}
