//! Health: one probe of the backend and what the client knows of its own
//! renewals, summed up as Ready, Degraded or Unavailable.
//!
//! Wire [`Status::Unavailable`] to a readiness probe (stop sending work to
//! an instance that cannot coordinate), never to a liveness probe: a
//! restarted process does not bring the backend back, and restarting every
//! replica at once during a backend outage turns it into a full outage.

use std::{fmt, time::Duration};

use super::Operations;

/// How usable the backend is from this client, worst check first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Every check passed.
    Ready,
    /// Usable, but a check is near its limit (slow round trips, late
    /// renewals, a skewed clock): leases may be lost sooner than expected.
    Degraded,
    /// The backend did not answer: nothing can be coordinated from here.
    Unavailable,
}

impl Status {
    /// `ready`, `degraded` or `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Degraded => "degraded",
            Status::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of a [`Health`] report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Check {
    /// `round_trip`, `scripts`, `server` (what the backend says it runs
    /// on: always Ready), `renewal_lag` or `clock_offset`.
    pub name: &'static str,
    /// What it found.
    pub status: Status,
    /// The figure it measured, when it measured one.
    pub value: Option<Duration>,
    /// One line for a human.
    pub detail: String,
}

/// A health report: the worst status of its checks, and the checks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// The worst of the checks.
    pub status: Status,
    /// Each check.
    pub checks: Vec<Check>,
}

impl Health {
    fn of(checks: Vec<Check>) -> Health {
        let status = (checks.iter().map(|c| c.status).max()).unwrap_or(Status::Ready);
        Health { status, checks }
    }
}

/// A round trip slower than this is Degraded.
pub(crate) const SLOW_ROUND_TRIP: Duration = Duration::from_millis(250);
/// A renewal later than this share of its TTL is Degraded (the lease
/// engine renews at a third of the TTL: past half, one more slow renewal
/// loses the lease).
pub(crate) const LATE_RENEWAL: f64 = 0.5;
/// A clock further than this from the backend's is Degraded (local
/// validity allows for drift, not for offsets this large).
pub(crate) const CLOCK_OFFSET: Duration = Duration::from_millis(500);

fn check(name: &'static str, status: Status, value: Option<Duration>, detail: String) -> Check {
    Check {
        name,
        status,
        value,
        detail,
    }
}

/// Probes `ops`'s backend once and reads the client's renewal lag.
pub(crate) async fn check_health(ops: &Operations) -> Health {
    let client = ops.client();
    let clock = client.clock().clone();
    let backend = match ops.backend() {
        Ok(b) => b,
        Err(e) => {
            return Health::of(vec![check(
                "round_trip",
                Status::Unavailable,
                None,
                e.to_string(),
            )]);
        }
    };
    let (sent, wall_sent) = (clock.now(), clock.wall());
    let probe = ops.traced("probe", backend.probe()).await;
    let rtt = clock.now().saturating_duration_since(sent);
    let probe = match probe {
        Ok(p) => p,
        Err(e) => {
            return Health::of(vec![check(
                "round_trip",
                Status::Unavailable,
                Some(rtt),
                format!("the backend did not answer: {e}"),
            )]);
        }
    };
    let mut checks = Vec::with_capacity(4);
    let slow = rtt > SLOW_ROUND_TRIP;
    checks.push(check(
        "round_trip",
        if slow {
            Status::Degraded
        } else {
            Status::Ready
        },
        Some(rtt),
        format!("{rtt:?} (degraded above {SLOW_ROUND_TRIP:?})"),
    ));
    if let Some(ready) = probe.ready {
        checks.push(check(
            "scripts",
            if ready {
                Status::Ready
            } else {
                Status::Degraded
            },
            None,
            if ready {
                "loaded".to_owned()
            } else {
                "not loaded yet: the next calls load them".to_owned()
            },
        ));
    }
    match probe.writable {
        None => {}
        Some(Ok(())) => checks.push(check(
            "writable",
            Status::Ready,
            None,
            "the server accepts writes".to_owned(),
        )),
        // Every coordination call writes: none can succeed.
        Some(Err(reason)) => checks.push(check(
            "writable",
            Status::Unavailable,
            None,
            format!("the server refuses writes: {reason}"),
        )),
    }
    if let Some(server) = probe.server {
        checks.push(check("server", Status::Ready, None, server));
    }
    checks.push(match client.renewals().worst_lag() {
        None => check(
            "renewal_lag",
            Status::Ready,
            None,
            "no renewal in the last minutes".to_owned(),
        ),
        Some(l) => check(
            "renewal_lag",
            if l.ratio() > LATE_RENEWAL {
                Status::Degraded
            } else {
                Status::Ready
            },
            Some(l.lag),
            format!(
                "worst renewal {:?} late on a {:?} lease ({:.0}% of its TTL; degraded above {:.0}%)",
                l.lag,
                l.ttl,
                l.ratio() * 100.0,
                LATE_RENEWAL * 100.0
            ),
        ),
    });
    // The server answered somewhere within the round trip: compare with
    // its middle, so the offset's error is at most half the round trip.
    let local_mid = wall_sent + rtt / 2;
    let (offset, ahead) = match probe.server_time.duration_since(local_mid) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    checks.push(check(
        "clock_offset",
        if offset > CLOCK_OFFSET + rtt / 2 {
            Status::Degraded
        } else {
            Status::Ready
        },
        Some(offset),
        format!(
            "the backend's clock is {offset:?} {} this one (±{:?}; degraded above {CLOCK_OFFSET:?})",
            if ahead { "ahead of" } else { "behind" },
            rtt / 2
        ),
    ));
    Health::of(checks)
}
