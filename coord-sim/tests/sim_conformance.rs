//! The whole conformance suite inside the simulator, no faults, through the
//! same `Harness` as every backend: a sim server node, each case's clients
//! on the test's own node reaching it over the simulated network, every
//! family's calls carried as values. The cases run in turn in one simulated
//! test (`run_all`), in virtual time.
#![cfg(madsim)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{Namespace, TokioClock, spi::DynBackend};
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
    async fn open(&self, namespace: &Namespace) -> coord_api::Result<DynBackend> {
        let b = SimBackend::connect(self.server, namespace.clone(), SimOptions::default()).await?;
        Ok(b.backend())
    }
}

#[madsim::test]
async fn conformance_in_the_simulator() {
    let harness = SimHarness::start();
    let (ran, skipped) = coord_conformance::run_all(&harness).await;
    assert_eq!(skipped, 0, "the sim server offers every family");
    println!("{ran} conformance cases passed in the simulator");
}
