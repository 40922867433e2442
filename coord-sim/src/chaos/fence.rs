//! The fenced resource of a chaos run ([`FencedResource`], the one every
//! checker uses), served on loopback to holder processes, and the checker of
//! their hold periods.
//!
//! One line per message, holder → server (times are [`mono_ns`](super::mono_ns)):
//!
//! | line | meaning | answer |
//! |---|---|---|
//! | `hello <client> <key>` | first line: who this connection is, and the lock's key its writes go to | — |
//! | `grant <token> <sent_ns> <received_ns>` | a grant: the acquire call began at `sent`, the grant came back at `received` | — |
//! | `write <token> <seq> <checked_ns>` | a fenced write; `checked`: read just before `is_held()` answered true | `ok` or `stale` |
//! | `lost <token>` | the lease was signalled lost | — |
//! | `released <token> <0\|1>` | released; whether the backend said it was still held | — |
//! | `error <op> <retryable\|timeout\|other> <text>` | a call (`lock`, `release`) returned an error: retryable (`Unavailable`, `Unconfirmed`), a wait that ended ungranted, or anything else | — |

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::Instant;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

use super::mono_ns;
use crate::history::{FencedResource, GrantLog, ObservedGrant, Violation};

/// One lock period as its holder saw it: from the grant to its last write
/// made while `is_held()` said true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The holder.
    pub client: String,
    /// The grant's token.
    pub token: u64,
    /// When the acquire call began (ns, `CLOCK_MONOTONIC`).
    pub sent: u64,
    /// When the grant came back (ns).
    pub start: u64,
    /// The last instant it checked `is_held()` (true) before a write, if it
    /// wrote (ns).
    pub last: Option<u64>,
    /// Writes it offered.
    pub writes: u64,
    /// Of which the resource refused as stale.
    pub refused: u64,
}

/// Checker (c) on real processes, on lower bounds of what holders believed:
/// the periods `[start, last]` of two different grants never overlap, unless
/// the server restarted (lost its data) between the two grants — the one
/// case where the backend cannot keep two holders apart, and the reason for
/// fencing tokens. `restarts` are the instants (ns) the server was killed.
///
/// A period is a lower bound of the holder's belief: it began believing no
/// later than `start` and still believed at `last` (its `is_held()` was read
/// after `last` and said true). So an overlap is a real one: one holder wrote
/// believing it held the lock after another holder had been granted it.
pub fn check_holds(holds: &[Hold], restarts: &[u64]) -> Vec<Violation> {
    let mut periods: Vec<&Hold> = holds.iter().filter(|h| h.last.is_some()).collect();
    periods.sort_by_key(|h| h.start);
    let mut out = Vec::new();
    for (i, a) in periods.iter().enumerate() {
        let a_last = a.last.unwrap();
        for b in &periods[i + 1..] {
            if b.start >= a_last {
                break;
            }
            if a.client == b.client && a.token == b.token {
                continue;
            }
            // Both grants were made in (min sent, max start]: with no restart
            // in there, one server incarnation made both.
            let (lo, hi) = (a.sent.min(b.sent), a.start.max(b.start));
            if restarts.iter().any(|&r| lo < r && r <= hi) {
                continue;
            }
            out.push(Violation {
                checker: "exclusion",
                detail: format!(
                    "{} (token {}) was granted the lock {:.3} s before {} (token {}) last wrote believing it held it (no server restart in between)",
                    b.client,
                    b.token,
                    (a_last - b.start) as f64 / 1e9,
                    a.client,
                    a.token
                ),
            });
        }
    }
    out
}

/// Counters of a [`FenceServer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FenceStats {
    /// Grants reported.
    pub grants: u64,
    /// Writes the resource accepted.
    pub accepted: u64,
    /// Writes it refused for a stale token.
    pub refused: u64,
    /// Leases signalled lost.
    pub lost: u64,
    /// Releases reported.
    pub released: u64,
    /// Calls that returned a retryable error (`Unavailable`, `Unconfirmed`).
    pub retryable_errors: u64,
    /// Waits that ended ungranted (`Timeout`).
    pub timeouts: u64,
    /// Calls that returned any other error.
    pub other_errors: u64,
}

impl std::ops::Sub for FenceStats {
    type Output = FenceStats;

    /// The counts between two readings (`later - earlier`).
    fn sub(self, earlier: FenceStats) -> FenceStats {
        FenceStats {
            grants: self.grants - earlier.grants,
            accepted: self.accepted - earlier.accepted,
            refused: self.refused - earlier.refused,
            lost: self.lost - earlier.lost,
            released: self.released - earlier.released,
            retryable_errors: self.retryable_errors - earlier.retryable_errors,
            timeouts: self.timeouts - earlier.timeouts,
            other_errors: self.other_errors - earlier.other_errors,
        }
    }
}

#[derive(Default)]
struct State {
    holds: Vec<Hold>,
    index: HashMap<(String, u64), usize>,
    /// The latest grant not yet ended (lost or released), if any.
    current: Option<(String, u64)>,
    /// Grants, losses, releases and errors reported (writes: the resource
    /// counts).
    stats: FenceStats,
    /// Every error reported but waits that ended ungranted, in order.
    errors: Vec<String>,
}

struct Shared {
    resource: FencedResource,
    grants: GrantLog,
    state: Mutex<State>,
    /// Bumped with the `received` instant of every grant.
    last_grant: watch::Sender<u64>,
    /// `(Instant::now(), mono_ns())` read together: converts ns to instants.
    base: (Instant, u64),
}

impl Shared {
    fn instant(&self, ns: u64) -> Instant {
        let (i0, n0) = self.base;
        if ns >= n0 {
            i0 + Duration::from_nanos(ns - n0)
        } else {
            i0 - Duration::from_nanos(n0 - ns)
        }
    }
}

/// A [`FencedResource`] served on 127.0.0.1 to holder processes (see the
/// module docs for the protocol), recording their grants in a [`GrantLog`]
/// and their hold periods for [`check_holds`].
pub struct FenceServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FenceServer {
    /// Listens on a free loopback port.
    pub async fn start() -> io::Result<FenceServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            resource: FencedResource::new(),
            grants: GrantLog::new(),
            state: Mutex::new(State::default()),
            last_grant: watch::channel(0).0,
            base: (Instant::now(), mono_ns()),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, s.clone()));
            }
        });
        Ok(FenceServer {
            addr,
            shared,
            accept,
        })
    }

    /// Where holders connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The resource (accepted writes, refusals, checker (a)).
    pub fn resource(&self) -> &FencedResource {
        &self.shared.resource
    }

    /// The grants as the holders saw them (checker (b)).
    pub fn grants(&self) -> &GrantLog {
        &self.shared.grants
    }

    /// Every hold period so far (for [`check_holds`]).
    pub fn holds(&self) -> Vec<Hold> {
        self.shared.state.lock().unwrap().holds.clone()
    }

    /// The client that got the latest grant, while that lease has not been
    /// reported lost or released.
    pub fn current_holder(&self) -> Option<String> {
        let st = self.shared.state.lock().unwrap();
        st.current.as_ref().map(|(c, _)| c.clone())
    }

    /// Every error reported so far but waits that ended ungranted, in
    /// order (`<client> <op> <class>: <text>`).
    pub fn errors(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().errors.clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> FenceStats {
        let resource = &self.shared.resource;
        FenceStats {
            accepted: resource.accepted().len() as u64,
            refused: resource.rejected(),
            ..self.shared.state.lock().unwrap().stats
        }
    }

    /// Waits until a grant received after `after_ns` is reported, at most
    /// `within`; returns when it came back (ns).
    pub async fn grant_after(&self, after_ns: u64, within: Duration) -> Option<u64> {
        let mut rx = self.shared.last_grant.subscribe();
        let wait = rx.wait_for(|&t| t > after_ns);
        match tokio::time::timeout(within, wait).await {
            Ok(Ok(t)) => Some(*t),
            _ => None,
        }
    }

    /// Converts a [`mono_ns`] reading to an [`Instant`] of this process.
    pub fn instant(&self, ns: u64) -> Instant {
        self.shared.instant(ns)
    }
}

impl Drop for FenceServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl std::fmt::Debug for FenceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceServer")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish()
    }
}

async fn serve(conn: TcpStream, shared: Arc<Shared>) {
    let _ = conn.set_nodelay(true);
    let (r, mut w) = conn.into_split();
    let mut lines = BufReader::new(r).lines();
    let (mut client, mut key) = (String::from("?"), String::new());
    while let Ok(Some(line)) = lines.next_line().await {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        match f.first().copied() {
            Some("hello") => {
                client = f.get(1).unwrap_or(&"?").to_string();
                key = f.get(2).unwrap_or(&"").to_string();
            }
            Some("grant") => {
                let (token, sent, start) = (num(1), num(2), num(3));
                shared.grants.push(ObservedGrant {
                    client: client.clone(),
                    token,
                    sent: shared.instant(sent),
                    received: shared.instant(start),
                });
                let mut st = shared.state.lock().unwrap();
                st.stats.grants += 1;
                let idx = st.holds.len();
                st.holds.push(Hold {
                    client: client.clone(),
                    token,
                    sent,
                    start,
                    last: None,
                    writes: 0,
                    refused: 0,
                });
                st.index.insert((client.clone(), token), idx);
                st.current = Some((client.clone(), token));
                drop(st);
                shared.last_grant.send_modify(|t| *t = (*t).max(start));
            }
            Some("write") => {
                let (token, checked) = (num(1), num(3));
                let ok = shared.resource.write(&key, &client, token, Instant::now());
                {
                    let mut st = shared.state.lock().unwrap();
                    if let Some(&i) = st.index.get(&(client.clone(), token)) {
                        let h = &mut st.holds[i];
                        h.writes += 1;
                        h.refused += u64::from(!ok);
                        h.last = Some(h.last.map_or(checked, |l| l.max(checked)));
                    }
                }
                let reply: &[u8] = if ok { b"ok\n" } else { b"stale\n" };
                if w.write_all(reply).await.is_err() {
                    return;
                }
            }
            Some(ev @ ("lost" | "released")) => {
                let token = num(1);
                let mut st = shared.state.lock().unwrap();
                if ev == "lost" {
                    st.stats.lost += 1;
                } else {
                    st.stats.released += 1;
                }
                if st.current.as_ref() == Some(&(client.clone(), token)) {
                    st.current = None;
                }
            }
            Some("error") => {
                let mut st = shared.state.lock().unwrap();
                let class = f.get(2).copied().unwrap_or("?");
                match class {
                    "timeout" => st.stats.timeouts += 1,
                    "retryable" => st.stats.retryable_errors += 1,
                    _ => st.stats.other_errors += 1,
                }
                if class != "timeout" {
                    let text = f.get(3..).unwrap_or_default().join(" ");
                    let op = f.get(1).unwrap_or(&"?");
                    st.errors.push(format!("{client} {op} {class}: {text}"));
                }
            }
            _ => {}
        }
    }
    // The holder is gone (exited or killed): it holds nothing any more as
    // far as picking a victim goes.
    let mut st = shared.state.lock().unwrap();
    if st.current.as_ref().is_some_and(|(c, _)| *c == client) {
        st.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(client: &str, token: u64, sent: u64, start: u64, last: Option<u64>) -> Hold {
        Hold {
            client: client.into(),
            token,
            sent,
            start,
            last,
            writes: u64::from(last.is_some()),
            refused: 0,
        }
    }

    #[test]
    fn overlapping_holds_are_flagged_unless_a_restart_explains_them() {
        let ok = [
            hold("a", 1, 0, 10, Some(50)),
            hold("b", 2, 5, 60, Some(90)),
            hold("c", 3, 70, 95, None),
        ];
        assert!(check_holds(&ok, &[]).is_empty());
        // b was granted at 40 while a still wrote at 50.
        let bad = [hold("a", 1, 0, 10, Some(50)), hold("b", 2, 5, 40, Some(90))];
        let v = check_holds(&bad, &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].checker, "exclusion");
        // A restart between the grants explains it; one before both or after
        // both does not.
        assert!(check_holds(&bad, &[20]).is_empty());
        assert_eq!(check_holds(&bad, &[0]).len(), 1);
        assert_eq!(check_holds(&bad, &[41]).len(), 1);
    }

    #[tokio::test]
    async fn records_grants_writes_and_refusals() {
        let fence = FenceServer::start().await.unwrap();
        let mut s = TcpStream::connect(fence.addr()).await.unwrap();
        let t = mono_ns();
        let msg = format!(
            "hello a k\ngrant 7 {t} {}\nwrite 7 0 {}\nwrite 6 1 {}\n",
            t + 1,
            t + 2,
            t + 3
        );
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert_eq!(line, "ok\n");
        line.clear();
        r.read_line(&mut line).await.unwrap();
        assert_eq!(line, "stale\n");
        let st = fence.stats();
        assert_eq!((st.grants, st.accepted, st.refused), (1, 1, 1));
        assert_eq!(fence.current_holder().as_deref(), Some("a"));
        assert_eq!(fence.holds()[0].last, Some(t + 2));
        assert!(fence.grant_after(t, Duration::from_secs(1)).await.is_some());
        assert!(fence.resource().check().is_empty());
        assert_eq!(fence.resource().accepted()[0].key, "k");
    }

    #[tokio::test]
    async fn counts_errors_by_kind_and_keeps_their_text() {
        let fence = FenceServer::start().await.unwrap();
        let mut s = TcpStream::connect(fence.addr()).await.unwrap();
        let msg = "hello a k\nerror lock retryable backend unavailable\nerror lock timeout timed out\nerror release other bad reply: CROSSSLOT Keys\nwrite 0 0 0\n";
        s.write_all(msg.as_bytes()).await.unwrap();
        // The write's answer: every line before it was read.
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await.unwrap();
        let st = fence.stats();
        assert_eq!(
            (st.retryable_errors, st.timeouts, st.other_errors),
            (1, 1, 1)
        );
        assert_eq!(
            fence.errors(),
            [
                "a lock retryable: backend unavailable",
                "a release other: bad reply: CROSSSLOT Keys"
            ]
        );
    }
}
