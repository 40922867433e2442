//! A circuit breaker shared by several instances of a service: they call a
//! flaky downstream through one breaker; its failures open the breaker on
//! every instance, one trial call runs cluster-wide once the open time has
//! passed, and its success closes the breaker everywhere.
//!
//! ```text
//! cargo run -p coord --example breaker                      # in-process
//! cargo run -p coord --example breaker -- --url redis://127.0.0.1:6379
//! ```
//!
//! Each instance is a task with its own `coord::connect` (instance ids
//! `service-1`..`service-4`), as separate processes would have. They call
//! every 5 ms; the downstream fails every call until every instance has
//! been refused (the breaker is open on all of them), then heals. An
//! observer prints the breaker's transitions as they happen. A call costs
//! no round trip: each instance decides from its cached copy of the
//! breaker and flushes its outcomes every 20 ms.
//! `coord/tests/examples.rs` runs [`run`] on `memory://`.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::Duration,
};

use coord::{Breaker, BreakerEvent, Client, Error, Result, connect, spi::Phase};
use tokio::{
    sync::mpsc,
    time::{Instant, sleep, timeout},
};

const USAGE: &str = "usage: breaker [--url <url>]   (default memory://)";
/// The breaker's name.
const NAME: &str = "flaky-downstream";
const INSTANCES: usize = 4;
/// The most the example may take.
const BOUND: Duration = Duration::from_secs(20);

/// What the example saw.
#[derive(Debug, Default)]
pub struct Summary {
    /// The instances that were refused (saw the breaker open), in order.
    pub saw_open: Vec<String>,
    /// Trial calls made, over every instance.
    pub trials: u32,
    /// The instances that called successfully through the closed breaker
    /// after it had been open, in order.
    pub saw_closed: Vec<String>,
    /// The transitions the observer saw, in order.
    pub transitions: Vec<(Phase, Phase)>,
}

async fn client(url: &str, name: &str) -> Result<Client> {
    let sep = if url.contains('?') { '&' } else { '?' };
    connect(&format!("{url}{sep}instance={name}")).await
}

/// Every instance's breaker: opens at 50 % failures of 10 calls (a window
/// of 20), for 500 ms, with one trial call.
fn breaker(c: &Client) -> Result<Breaker> {
    c.breaker(NAME)
        .count_window(20)
        .minimum_calls(10)
        .failure_rate(50.0)
        .open_for(Duration::from_millis(500))
        .trials(1)
        .flush_interval(Duration::from_millis(20))
        .refresh_interval(Duration::from_millis(200))
        .build()
}

/// The downstream: fails until healed.
async fn downstream(healthy: &AtomicBool) -> std::result::Result<(), String> {
    if healthy.load(SeqCst) {
        Ok(())
    } else {
        Err("503 service unavailable".into())
    }
}

/// One instance: calls until it has seen the breaker open and then called
/// successfully through it closed. Whether it made a trial call.
async fn instance(
    c: Client,
    healthy: Arc<AtomicBool>,
    opened: mpsc::Sender<String>,
    closed: mpsc::Sender<String>,
) -> Result<u32> {
    let name = c.instance_id().to_string();
    let b = breaker(&c)?;
    let (mut saw_open, mut trials) = (false, 0);
    loop {
        match b.permit().await {
            Ok(permit) => {
                let trial = permit.is_trial();
                let res = downstream(&healthy).await;
                permit.record(res.is_err());
                if trial {
                    trials += 1;
                    println!(
                        "[{name}] trial call: {}",
                        if res.is_ok() { "ok" } else { "failed" }
                    );
                }
                if saw_open && res.is_ok() && !trial && b.phase() == Some(Phase::Closed) {
                    println!("[{name}] called through the closed breaker again");
                    let _ = closed.send(name).await;
                    return Ok(trials);
                }
            }
            Err(Error::CircuitOpen { retry_after, .. }) if !saw_open => {
                saw_open = true;
                println!("[{name}] refused: circuit open, retry after {retry_after:?}");
                let _ = opened.send(name.clone()).await;
            }
            Err(Error::CircuitOpen { .. }) => {}
            Err(e) => return Err(e),
        }
        sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the example against `url`; what it saw.
pub async fn run(url: &str) -> Result<Summary> {
    let observer = breaker(&client(url, "observer").await?)?;
    observer.reset("example start").await?;
    let mut events = observer.events();
    let healthy = Arc::new(AtomicBool::new(false));
    let (open_tx, mut open_rx) = mpsc::channel(INSTANCES);
    let (closed_tx, mut closed_rx) = mpsc::channel(INSTANCES);
    let mut tasks = Vec::new();
    for i in 1..=INSTANCES {
        let c = client(url, &format!("service-{i}")).await?;
        let (h, o, d) = (healthy.clone(), open_tx.clone(), closed_tx.clone());
        tasks.push(tokio::spawn(instance(c, h, o, d)));
    }
    let deadline = Instant::now() + BOUND;
    let mut s = Summary::default();
    let watch = async {
        while s.saw_closed.len() < INSTANCES {
            tokio::select! {
                Some(name) = open_rx.recv() => {
                    s.saw_open.push(name);
                    if s.saw_open.len() == INSTANCES {
                        println!("open on every instance: the downstream heals");
                        healthy.store(true, SeqCst);
                    }
                }
                Some(name) = closed_rx.recv() => s.saw_closed.push(name),
                Some(e) = events.next() => {
                    if let BreakerEvent::Transition(t) = e {
                        println!("breaker: {} -> {} ({:?})", t.from.as_str(), t.to.as_str(), t.cause);
                        s.transitions.push((t.from, t.to));
                    }
                }
            }
        }
    };
    let timed_out = timeout(deadline - Instant::now(), watch).await.is_err();
    for t in tasks {
        if timed_out {
            t.abort();
        } else {
            s.trials += t.await.map_err(|e| Error::config(e.to_string()))??;
        }
    }
    if timed_out {
        return Err(Error::config(format!(
            "the example took over {BOUND:?}: {s:?}"
        )));
    }
    // The observer's last transition may come after the last instance.
    while s.transitions.last() != Some(&(Phase::HalfOpen, Phase::Closed)) {
        match timeout(Duration::from_secs(2), events.next()).await {
            Ok(Some(BreakerEvent::Transition(t))) => s.transitions.push((t.from, t.to)),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    println!(
        "open on {} instances, {} trial call(s), closed again on {}",
        s.saw_open.len(),
        s.trials,
        s.saw_closed.len()
    );
    Ok(s)
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = match parse_args(std::env::args().skip(1)) {
        Ok(url) => url,
        Err(msg) => {
            eprintln!("{msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&url).await {
        Ok(s) if s.trials == 1 && s.saw_closed.len() == INSTANCES => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("breaker example: unexpected run: {s:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("breaker example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord breaker example".into()),
            other => match other.strip_prefix("--url=") {
                Some(u) => url = u.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(url)
}
