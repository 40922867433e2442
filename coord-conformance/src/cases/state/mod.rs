//! Shared values (`contract::state`): values (get, put, compare-and-set,
//! update, delete, TTL, versions, limits) and watches (every change in
//! order, prompt wake-ups, expiries, gaps with the current state, prefixes,
//! resuming after an outage). One file per theme, and the helpers they
//! share.
//!
//! Clients run with a 10 s retry delay, so a watch that is prompt was woken
//! by the backend's notification or by the expiry time its read carried,
//! never by polling.

pub(crate) use crate::cases::queues::{PROMPTLY, within};
use crate::{cases::prelude::*, runner::Case};
pub(crate) use coord_api::{
    CasOutcome, State, StateEvent, StateWatch,
    spi::{CHANGES_KEPT, Expect, MAX_SPACE_KEYS, MAX_VALUE_BYTES, Select, Written},
};

pub mod values;
pub mod watches;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [values::cases(), watches::cases()].concat()
}

/// The key every case of one value uses.
pub(crate) const K: &str = "config";

/// The value `K` of numbers on `client`.
pub(crate) fn number(client: &Client) -> State<u64> {
    client.state(K)
}

/// The next event of `watch`, within [`PROMPTLY`].
pub(crate) async fn next_event(watch: &mut StateWatch<u64>, what: &str) -> StateEvent<u64> {
    within(watch.next(), what).await
}

/// The version `written` returned, which must be a `Set`.
#[track_caller]
pub(crate) fn set<T: Debug>(written: CasOutcome<T>, what: &str) -> u64 {
    match written {
        CasOutcome::Set(v) => v,
        other => panic!("{what}: expected Set, got {other:?}"),
    }
}
