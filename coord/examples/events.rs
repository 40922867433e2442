//! Events in two tiers: a billing service subscribes to a topic of order
//! events, goes down for a while, and comes back.
//!
//! - **Durable** (`Topic::publish`): the orders published while billing was
//!   down are kept by the stream (bounded retention) and billing's named
//!   subscription replays them when it comes back, at least once, in
//!   order; a replay from offset 1 (`Subscriber::seek`) reads them all
//!   again.
//! - **Ephemeral** (`Topic::publish_ephemeral`): price ticks go to the
//!   listeners connected at that instant and are kept nowhere: the tick
//!   published while billing was down is not heard, at most once, by
//!   design.
//! - An order event of version 2, which this billing reads only up to
//!   version 1, is refused: dead-lettered with the reason, and billing
//!   goes on.
//!
//! ```text
//! cargo run -p coord --example events                      # in-process
//! cargo run -p coord --example events -- --url redis://127.0.0.1:6379
//! ```
//!
//! `coord/tests/examples.rs` runs [`run`] on `memory://`.

use std::{
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord::{Client, Ephemeral, Error, Next, Result, connect, spi::Start};
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

const USAGE: &str = "usage: events [--url <url>]   (default memory://)";
/// How long a read or a listen may wait for what the example knows is there.
const PROMPT: Duration = Duration::from_secs(5);

/// An order event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order's number.
    pub no: u32,
    /// How much.
    pub cents: u64,
}

/// A price tick (ephemeral).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// Its sequence number.
    pub seq: u32,
}

/// What billing saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Orders read before going down (offset, number).
    pub before: Vec<(u64, u32)>,
    /// Orders replayed after coming back: those published while down.
    pub caught_up: Vec<(u64, u32)>,
    /// The offset of the refused version-2 event and why.
    pub refused: Option<(u64, String)>,
    /// Orders read again from offset 1.
    pub replayed: Vec<u32>,
    /// Ticks heard (the one published while down is not among them).
    pub ticks: Vec<u32>,
}

fn order(no: u32) -> OrderPlaced {
    OrderPlaced {
        no,
        cents: 1_000 + 250 * no as u64,
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match timeout(PROMPT, fut).await {
        Ok(res) => res,
        Err(_) => Err(Error::invalid(format!("{what}: nothing within {PROMPT:?}"))),
    }
}

/// Reads the next order of `sub`, acks it: (offset, number).
async fn next_order(sub: &mut coord::Subscriber<OrderPlaced>) -> Result<(u64, u32)> {
    loop {
        match within("an order", sub.next()).await? {
            Next::Event(d) => {
                let got = (d.offset(), d.event().no);
                d.ack().await?;
                return Ok(got);
            }
            Next::Missed { first, last } => println!("  (missed {first}..={last}: trimmed)"),
            Next::Refused { offset, reason, .. } => println!("  refused {offset}: {reason}"),
        }
    }
}

/// Runs the example on `url`: what billing saw.
pub async fn run(url: &str) -> Result<Summary> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Fresh per run, so that a previous run's events do not meet this one.
    let name = format!("example/orders-{}-{nanos}", std::process::id());
    let sep = if url.contains('?') { '&' } else { '?' };
    let shop: Client = connect(&format!("{url}{sep}instance=shop")).await?;
    let billing: Client = connect(&format!("{url}{sep}instance=billing")).await?;
    let orders = shop.topic::<OrderPlaced>(&name).kind("OrderPlaced", 1);
    let ticks = shop.topic::<Tick>(&format!("{name}/ticks"));
    let mut summary = Summary::default();

    // Billing's subscription exists from here on: events are kept for it.
    let billing_orders = billing.topic::<OrderPlaced>(&name).kind("OrderPlaced", 1);
    let billing_ticks = billing.topic::<Tick>(&format!("{name}/ticks"));
    let mut sub = billing_orders.subscriber("billing").start(Start::Earliest);
    sub.subscribe().await?;
    let mut listener = billing_ticks.listen().await?;

    println!("billing is up");
    orders.publish_many(&[order(1), order(2)]).await?;
    ticks.publish_ephemeral(&Tick { seq: 1 }).await?;
    for _ in 0..2 {
        summary.before.push(next_order(&mut sub).await?);
    }
    if let Ephemeral::Event(t) = within("tick 1", listener.next()).await? {
        summary.ticks.push(t.seq);
    }
    println!("  read orders {:?}, heard tick 1", summary.before);

    println!("billing goes down");
    sub.leave().await?;
    drop(listener);
    orders.publish_many(&[order(3), order(4)]).await?;
    let reached = ticks.publish_ephemeral(&Tick { seq: 2 }).await?;
    println!(
        "  shop published orders 3 and 4 (durable) and tick 2 (ephemeral, {reached} listeners)"
    );
    // A newer shop publishes version 2 of the event.
    orders
        .clone()
        .kind("OrderPlaced", 2)
        .publish(&order(5))
        .await?;
    orders.publish(&order(6)).await?;

    println!("billing comes back");
    let mut sub = billing_orders.subscriber("billing");
    let mut listener = billing_ticks.listen().await?;
    ticks.publish_ephemeral(&Tick { seq: 3 }).await?;
    while summary.caught_up.len() < 3 {
        match within("a missed order", sub.next()).await? {
            Next::Event(d) => {
                summary.caught_up.push((d.offset(), d.event().no));
                d.ack().await?;
            }
            Next::Refused { offset, reason, .. } => {
                println!("  refused offset {offset}: {reason}");
                summary.refused = Some((offset, reason));
            }
            Next::Missed { first, last } => println!("  missed {first}..={last}"),
        }
    }
    println!("  replayed what it missed: {:?}", summary.caught_up);
    if let Ephemeral::Event(t) = within("tick 3", listener.next()).await? {
        summary.ticks.push(t.seq);
    }
    println!(
        "  heard ticks {:?}: tick 2 was published while it was down",
        summary.ticks
    );

    let next = sub.seek(Start::Offset(1)).await?;
    println!("billing replays from offset {next}");
    while summary.replayed.len() < 5 {
        match within("a replayed order", sub.next()).await? {
            Next::Event(d) => {
                summary.replayed.push(d.event().no);
                d.ack().await?;
            }
            Next::Refused { .. } | Next::Missed { .. } => {}
        }
    }
    println!("  replayed orders {:?}", summary.replayed);
    let dead = sub.dead_events(0, 10).await?;
    println!("  dead events: {}", dead.len());
    sub.unsubscribe().await?;
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
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("events example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> std::result::Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord events example".into()),
            other => match other.strip_prefix("--url=") {
                Some(u) => url = u.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(url)
}
