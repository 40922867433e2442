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
        $crate::__with_cases!(tests [$harness]);
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
