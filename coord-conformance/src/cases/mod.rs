//! The cases: one behaviour of the contract each, named for it, one file (or
//! folder) per family. Each case is declared once, with what it needs, in a
//! `cases!` block, which also lists the file's cases for the runner.
//!
//! Timing rules: a case sleeps only to let time pass for expiry semantics;
//! anything it waits *for* is awaited with a bound ([`eventually`],
//! `tokio::time::timeout`), so a slow machine makes a case slower, not
//! wrong, and a broken backend makes it fail instead of hang.
//!
//! [`eventually`]: crate::harness::eventually

use crate::runner::{Case, CaseFuture};

/// Declares a file's cases: each a documented `pub async fn name(h: &dyn
/// Harness)` with an optional `#[needs(..)]` on top of the file's own needs,
/// and `cases()`, the file's list for the runner.
macro_rules! cases {
    (family: $family:literal, needs: $fneeds:tt;
     $(
        $(#[doc = $doc:literal])*
        $(#[needs($($need:expr),+ $(,)?)])?
        pub async fn $name:ident($h:ident: &dyn Harness) $body:block
     )*
    ) => {
        $(
            $(#[doc = $doc])*
            pub async fn $name($h: &dyn $crate::Harness) $body
        )*

        /// This file's cases, in order.
        pub(crate) fn cases() -> Vec<$crate::runner::Case> {
            vec![$(
                $crate::runner::Case {
                    family: $family,
                    name: stringify!($name),
                    needs: $crate::cases::both!($fneeds [$($($need),+)?]),
                    run: |h| $crate::cases::boxed($name(h)),
                },
            )*]
        }
    };
}
/// The file's needs and a case's, as one `&'static [Need]`.
macro_rules! both {
    ([$($a:expr),* $(,)?] [$($b:expr),* $(,)?]) => {
        &[$($a,)* $($b),*]
    };
}
pub(crate) use both;

mod prelude;

pub mod barriers;
pub mod breakers;
pub mod client;
pub mod election;
pub mod graphs;
pub mod jobs;
pub mod locks;
pub mod membership;
pub mod ops;
pub mod queues;
pub mod state;
pub mod topics;

/// Every case, family by family.
pub fn all() -> Vec<Case> {
    [
        locks::cases(),
        election::cases(),
        membership::cases(),
        jobs::cases(),
        barriers::cases(),
        graphs::cases(),
        queues::cases(),
        topics::cases(),
        state::cases(),
        client::cases(),
        breakers::cases(),
        ops::cases(),
    ]
    .concat()
}

pub(crate) fn boxed<'a>(f: impl std::future::Future<Output = ()> + 'a) -> CaseFuture<'a> {
    Box::pin(f)
}
