//! The contract: what every coord backend promises and every coord user may
//! rely on, one section per family. Each promise is a short sentence naming
//! the conformance case(s) that check it (`coord-conformance`); the
//! simulator (`coord-sim`) checks them under faults. Where this text and the
//! code disagree, one of them is a bug. Why a promise is what it is, where
//! it departs from an earlier design, is recorded in `docs/decisions/`.

#[doc = include_str!("common.md")]
pub mod common {}
#[doc = include_str!("locks.md")]
pub mod locks {}
