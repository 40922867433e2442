//! Everything that needs the simulator (`--cfg madsim`).

mod client;
mod clock;
mod proto;
pub mod scenario;
mod server;

pub use client::{SimBackend, SimOptions};
pub use clock::NodeClock;
pub use server::{ServerConfig, serve};

use std::net::SocketAddr;

use coord_api::{Error, Namespace, Result};

/// Connects the current sim node to the sim server named by `url`:
/// `sim://<ip>:<port>` with optional `?namespace=<ns>` (default `coord`).
/// The facade maps its `sim://` scheme here under `cfg(madsim)`.
///
/// Query keys other than `namespace` and `instance` (which the facade reads)
/// are a `Config` error.
pub async fn connect(url: &str) -> Result<SimBackend> {
    let rest = url
        .strip_prefix("sim://")
        .ok_or_else(|| Error::config(format!("not a sim URL: {url:?}")))?;
    let (addr, query) = rest.split_once('?').unwrap_or((rest, ""));
    let addr = addr.trim_end_matches('/');
    let server: SocketAddr = addr.parse().map_err(|_| {
        Error::config(format!(
            "sim URL host must be <ip>:<port> of the sim server, got {addr:?}"
        ))
    })?;
    let mut ns = Namespace::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("namespace", v)) => {
                ns = Namespace::new(v)
                    .map_err(|e| Error::config(format!("URL query key `namespace`: {e}")))?
            }
            Some(("instance", _)) => {}
            _ => {
                return Err(Error::config(format!(
                    "unknown sim URL query key in {pair:?}; known: namespace, instance"
                )));
            }
        }
    }
    SimBackend::connect(server, ns, SimOptions::default()).await
}
