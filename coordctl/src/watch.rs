//! `watch`: a live view of lease changes, by polling the listing.
//!
//! Each poll walks the listing (page by page) into a map of the leases it
//! saw, and compares it with the previous poll's: a lease is the same
//! lease while its resource, role and holder are (a re-grant to another
//! holder is one lease gone and one appeared). Polling rather than the
//! families' watch APIs: one listing covers every family, and a lease that
//! expires (a crashed holder) sends no notification anywhere. Memory
//! holds the leases of the last poll.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    io::Write,
    time::Duration,
};

use coord_api::{BackendClock, Operations};
use serde::Serialize;

use crate::{
    exit::Fail,
    render::{LeaseRow, human, one_line, rfc3339},
    selection::Selection,
};

/// A lease's identity across polls: resource, role, holder.
pub type Id = (String, String, String);

/// What happened to a lease between two polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When the poll that saw it began (RFC 3339, UTC, the backend's
    /// clock).
    pub at: String,
    /// `appeared`, `gone` or `changed`.
    pub event: &'static str,
    /// The lease as last seen (for `gone`, as the previous poll saw it).
    pub lease: LeaseRow,
    /// For `changed`: the lease as the previous poll saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<LeaseRow>,
}

impl Event {
    /// One line for a human: `+` appeared, `-` gone, `~` changed.
    pub fn line(&self) -> String {
        let l = &self.lease;
        let token = l.token.map_or_else(|| "-".to_owned(), |t| t.to_string());
        let alive = |alive| if alive { "alive" } else { "STALE" };
        let head = |sign| format!("{} {sign} {} {}", self.at, l.resource, l.role);
        let line = match (self.event, &self.before) {
            ("changed", Some(b)) => {
                let mut what = Vec::new();
                if b.token != l.token {
                    let before = b.token.map_or_else(|| "-".to_owned(), |t| t.to_string());
                    what.push(format!("token {before}->{token}"));
                }
                if b.holds != l.holds {
                    what.push(format!("holds {}->{}", b.holds, l.holds));
                }
                if b.alive != l.alive {
                    what.push(format!("{}->{}", alive(b.alive), alive(l.alive)));
                }
                if b.waiters != l.waiters {
                    let w = |w: Option<u32>| w.map_or_else(|| "-".to_owned(), |w| w.to_string());
                    what.push(format!("waiters {}->{}", w(b.waiters), w(l.waiters)));
                }
                format!("{} holder={}: {}", head('~'), l.instance, what.join(", "))
            }
            (event, _) => format!(
                "{} holder={} token={token}{} ttl-left={} {}",
                head(if event == "gone" { '-' } else { '+' }),
                l.instance,
                if l.holds > 1 {
                    format!(" holds={}", l.holds)
                } else {
                    String::new()
                },
                human(Duration::from_millis(l.ttl_left_ms)),
                alive(l.alive),
            ),
        };
        one_line(&line)
    }
}

/// The changes from `before` to `now`, in resource order: gone and
/// changed leases, then appeared ones, each in the order of their ids.
pub fn diff(before: &BTreeMap<Id, LeaseRow>, now: &BTreeMap<Id, LeaseRow>, at: &str) -> Vec<Event> {
    let event = |event, lease: &LeaseRow, before: Option<&LeaseRow>| Event {
        at: at.to_owned(),
        event,
        lease: lease.clone(),
        before: before.cloned(),
    };
    let mut events = Vec::new();
    for (id, old) in before {
        match now.get(id) {
            None => events.push(event("gone", old, None)),
            Some(new) if new.changed(old) => events.push(event("changed", new, Some(old))),
            Some(_) => {}
        }
    }
    for (id, new) in now {
        if !before.contains_key(id) {
            events.push(event("appeared", new, None));
        }
    }
    events
}

/// What one poll saw.
#[derive(Debug, Clone)]
pub struct Polled {
    /// Every lease kept, by id.
    pub leases: BTreeMap<Id, LeaseRow>,
    /// Whether there were more than the poll kept.
    pub more: bool,
    /// When the poll began, on the backend's clock (RFC 3339, UTC), as
    /// the leases' grant instants are: the events it finds are dated so,
    /// never on this machine's wall clock.
    pub at: String,
    /// The backend's clock, as the poll read it.
    pub clock: BackendClock,
}

/// One poll: every lease `selection` keeps, by id, up to `max` of them
/// (and whether there were more), their ages on the backend's clock (read
/// at each poll).
pub async fn poll(ops: &Operations, selection: &Selection, max: usize) -> Result<Polled, Fail> {
    let clock = ops.backend_clock().await?;
    let at = rfc3339(clock.now());
    let mut walk = ops.walk(selection.filter.clone());
    let mut leases = BTreeMap::new();
    let mut more = false;
    'walk: while let Some(page) = walk.next_page().await? {
        for lease in page.iter().filter(|l| selection.keeps(l)) {
            if leases.len() == max {
                more = true;
                break 'walk;
            }
            let row = LeaseRow::of(lease, &clock);
            let (r, role, h) = row.identity();
            let id = (r.to_owned(), role.to_owned(), h.to_owned());
            if let Entry::Vacant(v) = leases.entry(id) {
                v.insert(row);
            }
        }
    }
    Ok(Polled {
        leases,
        more,
        at,
        clock,
    })
}

/// Polls every `interval` and prints the changes, until interrupted or
/// after `polls` polls. The first poll failing is an error; a later one
/// is reported on stderr and the next poll tries again.
pub async fn watch(
    ops: &Operations,
    selection: Selection,
    interval: Duration,
    polls: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let mut known = BTreeMap::new();
    let mut done = 0u64;
    loop {
        match poll(ops, &selection, usize::MAX).await {
            Ok(Polled {
                leases: now, at, ..
            }) => {
                for e in diff(&known, &now, &at) {
                    if json {
                        serde_json::to_writer(&mut *out, &e)?;
                        writeln!(out)?;
                    } else {
                        writeln!(out, "{}", e.line())?;
                    }
                }
                out.flush()?;
                known = now;
            }
            Err(fail) if done == 0 => return Err(fail),
            Err(fail) => {
                let why = fail.message.unwrap_or_default();
                eprintln!(
                    "coordctl: watch: a poll failed, polling again: {}",
                    one_line(&why)
                );
            }
        }
        done += 1;
        if polls.is_some_and(|p| done >= p) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(resource: &str, holder: &str, token: u64, alive: bool) -> LeaseRow {
        LeaseRow {
            resource: resource.to_owned(),
            kind: "lock".to_owned(),
            role: "exclusive".to_owned(),
            holds: 1,
            holder: format!("{holder}#{:032x}", token),
            instance: holder.to_owned(),
            token: Some(token),
            acquired_at: None,
            age_ms: None,
            ttl_left_ms: 5_000,
            alive,
            waiters: None,
        }
    }

    fn map(rows: &[LeaseRow]) -> BTreeMap<Id, LeaseRow> {
        rows.iter()
            .map(|r| {
                let (a, b, c) = r.identity();
                ((a.to_owned(), b.to_owned(), c.to_owned()), r.clone())
            })
            .collect()
    }

    #[test]
    fn diff_reports_appeared_gone_and_changed() {
        let a = row("lock:a", "web-1", 10, true);
        let b = row("lock:b", "web-2", 20, true);
        let first = diff(&BTreeMap::new(), &map(&[a.clone(), b.clone()]), "t0");
        assert_eq!(
            first
                .iter()
                .map(|e| (e.event, e.lease.resource.as_str()))
                .collect::<Vec<_>>(),
            [("appeared", "lock:a"), ("appeared", "lock:b")]
        );
        // a's holder died; b was re-granted to web-3; ttl ticking is no change.
        let mut a2 = a.clone();
        (a2.alive, a2.ttl_left_ms) = (false, 1_000);
        let b2 = row("lock:b", "web-3", 21, true);
        let events = diff(&map(&[a.clone(), b.clone()]), &map(&[a2.clone(), b2]), "t1");
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.event, e.lease.instance.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("changed", "web-1"),
                ("gone", "web-2"),
                ("appeared", "web-3")
            ]
        );
        assert_eq!(events[0].before.as_ref(), Some(&a));
        assert!(
            events[0].line().contains("alive->STALE"),
            "{}",
            events[0].line()
        );
        assert!(
            events[1]
                .line()
                .starts_with("t1 - lock:b exclusive holder=web-2 token=20 ")
        );
        assert!(
            events[2]
                .line()
                .starts_with("t1 + lock:b exclusive holder=web-3 token=21 ")
        );
        let mut a3 = a2.clone();
        a3.ttl_left_ms = 10;
        assert!(diff(&map(&[a2]), &map(&[a3]), "t2").is_empty());
    }

    #[test]
    fn events_are_one_line_of_json() {
        let e = Event {
            at: "t".to_owned(),
            event: "appeared",
            lease: row("lock:a\nb", "web-1", 10, true),
            before: None,
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"], "appeared");
        assert_eq!(v["lease"]["token"], 10);
        assert!(v.get("before").is_none());
        assert!(!e.line().contains('\n'));
    }
}
