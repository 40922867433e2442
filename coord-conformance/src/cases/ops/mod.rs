//! Operations (`spi::ops`, decision 0028): instance presence (announced
//! with a client's first call, withdrawn by `close`, expired at its TTL),
//! leases listed across families with a cursor, stale leases, fenced and
//! audited force release, the audit trail, health. One file per theme and
//! the helpers they share.

pub(crate) use coord_api::{
    Forced, LeaseFilter, LiveLease, Operations, PresenceOptions, Status,
    spi::{Cursor, LeaseRecord, OpsBackend, Presence, Resource, ResourceKind, Role},
};

use crate::{cases::prelude::*, runner::Case};

pub mod deliveries;
pub mod listing;
pub mod presence;
pub mod release;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [
        presence::cases(),
        listing::cases(),
        release::cases(),
        deliveries::cases(),
    ]
    .concat()
}

/// How long a case waits for what must happen soon (a presence announced,
/// a lost signal at the holder's next renewal).
pub(crate) const SOON: Duration = Duration::from_secs(6);

/// The operator every case acts as.
pub(crate) const OPERATOR: &str = "alice@ops-laptop";

/// An operator's handle from a client of its own that keeps no presence
/// (as `coordctl` does).
pub(crate) async fn operator(ctx: &Ctx<'_>) -> Operations {
    let opts = default_options();
    let client = (ctx.client_with_presence("operator", opts, PresenceOptions::disabled())).await;
    client.operations().operator(OPERATOR)
}

/// A client named `name` keeping a presence of `ttl`.
pub(crate) async fn present_client(
    ctx: &Ctx<'_>,
    name: &str,
    opts: LeaseOptions,
    ttl: Duration,
) -> Client {
    let presence = PresenceOptions::default()
        .ttl(ttl)
        .expect("valid presence ttl");
    ctx.client_with_presence(name, opts, presence).await
}

/// `text` as a resource.
#[track_caller]
pub(crate) fn res(text: &str) -> Resource {
    text.parse().expect("valid resource")
}

/// The operations family of `backend`.
pub(crate) fn ops_of(backend: &DynBackend) -> &dyn OpsBackend {
    backend.ops().expect("the backend offers operations")
}

/// The live presence of `instance` as `ops` lists it.
pub(crate) async fn listed(ops: &Operations, instance: &str) -> Option<Presence> {
    let all = ops.instances().await.expect("instances");
    all.into_iter().find(|p| p.instance.as_str() == instance)
}

/// Waits (at most [`SOON`]) for `instance`'s presence to be listed.
pub(crate) async fn appears(ops: &Operations, instance: &str) -> Presence {
    eventually(SOON, || listed(ops, instance))
        .await
        .unwrap_or_else(|| panic!("{instance}'s presence not listed within {SOON:?}"))
}

/// The one record of `leases` on `resource` in `role` held by `instance`.
#[track_caller]
pub(crate) fn one<'a>(
    leases: &'a [LiveLease],
    resource: &str,
    role: Role,
    instance: &str,
) -> &'a LeaseRecord {
    let found: Vec<&LeaseRecord> = (leases.iter())
        .map(|l| &l.lease)
        .filter(|l| l.resource.to_string() == resource && l.role == role)
        .filter(|l| l.holder.instance().as_str() == instance)
        .collect();
    match found[..] {
        [one] => one,
        _ => panic!("expected one {role} lease of {resource} by {instance}, found {found:?}"),
    }
}
