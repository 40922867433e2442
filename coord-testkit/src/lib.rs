//! # coord-testkit: test support for coord's own tests (not published)
//!
//! | module | what it holds |
//! |---|---|
//! | [`clocks`] | clocks for tests: one that counts its reads |
#![deny(missing_docs)]

pub mod clocks;
