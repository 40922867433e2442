//! The leadership checkers catch bugs: each deliberately broken leadership
//! answer of the sim server (`LeadBug`, feature `broken`) is reported by a
//! leadership scenario with a seed, within the usual 200-seed sweep.
//!
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test -p coord-sim --features broken --test sim_lead_broken`
#![cfg(all(madsim, feature = "broken"))]

use coord_sim::scenario::{LeadBug, Scenario, seeds_from_env, sweep_with};

/// Sweeps until the first failing seed; the bug must be caught, by one of
/// the expected checkers.
fn caught(s: Scenario, bug: LeadBug, test: &str, checkers: &[&str]) {
    let s = s.with_lead_bug(bug);
    let child = std::env::var_os("COORD_SIM_CHILD").is_some();
    let out = sweep_with(&s, seeds_from_env(), test, true);
    if child {
        return;
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
}

#[test]
fn renewal_after_a_new_term_is_caught() {
    caught(
        Scenario::leadership_partitions(),
        LeadBug::RenewAlways,
        "renewal_after_a_new_term_is_caught",
        &["leaders", "renewal"],
    );
}

#[test]
fn campaign_deposing_the_leader_is_caught() {
    caught(
        Scenario::leadership_partitions(),
        LeadBug::CampaignDeposes,
        "campaign_deposing_the_leader_is_caught",
        &["leaders"],
    );
}

#[test]
fn a_lost_run_marked_finished_is_caught() {
    caught(
        Scenario::run_once_faults(),
        LeadBug::EndOnceFinishes,
        "a_lost_run_marked_finished_is_caught",
        &["once-lost"],
    );
}
