//! coord in a few seconds: four instances of a service compete for one job
//! lock, a holder crashes, and a long job keeps its lock by auto-extension,
//! its TTL renewed in the background (on `memory://` exactly as on Redis).
//!
//! ```text
//! cargo run -p coord --example quickstart                      # in-process
//! cargo run -p coord --example quickstart -- --url redis://127.0.0.1:6379
//! ```
//!
//! Each "instance" is a task that calls `coord::connect` itself, as separate
//! processes would; `memory://` is one store per process, so they meet there.

use std::{process::ExitCode, time::Duration};

use coord::{Client, LeaseGuard, connect};
use tokio::{sync::mpsc, time::Instant};

const JOB: &str = "jobs/nightly-report";
const USAGE: &str = "usage: quickstart [--url <url>]   (default memory://)";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let url = match parse_args(std::env::args().skip(1)) {
        Ok(url) => url,
        Err(msg) => {
            eprintln!("{msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord quickstart".into()),
            other => match other.strip_prefix("--url=") {
                Some(u) => url = u.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(url)
}

/// Prints a line stamped with the time since the start.
struct Log(Instant);

impl Log {
    fn say(&self, line: impl AsRef<str>) {
        println!(
            "[{:5.2}s] {}",
            self.0.elapsed().as_secs_f64(),
            line.as_ref()
        );
    }
}

async fn run(url: &str) -> coord::Result<()> {
    let log = Log(Instant::now());
    println!("coord quickstart on {url}\n");

    // Every instance connects on its own, as separate processes would.
    let mut workers = Vec::new();
    for n in 1..=4 {
        workers.push(connect(&instance_url(url, &format!("worker-{n}"))).await?);
    }
    let start = Instant::now();
    compete(&log, &workers).await?;
    crash(&log, &workers).await?;
    auto_extension(&log, &workers).await?;
    println!(
        "\nDone in {:.1} s. Next: the contract (coord-api/src/contract/) says what every backend promises.",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `url` with `instance=<name>` added to its query.
fn instance_url(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}instance={name}")
}

fn name(client: &Client) -> String {
    client.instance_id().to_string()
}

/// Act 1: everyone wants the job; they take turns, each grant with a larger
/// fencing token. Waiters are woken by the release, not by polling.
async fn compete(log: &Log, workers: &[Client]) -> coord::Result<()> {
    println!("== 1. Four instances compete for the lock {JOB:?} ==");
    println!("   Each runs the job once while holding the lock; the others wait their turn.");
    let log = &log;
    let mut turns = Vec::new();
    for client in workers {
        let client = client.clone();
        let log = Log(log.0);
        turns.push(tokio::spawn(async move {
            let lock = client.lock(JOB).ttl(Duration::from_secs(5));
            let guard = match lock.try_lock().await? {
                Some(guard) => guard,
                None => {
                    log.say(format!("{} finds it busy and waits", name(&client)));
                    lock.lock().await?
                }
            };
            log.say(format!(
                "{} holds it, fencing token {} -- running the job",
                name(&client),
                guard.token()
            ));
            tokio::time::sleep(Duration::from_millis(150)).await;
            let token = guard.token();
            guard.release().await?;
            log.say(format!("{} is done and releases it", name(&client)));
            coord::Result::Ok(token)
        }));
    }
    let mut tokens = Vec::new();
    for turn in turns {
        tokens.push(turn.await.expect("worker task panicked")?);
    }
    tokens.sort();
    println!(
        "   Each grant got a larger fencing token: {} .. {}.\n   \
         Tokens start from the server's clock in microseconds, so they keep growing even after a\n   \
         restart that lost the counter. A store that remembers the highest token it has seen can\n   \
         refuse a late write from an old holder.\n",
        tokens[0],
        tokens[tokens.len() - 1]
    );
    Ok(())
}

/// Act 2: a holder dies without releasing. Auto-extension is off, so nothing
/// renews its lease: the TTL frees the lock and a waiter takes over.
async fn crash(log: &Log, workers: &[Client]) -> coord::Result<()> {
    const TTL: Duration = Duration::from_secs(1);
    println!("== 2. A holder crashes ==");
    println!(
        "   worker-1 takes the lock with a {} s TTL and auto-extension off, then \"crashes\":\n   \
         its guard is forgotten, never released. The others wait.",
        TTL.as_secs()
    );
    let guard = workers[0]
        .lock(JOB)
        .ttl(TTL)
        .auto_extend(false)
        .try_lock()
        .await?
        .expect("the lock is free after act 1");
    let crashed_token = guard.token();
    log.say(format!(
        "worker-1 holds it (token {crashed_token}) and crashes"
    ));
    std::mem::forget(guard);
    let crashed_at = Instant::now();

    let (tx, mut rx) = mpsc::channel::<(String, LeaseGuard)>(1);
    let mut waiters = Vec::new();
    for client in &workers[1..] {
        let client = client.clone();
        let tx = tx.clone();
        waiters.push(tokio::spawn(async move {
            let guard = client
                .lock(JOB)
                .wait_timeout(Some(Duration::from_secs(10)))
                .lock()
                .await?;
            let _ = tx.send((name(&client), guard)).await;
            coord::Result::Ok(())
        }));
    }
    drop(tx);
    let Some((winner, guard)) = rx.recv().await else {
        // Every waiter failed: report the first error.
        for waiter in waiters {
            waiter.await.expect("waiter panicked")?;
        }
        unreachable!("a waiter either sends its guard or fails");
    };
    log.say(format!(
        "{winner} took over {:.2} s after the crash (token {} > {crashed_token}): the TTL freed the lock",
        crashed_at.elapsed().as_secs_f64(),
        guard.token()
    ));
    // The other waiters give up; a cancelled wait leaves nothing held.
    for waiter in &waiters {
        waiter.abort();
    }
    for waiter in waiters {
        let _ = waiter.await;
    }
    guard.release().await?;
    println!();
    Ok(())
}

/// Act 3: a job longer than the TTL keeps its lock with auto-extension on.
/// The client renews the lease every TTL/3 in the background, on memory as
/// on Redis: another instance asking who holds it sees the TTL left count
/// down and jump back up at each renewal.
async fn auto_extension(log: &Log, workers: &[Client]) -> coord::Result<()> {
    const TTL: Duration = Duration::from_millis(900);
    const WORK: Duration = Duration::from_secs(2);
    const LOOK_EVERY: Duration = Duration::from_millis(100);
    println!("== 3. Auto-extension keeps a long job's lock ==");
    println!(
        "   worker-2 takes the lock with a {} ms TTL and auto-extension on (the default), then\n   \
         works for {} s. Its client renews the lease every TTL/3 in the background. worker-3\n   \
         keeps trying, and asks who holds it and how much of the TTL is left.",
        TTL.as_millis(),
        WORK.as_secs()
    );
    let holder = workers[1].lock(JOB).ttl(TTL);
    let guard = holder.try_lock().await?.expect("free after act 2");
    log.say(format!("worker-2 holds it (token {})", guard.token()));

    let other = workers[2].lock(JOB);
    let started = Instant::now();
    let mut last_left: Option<Duration> = None;
    let mut renewals = 0;
    while started.elapsed() < WORK {
        tokio::time::sleep(LOOK_EVERY).await;
        if let Some(stolen) = other.try_lock().await? {
            log.say("worker-3 got it -- it should not have!");
            stolen.release().await?;
            continue;
        }
        let holders = other.holders().await?;
        let Some(h) = holders.first() else {
            log.say("worker-3: free -- the lease expired, it should not have!");
            continue;
        };
        let left = h.expires_in;
        let renewed = last_left.is_some_and(|last| left > last);
        renewals += usize::from(renewed);
        last_left = Some(left);
        log.say(format!(
            "worker-3: busy, {} has {:3} ms left {}{}",
            h.holder.instance(),
            left.as_millis(),
            bar(left, TTL),
            if renewed { "  <- renewed" } else { "" }
        ));
    }
    log.say(format!(
        "worker-2 finishes after {:.1} s ({:.1} TTLs, {renewals} renewals seen); its guard is \
         still held: {}",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() / TTL.as_secs_f64(),
        guard.is_held()
    ));
    let still_ours = guard.release().await?;
    log.say(format!(
        "worker-2 releases it (still ours on the backend: {still_ours})"
    ));
    match other.try_lock().await? {
        Some(next) => {
            log.say(format!("worker-3 gets it at once (token {})", next.token()));
            next.release().await?;
        }
        None => log.say("worker-3 still finds it busy -- unexpected"),
    }
    Ok(())
}

/// `left` out of `ttl` as a bar of 20 cells.
fn bar(left: Duration, ttl: Duration) -> String {
    const CELLS: usize = 20;
    let full = (left.as_secs_f64() / ttl.as_secs_f64() * CELLS as f64).round() as usize;
    let full = full.min(CELLS);
    format!("[{}{}]", "#".repeat(full), ".".repeat(CELLS - full))
}
