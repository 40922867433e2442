//! What the lease engine and the lease families (locks, elections,
//! membership, run-once jobs) count, through the `metrics` facade (the
//! application installs a recorder). Labels are bounded: a kind, an outcome,
//! a family, never a key, unless the client was built with
//! [`metrics_per_key`](crate::ClientBuilder::metrics_per_key), which adds a
//! `key` label to every metric below but the renewal lag.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `coord_lock_wait_seconds` | histogram (s) | `kind`: `exclusive`, `reentrant`, `read`, `write`, `permit`; `outcome`: `acquired`, `timeout`, `busy` (a try refused) |
//! | `coord_lock_hold_seconds` | histogram (s) | `kind` |
//! | `coord_lock_contended_total` | counter | `kind`: attempts that found the key busy |
//! | `coord_lock_timeouts_total` | counter | `kind`: waits that gave up |
//! | `coord_leases_lost_total` | counter | `family`: `lock`, `rwlock`, `semaphore`, `election`, `group`, `job`; `kind` |
//! | `coord_renewal_lag_seconds` | histogram (s) | (none): how late renewals ran |
//! | `coord_election_campaigns_total` | counter | `outcome`: `elected`, `busy` (a try refused), `timeout` |
//! | `coord_election_terms_total` | counter | (none): terms won |
//! | `coord_leadership_seconds` | histogram (s) | (none): term length, won to resigned or lost |
//! | `coord_group_changes_total` | counter | `change`: `joined`, `left`, `expired` (lost) |
//! | `coord_job_runs_total` | counter | `stage`: `started`, `finished`, `failed` (run-once runs) |
//!
//! Without a recorder each costs a thread-local read, an atomic load and a
//! branch: keys and labels are statics, so nothing is allocated unless a
//! `key` label was asked for. Times run from when the first request left
//! (a wait) or the granting request left (a hold, a term) to the instant
//! the client saw the outcome; the hold ends when the release is sent.

use std::time::Duration;

use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Unit};

use crate::{Client, LeaseKind};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A `&'static Key` of static labels: registering it allocates nothing.
macro_rules! key {
    ($name:literal $(, $k:literal => $v:literal)*) => {{
        static LABELS: &[Label] = &[$(Label::from_static_parts($k, $v)),*];
        static KEY: Key = Key::from_static_parts($name, LABELS);
        &KEY
    }};
}

/// [`key!`] with a `kind` label for each lock-family [`LeaseKind`].
macro_rules! by_kind {
    ($kind:expr, $name:literal $(, $k:literal => $v:literal)*) => {
        match $kind {
            LeaseKind::Exclusive => key!($name, "kind" => "exclusive" $(, $k => $v)*),
            LeaseKind::Reentrant => key!($name, "kind" => "reentrant" $(, $k => $v)*),
            LeaseKind::Read => key!($name, "kind" => "read" $(, $k => $v)*),
            LeaseKind::Write => key!($name, "kind" => "write" $(, $k => $v)*),
            LeaseKind::Permit { .. } | LeaseKind::Permits { .. } => {
                key!($name, "kind" => "permit" $(, $k => $v)*)
            }
        }
    };
}

/// The `key` label the client asked for, if it did.
fn per_key<'a>(client: &Client, key: &'a crate::Key) -> Option<&'a crate::Key> {
    client.metrics_per_key().then_some(key)
}

fn with_key(metric: &Key, key: Option<&crate::Key>) -> Option<Key> {
    key.map(|k| metric.with_extra_labels(vec![Label::new("key", k.as_str().to_owned())]))
}

fn counter(metric: &'static Key, key: Option<&crate::Key>) -> Counter {
    let keyed = with_key(metric, key);
    metrics::with_recorder(|r| r.register_counter(keyed.as_ref().unwrap_or(metric), &METADATA))
}

fn histogram(metric: &'static Key, key: Option<&crate::Key>) -> Histogram {
    let keyed = with_key(metric, key);
    metrics::with_recorder(|r| r.register_histogram(keyed.as_ref().unwrap_or(metric), &METADATA))
}

/// How a lock-family acquisition ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Waited {
    Acquired,
    Timeout,
    Busy,
}

/// One acquisition of a `kind` lease on `key` ended after `waited`.
pub(crate) fn waited(
    client: &Client,
    kind: LeaseKind,
    key: &crate::Key,
    outcome: Waited,
    waited: Duration,
) {
    let key = per_key(client, key);
    let metric = match outcome {
        Waited::Acquired => by_kind!(kind, "coord_lock_wait_seconds", "outcome" => "acquired"),
        Waited::Timeout => by_kind!(kind, "coord_lock_wait_seconds", "outcome" => "timeout"),
        Waited::Busy => by_kind!(kind, "coord_lock_wait_seconds", "outcome" => "busy"),
    };
    histogram(metric, key).record(waited.as_secs_f64());
    if let Waited::Timeout = outcome {
        counter(by_kind!(kind, "coord_lock_timeouts_total"), key).increment(1);
    }
}

/// One attempt found `key` busy.
pub(crate) fn contended(client: &Client, kind: LeaseKind, key: &crate::Key) {
    let metric = by_kind!(kind, "coord_lock_contended_total");
    counter(metric, per_key(client, key)).increment(1);
}

/// A lease of `family` and `kind` on `key` ended (`lost`, or released)
/// after `held`.
pub(crate) fn ended(
    client: &Client,
    family: &'static str,
    kind: &'static str,
    key: &crate::Key,
    lost: bool,
    held: Duration,
) {
    let key = per_key(client, key);
    let held = held.as_secs_f64();
    let hold = |metric| histogram(metric, key).record(held);
    match (family, kind) {
        (_, "exclusive") => hold(key!("coord_lock_hold_seconds", "kind" => "exclusive")),
        (_, "reentrant") => hold(key!("coord_lock_hold_seconds", "kind" => "reentrant")),
        (_, "read") => hold(key!("coord_lock_hold_seconds", "kind" => "read")),
        (_, "write") => hold(key!("coord_lock_hold_seconds", "kind" => "write")),
        (_, "permit") => hold(key!("coord_lock_hold_seconds", "kind" => "permit")),
        ("election", _) => hold(key!("coord_leadership_seconds")),
        ("group", _) => group_change(if lost { "expired" } else { "left" }, key),
        _ => {}
    }
    if lost {
        let metric = match (family, kind) {
            ("lock", "exclusive") => {
                key!("coord_leases_lost_total", "family" => "lock", "kind" => "exclusive")
            }
            ("lock", "reentrant") => {
                key!("coord_leases_lost_total", "family" => "lock", "kind" => "reentrant")
            }
            ("rwlock", "read") => {
                key!("coord_leases_lost_total", "family" => "rwlock", "kind" => "read")
            }
            ("rwlock", "write") => {
                key!("coord_leases_lost_total", "family" => "rwlock", "kind" => "write")
            }
            ("semaphore", "permit") => {
                key!("coord_leases_lost_total", "family" => "semaphore", "kind" => "permit")
            }
            ("election", "term") => {
                key!("coord_leases_lost_total", "family" => "election", "kind" => "term")
            }
            ("group", "member") => {
                key!("coord_leases_lost_total", "family" => "group", "kind" => "member")
            }
            ("job", "run") => key!("coord_leases_lost_total", "family" => "job", "kind" => "run"),
            _ => {
                // A family added later: labelled all the same (this allocates).
                let labels = vec![Label::new("family", family), Label::new("kind", kind)];
                let metric = Key::from_parts("coord_leases_lost_total", labels);
                let metric = with_key(&metric, key).unwrap_or(metric);
                metrics::with_recorder(|r| r.register_counter(&metric, &METADATA)).increment(1);
                return;
            }
        };
        counter(metric, key).increment(1);
    }
}

/// How a campaign ended.
pub(crate) fn campaign(client: &Client, election: &crate::Key, outcome: Waited) {
    let metric = match outcome {
        Waited::Acquired => key!("coord_election_campaigns_total", "outcome" => "elected"),
        Waited::Timeout => key!("coord_election_campaigns_total", "outcome" => "timeout"),
        Waited::Busy => key!("coord_election_campaigns_total", "outcome" => "busy"),
    };
    counter(metric, per_key(client, election)).increment(1);
}

/// A term of `election` was won.
pub(crate) fn term_won(client: &Client, election: &crate::Key) {
    let metric = key!("coord_election_terms_total");
    counter(metric, per_key(client, election)).increment(1);
}

fn group_change(change: &'static str, key: Option<&crate::Key>) {
    let metric = match change {
        "joined" => key!("coord_group_changes_total", "change" => "joined"),
        "left" => key!("coord_group_changes_total", "change" => "left"),
        _ => key!("coord_group_changes_total", "change" => "expired"),
    };
    counter(metric, key).increment(1);
}

/// A member joined `group`.
pub(crate) fn joined(client: &Client, group: &crate::Key) {
    group_change("joined", per_key(client, group));
}

/// A run-once run of `job` reached `stage`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Started,
    Finished,
    Failed,
}

/// A run-once run of `job` reached `stage`.
pub(crate) fn run(client: &Client, job: &crate::Key, stage: Stage) {
    let metric = match stage {
        Stage::Started => key!("coord_job_runs_total", "stage" => "started"),
        Stage::Finished => key!("coord_job_runs_total", "stage" => "finished"),
        Stage::Failed => key!("coord_job_runs_total", "stage" => "failed"),
    };
    counter(metric, per_key(client, job)).increment(1);
}

/// Describes every metric above (name, unit, meaning) to the recorder
/// installed now; each client does it once, when built.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_histogram!(
        "coord_lock_wait_seconds",
        Unit::Seconds,
        "Lock-family acquisitions: from the first attempt to the grant or giving up"
    );
    describe_histogram!(
        "coord_lock_hold_seconds",
        Unit::Seconds,
        "Lock-family leases: from the grant to the release or the loss"
    );
    describe_counter!(
        "coord_lock_contended_total",
        Unit::Count,
        "Lock-family attempts that found the key busy"
    );
    describe_counter!(
        "coord_lock_timeouts_total",
        Unit::Count,
        "Lock-family waits that gave up (wait_timeout or max_retries)"
    );
    describe_counter!(
        "coord_leases_lost_total",
        Unit::Count,
        "Leases lost: expired locally, refused on renewal, or found gone"
    );
    describe_histogram!(
        "coord_renewal_lag_seconds",
        Unit::Seconds,
        "How late background renewals ran after they were due"
    );
    describe_counter!(
        "coord_election_campaigns_total",
        Unit::Count,
        "Election campaigns (campaign and try_campaign calls) by outcome"
    );
    describe_counter!("coord_election_terms_total", Unit::Count, "Terms won");
    describe_histogram!(
        "coord_leadership_seconds",
        Unit::Seconds,
        "Term length: from the win to the resignation or the loss"
    );
    describe_counter!(
        "coord_group_changes_total",
        Unit::Count,
        "Membership changes made by this client: joined, left, expired"
    );
    describe_counter!(
        "coord_job_runs_total",
        Unit::Count,
        "Run-once runs started, finished, failed (lost or not recorded)"
    );
}
