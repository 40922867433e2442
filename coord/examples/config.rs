//! A shared configuration: several instances read one typed value, one of
//! them (an operator's tool) changes it by compare-and-set, and every other
//! instance sees every version, in order, through its watch.
//!
//! ```text
//! cargo run -p coord --example config                      # in-process
//! cargo run -p coord --example config -- --url redis://127.0.0.1:6379
//! ```
//!
//! Each instance is a task with its own `coord::connect` (instance ids
//! `service-1`..`service-3`, `operator`, `autoscaler`), as separate
//! processes would have:
//!
//! - the services read the configuration once (`get`: value and version),
//!   then watch it from that version, applying each change as it comes;
//! - `operator` writes five revisions, each by `compare_and_set` from the
//!   version it read, so a revision never overwrites a change it did not
//!   see;
//! - `autoscaler` races it once, raising `max_connections` with `update`
//!   (a read-modify-write retried on conflict); whichever loses the race
//!   sees a conflict and goes again from the value that won.
//!
//! Every service must see exactly the versions written after the one it
//! read, in order (or be told of a gap, which it would answer by taking the
//! current value the gap carries: with a log of 1,000 changes, none happens
//! here). The example checks that and prints what each saw.
//!
//! Each writer also publishes a durable `ConfigChanged` event to the topic
//! `app-config/changes`. An `auditor` instance subscribed to it (a named
//! subscription, `audit`) goes down before the first revision and comes
//! back after the last: its subscription kept its place, so it replays
//! every change it missed, in order, and acks each.
//! `coord/tests/examples.rs` runs [`run`] on `memory://`.

use std::{
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord::{CasOutcome, Client, Next, Result, StateEvent, Subscriber, connect, spi::Start};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, time::timeout};

const USAGE: &str = "usage: config [--url <url>]   (default memory://)";
/// The configuration's key.
const KEY: &str = "app-config";
const SERVICES: usize = 3;
const REVISIONS: u32 = 5;
/// The most the example may take.
const BOUND: Duration = Duration::from_secs(20);

/// The shared configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub revision: u32,
    pub feature_new_checkout: bool,
    pub max_connections: u32,
    pub note: String,
}

/// The durable event each writer publishes after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChanged {
    /// The version written.
    pub version: u64,
    /// Who wrote it.
    pub by: String,
}

/// What the example saw.
#[derive(Debug, Default)]
pub struct Summary {
    /// Every version written after the services started, in order.
    pub written: Vec<u64>,
    /// Per service: the versions it saw, in order, and its last value.
    pub seen: Vec<(String, Vec<u64>, Option<Config>)>,
    /// Compare-and-sets that lost a race and went again.
    pub conflicts: u32,
    /// Gaps the services were told of.
    pub gaps: u32,
    /// The changes the auditor replayed after coming back: (offset, event).
    pub audited: Vec<(u64, ConfigChanged)>,
}

async fn client(url: &str, name: &str) -> Result<Client> {
    let sep = if url.contains('?') { '&' } else { '?' };
    connect(&format!("{url}{sep}instance={name}")).await
}

/// One service: reads the configuration, then applies every change until
/// `stop` turns true and it has seen version `until`.
async fn service(
    c: Client,
    ready: tokio::sync::mpsc::Sender<()>,
    mut last_written: watch::Receiver<u64>,
) -> Result<(Vec<u64>, Option<Config>, u32)> {
    let config = c.state::<Config>(KEY);
    let start = config.get().await?;
    let mut current = start.as_ref().map(|v| v.value.clone());
    let mut watch = config.watch(start.map_or(0, |v| v.version));
    ready.send(()).await.ok();
    let (mut seen, mut gaps) = (Vec::new(), 0);
    loop {
        let until = *last_written.borrow();
        if until != 0 && watch.position() >= until {
            return Ok((seen, current, gaps));
        }
        tokio::select! {
            event = watch.next() => match event? {
                StateEvent::Put { version, value, .. } => {
                    println!("  {} applies revision {} (version {version})", c.instance_id(), value.revision);
                    seen.push(version);
                    current = Some(value);
                }
                StateEvent::Deleted { version, .. } | StateEvent::Expired { version, .. } => {
                    seen.push(version);
                    current = None;
                }
                StateEvent::Gap { current: now, .. } => {
                    gaps += 1;
                    current = now.into_iter().next().map(|(_, v)| v.value);
                }
                _ => {}
            },
            _ = last_written.changed() => {}
        }
    }
}

/// The auditor, back up: replays its subscription until it has read `n`
/// changes, acking each.
async fn replay(
    sub: &mut Subscriber<ConfigChanged>,
    n: usize,
) -> Result<Vec<(u64, ConfigChanged)>> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = timeout(BOUND, sub.next()).await.map_err(|_| {
            coord::Error::invalid(format!(
                "the auditor read {} of {n} changes in {BOUND:?}",
                got.len()
            ))
        })??;
        match next {
            Next::Event(d) => {
                println!(
                    "  auditor replays offset {}: version {} by {}",
                    d.offset(),
                    d.event().version,
                    d.event().by
                );
                got.push((d.offset(), d.event().clone()));
                d.ack().await?;
            }
            Next::Missed { first, last } => println!("  auditor missed {first}..={last} (trimmed)"),
            Next::Refused { offset, reason, .. } => {
                println!("  auditor refused {offset}: {reason}")
            }
        }
    }
    Ok(got)
}

pub async fn run(url: &str) -> Result<Summary> {
    let mut summary = Summary::default();
    let operator = client(url, "operator").await?;
    let config = operator.state::<Config>(KEY);
    // Fresh per run, so that a previous run's changes do not meet this one.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let topic = format!("{KEY}/changes-{}-{nanos}", std::process::id());
    let changes = operator.topic::<ConfigChanged>(&topic);

    // The auditor subscribes, then goes down before any revision.
    let auditor = client(url, "auditor").await?;
    let audit = auditor.topic::<ConfigChanged>(&topic);
    let mut sub = audit.subscriber("audit").start(Start::Earliest);
    sub.subscribe().await?;
    sub.leave().await?;
    println!("auditor subscribed to {topic} and went down");
    let initial = Config {
        revision: 0,
        feature_new_checkout: false,
        max_connections: 100,
        note: "initial".into(),
    };
    config.put(&initial).await?;

    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(SERVICES);
    let (done_tx, done) = watch::channel(0u64);
    let mut services = Vec::new();
    for i in 1..=SERVICES {
        let name = format!("service-{i}");
        let c = client(url, &name).await?;
        let task = tokio::spawn(service(c, ready_tx.clone(), done.clone()));
        services.push((name, task));
    }
    for _ in 0..SERVICES {
        ready.recv().await;
    }

    let autoscaler = client(url, "autoscaler").await?;
    let scaled = autoscaler.state::<Config>(KEY);
    for revision in 1..=REVISIONS {
        loop {
            let now = config.get().await?.expect("written above");
            let mut next = now.value.clone();
            next.revision = revision;
            next.feature_new_checkout = revision % 2 == 1;
            next.note = format!("revision {revision} by the operator");
            if revision == 3 && summary.conflicts == 0 {
                // The autoscaler changes it between our read and our write.
                let v = scaled
                    .update(|c| {
                        let mut c = c.cloned().expect("present");
                        c.max_connections *= 2;
                        c
                    })
                    .await?;
                println!("autoscaler doubled max_connections (version {})", v.version);
                summary.written.push(v.version);
                let by = "autoscaler".to_owned();
                autoscaler
                    .topic::<ConfigChanged>(&topic)
                    .publish(&ConfigChanged {
                        version: v.version,
                        by,
                    })
                    .await?;
            }
            match config.compare_and_set(Some(now.version), &next).await? {
                CasOutcome::Set(v) => {
                    println!("operator wrote revision {revision} (version {v})");
                    summary.written.push(v);
                    let by = "operator".to_owned();
                    changes.publish(&ConfigChanged { version: v, by }).await?;
                    break;
                }
                CasOutcome::Conflict(won) => {
                    summary.conflicts += 1;
                    let by = won.map_or(0, |w| w.version);
                    println!("operator lost a race to version {by}; reads again");
                }
                _ => unreachable!("a compare-and-set sets or conflicts"),
            }
        }
    }
    let last = *summary.written.last().expect("written");
    done_tx.send(last).ok();

    for (name, task) in services {
        let (seen, value, gaps) = timeout(BOUND, task)
            .await
            .map_err(|_| coord::Error::invalid(format!("{name} did not catch up in {BOUND:?}")))?
            .expect("service task")?;
        summary.gaps += gaps;
        summary.seen.push((name, seen, value));
    }
    for (name, seen, value) in &summary.seen {
        let every = if *seen == summary.written {
            "every version, in order"
        } else {
            "NOT every version"
        };
        let value = value.as_ref().map(|c| (c.revision, c.max_connections));
        println!(
            "{name}: saw {} versions: {every}; now at (revision, max_connections) {value:?}",
            seen.len()
        );
    }

    println!("auditor comes back");
    let mut sub = audit.subscriber("audit");
    summary.audited = replay(&mut sub, summary.written.len()).await?;
    sub.unsubscribe().await?;
    let every = summary
        .audited
        .iter()
        .map(|(_, e)| e.version)
        .eq(summary.written.iter().copied());
    println!(
        "auditor replayed {} changes it missed: {}",
        summary.audited.len(),
        if every {
            "every version, in order"
        } else {
            "NOT every version"
        }
    );
    Ok(summary)
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
        Ok(s)
            if s.seen.iter().all(|(_, seen, _)| *seen == s.written)
                && s.audited
                    .iter()
                    .map(|(_, e)| e.version)
                    .eq(s.written.iter().copied()) =>
        {
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("config example: a service missed a version");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("config example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord config example".into()),
            other => match other.strip_prefix("--url=") {
                Some(u) => url = u.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(url)
}
