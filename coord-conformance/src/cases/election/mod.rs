//! Elections: terms, quorum, observers, the leader runner, candidates and
//! proclamations, and the checks of every call that names a holder or a
//! term.

use crate::runner::Case;

pub mod candidates;
pub mod holders;
pub mod observers;
pub mod quorum;
pub mod runner;
pub mod terms;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [
        terms::cases(),
        quorum::cases(),
        observers::cases(),
        runner::cases(),
        candidates::cases(),
        holders::cases(),
    ]
    .concat()
}
