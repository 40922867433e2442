//! Running the suite: every case as a test of a custom test harness
//! (libtest-mimic: the output, filters and flags of `cargo test`), cases a
//! backend cannot run shown as *ignored* with what they need; or every case
//! in turn inside one test (the simulator).

use std::{future::Future, pin::Pin, process::ExitCode, sync::Arc};

use coord_api::{Namespace, spi::Families};
use libtest_mimic::{Arguments, Failed, Trial};

use crate::Harness;

/// What a case needs of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Need {
    /// The lock family.
    Locks,
    /// Exclusive locks.
    Exclusive,
    /// Reentrant locks.
    Reentrant,
    /// Read-write locks.
    ReadWrite,
    /// Semaphores.
    Semaphore,
    /// Several semaphore permits in one lease.
    MultiPermit,
    /// A write lease downgraded to a read lease in one step.
    Downgrade,
    /// The lock family's watches wake on release.
    ReleaseNotifications,
    /// The lock family's watches wake at an expiry instant.
    ExpiryNotifications,
    /// The lock family's force release.
    ForceRelease,
    /// The lock family's inspection (`holders()`).
    Inspect,
    /// Fair (first come, first served) locks and semaphores.
    Fair,
    /// Several exclusive locks in one atomic step (`acquire_all`).
    AcquireAll,
    /// Elections.
    Elections,
    /// Membership groups.
    Groups,
    /// Run-once jobs.
    Jobs,
    /// Barriers and latches.
    Barriers,
    /// Job graphs.
    Graphs,
    /// Work queues.
    Queues,
    /// Topics.
    Topics,
    /// Shared values.
    State,
    /// Circuit breakers.
    Breakers,
    /// Operations: presences, listings, fenced revocation, the audit
    /// trail, probes.
    Ops,
}

impl Need {
    /// Whether a backend offering `families` meets it.
    pub fn met_by(self, families: &Families) -> bool {
        let locks = families.locks;
        let lock = |f: fn(&coord_api::spi::LockCapabilities) -> bool| locks.as_ref().is_some_and(f);
        match self {
            Need::Locks => locks.is_some(),
            Need::Exclusive => lock(|c| c.exclusive),
            Need::Reentrant => lock(|c| c.reentrant),
            Need::ReadWrite => lock(|c| c.read_write),
            Need::Semaphore => lock(|c| c.semaphore),
            Need::MultiPermit => lock(|c| c.multi_permit),
            Need::Downgrade => lock(|c| c.downgrade),
            Need::ReleaseNotifications => lock(|c| c.release_notifications),
            Need::ExpiryNotifications => lock(|c| c.expiry_notifications),
            Need::ForceRelease => lock(|c| c.force_release),
            Need::Inspect => lock(|c| c.inspect),
            Need::Fair => lock(|c| c.fair),
            Need::AcquireAll => lock(|c| c.acquire_all),
            Need::Elections => families.elections,
            Need::Groups => families.groups,
            Need::Jobs => families.jobs,
            Need::Barriers => families.barriers,
            Need::Graphs => families.graphs,
            Need::Queues => families.queues,
            Need::Topics => families.topics,
            Need::State => families.state,
            Need::Breakers => families.breakers,
            Need::Ops => families.ops,
        }
    }

    /// A short name, for the runner's output.
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Locks => "locks",
            Need::Exclusive => "exclusive locks",
            Need::Reentrant => "reentrant locks",
            Need::ReadWrite => "read-write locks",
            Need::Semaphore => "semaphores",
            Need::MultiPermit => "several permits at once",
            Need::Downgrade => "read-write lock downgrade",
            Need::ReleaseNotifications => "release notifications",
            Need::ExpiryNotifications => "expiry notifications",
            Need::ForceRelease => "force release",
            Need::Inspect => "inspect",
            Need::Fair => "fair locks",
            Need::AcquireAll => "several locks in one step",
            Need::Elections => "elections",
            Need::Groups => "groups",
            Need::Jobs => "jobs",
            Need::Barriers => "barriers",
            Need::Graphs => "job graphs",
            Need::Queues => "work queues",
            Need::Topics => "topics",
            Need::State => "shared state",
            Need::Breakers => "circuit breakers",
            Need::Ops => "operations",
        }
    }
}

/// A case's future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One case: where it belongs, what it is called, what it needs, and its
/// body (which panics when the backend breaks the contract).
#[derive(Clone, Copy)]
pub struct Case {
    /// The file (family) it is declared in: `locks`, `rwlock`, `election`...
    pub family: &'static str,
    /// Its name (the behaviour it checks).
    pub name: &'static str,
    /// What it needs of the backend; it is skipped (ignored) without.
    pub needs: &'static [Need],
    /// Runs it.
    pub run: for<'a> fn(&'a dyn Harness) -> CaseFuture<'a>,
}

impl Case {
    /// The first need `families` does not meet, if any.
    pub fn missing(&self, families: &Families) -> Option<Need> {
        self.needs.iter().copied().find(|n| !n.met_by(families))
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("family", &self.family)
            .field("name", &self.name)
            .field("needs", &self.needs)
            .finish_non_exhaustive()
    }
}

/// What the backend behind `harness` offers (one connection opened in a
/// throwaway namespace).
async fn families_of(harness: &dyn Harness) -> Families {
    let ns = Namespace::new("conf-families").expect("valid namespace");
    let backend = (harness.open(&ns).await).expect("the harness opens a backend");
    Families::of(&*backend)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The whole suite as the `main` of a test target with `harness = false`:
/// one test per case, named `<family>::<case>`, run in parallel (three per
/// CPU unless `--test-threads` says otherwise), each on a tokio runtime of
/// its own. A case whose needs the backend does not meet is
/// reported *ignored*, its kind naming the need (`[needs elections]`). Takes
/// the usual test flags (`--exact`, filters, `--test-threads`, `--list`...).
///
/// ```toml
/// [[test]]
/// name = "conformance"
/// harness = false
/// ```
///
/// ```no_run
/// # struct MyHarness;
/// # #[async_trait::async_trait]
/// # impl coord_conformance::Harness for MyHarness {
/// #     async fn open(&self, _: &coord_api::Namespace) -> coord_api::Result<coord_api::spi::DynBackend> { todo!() }
/// # }
/// // tests/conformance.rs
/// fn main() -> std::process::ExitCode {
///     coord_conformance::main(MyHarness)
/// }
/// ```
pub fn main(harness: impl Harness + 'static) -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert_with(case_threads);
    let harness: Arc<dyn Harness> = Arc::new(harness);
    let families = runtime().block_on(families_of(&*harness));
    let trials = crate::cases::all()
        .into_iter()
        .map(|case| {
            let name = format!("{}::{}", case.family, case.name);
            let missing = case.missing(&families);
            let harness = harness.clone();
            let trial = Trial::test(name, move || {
                runtime().block_on((case.run)(&*harness));
                Ok::<(), Failed>(())
            });
            match missing {
                Some(need) => trial
                    .with_ignored_flag(true)
                    .with_kind(format!("needs {}", need.as_str())),
                None => trial,
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// How many cases run at once unless `--test-threads` says: three per CPU.
/// A case spends most of its time waiting for leases to lapse and wake-ups
/// to arrive, not computing; one per CPU (libtest's default) left the CPUs
/// mostly idle (the suite took 32 s on memory with 2 threads on 2 CPUs,
/// 11.5 s with 6, and no case's timing bound came near failing).
fn case_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 3
}

/// Runs every case in turn on `harness` (for environments where one test
/// must run them all, such as the simulator). Panics on the first failure,
/// naming the case; a case the backend cannot run is skipped and named on
/// stderr. Returns how many ran and how many were skipped.
pub async fn run_all(harness: &dyn Harness) -> (usize, usize) {
    let families = families_of(harness).await;
    let (mut ran, mut skipped) = (0, 0);
    for case in crate::cases::all() {
        if let Some(need) = case.missing(&families) {
            eprintln!(
                "conformance: {}::{} skipped: needs {}",
                case.family,
                case.name,
                need.as_str()
            );
            skipped += 1;
            continue;
        }
        eprintln!("conformance: {}::{}", case.family, case.name);
        (case.run)(harness).await;
        ran += 1;
    }
    (ran, skipped)
}
