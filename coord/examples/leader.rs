//! Leader election with failover: three instances of a service run a
//! `LeaderRunner` on one election, the leader is killed (it neither resigns
//! nor renews again), and another instance takes over once the dead leader's
//! term expires, with a greater term.
//!
//! ```text
//! cargo run -p coord --example leader                      # in-process
//! cargo run -p coord --example leader -- --url redis://127.0.0.1:6379
//! ```
//!
//! Each instance is a thread with its own tokio runtime and its own
//! `coord::connect`, as separate processes would have; killing one drops its
//! runtime without running another line of it, like `kill -9`.

use std::{
    process::ExitCode,
    sync::Arc,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord::{Client, FencingToken, LeaderRunner, connect};
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, timeout},
};

const USAGE: &str = "usage: leader [--url <url>]   (default memory://)";
/// How long a term lasts without renewal: the failover takes about this long.
const TTL: Duration = Duration::from_secs(1);
const INSTANCES: [&str; 3] = ["node-1", "node-2", "node-3"];

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
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
            eprintln!("leader example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord leader election example".into()),
            other => match other.strip_prefix("--url=") {
                Some(u) => url = u.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(url)
}

fn instance_url(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}instance={name}")
}

/// Prints a line stamped with the time since the start.
#[derive(Clone, Copy)]
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

/// What an instance reports to the example's main thread.
enum Event {
    Elected {
        name: &'static str,
        term: FencingToken,
        at: Instant,
    },
    Lost {
        name: &'static str,
        term: FencingToken,
    },
    Failed {
        name: &'static str,
        error: coord::Error,
    },
}

/// How an instance ends.
enum End {
    /// Like `kill -9`: nothing more of it runs; its term must expire.
    Kill,
    /// A clean shutdown: the runner resigns if it leads.
    Stop,
}

/// One instance: a thread with its own runtime, connection and runner.
struct Instance {
    name: &'static str,
    end: oneshot::Sender<End>,
    thread: thread::JoinHandle<()>,
}

fn start_instance(
    url: String,
    election: Arc<str>,
    name: &'static str,
    events: mpsc::UnboundedSender<Event>,
) -> Instance {
    let (end_tx, end_rx) = oneshot::channel();
    let thread = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let killed = rt.block_on(async {
            let client = match connect(&instance_url(&url, name)).await {
                Ok(c) => c,
                Err(error) => {
                    let _ = events.send(Event::Failed { name, error });
                    return false;
                }
            };
            let (acquired, lost) = (events.clone(), events.clone());
            let runner = LeaderRunner::new(client.election(&election).metadata(name))
                .leadership_timeout(TTL)
                .on_acquired(move |lead| {
                    let _ = acquired.send(Event::Elected {
                        name,
                        term: lead.term,
                        at: Instant::now(),
                    });
                    // A real service would do the leader's work here until
                    // `lead.lost` fires.
                    async move { lead.lost.wait().await }
                })
                .on_lost(move |term| {
                    let _ = lost.send(Event::Lost { name, term });
                    async {}
                })
                .start();
            match end_rx.await {
                Ok(End::Stop) | Err(_) => {
                    runner.shutdown().await;
                    false
                }
                Ok(End::Kill) => {
                    // Nothing of this instance runs again: no resignation,
                    // no renewal, no callback.
                    std::mem::forget(runner);
                    true
                }
            }
        });
        if killed {
            rt.shutdown_background();
        }
    });
    Instance {
        name,
        end: end_tx,
        thread,
    }
}

async fn run(url: &str) -> coord::Result<()> {
    let log = Log(Instant::now());
    println!("coord leader election on {url}: three instances, the leader is killed\n");
    // A fresh election per run, so that a previous run's dead leader on a
    // shared server does not delay this one.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let election: Arc<str> = format!("example/scheduler-{}-{nanos}", std::process::id()).into();

    // Anyone can ask who leads, candidate or not.
    let observer = connect(&instance_url(url, "observer")).await?;

    let (tx, mut events) = mpsc::unbounded_channel();
    let mut instances: Vec<Instance> = INSTANCES
        .iter()
        .map(|name| start_instance(url.to_owned(), election.clone(), name, tx.clone()))
        .collect();
    log.say(format!(
        "started {} instances campaigning for {:?} (term TTL {} ms)",
        instances.len(),
        &*election,
        TTL.as_millis()
    ));

    let (first, first_term, _) = next_elected(&mut events, &log, None).await?;
    show_leader(&observer, &election, &log).await?;

    // Kill the leader.
    let killed = instances
        .iter()
        .position(|i| i.name == first)
        .expect("the leader is one of ours");
    let victim = instances.remove(killed);
    let t_kill = Instant::now();
    let _ = victim.end.send(End::Kill);
    let _ = victim.thread.join();
    log.say(format!(
        "killed {first} (no resignation: its term {first_term} must expire)"
    ));

    let (second, second_term, t_elected) =
        next_elected(&mut events, &log, Some(first_term)).await?;
    let failover = t_elected - t_kill;
    show_leader(&observer, &election, &log).await?;
    println!();
    println!(
        "failover: {first} (term {first_term}) -> {second} (term {second_term}) in {} ms \
         ({:.2} TTLs)",
        failover.as_millis(),
        failover.as_secs_f64() / TTL.as_secs_f64()
    );
    println!();

    for i in instances {
        let _ = i.end.send(End::Stop);
        let _ = i.thread.join();
    }
    log.say("the other instances shut down (the leader resigned)");
    match observer.election(&election).leader().await? {
        None => log.say("nobody leads now"),
        Some(l) => log.say(format!("{} still leads", l.metadata)),
    }
    Ok(())
}

/// Waits for the next election won with a term above `after`, printing
/// what happens on the way.
async fn next_elected(
    events: &mut mpsc::UnboundedReceiver<Event>,
    log: &Log,
    after: Option<FencingToken>,
) -> coord::Result<(&'static str, FencingToken, Instant)> {
    let bound = TTL * 5;
    loop {
        let Ok(event) = timeout(bound, events.recv()).await else {
            return Err(coord::Error::Timeout {
                what: "a leader".into(),
                backend: "example".into(),
                waited: bound,
            });
        };
        match event.expect("instances keep the channel open") {
            Event::Elected { name, term, at } if after.is_none_or(|t| term > t) => {
                log.say(format!("{name} leads, term {term}"));
                return Ok((name, term, at));
            }
            Event::Elected { name, term, .. } => {
                log.say(format!("{name} leads an old term {term}?"));
            }
            Event::Lost { name, term } => log.say(format!("{name} lost term {term}")),
            Event::Failed { name, error } => {
                log.say(format!("{name} could not connect: {error}"));
                return Err(error);
            }
        }
    }
}

async fn show_leader(observer: &Client, election: &str, log: &Log) -> coord::Result<()> {
    match observer.election(election).leader().await? {
        Some(l) => log.say(format!(
            "observer sees: leader {} (metadata {:?}), term {}, {} term(s) so far, {} ms left",
            l.holder.instance(),
            l.metadata,
            l.term,
            l.seq,
            l.expires_in.as_millis()
        )),
        None => log.say("observer sees: nobody leads"),
    }
    Ok(())
}
