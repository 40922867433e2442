//! What coordctl prints: rows (one serde struct per listing, the same
//! fields for the table and for `--json`), aligned tables written a page at
//! a time, and the time and duration formats.

use std::{
    io::{self, Write},
    time::{Duration, SystemTime},
};

use coord_api::{
    BackendClock, Check, Health, LiveLease, QueueStats,
    spi::{AuditRecord, BreakerState, Policy, Presence, WindowKind},
};
use serde::Serialize;

/// A listed lease, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    /// `kind:name`, `job:name@occurrence`, `queue:name@item` or
    /// `topic:name@subscription@offset` (what `holders` and
    /// `force-release` take).
    pub resource: String,
    /// `lock`, `rwlock`, `semaphore`, `election`, `group`, `job`, `queue`,
    /// `topic`.
    pub kind: String,
    /// `exclusive`, `reentrant`, `read`, `write`, `permit`,
    /// `writer-intent`, `leader`, `member`, `run`, `delivery`,
    /// `prefetched`.
    pub role: String,
    /// How many times it is held (reentrant locks; 1 otherwise).
    pub holds: u32,
    /// The holder id (`instance#nonce`).
    pub holder: String,
    /// The holder's instance.
    pub instance: String,
    /// The fencing token (`force-release --token`), if it carries one.
    pub token: Option<u64>,
    /// When it was granted (RFC 3339, UTC), when known.
    pub acquired_at: Option<String>,
    /// How long ago, by the backend's clock, in milliseconds.
    pub age_ms: Option<u64>,
    /// Time left before it expires, by the backend's clock.
    pub ttl_left_ms: u64,
    /// Whether its holder's instance presence is live.
    pub alive: bool,
    /// Recorded waiters, where the backend records them.
    pub waiters: Option<u32>,
}

impl LeaseRow {
    /// The row of `l`, its age measured on the backend's `clock` (the
    /// grant's instant is the backend's: on this machine's clock, a skew
    /// showed as age).
    pub fn of(l: &LiveLease, clock: &BackendClock) -> LeaseRow {
        let lease = &l.lease;
        let acquired = lease.acquired_at();
        LeaseRow {
            resource: lease.resource.to_string(),
            kind: lease.resource.kind.to_string(),
            role: lease.role.to_string(),
            holds: lease.holds,
            holder: lease.holder.to_string(),
            instance: lease.holder.instance().to_string(),
            token: lease.token.map(|t| t.get()),
            acquired_at: acquired.map(rfc3339),
            age_ms: clock.age(lease).map(millis),
            ttl_left_ms: millis(lease.expires_in),
            alive: l.holder_alive,
            waiters: lease.waiters,
        }
    }

    /// Who holds what, as a watch tells apart two leases (a holder has one
    /// lease per resource and role).
    pub fn identity(&self) -> (&str, &str, &str) {
        (&self.resource, &self.role, &self.holder)
    }

    /// Whether `other` (the same lease) differs in what a watch reports:
    /// token, holds, liveness, waiters (not the ticking time left).
    pub fn changed(&self, other: &LeaseRow) -> bool {
        (self.token, self.holds, self.alive, self.waiters)
            != (other.token, other.holds, other.alive, other.waiters)
    }

    /// The table's cells.
    pub fn cells(&self) -> [String; 8] {
        let role = match self.holds {
            0 | 1 => self.role.clone(),
            n => format!("{}({n})", self.role),
        };
        [
            self.resource.clone(),
            role,
            self.instance.clone(),
            opt(self.token),
            (self.age_ms).map_or_else(
                || "-".to_owned(),
                |ms| format!("{} ago", human(Duration::from_millis(ms))),
            ),
            human(Duration::from_millis(self.ttl_left_ms)),
            if self.alive { "alive" } else { "STALE" }.to_owned(),
            opt(self.waiters),
        ]
    }
}

/// The lease table's header.
pub const LEASE_HEADER: [&str; 8] = [
    "RESOURCE", "ROLE", "HOLDER", "TOKEN", "ACQUIRED", "TTL-LEFT", "ALIVE", "WAITERS",
];

/// A live instance, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceRow {
    /// The instance id (the HOLDER column of a lease).
    pub instance: String,
    /// Its process id.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// When it first announced itself (RFC 3339, UTC).
    pub since: String,
    /// Time left on its presence lease, in milliseconds.
    pub ttl_left_ms: u64,
    /// What else it published.
    pub metadata: String,
}

impl InstanceRow {
    /// The row of `p`.
    pub fn of(p: &Presence) -> InstanceRow {
        InstanceRow {
            instance: p.instance.to_string(),
            pid: p.pid,
            host: p.host.clone(),
            since: rfc3339(p.since),
            ttl_left_ms: millis(p.expires_in),
            metadata: p.metadata.clone(),
        }
    }

    /// The table's cells.
    pub fn cells(&self) -> [String; 6] {
        [
            self.instance.clone(),
            self.pid.to_string(),
            self.host.clone(),
            self.since.clone(),
            human(Duration::from_millis(self.ttl_left_ms)),
            self.metadata.clone(),
        ]
    }
}

/// The instance table's header.
pub const INSTANCE_HEADER: [&str; 6] = ["INSTANCE", "PID", "HOST", "SINCE", "TTL-LEFT", "METADATA"];

/// A work queue's counts, as printed (and as the dashboard serves them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueRow {
    /// The queue's name.
    pub name: String,
    /// Items ready to be delivered.
    pub ready: u64,
    /// Items delayed (due later).
    pub delayed: u64,
    /// Items delivered and not settled.
    pub in_flight: u64,
    /// Dead items kept.
    pub dead: u64,
    /// The instance of each live consumer (one entry per consumer).
    pub consumers: Vec<String>,
    /// Deliveries made so far.
    pub delivered: u64,
    /// Deliveries of an item started before.
    pub redelivered: u64,
    /// Deliveries taken from a live consumer's prefetch.
    pub stolen: u64,
    /// Items moved to dead so far.
    pub dead_lettered: u64,
}

impl QueueRow {
    /// The row of queue `name`'s `stats`.
    pub fn of(name: &str, s: &QueueStats) -> QueueRow {
        QueueRow {
            name: name.to_owned(),
            ready: s.ready,
            delayed: s.delayed,
            in_flight: s.in_flight,
            dead: s.dead,
            consumers: s.consumers.iter().map(ToString::to_string).collect(),
            delivered: s.delivered,
            redelivered: s.redelivered,
            stolen: s.stolen,
            dead_lettered: s.dead_lettered,
        }
    }

    /// The table's cells (consumers counted; `--json` names them).
    pub fn cells(&self) -> [String; 10] {
        [
            self.name.clone(),
            self.ready.to_string(),
            self.delayed.to_string(),
            self.in_flight.to_string(),
            self.dead.to_string(),
            self.consumers.len().to_string(),
            self.delivered.to_string(),
            self.redelivered.to_string(),
            self.stolen.to_string(),
            self.dead_lettered.to_string(),
        ]
    }
}

/// The queue table's header.
pub const QUEUE_HEADER: [&str; 10] = [
    "QUEUE",
    "READY",
    "DELAYED",
    "IN-FLIGHT",
    "DEAD",
    "CONSUMERS",
    "DELIVERED",
    "REDELIVERED",
    "STOLEN",
    "DEAD-LETTERED",
];

/// A circuit breaker's record, as printed (and as the dashboard serves
/// it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerRow {
    /// The breaker's name.
    pub name: String,
    /// `Closed`, `Open`, `HalfOpen`, or a manual phase.
    pub phase: String,
    /// The current generation (it counts transitions).
    pub generation: u64,
    /// While open: the time until it lets trials through.
    pub retry_after: Option<String>,
    /// Calls in the window (closed only).
    pub calls: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Of those, slow calls.
    pub slow: u64,
    /// Live trials (half-open).
    pub trials_live: u32,
    /// Opens since it last closed.
    pub opens: u32,
    /// The last manual action, if any.
    pub manual: Option<String>,
    /// The policy in force.
    pub policy: PolicyRow,
}

/// A breaker's policy, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRow {
    /// `last 20 calls` or `last 1m00s`.
    pub window: String,
    /// The failure rate that opens it (`50%`).
    pub failure_rate: Option<String>,
    /// The slow-call rate that opens it, if any.
    pub slow_rate: Option<String>,
    /// The fewest calls in the window before it decides.
    pub minimum_calls: u32,
    /// How long it stays open first.
    pub open_for: String,
    /// The longest it stays open (after opening again and again).
    pub max_open_for: String,
    /// Trial calls let through when half-open.
    pub trials: u32,
    /// Instances whose reports it needs to open.
    pub quorum: u32,
}

impl BreakerRow {
    /// The row of breaker `name`'s state `s`.
    pub fn of(name: &str, s: &BreakerState) -> BreakerRow {
        BreakerRow {
            name: name.to_owned(),
            phase: format!("{:?}", s.phase),
            generation: s.generation,
            retry_after: s.retry_after.map(human),
            calls: s.window.calls,
            failures: s.window.failures,
            slow: s.window.slow,
            trials_live: s.trials_live,
            opens: s.opens,
            manual: s.manual.as_ref().map(|m| format!("{m:?}")),
            policy: PolicyRow::of(&s.policy),
        }
    }

    /// The table's cells (the policy: `--json`).
    pub fn cells(&self) -> [String; 9] {
        [
            self.name.clone(),
            self.phase.clone(),
            self.generation.to_string(),
            opt(self.retry_after.clone()),
            format!("{}/{}/{}", self.calls, self.failures, self.slow),
            self.trials_live.to_string(),
            self.opens.to_string(),
            format!(
                "{} of {}",
                opt(self.policy.failure_rate.clone()),
                self.policy.window
            ),
            opt(self.manual.clone()),
        ]
    }
}

/// The breaker table's header.
pub const BREAKER_HEADER: [&str; 9] = [
    "BREAKER",
    "PHASE",
    "GENERATION",
    "RETRY-AFTER",
    "CALLS/FAILED/SLOW",
    "TRIALS",
    "OPENS",
    "OPENS-AT",
    "MANUAL",
];

impl PolicyRow {
    fn of(p: &Policy) -> PolicyRow {
        let percent = |bp: u16| (bp <= 10_000).then(|| format!("{}%", f64::from(bp) / 100.0));
        PolicyRow {
            window: match p.window {
                WindowKind::Count { calls } => format!("last {calls} calls"),
                WindowKind::Time { span } => format!("last {}", human(span)),
            },
            failure_rate: percent(p.failure_rate_bp),
            slow_rate: p.slow_rate_bp.and_then(percent),
            minimum_calls: p.minimum_calls,
            open_for: human(p.open_for),
            max_open_for: human(p.max_open_for),
            trials: p.trials,
            quorum: p.quorum,
        }
    }
}

/// An audit record, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// When (RFC 3339, UTC, the backend's clock).
    pub at: String,
    /// Who, as they named themselves.
    pub operator: String,
    /// The instance that made the call.
    pub instance: String,
    /// What was done (`force-release`).
    pub action: String,
    /// To what.
    pub resource: String,
    /// The token aimed at.
    pub token: u64,
    /// Why.
    pub reason: String,
    /// What came of it.
    pub outcome: String,
}

impl AuditRow {
    /// The row of `r`.
    pub fn of(r: &AuditRecord) -> AuditRow {
        AuditRow {
            at: rfc3339(r.at),
            operator: r.operator.clone(),
            instance: r.instance.to_string(),
            action: r.action.clone(),
            resource: r.resource.to_string(),
            token: r.token.get(),
            reason: r.reason.clone(),
            outcome: r.outcome.clone(),
        }
    }

    /// The table's cells (the reason last: it is the longest).
    pub fn cells(&self) -> [String; 7] {
        [
            self.at.clone(),
            self.operator.clone(),
            self.action.clone(),
            self.resource.clone(),
            self.token.to_string(),
            self.outcome.clone(),
            self.reason.clone(),
        ]
    }
}

/// The audit table's header.
pub const AUDIT_HEADER: [&str; 7] = [
    "AT", "OPERATOR", "ACTION", "RESOURCE", "TOKEN", "OUTCOME", "REASON",
];

/// A health report, as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthRow {
    /// `ready`, `degraded` or `unavailable`.
    pub status: String,
    /// Each check.
    pub checks: Vec<CheckRow>,
}

/// One check of a [`HealthRow`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRow {
    /// `round_trip`, `scripts`, `writable`, `server`, `renewal_lag`,
    /// `clock_offset`.
    pub name: String,
    /// Its status.
    pub status: String,
    /// What it measured, in milliseconds (fractional).
    pub value_ms: Option<f64>,
    /// One line for a human.
    pub detail: String,
}

impl HealthRow {
    /// The row of `h`.
    pub fn of(h: &Health) -> HealthRow {
        HealthRow {
            status: h.status.to_string(),
            checks: h.checks.iter().map(CheckRow::of).collect(),
        }
    }

    /// The report of a backend that did not answer: `round_trip`
    /// unavailable, as `Operations::health` reports a failed probe.
    pub fn unavailable(detail: String) -> HealthRow {
        let status = coord::Status::Unavailable.to_string();
        HealthRow {
            status: status.clone(),
            checks: vec![CheckRow {
                name: "round_trip".to_owned(),
                status,
                value_ms: None,
                detail,
            }],
        }
    }
}

impl CheckRow {
    fn of(c: &Check) -> CheckRow {
        let mut detail = c.detail.clone();
        // The check reads the renewals of the client that asks, and
        // coordctl's holds nothing: it says nothing of the applications'.
        if c.name == "renewal_lag" && c.value.is_none() {
            detail = format!(
                "{detail} (coordctl's own renewals: it holds no lease; an application's \
                 health reports its own)"
            );
        }
        CheckRow {
            name: c.name.to_owned(),
            status: c.status.to_string(),
            value_ms: c.value.map(|v| v.as_secs_f64() * 1_000.0),
            detail,
        }
    }

    /// The table's cells.
    pub fn cells(&self) -> [String; 4] {
        [
            self.name.clone(),
            self.status.clone(),
            self.value_ms.map_or_else(
                || "-".to_owned(),
                |ms| human(Duration::from_secs_f64(ms / 1_000.0)),
            ),
            self.detail.clone(),
        ]
    }
}

/// The health table's header.
pub const CHECK_HEADER: [&str; 4] = ["CHECK", "STATUS", "VALUE", "DETAIL"];

/// A table printed a page at a time: columns are as wide as the widest
/// cell seen so far (they only widen, so a later page may be wider than an
/// earlier one, never narrower); the header is printed before the first
/// page. Two spaces between columns; the last is not padded.
#[derive(Debug)]
pub struct Table<const N: usize> {
    header: [&'static str; N],
    widths: [usize; N],
    started: bool,
}

impl<const N: usize> Table<N> {
    /// A table with `header`.
    pub fn new(header: [&'static str; N]) -> Table<N> {
        Table {
            header,
            widths: header.map(width),
            started: false,
        }
    }

    /// Writes `rows` (and the header, before the first page).
    pub fn page(&mut self, out: &mut dyn Write, rows: &[[String; N]]) -> io::Result<()> {
        for row in rows {
            for (w, cell) in self.widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        if !self.started {
            self.started = true;
            self.line(out, &self.header.map(str::to_owned))?;
        }
        for row in rows {
            self.line(out, row)?;
        }
        Ok(())
    }

    /// Writes the header if no page was written (an empty listing still
    /// shows its columns).
    pub fn finish(&mut self, out: &mut dyn Write) -> io::Result<()> {
        self.page(out, &[])
    }

    fn line(&self, out: &mut dyn Write, cells: &[String; N]) -> io::Result<()> {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(self.widths).enumerate() {
            let cell = one_line(cell);
            line.push_str(&cell);
            if i + 1 < N {
                line.extend(std::iter::repeat_n(' ', w - width(&cell) + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())
    }
}

/// A listing written as it is read: an aligned table, or (`--json`) one
/// JSON array streamed element by element (one document, bounded memory).
#[derive(Debug)]
pub enum Listing<const N: usize> {
    /// A table for humans.
    Table(Table<N>),
    /// A JSON array; whether an element was written yet.
    Json(bool),
}

impl<const N: usize> Listing<N> {
    /// A JSON array when `json`, else a table with `header`.
    pub fn new(json: bool, header: [&'static str; N]) -> Listing<N> {
        match json {
            true => Listing::Json(false),
            false => Listing::Table(Table::new(header)),
        }
    }

    /// Writes `rows` (each a table line of `cells`, or a JSON element).
    pub fn page<R: Serialize>(
        &mut self,
        out: &mut dyn Write,
        rows: &[R],
        cells: impl Fn(&R) -> [String; N],
    ) -> Result<(), crate::exit::Fail> {
        match self {
            Listing::Table(t) => t.page(out, &rows.iter().map(cells).collect::<Vec<_>>())?,
            Listing::Json(started) => {
                for row in rows {
                    out.write_all(if *started { b",\n" } else { b"[\n" })?;
                    *started = true;
                    serde_json::to_writer(&mut *out, row)?;
                }
            }
        }
        out.flush()?;
        Ok(())
    }

    /// Ends the listing (a table's header if it had no row; the array's
    /// closing bracket).
    pub fn finish(&mut self, out: &mut dyn Write) -> Result<(), crate::exit::Fail> {
        match self {
            Listing::Table(t) => t.finish(out)?,
            Listing::Json(true) => out.write_all(b"\n]\n")?,
            Listing::Json(false) => out.write_all(b"[]\n")?,
        }
        out.flush()?;
        Ok(())
    }
}

/// A cell's width in characters.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` with its control characters (newlines, tabs, escapes) shown as
/// `?`: a holder's metadata or a reason cannot break a table or drive the
/// terminal.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration for humans, at most two units: `850ms`, `12.3s`, `4m05s`,
/// `3h12m`, `2d04h`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3_600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3_600..86_400 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// `t` in RFC 3339, UTC, to the millisecond (`2026-12-02T18:37:02.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(s * 1_000 + ms);
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_798_221_599, 999)), "2026-12-25T17:59:59.999Z");
        assert_eq!(rfc3339(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn durations_keep_two_units() {
        let h = |ms: u64| human(Duration::from_millis(ms));
        assert_eq!(h(850), "850ms");
        assert_eq!(h(12_340), "12.3s");
        assert_eq!(h(245_000), "4m05s");
        assert_eq!(h(11_520_000), "3h12m");
        assert_eq!(h(187_200_000), "2d04h");
    }

    #[test]
    fn tables_align_and_only_widen() {
        let mut t = Table::new(["A", "BB", "C"]);
        let mut out = Vec::new();
        let row = |a: &str, b: &str, c: &str| [a.to_owned(), b.to_owned(), c.to_owned()];
        t.page(&mut out, &[row("xyz", "1", "last"), row("q", "22", "")])
            .unwrap();
        t.page(&mut out, &[row("a", "333", "z\nz")]).unwrap();
        t.finish(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text, "A    BB  C\nxyz  1   last\nq    22\na    333  z?z\n",
            "{text}"
        );
    }

    #[test]
    fn an_empty_table_still_has_its_header() {
        let mut t = Table::new(LEASE_HEADER);
        let mut out = Vec::new();
        t.finish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "RESOURCE  ROLE  HOLDER  TOKEN  ACQUIRED  TTL-LEFT  ALIVE  WAITERS\n"
        );
    }
}
