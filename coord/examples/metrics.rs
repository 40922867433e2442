//! coord's metrics in Prometheus text: the application installs a recorder
//! (here `metrics-exporter-prometheus`; coord forces none), two instances
//! contend for a lock and run an election, and the example prints what the
//! recorder rendered.
//!
//! ```text
//! cargo run -p coord --example metrics                      # in-process
//! cargo run -p coord --example metrics -- --url redis://127.0.0.1:6379
//! ```
//!
//! - `web-1` takes `reports/daily`; `web-2` tries it (refused: `busy`, one
//!   contended attempt), waits 100 ms for it (`timeout`), then waits again
//!   and gets it once `web-1` releases it (`acquired`); both holds are
//!   timed in `coord_lock_hold_seconds`;
//! - a read-write lock and a semaphore permit add their kinds;
//! - `web-1` wins the election `scheduler`, `web-2`'s try is refused, and
//!   the term ends on resignation (`coord_leadership_seconds`).
//!
//! Histograms of seconds get Prometheus buckets; no metric carries a key
//! (see `ClientBuilder::metrics_per_key`). A real service would serve
//! `render()` on its `/metrics` endpoint (the exporter's `http-listener`
//! feature does that); this prints it once. `coord/tests/examples.rs` runs
//! [`run`] on `memory://`.

use std::{process::ExitCode, time::Duration};

use coord::{Client, Error, Result, connect};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const USAGE: &str = "usage: metrics [--url <url>]   (default memory://)";
/// Bucket bounds, in seconds, of every `*_seconds` histogram.
const BUCKETS: [f64; 8] = [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0];

#[tokio::main]
async fn main() -> ExitCode {
    let url = match parse_args(std::env::args().skip(1)) {
        Ok(url) => url,
        Err(msg) => {
            eprintln!("{msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let prometheus = match install() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("metrics example: cannot install the recorder: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&url, &prometheus).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("metrics example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> std::result::Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord metrics example".into()),
            other => match other.strip_prefix("--url=") {
                Some(u) => url = u.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(url)
}

/// Installs the Prometheus recorder as the process's `metrics` recorder,
/// before any client is built (a client describes its metrics when built).
pub fn install() -> std::result::Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

fn instance_url(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}instance={name}")
}

/// Contends for a lock, takes a read-write lock and a permit, runs an
/// election, and returns what `prometheus` renders then.
pub async fn run(url: &str, prometheus: &PrometheusHandle) -> Result<String> {
    let web1: Client = connect(&instance_url(url, "web-1")).await?;
    let web2: Client = connect(&instance_url(url, "web-2")).await?;

    let report = "reports/daily";
    let held = web1.lock(report).lock().await?;
    assert_refused(web2.lock(report).try_lock().await?.is_none(), "web-2's try")?;
    let impatient = web2
        .lock(report)
        .wait_timeout(Some(Duration::from_millis(100)));
    match impatient.lock().await {
        Err(Error::Timeout { .. }) => {}
        Ok(_) => return Err(unexpected("web-2's 100 ms wait was granted")),
        Err(e) => return Err(e),
    }
    let waiting = tokio::spawn({
        let lock = web2.lock(report);
        async move { lock.lock().await?.release().await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    held.release().await?;
    waiting
        .await
        .map_err(|e| unexpected(&format!("web-2's wait panicked: {e}")))??;

    let table = web1.rwlock("tables/orders");
    table.read().await?.release().await?;
    table.write().await?.release().await?;
    web2.semaphore("exports", 2)
        .acquire()
        .await?
        .release()
        .await?;

    let leading = web1.election("scheduler").campaign().await?;
    let refused = web2.election("scheduler").try_campaign().await?;
    assert_refused(refused.is_none(), "web-2's campaign")?;
    leading.resign().await?;

    web1.close().await?;
    web2.close().await?;
    Ok(prometheus.render())
}

fn assert_refused(refused: bool, what: &str) -> Result<()> {
    match refused {
        true => Ok(()),
        false => Err(unexpected(&format!("{what} was granted while held"))),
    }
}

fn unexpected(what: &str) -> Error {
    Error::backend("metrics example", what.to_owned())
}
