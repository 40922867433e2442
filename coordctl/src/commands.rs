//! The commands: each checks its input, connects, asks
//! [`Operations`], and prints.

use std::io::Write;

use coord_api::{
    BackendClock, Client, FencingToken, Forced, Key, LeaseFilter, LiveLease, Operations,
    PresenceOptions, Status,
    spi::{Cursor, MAX_PAGE, Resource, ResourceKind},
};
use serde::Serialize;

use crate::{
    barrier,
    cli::{Cli, Command},
    exit::{BACKEND, DEGRADED, Fail, NOT_FOUND},
    render::{
        AUDIT_HEADER, AuditRow, BREAKER_HEADER, BreakerRow, CHECK_HEADER, HealthRow,
        INSTANCE_HEADER, InstanceRow, LEASE_HEADER, LeaseRow, Listing, QUEUE_HEADER, QueueRow,
    },
    selection::Selection,
    serve, watch,
};

/// What coordctl says when it has no URL.
const NO_URL: &str = "no backend URL: pass --url URL or set COORD_URL \
     (redis://HOST:PORT/DB?namespace=NS)";

/// Runs `cli`'s command, printing to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Fail> {
    let json = cli.json;
    let url = cli.url.as_deref();
    match cli.command {
        Command::Locks {
            stale,
            kind,
            prefix,
        } => {
            let selection = Selection::new(kind.as_deref(), prefix, stale)?;
            list_leases(&connect(url).await?.operations(), selection, json, out).await
        }
        Command::Leaders => {
            let selection = Selection::of(LeaseFilter::all().kind(ResourceKind::Election));
            list_leases(&connect(url).await?.operations(), selection, json, out).await
        }
        Command::Holders { resource } => {
            let resource: Resource = resource.parse()?;
            holders(&connect(url).await?.operations(), &resource, json, out).await
        }
        Command::Members { group } => {
            let resource = Resource::new(ResourceKind::Group, Key::new(&group)?);
            holders(&connect(url).await?.operations(), &resource, json, out).await
        }
        Command::ForceRelease {
            resource,
            token,
            reason,
            operator,
        } => {
            let resource: Resource = resource.parse()?;
            let operator = operator.unwrap_or_else(default_operator);
            let ops = connect(url).await?.operations().operator(operator.clone());
            let token = FencingToken(token);
            force_release(&ops, &operator, &resource, token, &reason, json, out).await
        }
        Command::Instances => instances(&connect(url).await?.operations(), json, out).await,
        Command::Queue { names } => {
            // Every name checked before any I/O.
            for name in &names {
                Key::new(name)?;
            }
            queues(&connect(url).await?, &names, json, out).await
        }
        Command::Breaker { names } => {
            for name in &names {
                Key::new(name)?;
            }
            breakers(&connect(url).await?, &names, json, out).await
        }
        Command::Barrier { names, double } => {
            for name in &names {
                Key::new(name)?;
            }
            barrier::barriers(&connect(url).await?, &names, double, json, out).await
        }
        Command::Latch { names } => {
            for name in &names {
                Key::new(name)?;
            }
            barrier::latches(&connect(url).await?, &names, json, out).await
        }
        Command::Audit { limit } => {
            audit(&connect(url).await?.operations(), limit, json, out).await
        }
        Command::Health => match connect(url).await {
            Ok(client) => health(&client, json, out).await,
            // Down at connect: still a report (a probe parses it), exit 1.
            Err(fail) if fail.code == BACKEND => unreachable_health(fail, json, out),
            Err(fail) => Err(fail),
        },
        Command::Watch {
            interval,
            kind,
            prefix,
            polls,
        } => {
            let selection = Selection::new(kind.as_deref(), prefix, false)?;
            let ops = connect(url).await?.operations();
            watch::watch(&ops, selection, interval, polls, json, out).await
        }
        Command::Serve {
            listen,
            allow_actions,
            token,
            allow_host,
            operator,
            refresh,
            max_leases,
        } => {
            let args = serve::ServeArgs {
                listen,
                allow_actions,
                token,
                allow_hosts: allow_host,
                operator: operator.unwrap_or_else(default_operator),
                refresh,
                max_leases,
            };
            args.check()?;
            serve::serve(connect(url).await?, args, out).await
        }
    }
}

/// A client on `url` that keeps no presence (coordctl holds nothing),
/// its namespace and instance from the URL.
async fn connect(url: Option<&str>) -> Result<Client, Fail> {
    let url = url.ok_or_else(|| Fail::usage(NO_URL))?;
    let connected = coord::connect(url).await?;
    if url.starts_with("memory:") && !cfg!(test) {
        eprintln!(
            "coordctl: note: memory:// is a store inside this coordctl process; it shows nothing of other processes"
        );
    }
    // `connect` starts nothing until the first call: rebuilt before any,
    // the client announces no presence.
    let client = Client::builder(connected.backend().clone())
        .instance_id(connected.instance_id().as_str())?
        .presence(PresenceOptions::disabled())
        .build();
    Ok(client)
}

/// `$USER@$HOSTNAME` (`/etc/hostname` when `HOSTNAME` is not exported).
pub fn default_operator() -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let user = env("USER")
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "unknown".to_owned());
    let host = env("HOSTNAME")
        .or_else(|| {
            let h = std::fs::read_to_string("/etc/hostname").ok()?;
            Some(h.trim().to_owned()).filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{user}@{host}")
}

/// Walks the leases `selection` keeps, printing each page as it comes.
async fn list_leases(
    ops: &Operations,
    selection: Selection,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let clock = ops.backend_clock().await?;
    let mut walk = ops.walk(selection.filter.clone());
    let mut listing = Listing::new(json, LEASE_HEADER);
    while let Some(mut page) = walk.next_page().await? {
        page.retain(|l| selection.keeps(l));
        listing.page(out, &lease_rows(&page, &clock), LeaseRow::cells)?;
    }
    listing.finish(out)
}

/// The rows of `leases`, their ages on the backend's `clock`.
fn lease_rows(leases: &[LiveLease], clock: &BackendClock) -> Vec<LeaseRow> {
    leases.iter().map(|l| LeaseRow::of(l, clock)).collect()
}

/// The live leases of `resource`; exit 3 when it has none.
async fn holders(
    ops: &Operations,
    resource: &Resource,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let clock = ops.backend_clock().await?;
    let rows = lease_rows(&ops.holders(resource).await?, &clock);
    let mut listing = Listing::new(json, LEASE_HEADER);
    if json || !rows.is_empty() {
        listing.page(out, &rows, LeaseRow::cells)?;
        listing.finish(out)?;
    }
    match rows.is_empty() {
        true => Err(Fail::new(
            NOT_FOUND,
            format!("{resource} has no live lease"),
        )),
        false => Ok(()),
    }
}

/// What `force-release --json` prints.
#[derive(Debug, Serialize)]
struct ForceOutcome<'a> {
    resource: String,
    token: u64,
    /// `released`, `not-found`, or `unknown` (the revocation was left
    /// unanswered: it may have been applied; exit 1).
    outcome: &'static str,
    /// Whose lease it was (released).
    #[serde(skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
    /// The tokens of the resource's live leases (not found).
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<Vec<u64>>,
    operator: &'a str,
}

async fn force_release(
    ops: &Operations,
    operator: &str,
    resource: &Resource,
    token: FencingToken,
    reason: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let mut outcome = ForceOutcome {
        resource: resource.to_string(),
        token: token.get(),
        outcome: "released",
        holder: None,
        current: None,
        operator,
    };
    let forced = match ops.force_release(resource, token, reason).await {
        Ok(forced) => forced,
        // The revocation was sent and left unanswered: it may have been
        // applied (the error says so; it is audited as unknown).
        Err(e) if e.is_retryable() => {
            if json {
                outcome.outcome = "unknown";
                serde_json::to_writer(&mut *out, &outcome)?;
                writeln!(out)?;
                out.flush()?;
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let fail = match &forced {
        Forced::Released { holder } => {
            outcome.holder = Some(holder.to_string());
            if !json {
                writeln!(
                    out,
                    "released {resource} (token {token}, held by {holder}); recorded in the audit trail as {operator}"
                )?;
            }
            None
        }
        Forced::NotFound { current } => {
            outcome.outcome = "not-found";
            outcome.current = Some(current.iter().map(|t| t.get()).collect());
            let live = match current.as_slice() {
                [] => "it has no live lease".to_owned(),
                tokens => format!(
                    "its live tokens: {}",
                    (tokens.iter().map(ToString::to_string))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            Some(Fail::new(
                NOT_FOUND,
                format!("{resource}: no live lease has token {token} ({live}); nothing changed"),
            ))
        }
        // An outcome added later (`Forced` is non-exhaustive).
        other => Some(Fail::new(BACKEND, format!("{resource}: {other:?}"))),
    };
    if json {
        serde_json::to_writer(&mut *out, &outcome)?;
        writeln!(out)?;
    }
    out.flush()?;
    fail.map_or(Ok(()), Err)
}

async fn instances(ops: &Operations, json: bool, out: &mut dyn Write) -> Result<(), Fail> {
    let rows: Vec<_> = (ops.instances().await?.iter())
        .map(InstanceRow::of)
        .collect();
    let mut listing = Listing::new(json, INSTANCE_HEADER);
    listing.page(out, &rows, InstanceRow::cells)?;
    listing.finish(out)
}

/// The counts of the queues `names`, a line each as it is read.
async fn queues(
    client: &Client,
    names: &[String],
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let mut listing = Listing::new(json, QUEUE_HEADER);
    for name in names {
        // The items' type plays no part in the counts.
        let stats = client.queue::<serde_json::Value>(name).stats().await?;
        listing.page(out, &[QueueRow::of(name, &stats)], QueueRow::cells)?;
    }
    listing.finish(out)
}

/// The records of the breakers `names`, read with `peek` (which makes no
/// breaker: a look must not choose a breaker's policy, decision 0029);
/// exit 3 naming those with no record.
async fn breakers(
    client: &Client,
    names: &[String],
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let mut listing = Listing::new(json, BREAKER_HEADER);
    let mut unmade = Vec::new();
    for name in names {
        let state = match client.breaker(name).build()?.peek().await {
            Ok(state) => state,
            Err(e @ coord_api::Error::NotSupported { .. }) => {
                return Err(Fail::new(
                    BACKEND,
                    format!("{e}: this backend cannot show a breaker without creating it"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        match state {
            Some(s) => listing.page(out, &[BreakerRow::of(name, &s)], BreakerRow::cells)?,
            None => unmade.push(format!("{name:?}")),
        }
    }
    listing.finish(out)?;
    if unmade.is_empty() {
        return Ok(());
    }
    Err(Fail::new(
        NOT_FOUND,
        format!(
            "no record of breaker {}: no instance has used it yet (or the backend forgot it \
             after a day unused); looking does not create it",
            unmade.join(", ")
        ),
    ))
}

/// The newest `limit` audit records, a page at a time.
async fn audit(ops: &Operations, limit: u32, json: bool, out: &mut dyn Write) -> Result<(), Fail> {
    if limit == 0 {
        return Err(Fail::usage("audit --limit: give 1 or more records"));
    }
    let (mut left, mut cursor) = (limit, Cursor::start());
    let mut listing = Listing::new(json, AUDIT_HEADER);
    while left > 0 {
        let page = ops.audit_page(&cursor, left.min(MAX_PAGE)).await?;
        let rows: Vec<_> = page
            .items
            .iter()
            .take(left as usize)
            .map(AuditRow::of)
            .collect();
        left -= rows.len() as u32;
        listing.page(out, &rows, AuditRow::cells)?;
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    listing.finish(out)
}

/// Prints the health report; exit 4 when degraded, 1 when unavailable.
async fn health(client: &Client, json: bool, out: &mut dyn Write) -> Result<(), Fail> {
    let health = client.operations().health().await;
    let row = HealthRow::of(&health);
    print_health(&client.backend().to_string(), &row, json, out)?;
    match health.status {
        Status::Ready => Ok(()),
        Status::Degraded => Err(Fail::quiet(DEGRADED)),
        Status::Unavailable => Err(Fail::quiet(BACKEND)),
    }
}

/// The report of a backend that could not be reached at connect
/// (`fail`): unavailable by its `round_trip` check; then `fail` itself
/// (its one line on stderr, exit 1), as every command says it.
fn unreachable_health(fail: Fail, json: bool, out: &mut dyn Write) -> Result<(), Fail> {
    let detail = fail.message.as_deref().unwrap_or("unreachable");
    let row = HealthRow::unavailable(format!("the backend did not answer: {detail}"));
    print_health("the backend", &row, json, out)?;
    Err(fail)
}

/// `row` as JSON or as a table under `backend: status`.
fn print_health(
    backend: &str,
    row: &HealthRow,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    if json {
        serde_json::to_writer(&mut *out, row)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{backend}: {}", row.status)?;
        let mut listing = Listing::new(false, CHECK_HEADER);
        listing.page(out, &row.checks, |c| c.cells())?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::Parser;
    use serde_json::Value;

    use super::*;

    /// Runs coordctl's command line in this process (`memory://` is one
    /// store per process); its output, or its failure.
    pub(crate) async fn ctl(args: &[&str]) -> Result<String, Fail> {
        let cli = Cli::try_parse_from([&["coordctl"], args].concat()).unwrap();
        let mut out = Vec::new();
        run(cli, &mut out).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// "Which queue is stuck?": `queue NAME…` prints each queue's counts,
    /// as the dashboard's queue view shows them (the command line had no
    /// way to tell a queue's depth or its consumers).
    #[tokio::test(flavor = "current_thread")]
    async fn queues_are_counted_by_name() {
        let url = "memory://?namespace=ctl-queues";
        let client = coord::connect(url).await.unwrap();
        let orders = client.queue::<u64>("orders");
        for i in 0..3 {
            orders.push(&i).await.unwrap();
        }
        let mut consumer = orders.consumer();
        let _working = consumer.receive().await.unwrap();
        let json = ctl(&["queue", "orders", "idle", "--json", "--url", url])
            .await
            .unwrap();
        let listed: Value = serde_json::from_str(&json).unwrap();
        let (q, idle) = (&listed[0], &listed[1]);
        assert_eq!(q["name"], "orders", "{listed}");
        let count = |v: &Value, field: &str| v[field].as_u64().unwrap();
        assert!(count(q, "in_flight") >= 1, "{listed}");
        assert_eq!(count(q, "ready") + count(q, "in_flight"), 3, "{listed}");
        assert_eq!(count(q, "delivered"), count(q, "in_flight"), "{listed}");
        let instance = client.instance_id().to_string();
        assert_eq!(q["consumers"], serde_json::json!([instance]), "{listed}");
        assert_eq!(idle["name"], "idle");
        assert_eq!(count(idle, "ready") + count(idle, "in_flight"), 0);
        assert_eq!(listed.as_array().unwrap().len(), 2);
        let table = ctl(&["queue", "orders", "--url", url]).await.unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("QUEUE") && lines[0].contains("IN-FLIGHT"));
        assert!(lines[1].starts_with("orders "), "{table}");
        let fail = ctl(&["queue", "orders", "", "--url", url]).await;
        assert_eq!(fail.unwrap_err().code, crate::exit::USAGE);
    }

    /// A force release whose reply is lost (the revocation may have been
    /// applied) prints `"outcome": "unknown"` with `--json` (stdout was
    /// empty: a script read nothing) and fails (exit 1) with the
    /// operations client's error, which says the outcome is unknown.
    #[tokio::test(flavor = "current_thread")]
    async fn a_force_release_left_unanswered_is_reported_unknown() {
        use std::sync::Arc;

        use coord_conformance::switch::Switch;

        let client = coord::connect("memory://?namespace=ctl-unknown")
            .await
            .unwrap();
        let guard = client.lock("k").try_lock().await.unwrap().unwrap();
        let switch = Switch::new(client.backend().clone());
        let lossy = Client::builder(Arc::new(coord_api::spi::Dispatched::new(switch.clone())))
            .presence(PresenceOptions::disabled())
            .build();
        let ops = lossy.operations().operator("alice");
        let resource: Resource = "lock:k".parse().unwrap();
        switch.losing_replies();
        let mut out = Vec::new();
        let fail =
            force_release(&ops, "alice", &resource, guard.token(), "r", true, &mut out).await;
        switch.on();
        let fail = fail.unwrap_err();
        assert_eq!(fail.code, BACKEND);
        assert!(fail.message.unwrap().contains("unknown"));
        let printed: Value = serde_json::from_slice(&out).expect("one JSON object");
        assert_eq!(printed["outcome"], "unknown", "{printed}");
        assert_eq!(printed["resource"], "lock:k");
        assert_eq!(printed["token"].as_u64(), Some(guard.token().get()));
    }

    /// `health`'s `renewal_lag` is the asking client's, and coordctl holds
    /// nothing: the check says so rather than read as the applications'
    /// renewals being on time.
    #[tokio::test(flavor = "current_thread")]
    async fn health_says_whose_renewals_it_measured() {
        let json = ctl(&[
            "health",
            "--json",
            "--url",
            "memory://?namespace=ctl-health",
        ]);
        let report: Value = serde_json::from_str(&json.await.unwrap()).unwrap();
        let checks = report["checks"].as_array().unwrap();
        let lag = checks.iter().find(|c| c["name"] == "renewal_lag");
        let detail = lag.expect("a renewal_lag check")["detail"]
            .as_str()
            .unwrap();
        assert!(detail.contains("coordctl's own renewals"), "{detail}");
    }

    /// `breaker NAME…` prints each breaker's record, as the dashboard's
    /// breaker view shows it, and creates none (exit 3 naming those that
    /// have no record).
    #[tokio::test(flavor = "current_thread")]
    async fn breakers_are_shown_by_name_and_never_made() {
        let url = "memory://?namespace=ctl-breakers";
        let client = coord::connect(url).await.unwrap();
        let app = (client.breaker("payments").count_window(10))
            .failure_rate(20.0)
            .build()
            .unwrap();
        app.state().await.unwrap();
        let json = ctl(&["breaker", "payments", "--json", "--url", url]).await;
        let listed: Value = serde_json::from_str(&json.unwrap()).unwrap();
        let b = &listed[0];
        assert_eq!(
            (b["name"].as_str(), b["phase"].as_str()),
            (Some("payments"), Some("Closed"))
        );
        assert_eq!(b["policy"]["failure_rate"], "20%", "{listed}");
        assert_eq!(b["policy"]["window"], "last 10 calls", "{listed}");
        let table = ctl(&["breaker", "payments", "--url", url]).await.unwrap();
        assert!(
            table.starts_with("BREAKER") && table.contains("\npayments  Closed "),
            "{table}"
        );
        for _ in 0..2 {
            let fail = ctl(&["breaker", "payments", "nobody", "--url", url]).await;
            let fail = fail.unwrap_err();
            assert_eq!(fail.code, NOT_FOUND);
            let message = fail.message.unwrap();
            assert!(
                message.contains("\"nobody\"") && !message.contains("payments"),
                "{message}"
            );
        }
        let fail = ctl(&["breaker", "", "--url", url]).await.unwrap_err();
        assert_eq!(fail.code, crate::exit::USAGE);
    }

    /// `--prefix` takes a resource as listings print it (`lock:jobs/`,
    /// `queue:orders@`), as the dashboard's filter does; it matched names
    /// only, so a RESOURCE copied from a listing listed nothing, exit 0.
    #[tokio::test(flavor = "current_thread")]
    async fn a_prefix_may_name_the_kind_as_resources_are_printed() {
        let url = "memory://?namespace=ctl-prefix";
        let client = coord::connect(url).await.unwrap();
        let _a = client.lock("jobs/a").try_lock().await.unwrap().unwrap();
        let _o = client.lock("other").try_lock().await.unwrap().unwrap();
        let _b = client.rwlock("jobs/b").try_read().await.unwrap().unwrap();
        let orders = client.queue::<u64>("ord@rs");
        orders.push(&1).await.unwrap();
        let mut consumer = orders.consumer();
        let _d = consumer.receive().await.unwrap();
        let listed = |args: &'static [&'static str]| async move {
            let json = ctl(&[args, &["--json", "--url", url]].concat())
                .await
                .unwrap();
            let v: Value = serde_json::from_str(&json).unwrap();
            let mut names: Vec<String> = (v.as_array().unwrap().iter())
                .map(|l| l["resource"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            listed(&["locks", "--prefix", "lock:jobs/"]).await,
            ["lock:jobs/a"]
        );
        assert_eq!(
            listed(&["locks", "--prefix", "jobs/"]).await,
            ["lock:jobs/a", "rwlock:jobs/b"]
        );
        assert_eq!(
            listed(&["locks", "--prefix", "rwlock:"]).await,
            ["rwlock:jobs/b"]
        );
        // A queue's name is escaped in its resource (`ord\@rs`).
        let item = "queue:ord\\@rs@1";
        assert_eq!(
            listed(&["locks", "--prefix", "queue:ord\\@rs@"]).await,
            [item]
        );
        assert_eq!(listed(&["locks", "--prefix", "queue:ord\\@"]).await, [item]);
        assert!(
            listed(&["locks", "--prefix", "queue:ord\\@rs@2"])
                .await
                .is_empty()
        );
        // With --kind, the prefix is a name's (a key may start `lock:`).
        assert!(
            listed(&["locks", "--kind", "lock", "--prefix", "lock:"])
                .await
                .is_empty()
        );
        let watch = [
            "watch",
            "--polls",
            "1",
            "--prefix",
            "lock:jobs/",
            "--url",
            url,
        ];
        let watched = ctl(&watch).await.unwrap();
        assert_eq!(watched.lines().count(), 1, "{watched}");
        assert!(watched.contains(" + lock:jobs/a exclusive "), "{watched}");
    }

    /// ACQUIRED was measured on this machine's wall clock against the
    /// backend's grant instant: an operator's clock an hour ahead showed a
    /// lease taken a moment ago as held for an hour, one an hour behind
    /// showed every age as nothing. Ages are the backend's now: a backend
    /// skewed either way against this machine shows the lease's own age.
    #[tokio::test(flavor = "current_thread")]
    async fn ages_are_measured_on_the_backends_clock() {
        use std::{sync::Arc, time::Duration};

        use coord_api::{Namespace, SkewedClock, TokioClock};

        const HOUR: i64 = 3_600_000_000_000;
        for skew in [HOUR, -HOUR] {
            let clock = Arc::new(SkewedClock::new(TokioClock, skew, 0.0));
            let store = coord::memory::MemoryStore::with_clock(clock);
            let backend = Arc::new(store.backend(Namespace::new("ctl-skew").unwrap()));
            let app = Client::builder(backend.clone()).build();
            let lock = app.lock("jobs/a").ttl(Duration::from_secs(60));
            let _held = lock.try_lock().await.unwrap().unwrap();
            // The lease's age is at least this (a lower bound, not a wait
            // for something to happen).
            tokio::time::sleep(Duration::from_millis(300)).await;
            let operator = Client::builder(backend)
                .presence(PresenceOptions::disabled())
                .build()
                .operations();
            let mut out = Vec::new();
            let every = Selection::of(LeaseFilter::all());
            list_leases(&operator, every.clone(), true, &mut out)
                .await
                .unwrap();
            let resource: Resource = "lock:jobs/a".parse().unwrap();
            holders(&operator, &resource, true, &mut out).await.unwrap();
            let before = std::time::SystemTime::now();
            let polled = watch::poll(&operator, &every, 10).await.unwrap();
            let after = std::time::SystemTime::now();
            // The changes it finds are dated on the backend's clock too:
            // within a few seconds of this machine's clock shifted by the
            // skew (RFC 3339 strings of one width sort as their times).
            let shift = |t: std::time::SystemTime, by: i64| match by {
                0.. => t + Duration::from_nanos(by as u64),
                _ => t - Duration::from_nanos(by.unsigned_abs()),
            };
            let lo = crate::render::rfc3339(shift(before, skew - 5_000_000_000));
            let hi = crate::render::rfc3339(shift(after, skew + 5_000_000_000));
            let at = &polled.at;
            assert!(
                lo <= *at && at <= &hi,
                "backend skewed by {skew} ns: changes dated {at}, not within {lo}..{hi}"
            );
            let polled = polled.leases;
            let mut ages: Vec<u64> = serde_json::Deserializer::from_slice(&out)
                .into_iter::<Value>()
                .map(|listed| listed.unwrap()[0]["age_ms"].as_u64().unwrap())
                .collect();
            ages.extend(polled.values().map(|row| row.age_ms.unwrap()));
            assert_eq!(ages.len(), 3);
            for age in ages {
                assert!(
                    (300..30_000).contains(&age),
                    "backend skewed by {skew} ns: age {age} ms"
                );
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_listing_longer_than_a_page_streams_as_one_document() {
        let url = "memory://?namespace=ctl-pages";
        let client = coord::connect(url).await.unwrap();
        let n = MAX_PAGE as usize + 150;
        let mut guards = Vec::with_capacity(n);
        for i in 0..n {
            let lock = client.lock(&format!("page/{i:05}"));
            guards.push(lock.try_lock().await.unwrap().expect("free"));
        }
        // The presence task announces once it runs (the memory backend's
        // calls never yielded to it).
        let ops = client.operations();
        while !(ops.instances().await.unwrap().iter()).any(|p| p.instance == *client.instance_id())
        {
            tokio::task::yield_now().await;
        }
        let json = ctl(&["locks", "--json", "--url", url]).await.unwrap();
        let listed: Value = serde_json::from_str(&json).unwrap();
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), n);
        assert!(
            listed
                .iter()
                .all(|l| l["alive"] == true && l["role"] == "exclusive")
        );
        // The table: one header, a line per lease.
        let table = ctl(&["locks", "--prefix", "page/", "--url", url])
            .await
            .unwrap();
        assert_eq!(table.lines().count(), n + 1);
        assert_eq!(
            table.lines().filter(|l| l.starts_with("RESOURCE")).count(),
            1
        );
        let none = ["locks", "--prefix", "nothing/", "--json", "--url", url];
        assert_eq!(ctl(&none).await.unwrap(), "[]\n");
        let stale = ["locks", "--stale", "--json", "--url", url];
        assert_eq!(
            ctl(&stale).await.unwrap(),
            "[]\n",
            "the holder's presence lives"
        );
        let fail = ctl(&["holders", "lock:page/nope", "--url", url]).await;
        assert_eq!(fail.unwrap_err().code, NOT_FOUND);
    }
}
