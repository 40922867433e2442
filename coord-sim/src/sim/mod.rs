//! Everything that needs the simulator (`--cfg madsim`).

#[cfg(feature = "broken")]
pub mod bugs;
mod clock;
mod deaf;
mod graph_log;
mod queue_log;
pub mod scenario;
mod server;
mod topic_log;
mod transport;

pub use clock::NodeClock;
pub use server::{ServerConfig, serve};
pub use transport::{SimBackend, SimOptions};

use coord_api::{Error, Namespace, Result, spi::DynBackend};

/// Connects the current sim node to the sim server named by `url`:
/// `sim://<ip>:<port>` with optional `?namespace=<ns>` (default `coord`)
/// and `instance=<id>` (which the caller reads).
///
/// # Errors
/// `Error::Config` for another scheme, a host that is not an IP with a port,
/// a bad namespace or another query key.
pub async fn connect(url: &str) -> Result<DynBackend> {
    let mut url = coord_api::url::BackendUrl::parse(url)?;
    let server = match (url.scheme(), url.ip(), url.port()) {
        ("sim", Some(ip), Some(port)) => std::net::SocketAddr::new(ip, port),
        ("sim", ..) => {
            return Err(Error::config(
                "a sim URL names the sim server as `sim://<ip>:<port>`",
            ));
        }
        _ => return Err(Error::config("not a sim URL: expected `sim://<ip>:<port>`")),
    };
    let ns = url
        .take_with("namespace", Namespace::new)?
        .unwrap_or_default();
    let _ = url.take("instance");
    url.deny_unknown_keys()?;
    Ok(SimBackend::connect(server, ns, SimOptions::default())
        .await?
        .backend())
}
