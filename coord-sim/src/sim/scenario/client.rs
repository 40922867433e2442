//! The workloads' clients: each named by its instance id, with its own
//! node's clock, reaching the sim server through a [`SimBackend`] (deaf under
//! [`Scenario::lost_notifications`](super::Scenario), broken under a
//! client-side bug).

use std::time::Duration;

use coord_api::{Client, LeaseOptions, Namespace, PresenceOptions, spi::DynBackend};

use super::{SERVER, Shared};
use crate::sim::{NodeClock, SimBackend, SimOptions};

/// A client on the current node named `name` (its instance id), with its
/// own clock, reaching the sim server (a broken client under a client-side
/// bug).
pub(super) async fn connect(
    name: &str,
    clock: &NodeClock,
    opts: LeaseOptions,
    shared: &Shared,
) -> Client {
    connect_with(name, clock, opts, shared, PresenceOptions::default()).await
}

/// [`connect`] with `presence` as the client's instance presence.
pub(super) async fn connect_with(
    name: &str,
    clock: &NodeClock,
    opts: LeaseOptions,
    shared: &Shared,
    presence: PresenceOptions,
) -> Client {
    client_over(sim_backend(shared).await, name, clock, opts, presence)
}

/// A client named `name` (its instance id) with its own clock over
/// `backend` (the sim server, perhaps in a workload's recording wrapper).
pub(super) fn client_over(
    backend: DynBackend,
    name: &str,
    clock: &NodeClock,
    opts: LeaseOptions,
    presence: PresenceOptions,
) -> Client {
    Client::builder(backend)
        .instance_id(name)
        .expect("valid id")
        .clock(clock.clock())
        .lease_options(opts)
        .presence(presence)
        .build()
}

/// The sim server as a client on the current node reaches it: deaf under
/// [`Scenario::lost_notifications`], broken under a client-side bug.
pub(super) async fn sim_backend(shared: &Shared) -> DynBackend {
    let backend = loop {
        match SimBackend::connect(
            SERVER.parse().unwrap(),
            Namespace::default(),
            SimOptions::default(),
        )
        .await
        {
            Ok(b) => break b,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let mut backend = backend.backend();
    if shared.lost_notifications {
        backend = crate::sim::deaf::without_notifications(backend);
    }
    #[cfg(feature = "broken")]
    let backend = match shared.bug {
        Some(bug) => bug.client(backend),
        None => backend,
    };
    backend
}
