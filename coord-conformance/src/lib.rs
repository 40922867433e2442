//! # coord-conformance: the suite every coord backend runs
//!
//! A backend author implements [`Harness`] (open an independent client
//! connection on one shared backend, bound to a namespace) and writes one
//! line:
//!
//! ```ignore
//! coord_conformance::suite!(my_backend::test_harness());
//! ```
//!
//! which stamps out one `#[tokio::test]` per case of [`cases`]. Each case is a
//! `pub async fn(&dyn Harness)` checking one behaviour of the contract
//! (`coord_api::contract`); it runs in a fresh random namespace, so cases
//! can share a backend and run in parallel. Cases are chosen by
//! [`Capability`](coord_api::Capability): a case whose capability the backend
//! lacks passes without checking anything and says so on stderr.
//!
//! | module | what it holds |
//! |---|---|
//! | [`harness`] | [`Harness`], [`Ctx`] (a fresh namespace and its clients) |
//! | [`cases`] | the cases, one behaviour each |
//! | [`faults`] | [`Switch`](faults::Switch): a backend decorator a case can cut off |
#![deny(missing_docs)]

pub mod cases;
pub mod faults;
pub mod harness;

pub use harness::{Ctx, Harness};

/// The one list of cases, in the order of `cases.rs`: [`suite!`] and
/// [`run_all`] expand it.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($($prefix:tt)*) => {
        $crate::__expand! { $($prefix)* ;
            exclusion,
            try_lock_does_not_wait,
            exclusive_same_holder_refused,
            exclusion_under_contention,
            reentrant_counts,
            reentrant_excludes_other_holders,
            reentrant_reentry_after_force_release,
            non_holder_release_refused,
            non_holder_extend_refused,
            ttl_expiry_frees_key,
            extend_resets_ttl,
            extend_after_expiry_fails,
            release_after_expiry_returns_false,
            release_after_takeover_returns_false,
            release_wakes_waiter_within_50ms,
            expiry_wakes_waiter_promptly,
            tokens_increase_across_grants,
            tokens_increase_after_expiry,
            tokens_increase_after_force_release,
            tokens_increase_for_shared_grants,
            auto_extend_keeps_lock_past_3x_ttl,
            lost_signal_fires_when_renewal_impossible,
            lost_before_takeover,
            renewal_after_takeover_fails,
            release_ends_lost_signal,
            dropped_guard_frees_key,
            unreachable_holder_freed_at_ttl,
            cancelled_lock_leaves_nothing_held,
            cancel_racing_release_leaves_nothing_held,
            wait_timeout_returns_timeout,
            max_retries_returns_timeout,
            extreme_durations_do_not_panic,
            holders_show_holder_and_token,
            holders_list_shared_leases,
            force_release_fences_old_holder,
            namespaces_isolated,
            families_isolated,
            readers_share,
            readers_block_writer,
            writer_excludes_readers,
            writer_excludes_writers,
            waiting_writer_blocks_new_readers,
            cancelled_writer_lets_readers_in,
            reader_crash_frees_share_at_ttl,
            reader_release_wakes_writer,
            writer_release_wakes_readers,
            semaphore_never_exceeds_n,
            semaphore_try_acquire_refused_at_n,
            semaphore_crashed_permit_returns_at_ttl,
            semaphore_different_n_invalid,
            semaphore_n_refixed_when_empty,
            semaphore_release_wakes_waiter,
            dropped_permit_frees_slot,
            semaphore_zero_permits_invalid,
            empty_key_invalid,
            oversized_key_invalid,
            control_character_key_invalid,
            key_of_512_bytes_accepted,
            zero_ttl_invalid,
            ttl_over_24h_invalid,
            ttl_bounds_accepted,
            invalid_options_refused,
            release_notifies_subscribers,
            expiry_notifies_subscribers,
            watch_ignores_other_keys,
            backend_refuses_zero_ttl_and_limit,
            term_increases_across_resign,
            term_increases_after_expiry,
            try_campaign_refused_while_led,
            one_leader_among_concurrent_campaigners,
            leader_info_visible_to_non_candidates,
            resign_lets_waiting_candidate_win_at_once,
            crashed_leader_replaced_after_ttl,
            partitioned_leader_loses_before_new_leader,
            stale_term_renew_and_resign_refused,
            no_quorum_elects_nobody,
            quorum_loss_ends_leadership,
            quorum_regained_allows_election,
            observer_sees_every_term,
            lagging_observer_told_it_skipped,
            observer_from_vacancy_told_it_skipped,
            observer_reports_vacancy_after_resign,
            join_lists_member_with_metadata,
            leave_removes_member,
            crashed_member_disappears_after_ttl,
            unreachable_member_disappears,
            group_observer_sees_join_and_leave,
            run_once_runs_once_across_instances,
            run_once_never_reruns_finished,
            crashed_run_retried_after_ttl,
            run_outliving_its_lease_is_retried,
            run_once_retention_expiry_allows_rerun,
            run_once_occurrences_independent,
            job_run_is_exclusive_with_token,
            runner_calls_on_acquired_with_term,
            runner_shutdown_resigns,
            runner_recampaigns_after_loss,
            election_invalid_input_refused,
            group_invalid_input_refused,
            job_invalid_input_refused,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __expand {
    (tests [$harness:expr] ; $($case:ident),* $(,)?) => {$(
        #[doc = concat!("Conformance case `", stringify!($case), "`.")]
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let harness = $harness;
            $crate::cases::$case(&harness).await;
        }
    )*};
    (run [$harness:expr] ; $($case:ident),* $(,)?) => {$(
        eprintln!("conformance: {}", stringify!($case));
        $crate::cases::$case($harness).await;
    )*};
    (names ; $($case:ident),* $(,)?) => {
        &[$(stringify!($case)),*]
    };
}

/// Stamps out one `#[tokio::test]` per conformance case, each calling the
/// case with the harness `$harness` (an expression evaluated per test).
///
/// ```ignore
/// coord_conformance::suite!(coord_memory::MemoryHarness::default());
/// ```
#[macro_export]
macro_rules! suite {
    ($harness:expr) => {
        $crate::__with_cases!(tests[$harness]);
    };
}

/// The names of every case, in order.
pub const CASES: &[&str] = __with_cases!(names);

/// Runs every case in turn on `harness` (for environments where one test
/// must run them all, such as the simulator). Panics on the first failure,
/// naming the case.
pub async fn run_all(harness: &dyn Harness) {
    __with_cases!(run[harness]);
}
