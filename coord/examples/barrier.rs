//! A cyclic barrier with a crash: four workers of a batch job meet at a
//! barrier after each of four rounds. In round 2 one worker arrives and is
//! killed, and another is slow: without leases the slow one's arrival would
//! trip the barrier counting the dead worker. Here the dead worker's arrival
//! expires at its TTL, the round breaks at the waiters' deadline for every
//! waiter alike, naming the dead worker as expired, and the three left go on
//! as a barrier of three in the next generation.
//!
//! ```text
//! cargo run -p coord --example barrier                      # in-process
//! cargo run -p coord --example barrier -- --url redis://127.0.0.1:6379
//! ```
//!
//! Each worker is a thread with its own tokio runtime and its own
//! `coord::connect`, as separate processes would have; killing one forgets
//! its wait and drops its runtime without running another line of it, like
//! `kill -9` (its arrival is not withdrawn: it must expire). A latch set to
//! four tells the example when every worker is connected. It ends in about
//! two seconds. `coord/tests/examples.rs` runs [`run`] on `memory://`.

use std::{
    process::ExitCode,
    sync::Arc,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord::{Client, Error, LatchWait, Tripped, connect};
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, sleep, timeout},
};

const USAGE: &str = "usage: barrier [--url <url>]   (default memory://)";
/// An arrival's lease: a crashed worker stops being counted this long after
/// its last renewal.
const TTL: Duration = Duration::from_secs(1);
/// How long a worker waits at the barrier before it breaks the round for
/// everyone.
const WAIT: Duration = Duration::from_secs(2);
/// A round's work, for every worker but the slow one.
const WORK: Duration = Duration::from_millis(20);
/// The slow worker's work in the round of the crash: it arrives after the
/// dead worker's arrival expired, and before the others' deadline.
const SLOW_WORK: Duration = Duration::from_millis(1500);
const WORKERS: [&str; 4] = ["w-1", "w-2", "w-3", "w-4"];
const ROUNDS: u32 = 4;
/// The round in which `VICTIM` arrives and is killed, and `SLOW` is slow.
const CRASH_ROUND: u32 = 2;
const VICTIM: &str = "w-4";
const SLOW: &str = "w-3";

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
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("barrier example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord barrier example".into()),
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

/// How a round ended, as every worker of it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Every party arrived.
    Tripped {
        /// The generation.
        generation: u64,
        /// The arrival that completed the count.
        by: String,
        /// Who was counted, in arrival order.
        arrivals: Vec<String>,
    },
    /// The round broke at a waiter's deadline.
    Broken {
        /// The generation.
        generation: u64,
        /// `timeout of "<who>"`.
        reason: String,
        /// How many arrivals it lacked.
        missing: u32,
        /// Who had arrived, alive.
        arrived: Vec<String>,
        /// Who had arrived and then expired (the crashed).
        expired: Vec<String>,
    },
}

impl Round {
    fn generation(&self) -> u64 {
        match self {
            Round::Tripped { generation, .. } | Round::Broken { generation, .. } => *generation,
        }
    }
}

/// What [`run`] saw: each round's ending, in order, and who was killed.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Rounds 1..=4.
    pub rounds: Vec<Round>,
    /// The worker killed in round 2.
    pub killed: &'static str,
}

/// What a worker reports to the example's main thread.
enum Event {
    /// A round ended for `name`.
    Round {
        name: &'static str,
        round: u32,
        res: coord::Result<Tripped>,
    },
    /// `name` could not go on.
    Failed { name: &'static str, error: Error },
}

/// One worker: a thread with its own runtime and connection.
struct Worker {
    name: &'static str,
    kill: oneshot::Sender<()>,
    thread: thread::JoinHandle<()>,
}

/// The names the example's run uses (fresh per run, so that a previous
/// run's dead arrivals on a shared server do not meet this one).
#[derive(Clone)]
struct Names {
    barrier: Arc<str>,
    ready: Arc<str>,
}

fn start_worker(
    url: String,
    names: Names,
    name: &'static str,
    events: mpsc::UnboundedSender<Event>,
) -> Worker {
    let (kill, mut killed_rx) = oneshot::channel();
    let thread = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let killed = rt.block_on(async {
            let mut work = Box::pin(async move {
                if let Err(error) = worker(&url, &names, name, &events).await {
                    let _ = events.send(Event::Failed { name, error });
                }
            });
            let killed = tokio::select! {
                _ = &mut work => false,
                Ok(()) = &mut killed_rx => true,
            };
            if killed {
                // Nothing of this worker runs again: its wait is not
                // cancelled (which would withdraw its arrival), it stops.
                std::mem::forget(work);
            }
            killed
        });
        if killed {
            rt.shutdown_background();
        }
    });
    Worker { name, kill, thread }
}

/// A worker's life: connect, say so on the latch, then the rounds.
async fn worker(
    url: &str,
    names: &Names,
    me: &'static str,
    events: &mpsc::UnboundedSender<Event>,
) -> coord::Result<()> {
    let client = connect(&instance_url(url, me)).await?;
    client
        .latch(&names.ready)
        .participant(me)
        .count_down()
        .await?;
    let mut parties = WORKERS.len() as u32;
    let mut generation = client.barrier(&names.barrier, parties).generation().await?;
    for round in 1..=ROUNDS {
        let work = if round == CRASH_ROUND && me == SLOW {
            SLOW_WORK
        } else {
            WORK
        };
        sleep(work).await;
        let barrier = client
            .barrier(&names.barrier, parties)
            .participant(me)
            .ttl(TTL)
            .wait_timeout(Some(WAIT));
        let res = barrier.wait_in(generation).await;
        match &res {
            Ok(trip) => generation = trip.next,
            // Go on with those who were there, in the next generation: its
            // first arrival sets the new number of parties.
            Err(Error::Broken(b)) => {
                generation = b.next;
                parties = b.arrived.len() as u32;
            }
            Err(_) => {}
        }
        let failed = res.is_err() && !matches!(res, Err(Error::Broken(_)));
        let _ = events.send(Event::Round {
            name: me,
            round,
            res,
        });
        if failed {
            break;
        }
    }
    Ok(())
}

/// Runs the example on `url`: prints its log, returns what it saw.
pub async fn run(url: &str) -> coord::Result<Summary> {
    let log = Log(Instant::now());
    println!(
        "coord barrier on {url}: {} workers, {ROUNDS} rounds; in round {CRASH_ROUND} \
         {VICTIM} arrives and is killed, {SLOW} is slow\n",
        WORKERS.len()
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let run_id = format!("{}-{nanos}", std::process::id());
    let names = Names {
        barrier: format!("example/batch-{run_id}").into(),
        ready: format!("example/batch-{run_id}/ready").into(),
    };
    let observer = connect(&instance_url(url, "observer")).await?;

    // Set before any worker starts: a count-down on a latch nobody set is
    // `NotFound`, and so is a wait.
    let ready = observer
        .latch(&names.ready)
        .expire_after(Duration::from_secs(60))
        .wait_timeout(Some(WAIT * 2));
    ready.try_set_count(WORKERS.len() as u32).await?;

    let (tx, mut events) = mpsc::unbounded_channel();
    let mut workers: Vec<Worker> = WORKERS
        .iter()
        .map(|name| start_worker(url.to_owned(), names.clone(), name, tx.clone()))
        .collect();
    drop(tx);
    match ready.wait().await? {
        LatchWait::Opened { generation } => log.say(format!(
            "all {} workers connected (latch {:?} opened, generation {generation})",
            WORKERS.len(),
            &*names.ready
        )),
        other => log.say(format!("latch: {other:?}")),
    }
    log.say(format!(
        "barrier {:?}: {} parties, arrival TTL {} ms, wait timeout {} ms",
        &*names.barrier,
        WORKERS.len(),
        TTL.as_millis(),
        WAIT.as_millis()
    ));

    let mut alive: Vec<&'static str> = WORKERS.to_vec();
    let mut rounds = Vec::new();
    let mut next = None;
    for round in 1..=ROUNDS {
        if round == CRASH_ROUND {
            let generation = next.expect("a round before the crash");
            wait_for_arrival(&observer, &names.barrier, generation, VICTIM).await?;
            let at = workers
                .iter()
                .position(|w| w.name == VICTIM)
                .expect("the victim is one of ours");
            let victim = workers.remove(at);
            let _ = victim.kill.send(());
            let _ = victim.thread.join();
            alive.retain(|n| *n != VICTIM);
            log.say(format!(
                "round {round}: {VICTIM} arrived in generation {generation} and was killed \
                 (its arrival must expire); {SLOW} is slow"
            ));
        }
        let (ended, after) = collect_round(&mut events, round, &alive).await?;
        match &ended {
            Round::Tripped {
                generation,
                by,
                arrivals,
            } => log.say(format!(
                "round {round}: generation {generation} tripped by {by}; counted {}",
                arrivals.join(", ")
            )),
            Round::Broken {
                generation,
                reason,
                missing,
                arrived,
                expired,
            } => {
                log.say(format!(
                    "round {round}: generation {generation} BROKEN ({reason}): {missing} missing; \
                     arrived {}; expired (crashed): {}",
                    arrived.join(", "),
                    if expired.is_empty() {
                        "none".to_owned()
                    } else {
                        expired.join(", ")
                    }
                ));
                log.say(format!(
                    "        {} go on as a barrier of {} in generation {after}",
                    arrived.join(", "),
                    arrived.len()
                ));
            }
        }
        if let Some(prev) = rounds.last().map(Round::generation) {
            assert!(ended.generation() > prev, "generations increase");
        }
        rounds.push(ended);
        next = Some(after);
    }
    for w in workers {
        let _ = w.thread.join();
    }
    let st = observer.barrier(&names.barrier, 1).state().await?;
    log.say(format!(
        "done: the barrier is at generation {}, {} arrival(s) in it",
        st.generation,
        st.arrivals.len()
    ));
    Ok(Summary {
        rounds,
        killed: VICTIM,
    })
}

/// Waits until `who` has a live arrival in `generation`.
async fn wait_for_arrival(
    observer: &Client,
    barrier: &str,
    generation: u64,
    who: &str,
) -> coord::Result<()> {
    let barrier = observer.barrier(barrier, 1);
    let start = Instant::now();
    loop {
        let st = barrier.state().await?;
        if st.generation == generation && st.arrivals.iter().any(|a| a.participant.as_str() == who)
        {
            return Ok(());
        }
        if st.generation != generation || start.elapsed() > WAIT {
            return Err(Error::Timeout {
                what: format!("{who}'s arrival in generation {generation}"),
                backend: "example".into(),
                waited: start.elapsed(),
            });
        }
        sleep(Duration::from_millis(5)).await;
    }
}

/// Collects round `round` from every worker in `alive`: they must all have
/// seen the same end (a generation ends once, for all its waiters alike).
/// Returns it and the generation after it.
async fn collect_round(
    events: &mut mpsc::UnboundedReceiver<Event>,
    round: u32,
    alive: &[&'static str],
) -> coord::Result<(Round, u64)> {
    let bound = WAIT + SLOW_WORK + TTL;
    let mut seen: Vec<(&'static str, Round, u64)> = Vec::new();
    while seen.len() < alive.len() {
        let event = match timeout(bound, events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) | Err(_) => {
                return Err(Error::Timeout {
                    what: format!("round {round} of {alive:?}"),
                    backend: "example".into(),
                    waited: bound,
                });
            }
        };
        let (name, r, res) = match event {
            Event::Round { name, round, res } => (name, round, res),
            Event::Failed { name, error } => {
                println!("{name} failed: {error}");
                return Err(error);
            }
        };
        assert_eq!(r, round, "{name} is in another round");
        let (ended, next) = match res {
            Ok(t) => (
                Round::Tripped {
                    generation: t.generation,
                    by: t.by.to_string(),
                    arrivals: t.arrivals.iter().map(|k| k.to_string()).collect(),
                },
                t.next,
            ),
            Err(Error::Broken(b)) => (
                Round::Broken {
                    generation: b.generation,
                    reason: b.reason.clone(),
                    missing: b.missing,
                    arrived: b.arrived.clone(),
                    expired: b.expired.clone(),
                },
                b.next,
            ),
            Err(error) => {
                println!("{name}, round {round}: {error}");
                return Err(error);
            }
        };
        seen.push((name, ended, next));
    }
    let (_, first, next) = &seen[0];
    for (name, ended, n) in &seen[1..] {
        if (ended, n) != (first, next) {
            return Err(Error::invalid(format!(
                "round {round}: {} saw {first:?}, {name} saw {ended:?}",
                seen[0].0
            )));
        }
    }
    Ok((first.clone(), *next))
}
