//! The fenced resource as a sim node, and the write a body sends it: every
//! workload's writes go through here, fenced per key.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use coord_api::Instant;
use madsim::net::Endpoint;

use crate::history::FencedResource;

/// The resource node's address.
pub(super) const RESOURCE: &str = "10.0.0.2:7001";
const WRITE_TAG: u64 = 0x0077_7269_7465;

/// Sends one write to `key` and waits up to `wait` for the answer; resent
/// with the same id (the resource applies it once) until answered, or sent
/// once when `retry` is false. Returns whether it was accepted, `None`
/// without an answer.
pub(super) async fn write(
    ep: &Endpoint,
    key: &str,
    client: &str,
    token: u64,
    wait: Duration,
    retry: bool,
) -> Option<bool> {
    let id: u64 = madsim::rand::random();
    loop {
        let req: (u64, (String, String, u64)) = (id, (key.to_owned(), client.to_owned(), token));
        let _ = ep
            .send_to_raw(RESOURCE.parse().unwrap(), WRITE_TAG, Box::new(req))
            .await;
        match tokio::time::timeout(wait, ep.recv_from_raw(id)).await {
            Ok(Ok((msg, _))) => return msg.downcast::<bool>().ok().map(|b| *b),
            _ if retry => {}
            _ => return None,
        }
    }
}

/// The fenced resource as a node: answers each write with whether it was
/// accepted; each write id is applied once (a resent copy gets the first
/// answer).
pub(super) async fn serve_resource(addr: SocketAddr, resource: FencedResource) {
    let ep = Endpoint::bind(addr).await.expect("bind resource");
    let mut answered: HashMap<u64, bool> = HashMap::new();
    loop {
        let Ok((msg, from)) = ep.recv_from_raw(WRITE_TAG).await else {
            return;
        };
        let Ok(req) = msg.downcast::<(u64, (String, String, u64))>() else {
            continue;
        };
        let (id, (key, client, token)) = *req;
        let ok = *answered
            .entry(id)
            .or_insert_with(|| resource.write(&key, &client, token, Instant::now()));
        let _ = ep.send_to_raw(from, id, Box::new(ok)).await;
    }
}
