//! The simulated transport under load, no fault injected: a sim server
//! answers many clients calling at once, every call within a few
//! round trips of the simulated LAN.
#![cfg(madsim)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use coord_api::{Key, LockSpace, Namespace, TokioClock, spi::Backend};
use coord_sim::{ServerConfig, SimBackend, SimOptions, serve};
use madsim::{net::NetSim, runtime::Handle};

/// Clients calling at once, each this many calls in a row.
const CLIENTS: usize = 32;
const CALLS: usize = 300;

/// Every call of `CLIENTS` clients calling in a row is answered, none
/// slower than 50 ms (madsim's send and receive each take at least 1 ms,
/// a hop 0.2 to 1 ms: a round trip is about 5 ms). The server took in one
/// request per simulated millisecond (its receive loop waited out the
/// endpoint's delay before taking the next) and the endpoint's mailbox
/// hands out what waits in no fair order: calls queued, some past their
/// 500 ms timeout (`Unavailable`, no fault injected).
#[madsim::test]
async fn a_busy_server_answers_every_call_promptly() {
    let net = NetSim::current();
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
    let ns = Namespace::new("transport").unwrap();
    let backend = SimBackend::connect(server, ns, SimOptions::default())
        .await
        .unwrap()
        .backend();
    let key = Key::new("k").unwrap();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (backend, key) = (backend.clone(), key.clone());
        clients.push(tokio::spawn(async move {
            let locks = backend.locks().expect("the sim server has locks");
            let (mut failed, mut slowest) = (Vec::new(), Duration::ZERO);
            for _ in 0..CALLS {
                let t = tokio::time::Instant::now();
                if let Err(e) = locks.inspect(LockSpace::Lock, &key).await {
                    failed.push(e.to_string());
                }
                slowest = slowest.max(t.elapsed());
            }
            (failed, slowest)
        }));
    }
    let (mut failed, mut slowest) = (Vec::new(), Duration::ZERO);
    for c in clients {
        let (f, s) = c.await.unwrap();
        failed.extend(f);
        slowest = slowest.max(s);
    }
    assert!(
        failed.is_empty(),
        "{} of {} calls failed, no fault injected; first: {:?}",
        failed.len(),
        CLIENTS * CALLS,
        failed.first()
    );
    assert!(
        slowest < Duration::from_millis(50),
        "the slowest call took {slowest:?}"
    );
}
