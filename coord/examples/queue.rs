//! A work queue with a crash, work stealing and poison items: two producers
//! push orders (a serde struct) to one queue, four consumers charge them.
//! One consumer is killed in the middle of an order: it neither acks nor
//! gives the order back (a dead process says nothing), its presence in the
//! queue expires, and the order is delivered again — attempt 2, a larger
//! fencing token — to another consumer, which finishes it. A few orders
//! always fail and end in the dead letters, with their reasons.
//!
//! ```text
//! cargo run -p coord --example queue                      # in-process
//! cargo run -p coord --example queue -- --url redis://127.0.0.1:6379
//! ```
//!
//! Each consumer is a thread with its own tokio runtime and its own
//! `coord::connect` (instance ids `consumer-1`..`consumer-4`), as separate
//! processes would have, receiving with `Consumer::receive` and settling
//! each delivery itself (`ack`, `nack`, `dead_letter`; `Consumer::run` is
//! the same loop with a handler). Their roles:
//!
//! - `consumer-1` prefetches 4 items per receive. Its first order is held
//!   until another consumer has stolen from its prefetch: an event, not a
//!   timer, so that steals happen in every run.
//! - `consumer-2` steals: with nothing ready, it takes items another live
//!   consumer prefetched and has not started (never a started one).
//! - `consumer-3` is killed inside its first order, on the event of its
//!   starting it: its work is forgotten and its runtime dropped without
//!   running another line of it, like `kill -9`, so no ack, no nack, no
//!   renewal and no heartbeat is ever sent again. Its delivery's lease is
//!   10 s, but its presence lease is 1 s: once that expires it is known
//!   dead and its delivery goes back at once (work stealing from the dead),
//!   not 10 s later.
//! - `consumer-4` works plainly.
//!
//! `producer-1` pushes the first 8 orders in one `push_many` before any
//! consumer starts (so that `consumer-1`'s first receive prefetches);
//! `producer-2` pushes the other 12 one by one, with a dedup id each, while
//! the consumers work. An order of 0 cents is refused at once
//! (`dead_letter`); the orders of customer `globex` time out at the payment
//! provider every time (`nack`), and after 3 attempts (the queue's
//! `max_attempts`) they go to the dead letters with that error.
//!
//! At the end the example prints the counts of deliveries, redeliveries,
//! steals and dead letters from `Queue::stats` beside what the consumers
//! saw, and the dead letters with their reasons. It ends about a second
//! after the kill. `coord/tests/examples.rs` runs [`run`] on `memory://`.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord::{Client, Error, PushOptions, Queue, QueueStats, Result, connect};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::{Instant, sleep, timeout},
};

const USAGE: &str = "usage: queue [--url <url>]   (default memory://)";
/// A delivery's lease: longer than the example, so that only the killed
/// consumer's presence brings its order back.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// A consumer's presence: a dead consumer's deliveries go back this long
/// after its last heartbeat at most.
const PRESENCE_TTL: Duration = Duration::from_secs(1);
/// Attempts an order is given.
const MAX_ATTEMPTS: u32 = 3;
/// Charging an order.
const WORK: Duration = Duration::from_millis(20);
/// The work of the order whose consumer is killed: far longer than the
/// kill takes, so that it is killed inside it.
const KILLED_WORK: Duration = Duration::from_secs(60);
/// The most the example may take.
const BOUND: Duration = Duration::from_secs(30);
/// Orders `producer-1` pushes before any consumer starts.
const FIRST_BATCH: usize = 8;
/// The customer whose payment provider always times out.
const FLAKY: &str = "globex";

const PREFETCHER: &str = "consumer-1";
const STEALER: &str = "consumer-2";
const VICTIM: &str = "consumer-3";
const PLAIN: &str = "consumer-4";

/// An item of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's number.
    pub no: u32,
    /// Who pays.
    pub customer: String,
    /// How much.
    pub cents: u64,
}

/// The orders: 20, of which three always fail (two of `globex`, one of
/// 0 cents).
pub fn orders() -> Vec<Order> {
    let customers = ["acme", "initech", "umbrella", "hooli", "stark"];
    (1..=20u32)
        .map(|no| {
            let (customer, cents) = match no {
                11 | 17 => (FLAKY, 4_200),
                14 => ("hooli", 0),
                _ => (
                    customers[no as usize % customers.len()],
                    1_000 + 137 * no as u64,
                ),
            };
            Order {
                no,
                customer: customer.to_owned(),
                cents,
            }
        })
        .collect()
}

/// The orders that end in the dead letters: by number, with the reason.
pub fn expected_dead() -> Vec<(u32, &'static str)> {
    orders()
        .iter()
        .filter_map(|o| match charge(o) {
            Ok(()) => None,
            Err(Failure::Refused(r) | Failure::Retry(r)) => Some((o.no, r)),
        })
        .collect()
}

/// Why charging an order failed.
enum Failure {
    /// Never to be retried.
    Refused(&'static str),
    /// Worth another attempt (that always fails too, here).
    Retry(&'static str),
}

/// Charges an order.
fn charge(order: &Order) -> std::result::Result<(), Failure> {
    if order.cents == 0 {
        return Err(Failure::Refused("refused: an order of 0 cents"));
    }
    if order.customer == FLAKY {
        return Err(Failure::Retry("payment provider timed out"));
    }
    Ok(())
}

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
            eprintln!("queue example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord queue example".into()),
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

/// The queue, as every instance declares it.
fn queue(client: &Client, name: &str) -> Queue<Order> {
    client.queue::<Order>(name).max_attempts(MAX_ATTEMPTS)
}

/// One delivery as the consumer that received it saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The consumer.
    pub consumer: &'static str,
    /// The item's id.
    pub id: u64,
    /// The order's number.
    pub no: u32,
    /// Its attempt.
    pub attempt: u32,
    /// Its fencing token.
    pub token: u64,
    /// Whether it was stolen from another consumer's prefetch.
    pub stolen: bool,
}

/// How a delivery was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Acked: the order is done.
    Acked,
    /// Nacked, to be delivered again after the back-off.
    Retry(String),
    /// In the dead letters (a refusal, or a nack on the last attempt).
    DeadLettered(String),
}

/// What the consumers tell the main thread.
enum Event {
    Delivered(Seen),
    Settled(Seen, Settled),
}

/// What the deliveries' handlers saw, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Deliveries handed to a handler.
    pub delivered: u64,
    /// Of them, with an attempt above 1.
    pub redelivered: u64,
    /// Of them, stolen from another consumer's prefetch.
    pub stolen: u64,
    /// Of the stolen, with an attempt above 1 (the prefetched delivery they
    /// replaced was counted as a redelivery too).
    pub stolen_retries: u64,
    /// Settlements that moved an item to the dead letters.
    pub dead_lettered: u64,
}

/// A dead letter as `Queue::dead_letters` listed it.
#[derive(Debug, Clone)]
pub struct Dead {
    /// The item's id.
    pub id: u64,
    /// The order's number, if it decodes.
    pub no: Option<u32>,
    /// The attempts it had.
    pub attempts: u32,
    /// Why it died.
    pub reason: String,
}

/// What [`run`] saw.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Every pushed item: id -> order number.
    pub pushed: BTreeMap<u64, u32>,
    /// Every delivery, in the order the main thread heard of them.
    pub seen: Vec<Seen>,
    /// Every settlement.
    pub settled: Vec<(Seen, Settled)>,
    /// The consumer killed mid-item.
    pub killed: String,
    /// The delivery it was killed in.
    pub killed_delivery: Seen,
    /// The handlers' counts.
    pub counts: Counts,
    /// The queue's counts at the end.
    pub stats: QueueStats,
    /// The dead letters at the end.
    pub dead: Vec<Dead>,
}

impl Summary {
    /// The settlements of item `id`.
    pub fn settlements(&self, id: u64) -> Vec<&(Seen, Settled)> {
        self.settled.iter().filter(|(s, _)| s.id == id).collect()
    }
}

/// How a consumer thread is stopped.
enum Stop {
    /// Like `kill -9`: nothing of it runs again.
    Kill,
    /// The example is over.
    Quit,
}

struct Worker {
    name: &'static str,
    stop: oneshot::Sender<Stop>,
    thread: thread::JoinHandle<()>,
}

/// What a consumer needs besides its name.
#[derive(Clone)]
struct Shared {
    url: String,
    queue: String,
    events: mpsc::UnboundedSender<Event>,
    failed: mpsc::UnboundedSender<(&'static str, Error)>,
    /// Set when a consumer received a stolen delivery.
    stole: watch::Sender<bool>,
    log: Log,
}

fn start_consumer(
    name: &'static str,
    shared: &Shared,
    first_started: Option<oneshot::Sender<Seen>>,
) -> Worker {
    let (stop, mut stop_rx) = oneshot::channel();
    let shared = shared.clone();
    let thread = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let killed = rt.block_on(async {
            let failed = shared.failed.clone();
            let mut work = Box::pin(async move {
                if let Err(e) = consume(name, &shared, first_started).await {
                    let _ = failed.send((name, e));
                }
            });
            let stop = tokio::select! {
                _ = &mut work => None,
                Ok(stop) = &mut stop_rx => Some(stop),
            };
            match stop {
                Some(Stop::Kill) => {
                    // Its delivery is neither settled nor given back: its
                    // presence must expire.
                    std::mem::forget(work);
                    true
                }
                _ => false,
            }
        });
        if killed {
            // Its renewals, its heartbeats, its connection: gone without
            // another word.
            rt.shutdown_background();
        }
    });
    Worker { name, stop, thread }
}

/// A consumer's life: connect, receive and settle for ever.
async fn consume(
    me: &'static str,
    shared: &Shared,
    mut first_started: Option<oneshot::Sender<Seen>>,
) -> Result<()> {
    let client = connect(&instance_url(&shared.url, me)).await?;
    let mut consumer = queue(&client, &shared.queue)
        .consumer()
        .ttl(LEASE_TTL)
        .presence_ttl(PRESENCE_TTL)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .prefetch(if me == PREFETCHER { 4 } else { 1 })
        .steal(me == STEALER);
    let log = shared.log;
    loop {
        let d = consumer.receive().await?;
        let seen = Seen {
            consumer: me,
            id: d.id(),
            no: d.item().no,
            attempt: d.attempt(),
            token: d.token().get(),
            stolen: d.was_stolen(),
        };
        let order = d.item();
        let mut note = String::new();
        if seen.stolen {
            note.push_str(", STOLEN from another consumer's prefetch");
        }
        if seen.attempt > 1 {
            note.push_str(", a redelivery");
        }
        log.say(format!(
            "{me}: item {} = order {} of {} for {}.{:02} (attempt {}, token {}{note})",
            seen.id,
            order.no,
            order.customer,
            order.cents / 100,
            order.cents % 100,
            seen.attempt,
            seen.token
        ));
        let _ = shared.events.send(Event::Delivered(seen.clone()));
        if seen.stolen {
            shared.stole.send_replace(true);
        }
        if let Some(tx) = first_started.take() {
            let _ = tx.send(seen.clone());
            if me == VICTIM {
                sleep(KILLED_WORK).await;
            } else if me == PREFETCHER {
                // Held (its lease renewed meanwhile) until its prefetch was
                // stolen from.
                let mut stole = shared.stole.subscribe();
                let _ = stole.wait_for(|s| *s).await;
                log.say(format!(
                    "{me}: a consumer stole from my prefetch; going on with item {}",
                    seen.id
                ));
            }
        }
        sleep(WORK).await;
        let settled = match charge(order) {
            Ok(()) => {
                d.ack().await?;
                Settled::Acked
            }
            Err(Failure::Refused(reason)) => {
                d.dead_letter(reason).await?;
                Settled::DeadLettered(reason.to_owned())
            }
            Err(Failure::Retry(error)) => match d.nack(error).await? {
                true => Settled::Retry(error.to_owned()),
                false => Settled::DeadLettered(error.to_owned()),
            },
        };
        let what = match &settled {
            Settled::Acked => "acked".to_owned(),
            Settled::Retry(e) => format!("nacked ({e}): to be retried"),
            Settled::DeadLettered(r) => format!("dead-lettered ({r})"),
        };
        log.say(format!("{me}: item {} {what}", seen.id));
        let _ = shared.events.send(Event::Settled(seen, settled));
    }
}

/// Runs the example on `url`: prints its log and the counts, returns what
/// it saw.
pub async fn run(url: &str) -> Result<Summary> {
    let log = Log(Instant::now());
    let all = orders();
    println!(
        "coord queue on {url}: 2 producers, {} orders, 4 consumers ({PREFETCHER} prefetches 4, \
         {STEALER} steals, {VICTIM} is killed inside its first order, {PLAIN} plain); delivery \
         lease {} s, presence {} s, {MAX_ATTEMPTS} attempts per order\n",
        all.len(),
        LEASE_TTL.as_secs(),
        PRESENCE_TTL.as_secs()
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Fresh per run, so that a previous run's items on a shared server do
    // not meet this one.
    let name = format!("example/queue-{}-{nanos}", std::process::id());

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (failed_tx, mut failed) = mpsc::unbounded_channel();
    let shared = Shared {
        url: url.to_owned(),
        queue: name.clone(),
        events: events_tx,
        failed: failed_tx,
        stole: watch::Sender::new(false),
        log,
    };
    let mut pushed = BTreeMap::new();

    // producer-1: the first batch, in one round trip, before any consumer.
    let producer = connect(&instance_url(url, "producer-1")).await?;
    let (first, rest) = all.split_at(FIRST_BATCH);
    let outcomes = queue(&producer, &name).push_many(first).await?;
    for (o, order) in outcomes.iter().zip(first) {
        pushed.insert(o.id(), order.no);
    }
    log.say(format!(
        "producer-1: pushed orders 1..={FIRST_BATCH} in one push_many (items {:?})",
        outcomes.iter().map(|o| o.id()).collect::<Vec<_>>()
    ));

    // consumer-1 takes 4 (one started, three prefetched) and holds them.
    let mut workers = Vec::new();
    let (tx, rx) = oneshot::channel();
    workers.push(start_consumer(PREFETCHER, &shared, Some(tx)));
    let held = wait_event(rx, &mut failed, "consumer-1's first item").await?;
    log.say(format!(
        "{PREFETCHER} holds item {} until a steal, and 3 more prefetched",
        held.id
    ));

    // consumer-3 takes one and is killed in it.
    let (tx, rx) = oneshot::channel();
    let victim = start_consumer(VICTIM, &shared, Some(tx));
    let killed = wait_event(rx, &mut failed, "consumer-3's first item").await?;
    let _ = victim.stop.send(Stop::Kill);
    let _ = victim.thread.join();
    log.say(format!(
        "{} KILLED inside item {} (order {}, attempt {}, token {}): its presence must expire",
        victim.name, killed.id, killed.no, killed.attempt, killed.token
    ));

    // The others, and producer-2 while they work.
    workers.push(start_consumer(STEALER, &shared, None));
    workers.push(start_consumer(PLAIN, &shared, None));
    let producer2 = tokio::spawn({
        let (url, name, rest) = (url.to_owned(), name.clone(), rest.to_vec());
        async move {
            let client = connect(&instance_url(&url, "producer-2")).await?;
            let q = queue(&client, &name);
            let mut ids = Vec::new();
            for order in &rest {
                let dedup = format!("order-{}", order.no);
                let opts = PushOptions::new().dedup(&dedup, Duration::from_secs(3600));
                ids.push((q.push_with(order, opts).await?.id(), order.no));
            }
            log.say(format!(
                "producer-2: pushed orders {}..={} one by one, each with a dedup id",
                rest[0].no,
                rest[rest.len() - 1].no
            ));
            Ok::<_, Error>(ids)
        }
    });

    // Until every order is acked or dead-lettered.
    let mut seen = Vec::new();
    let mut settled = Vec::new();
    let mut done = 0;
    let mut producer2 = Some(producer2);
    let deadline = Instant::now() + BOUND;
    while done < all.len() || producer2.is_some() {
        tokio::select! {
            Some(ev) = events.recv() => match ev {
                Event::Delivered(s) => seen.push(s),
                Event::Settled(s, how) => {
                    if matches!(how, Settled::Acked | Settled::DeadLettered(_)) {
                        done += 1;
                    }
                    settled.push((s, how));
                }
            },
            r = async { producer2.as_mut().expect("checked").await }, if producer2.is_some() => {
                producer2 = None;
                let ids = r.map_err(|e| Error::invalid(format!("producer-2 panicked: {e}")))??;
                pushed.extend(ids);
            }
            Some((who, e)) = failed.recv() => return Err(worker_failed(who, e)),
            _ = tokio::time::sleep_until(deadline) => return Err(timed_out("every order to be settled")),
        }
    }
    log.say("every order is acked or dead-lettered");

    let q = queue(&producer, &name);
    let stats = q.stats().await?;
    let dead: Vec<Dead> = (q.dead_letters(0, 100).await?.into_iter())
        .map(|d| Dead {
            id: d.id,
            no: d.item.as_ref().ok().map(|o| o.no),
            attempts: d.attempts,
            reason: d.reason,
        })
        .collect();
    for w in workers {
        let _ = w.stop.send(Stop::Quit);
        let _ = w.thread.join();
    }

    let counts = Counts {
        delivered: seen.len() as u64,
        redelivered: seen.iter().filter(|s| s.attempt > 1).count() as u64,
        stolen: seen.iter().filter(|s| s.stolen).count() as u64,
        stolen_retries: seen.iter().filter(|s| s.stolen && s.attempt > 1).count() as u64,
        dead_lettered: (settled.iter())
            .filter(|(_, how)| matches!(how, Settled::DeadLettered(_)))
            .count() as u64,
    };
    let summary = Summary {
        pushed,
        seen,
        settled,
        killed: VICTIM.to_owned(),
        killed_delivery: killed,
        counts,
        stats,
        dead,
    };
    print_summary(&summary);
    Ok(summary)
}

fn print_summary(s: &Summary) {
    let k = &s.killed_delivery;
    println!();
    println!(
        "the killed consumer's item {} (order {}): attempt {} on {}, token {}, never settled",
        k.id, k.no, k.attempt, s.killed, k.token
    );
    for (d, how) in s.settlements(k.id) {
        println!(
            "  then attempt {} on {}, token {}: {how:?}",
            d.attempt, d.consumer, d.token
        );
    }
    let c = &s.counts;
    let st = &s.stats;
    println!();
    println!("| count | stats() | the handlers saw |");
    println!("|---|---:|---:|");
    println!(
        "| delivered | {} | {} (+ {} prefetched deliveries stolen before they started) |",
        st.delivered, c.delivered, c.stolen
    );
    println!(
        "| redelivered | {} | {} (+ {} stolen retries, counted on their prefetch too) |",
        st.redelivered, c.redelivered, c.stolen_retries
    );
    println!("| stolen | {} | {} |", st.stolen, c.stolen);
    println!(
        "| dead-lettered | {} | {} |",
        st.dead_lettered, c.dead_lettered
    );
    let acked = (s.settled.iter())
        .filter(|(_, h)| *h == Settled::Acked)
        .count();
    println!();
    println!(
        "{} orders pushed: {acked} acked, {} dead-lettered; the queue now: {} ready, {} delayed, \
         {} in flight, {} dead, {} live consumers",
        s.pushed.len(),
        c.dead_lettered,
        st.ready,
        st.delayed,
        st.in_flight,
        st.dead,
        st.consumers.len()
    );
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for (d, _) in s.settled.iter().filter(|(_, h)| *h == Settled::Acked) {
        *by.entry(d.consumer).or_default() += 1;
    }
    let by: Vec<String> = by.iter().map(|(c, n)| format!("{c} {n}")).collect();
    println!("acked by: {}", by.join(", "));
    println!();
    println!("dead letters:");
    for d in &s.dead {
        let no = d.no.map_or_else(|| "?".to_owned(), |n| n.to_string());
        println!(
            "  item {} (order {no}), {} attempt(s): {}",
            d.id, d.attempts, d.reason
        );
    }
}

/// Waits for a consumer's event, failing if a consumer fails first or it
/// takes longer than the bound.
async fn wait_event(
    rx: oneshot::Receiver<Seen>,
    failed: &mut mpsc::UnboundedReceiver<(&'static str, Error)>,
    what: &str,
) -> Result<Seen> {
    tokio::select! {
        s = timeout(BOUND, rx) => match s {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(_)) => Err(Error::invalid(format!("no event: {what}"))),
            Err(_) => Err(timed_out(what)),
        },
        Some((who, e)) = failed.recv() => Err(worker_failed(who, e)),
    }
}

fn worker_failed(who: &str, e: Error) -> Error {
    println!("{who} failed: {e}");
    e
}

fn timed_out(what: &str) -> Error {
    Error::Timeout {
        what: what.to_owned(),
        backend: "example".into(),
        waited: BOUND,
    }
}
