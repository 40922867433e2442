//! What the dashboard keeps live: the listing in memory, the backend's
//! state, and the leader timeline; each change pushed to every page as a
//! server-sent event.
//!
//! One refresher walks the listing every `--refresh` and at once when
//! poked. Each election it has seen is observed (`Election::observe`, the
//! backend's notifications): a leader change goes on the timeline and pokes
//! the refresher, so a failover reaches the page as soon as the backend
//! announces it. Events are hints: the page reads its view again on each.
//! Lease and leader changes are dated on the backend's clock (read at each
//! walk), as grants are; this machine's clock plays no part.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    convert::Infallible,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
};
use coord_api::{BackendClock, LeaderInfo, LeaseFilter, spi::ResourceKind};
use futures_util::{Stream, StreamExt, stream};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};

use super::{Shared, now_text};
use crate::{
    render::{LeaseRow, one_line, rfc3339},
    selection::Selection,
    watch::{self, Id, Polled},
};

/// The most elections observed at once (each holds a subscription).
const MAX_OBSERVED: usize = 256;
/// The timeline's length.
const TIMELINE: usize = 200;
/// The most lease changes one event carries (the page re-reads anyway).
const EVENTS_PER_MESSAGE: usize = 100;
/// How long an observer waits before subscribing again after an error.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// The live state, and the channel its changes go out on.
pub(crate) struct Live {
    state: Mutex<Snapshot>,
    tx: broadcast::Sender<Arc<str>>,
    poke: Notify,
    max: usize,
}

/// The last walk of the listing, and what goes with it.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Every lease of the last successful walk, by identity.
    pub(crate) leases: BTreeMap<Id, LeaseRow>,
    /// When that walk began, on the backend's clock.
    pub(crate) read_at: Option<String>,
    /// The backend's clock as that walk read it: leader changes are dated
    /// on it, as lease changes and grants are.
    clock: Option<BackendClock>,
    /// Whether the walk stopped at `--max-leases`.
    pub(crate) truncated: bool,
    /// Whether the backend answered the last walk, and if not, why.
    pub(crate) backend: BackendState,
    /// Leader changes, newest first.
    pub(crate) timeline: VecDeque<LeaderEvent>,
    /// How many walks changed something.
    pub(crate) version: u64,
    /// The elections observed.
    observed: HashSet<String>,
}

/// Whether the backend answers; `since` is on this machine's clock (the
/// backend's is not known while it does not answer).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct BackendState {
    pub(crate) up: bool,
    pub(crate) message: Option<String>,
    pub(crate) since: String,
}

impl Default for BackendState {
    fn default() -> BackendState {
        BackendState {
            up: true,
            message: None,
            since: now_text(),
        }
    }
}

/// A leader change of one election, as an observer saw it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaderEvent {
    pub(crate) at: String,
    pub(crate) election: String,
    pub(crate) from: Option<Term>,
    pub(crate) to: Option<Term>,
}

/// A term, as the timeline shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Term {
    pub(crate) instance: String,
    pub(crate) holder: String,
    /// The term's token, a decimal string as every token the page reads.
    pub(crate) term: String,
    pub(crate) metadata: String,
}

impl Term {
    fn of(l: &LeaderInfo) -> Term {
        Term {
            instance: l.holder.instance().to_string(),
            holder: l.holder.to_string(),
            term: l.term.get().to_string(),
            metadata: l.metadata.clone(),
        }
    }
}

/// One message on the event stream.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Message<'a> {
    /// Sent first on every stream: where things stand.
    Hello {
        backend: &'a BackendState,
        version: u64,
    },
    /// A walk found changes (at most [`EVENTS_PER_MESSAGE`] of them here).
    Changes {
        version: u64,
        count: usize,
        events: &'a [watch::Event],
    },
    /// The backend stopped or started answering.
    Backend(&'a BackendState),
    /// An election changed leader.
    Leader(&'a LeaderEvent),
    /// This stream fell behind and skipped messages: read everything again.
    Lagged,
}

impl Message<'_> {
    /// The message as the page reads it (tokens as strings, as
    /// [`api`](super::api) serves them).
    fn text(&self) -> Arc<str> {
        let text = serde_json::to_value(self).and_then(|mut v| {
            super::api::tokens_as_text(&mut v);
            serde_json::to_string(&v)
        });
        text.unwrap_or_else(|e| format!("{{\"kind\":\"error\",\"message\":\"{e}\"}}"))
            .into()
    }
}

impl Live {
    pub(crate) fn new(max: usize) -> Live {
        Live {
            state: Mutex::new(Snapshot::default()),
            tx: broadcast::channel(256).0,
            poke: Notify::new(),
            max,
        }
    }

    /// The snapshot, to read.
    pub(crate) fn snapshot(&self) -> MutexGuard<'_, Snapshot> {
        // A handler that panicked holding it left nothing half-written that
        // matters more than serving the next request.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Walks again now (after an action, or a leader change).
    pub(crate) fn poke(&self) {
        self.poke.notify_one();
    }

    fn send(&self, message: &Message<'_>) {
        // No page listening is not an error.
        let _ = self.tx.send(message.text());
    }
}

/// Walks the listing every `every` (or when poked), forever.
pub(crate) async fn refresh(app: Shared, every: Duration) {
    loop {
        walk_once(&app).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = app.live.poke.notified() => {}
        }
    }
}

/// One walk: the snapshot replaced, its changes sent, new elections
/// observed.
async fn walk_once(app: &Shared) {
    let ops = app.client.operations();
    let walked = watch::poll(&ops, &Selection::of(LeaseFilter::all()), app.live.max).await;
    let mut elections = Vec::new();
    {
        let live = &app.live;
        let mut snap = live.snapshot();
        match walked {
            Ok(Polled {
                leases,
                more: truncated,
                at,
                clock,
            }) => {
                if !snap.backend.up {
                    snap.backend = BackendState::default();
                    live.send(&Message::Backend(&snap.backend));
                }
                let events = watch::diff(&snap.leases, &leases, &at);
                if !events.is_empty() || snap.truncated != truncated {
                    snap.version += 1;
                    let shown = &events[..events.len().min(EVENTS_PER_MESSAGE)];
                    live.send(&Message::Changes {
                        version: snap.version,
                        count: events.len(),
                        events: shown,
                    });
                }
                for row in leases.values() {
                    if row.kind == ResourceKind::Election.as_str()
                        && snap.observed.len() < MAX_OBSERVED
                    {
                        let name = row.resource[row.kind.len() + 1..].to_owned();
                        if snap.observed.insert(name.clone()) {
                            elections.push(name);
                        }
                    }
                }
                (snap.leases, snap.truncated, snap.read_at) = (leases, truncated, Some(at));
                snap.clock = Some(clock);
            }
            Err(fail) => {
                let why = one_line(&fail.message.unwrap_or_default());
                if snap.backend.up || snap.backend.message.as_deref() != Some(why.as_str()) {
                    let since = if snap.backend.up {
                        now_text()
                    } else {
                        snap.backend.since.clone()
                    };
                    snap.backend = BackendState {
                        up: false,
                        message: Some(why),
                        since,
                    };
                    live.send(&Message::Backend(&snap.backend));
                }
            }
        }
    }
    for name in elections {
        tokio::spawn(observe(app.clone(), name));
    }
}

/// Follows one election's leader through its notifications, for as long
/// as the dashboard runs.
async fn observe(app: Shared, name: String) {
    let election = app.client.election(&name);
    let mut last: Option<Option<Term>> = None;
    loop {
        let mut observer = match election.observe().await {
            Ok(o) => o,
            Err(_) => {
                tokio::time::sleep(RESUBSCRIBE).await;
                continue;
            }
        };
        loop {
            let change = match observer.next().await {
                Ok(c) => c,
                Err(_) => break,
            };
            let now = change.leader.as_ref().map(Term::of);
            let changed = last
                .as_ref()
                .is_some_and(|l| l.as_ref().map(|t| &t.term) != now.as_ref().map(|t| &t.term));
            if changed {
                let at = app.live.snapshot().clock.as_ref().map(|c| rfc3339(c.now()));
                let event = LeaderEvent {
                    at: at.unwrap_or_else(now_text),
                    election: name.clone(),
                    from: last.clone().flatten(),
                    to: now.clone(),
                };
                {
                    let mut snap = app.live.snapshot();
                    snap.timeline.push_front(event.clone());
                    snap.timeline.truncate(TIMELINE);
                }
                app.live.send(&Message::Leader(&event));
                app.live.poke();
            }
            last = Some(now);
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

/// `GET /api/events`: the server-sent event stream (event `update`, data
/// one JSON message).
pub(crate) async fn events(
    State(app): State<Shared>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.live.tx.subscribe();
    let hello = {
        let snap = app.live.snapshot();
        Message::Hello {
            backend: &snap.backend,
            version: snap.version,
        }
        .text()
    };
    let update = |data: &str| Ok(Event::default().event("update").data(data));
    let first = stream::once(async move { update(&hello) });
    let rest = stream::unfold(rx, move |mut rx| async move {
        let text = match rx.recv().await {
            Ok(text) => text,
            Err(broadcast::error::RecvError::Lagged(_)) => Message::Lagged.text(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((update(&text), rx))
    });
    Sse::new(first.chain(rest)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::App;

    #[tokio::test]
    async fn the_snapshot_stops_at_max_leases_and_says_so() {
        let client = coord::connect("memory://").await.unwrap();
        let mut held = Vec::new();
        for k in ["a", "b", "c"] {
            held.push(client.lock(k).try_lock().await.unwrap().unwrap());
        }
        let app = Arc::new(App {
            client,
            live: Live::new(2),
            allow_actions: false,
            token: None,
            operator: "test".to_owned(),
            addr: "127.0.0.1:7070".parse().unwrap(),
            allow_hosts: Vec::new(),
        });
        let mut rx = app.live.tx.subscribe();
        walk_once(&app).await;
        {
            let snap = app.live.snapshot();
            assert_eq!(snap.leases.len(), 2, "{:?}", snap.leases.keys());
            assert!(snap.truncated);
            assert_eq!(snap.version, 1);
        }
        let first = rx.recv().await.unwrap();
        assert!(first.contains(r#""kind":"changes""#), "{first}");
        assert!(first.contains(r#""count":2"#), "{first}");

        // Two released: the walk fits and is no longer truncated.
        held.truncate(1);
        let snap_len = || app.live.snapshot().leases.len();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while snap_len() != 1 || app.live.snapshot().truncated {
            assert!(std::time::Instant::now() < deadline, "the walk never fit");
            tokio::time::sleep(Duration::from_millis(20)).await;
            walk_once(&app).await;
        }
        assert!(app.live.snapshot().version >= 2, "the change was counted");
    }
}
