//! Orphaned grants: leases the server granted whose grant never reached a
//! client (its reply was lost or came too late, or the call was cancelled).
//! No guard knows of such a lease, so nothing renews or releases it but the
//! client's clean-up of unanswered acquisitions; without that clean-up it
//! blocks its key (a lock, an election, an occurrence) for a whole TTL.
//!
//! [`orphans`] finds them in the server's log, given what clients received;
//! [`OrphanRule::check`] says each is gone within a bound of the heal.

use std::{collections::HashSet, fmt, time::Duration};

use coord_api::{HolderId, Instant};

use super::{ServerEvent, Violation};

/// How an orphaned lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Its holder released it (the client's clean-up).
    Released,
    /// The server granted its key to another holder (so it was gone).
    Superseded,
    /// The server restarted and lost it.
    Restart,
    /// Nothing ended it: it expired at its TTL.
    Expired,
}

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gone::Released => "released",
            Gone::Superseded => "granted to another holder",
            Gone::Restart => "lost in a server restart",
            Gone::Expired => "expired",
        })
    }
}

/// A lease the server granted whose token no client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The key, as the server log names it.
    pub key: String,
    /// The holder it was granted to.
    pub holder: HolderId,
    /// Its token.
    pub token: u64,
    /// When the server granted it (global time).
    pub granted: Instant,
    /// When it would have expired, left alone.
    pub expires: Instant,
    /// When it was gone: released, superseded, lost in a restart, or
    /// expired (then `gone == expires`).
    pub gone: Instant,
    /// How.
    pub how: Gone,
}

/// The server's grants (`log`, in its order) whose `(key, token)` no client
/// received (`known`: the tokens that reached a client, per key as the log
/// names it), each with when it was gone: its holder's release, the next
/// grant of its key to another holder, or a server restart, whichever comes
/// first; else its expiry, `expiry` after the grant (the TTL in global time:
/// the server's clock decides).
pub fn orphans(
    log: &[ServerEvent],
    known: &HashSet<(String, u64)>,
    expiry: Duration,
) -> Vec<Orphan> {
    let mut out = Vec::new();
    for (i, e) in log.iter().enumerate() {
        let ServerEvent::Grant {
            key,
            holder,
            token,
            at,
        } = e
        else {
            continue;
        };
        if known.contains(&(key.clone(), *token)) {
            continue;
        }
        let expires = *at + expiry;
        let ended = log[i + 1..].iter().find_map(|later| match later {
            ServerEvent::Release {
                key: k,
                holder: h,
                released: true,
                at,
            } if k == key && h == holder => Some((*at, Gone::Released)),
            ServerEvent::Grant {
                key: k,
                holder: h,
                at,
                ..
            } if k == key && h != holder => Some((*at, Gone::Superseded)),
            ServerEvent::Restart { at } => Some((*at, Gone::Restart)),
            _ => None,
        });
        let (gone, how) = match ended {
            Some((end, how)) if end < expires => (end, how),
            _ => (expires, Gone::Expired),
        };
        out.push(Orphan {
            key: key.clone(),
            holder: holder.clone(),
            token: *token,
            granted: *at,
            expires,
            gone,
            how,
        });
    }
    out
}

/// Once the faults heal at `heal`, every orphan is gone within `bound`:
/// `gone ≤ max(granted, heal) + bound`.
///
/// Except the orphans of a process killed between `in_flight` before the
/// grant (the longest a request can travel before the server applies it)
/// and the orphan's end: a dead process cleans nothing up, so its orphans
/// expire at their TTL, like a leaked guard's lease. (A process restarted
/// under the same name within `in_flight` of the kill is exempted with it:
/// the rule may miss such an orphan, never report a false one.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanRule {
    /// When the faults healed.
    pub heal: Instant,
    /// How long after the later of the grant and the heal an orphan may
    /// last.
    pub bound: Duration,
    /// How long a request may travel before the server applies it.
    pub in_flight: Duration,
}

impl OrphanRule {
    /// The latest instant `o` may be gone.
    pub fn deadline(&self, o: &Orphan) -> Instant {
        o.granted.max(self.heal) + self.bound
    }

    /// Whether the rule leaves `o` alone: its client (the holder's
    /// instance) was killed (`kills`: instance and instant) while `o` may
    /// have been in flight or was alive.
    pub fn exempt(&self, o: &Orphan, kills: &[(String, Instant)]) -> bool {
        let from = o.granted.checked_sub(self.in_flight).unwrap_or(o.granted);
        kills.iter().any(|(who, at)| {
            who.as_str() == o.holder.instance().as_str() && from <= *at && *at < o.gone
        })
    }

    /// Whether `o` is one the clean-up must end for the rule to hold: left
    /// to expire it would outlive its deadline (it was granted less than
    /// its TTL minus `bound` before the heal, or after), and it is not
    /// exempt.
    pub fn constrains(&self, o: &Orphan, kills: &[(String, Instant)]) -> bool {
        o.expires > self.deadline(o) && !self.exempt(o, kills)
    }

    /// The checker: every orphan not exempt is gone by its deadline.
    pub fn check(&self, orphans: &[Orphan], kills: &[(String, Instant)]) -> Vec<Violation> {
        let rel = |t: Instant| {
            if t >= self.heal {
                format!("heal+{:.3}s", (t - self.heal).as_secs_f64())
            } else {
                format!("heal-{:.3}s", (self.heal - t).as_secs_f64())
            }
        };
        orphans
            .iter()
            .filter(|o| o.gone > self.deadline(o) && !self.exempt(o, kills))
            .map(|o| {
                Violation::new(
                    "orphans",
                    format!(
                        "{} (token {}) was granted to {} at {}, a grant no client received; it was {} only at {}, {:?} after the bound ({:?} after the later of the grant and the heal)",
                        o.key,
                        o.token,
                        o.holder,
                        rel(o.granted),
                        o.how,
                        rel(o.gone),
                        o.gone - self.deadline(o),
                        self.bound
                    ),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{holder, t};

    fn grant_on(key: &str, who: &str, token: u64, at: u64) -> ServerEvent {
        ServerEvent::Grant {
            key: key.into(),
            holder: holder(who),
            token,
            at: t(at),
        }
    }

    fn release_on(key: &str, who: &str, at: u64) -> ServerEvent {
        ServerEvent::Release {
            key: key.into(),
            holder: holder(who),
            released: true,
            at: t(at),
        }
    }

    fn grant(who: &str, token: u64, at: u64) -> ServerEvent {
        grant_on("k", who, token, at)
    }

    fn release(who: &str, at: u64) -> ServerEvent {
        release_on("k", who, at)
    }

    const TTL: Duration = Duration::from_millis(1_000);

    #[test]
    fn orphans_are_the_grants_nobody_received_and_end_first_of_four_ways() {
        let log = [
            grant("a", 1, 0),
            release("a", 10),
            grant("b", 2, 20), // orphan: released at 50
            release("b", 50),
            grant("c", 3, 60), // orphan: superseded at 1_000
            grant("d", 4, 1_000),
            release("d", 1_010),
            grant("e", 5, 1_100), // orphan: lost in the restart at 1_500
            ServerEvent::Restart { at: t(1_500) },
            grant("f", 6, 2_000), // orphan: expires at 3_000
            release("f", 3_500),  // too late to count
        ];
        let known = HashSet::from([("k".to_owned(), 1), ("k".to_owned(), 4)]);
        let o = orphans(&log, &known, TTL);
        let got: Vec<_> = o.iter().map(|o| (o.token, o.how, o.gone)).collect();
        assert_eq!(
            got,
            [
                (2, Gone::Released, t(50)),
                (3, Gone::Superseded, t(1_000)),
                (5, Gone::Restart, t(1_500)),
                (6, Gone::Expired, t(3_000)),
            ]
        );
    }

    #[test]
    fn the_rule_bounds_orphans_from_the_later_of_grant_and_heal() {
        let rule = OrphanRule {
            heal: t(10_000),
            bound: Duration::from_millis(200),
            in_flight: Duration::from_millis(500),
        };
        // One key each, so that no grant supersedes another.
        let log = [
            grant_on("a", "a", 1, 5_000), // expires long before the heal
            grant_on("b", "b", 2, 9_500), // expires at heal + 500 ms: too late
            grant_on("c", "c", 3, 9_900), // released at heal + 150 ms: in time
            release_on("c", "c", 10_150),
            grant_on("d", "d", 4, 10_500), // released 250 ms after its grant: too late
            release_on("d", "d", 10_750),
        ];
        let o = orphans(&log, &HashSet::new(), TTL);
        let v: Vec<_> = rule.check(&o, &[]).into_iter().map(|v| v.detail).collect();
        assert_eq!(v.len(), 2, "{v:#?}");
        assert!(
            v[0].starts_with("b (token 2)") && v[0].contains("expired"),
            "{v:#?}"
        );
        assert!(
            v[1].starts_with("d (token 4)") && v[1].contains("released"),
            "{v:#?}"
        );
        let constrained: Vec<_> = o
            .iter()
            .filter(|o| rule.constrains(o, &[]))
            .map(|o| o.token)
            .collect();
        assert_eq!(constrained, [2, 3, 4]);
        // A client killed after sending (or while its orphan lived) cleans
        // nothing up: its orphans expire at their TTL.
        let kills = [("b".to_owned(), t(9_200)), ("d".to_owned(), t(9_000))];
        let v = rule.check(&o, &kills);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.starts_with("d (token 4)"), "{v:?}");
    }
}
