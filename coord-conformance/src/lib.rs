//! # coord-conformance: the suite every coord backend runs
//!
//! A backend author implements [`Harness`] (open an independent connection
//! to one shared backend, bound to a namespace) and writes one test target:
//!
//! ```toml
//! [[test]]
//! name = "conformance"
//! harness = false
//! ```
//!
//! ```no_run
//! use coord_api::{Namespace, Result, spi::DynBackend};
//!
//! struct MyHarness; // e.g. the address of a server started for the tests
//!
//! #[async_trait::async_trait]
//! impl coord_conformance::Harness for MyHarness {
//!     async fn open(&self, namespace: &Namespace) -> Result<DynBackend> {
//!         # let _ = namespace; todo!()
//!         // Ok(Arc::new(MyBackend::connect(..., namespace.clone()).await?))
//!     }
//! }
//!
//! // tests/conformance.rs
//! fn main() -> std::process::ExitCode {
//!     coord_conformance::main(MyHarness)
//! }
//! ```
//!
//! [`main`] runs one test per case, named `<family>::<case>`, with the
//! output and flags of `cargo test`. Each case is a `pub async fn(&dyn
//! Harness)` checking one behaviour of the contract (`coord_api::contract`)
//! in a fresh random namespace, so cases share a backend and run in
//! parallel. A case needing a family or capability the backend does not
//! offer ([`Need`]) is reported *ignored*, never passed.
//!
//! | module | what it holds |
//! |---|---|
//! | [`harness`] | [`Harness`], [`Ctx`] (a fresh namespace and its clients) |
//! | [`runner`] | [`main`], [`run_all`], [`Case`], [`Need`] |
//! | [`cases`] | the cases, one file per family, each case declared once |
//! | [`switch`] | [`Switch`](switch::Switch): a decorator a case can cut off or make lose replies |
//! | [`guide`] | the backend author's guide: the SPI, the three rules, running the suite, a whole compiled example |
#![deny(missing_docs)]

pub mod cases;
pub mod harness;
pub mod runner;
pub mod switch;

#[doc = include_str!("guide.md")]
pub mod guide {}

pub use harness::{Ctx, Harness};
pub use runner::{Case, Need, main, run_all};
