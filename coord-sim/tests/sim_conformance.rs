//! The whole conformance suite inside the simulator, no faults, through the
//! same `Harness` and `suite!` macro as every backend: one simulated test per
//! case, a sim server node, the case's clients on the test's own node
//! reaching it over the simulated network — the lock family and leadership
//! (elections, groups, run-once jobs) alike.
#![cfg(madsim)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{DynLeadershipBackend, DynLeaseBackend, Namespace, TokioClock};
use coord_conformance::Harness;
use coord_sim::{ServerConfig, SimBackend, SimOptions, serve};
use madsim::{net::NetSim, runtime::Handle};

struct SimHarness {
    server: SocketAddr,
}

impl SimHarness {
    /// Starts a sim server node and gives the current (test) node an IP.
    fn start() -> SimHarness {
        let net = NetSim::current();
        // A LAN: 0.2-1 ms per hop, so that "woken within 50 ms" cases measure
        // notifications, not the network.
        net.update_config(|c| {
            c.send_latency = Duration::from_micros(200)..Duration::from_millis(1);
        });
        net.set_ip(madsim::plugin::node(), "10.0.1.1".parse().unwrap());
        let server: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let cfg = ServerConfig::new(server, Arc::new(TokioClock));
        Handle::current()
            .create_node()
            .name("server")
            .ip(server.ip())
            .init(move || serve(cfg.clone()))
            .build();
        SimHarness { server }
    }
}

#[async_trait]
impl Harness for SimHarness {
    async fn open(&self, namespace: &Namespace) -> coord_api::Result<DynLeaseBackend> {
        let b = SimBackend::connect(self.server, namespace.clone(), SimOptions::default()).await?;
        Ok(Arc::new(b))
    }

    async fn open_leadership(
        &self,
        namespace: &Namespace,
    ) -> coord_api::Result<Option<DynLeadershipBackend>> {
        let b = SimBackend::connect(self.server, namespace.clone(), SimOptions::default()).await?;
        Ok(Some(Arc::new(b)))
    }
}

coord_conformance::suite!(SimHarness::start());
