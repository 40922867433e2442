//! `coordctl-demo-holder`, for coordctl's end-to-end tests (a second
//! binary rather than an example, so that the tests always find it built:
//! `CARGO_BIN_EXE_coordctl-demo-holder`) and for trying coordctl by hand;
//! not a tool. A live application: it connects to a URL, takes a lock, takes a
//! reentrant lock twice, leads an election, joins a group, pushes an item
//! to a queue and works on it, prints one `ready …` line with the tokens it
//! got, and then holds everything until it is killed.
//!
//! ```text
//! cargo run -p coordctl --bin coordctl-demo-holder -- 'redis://127.0.0.1:6379/0?namespace=demo' [PRESENCE_TTL_SECS]
//! coordctl --url 'redis://127.0.0.1:6379/0?namespace=demo' locks
//! ```
//!
//! The leases last `LEASE_TTL_SECS` (default 60 s) and are renewed; the
//! instance presence lasts `PRESENCE_TTL_SECS` (default 2 s), so that after
//! a `kill -9` its leases show as stale after about that long, and expire
//! at their TTL. With `candidate` last, it only campaigns for the election
//! (a standby), prints `waiting …`, then `leading … term=T` once it wins.
//! Names: `demo/lock`, `demo/reentrant`, election `demo/election`, group
//! `demo/group`, queue `demo/queue` (the delivery of the first item ready;
//! its consumer's presence in the queue lasts as long as a lease, so that
//! a killed holder's delivery stays listed, stale, for that long).

use std::{process::ExitCode, time::Duration};

use coord::{Client, LeaseOptions};
use coord_api::PresenceOptions;

const LEASE_TTL: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coordctl-demo-holder: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str =
    "usage: coordctl-demo-holder URL [PRESENCE_TTL_SECS [LEASE_TTL_SECS [candidate]]]";

async fn run() -> coord::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .or_else(|| std::env::var("COORD_URL").ok())
        .ok_or_else(|| coord::Error::config(USAGE))?;
    let secs = |s: Option<String>, default: u64| match s {
        Some(s) => s.parse().map_err(|_| {
            coord::Error::config(format!("{s:?} is not a number of seconds; {USAGE}"))
        }),
        None => Ok(default),
    };
    let presence_ttl = secs(args.next(), 2)?;
    let lease_ttl = secs(args.next(), LEASE_TTL.as_secs())?;
    let candidate = match args.next().as_deref() {
        None => false,
        Some("candidate") => true,
        Some(other) => return Err(coord::Error::config(format!("{other:?}: {USAGE}"))),
    };
    let connected = coord::connect(&url).await?;
    let client = Client::builder(connected.backend().clone())
        .instance_id(connected.instance_id().as_str())?
        .presence(
            PresenceOptions::default()
                .ttl(Duration::from_secs(presence_ttl))?
                .metadata("role=coordctl-test-holder")?,
        )
        .lease_options(LeaseOptions::default().ttl(Duration::from_secs(lease_ttl)))
        .build();

    if candidate {
        // A standby: waits for the election, and says when it leads.
        println!("waiting instance={}", client.instance_id());
        let leadership = client.election("demo/election").campaign().await?;
        println!(
            "leading instance={} term={}",
            client.instance_id(),
            leadership.term()
        );
        let _held = leadership;
        std::future::pending::<()>().await;
        return Ok(());
    }

    let lock = client.lock("demo/lock").try_lock().await?;
    let lock = lock.ok_or_else(|| coord::Error::config("demo/lock is held by someone else"))?;
    let reentrant = client.lock("demo/reentrant").reentrant(true);
    let first = reentrant.lock().await?;
    let second = reentrant.lock().await?;
    let leadership = client.election("demo/election").campaign().await?;
    let membership = client.group("demo/group").join().await?;
    let queue = client.queue::<String>("demo/queue");
    queue.push(&"demo item".to_owned()).await?;
    let lease = Duration::from_secs(lease_ttl);
    let mut consumer = queue.consumer().presence_ttl(lease);
    let delivery = consumer.receive().await?;

    println!(
        "ready instance={} lock={} reentrant={} term={} item={} delivery={}",
        client.instance_id(),
        lock.token(),
        first.token(),
        leadership.term(),
        delivery.id(),
        delivery.token()
    );
    // Held until killed: the guards renew in the background.
    let _held = (
        lock, first, second, leadership, membership, consumer, delivery,
    );
    std::future::pending::<()>().await;
    Ok(())
}
