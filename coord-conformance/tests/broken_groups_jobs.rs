//! The suite catches backends that skip a holder check: each deliberately
//! broken backend here (the in-memory store behind a decorator that changes
//! the few calls its bug is about) fails the cases written for that check,
//! and the same cases pass on the store without the decorator's bug. The
//! bugs are the ones a backend author writes by accident: an update keyed by
//! the group or occurrence instead of the holder, an upsert where a checked
//! update belongs, a change counter that forgets expiries.
//!
//! `cargo test -p coord-conformance --test broken_groups_jobs`

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    HolderId, Key, Namespace, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Members, OnceBegin, OnceState, Reply},
};
use coord_conformance::Harness;
use coord_memory::MemoryStore;

/// A deliberate bug of a backend's groups or run-once jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// No bug: the store as it is, through the decorator.
    None,
    /// A heartbeat from a holder that is not a member extends a member of
    /// the group (the update is keyed by the group, not the holder).
    HeartbeatIgnoresHolder,
    /// A heartbeat from a holder that is not a member extends the member of
    /// the same instance (the update is keyed by the instance id, so an
    /// earlier incarnation passes for the member).
    HeartbeatByInstance,
    /// A leave from a holder that is not a member removes a member of the
    /// group.
    LeaveIgnoresHolder,
    /// A heartbeat of a holder that is no member (its lease expired) adds it
    /// again: an upsert where a checked update belongs.
    HeartbeatRevives,
    /// The change counter counts joins and leaves only, never an expiry.
    SeqSkipsExpiry,
    /// An extend from a holder that does not run the occurrence extends the
    /// run (keyed by the occurrence, not the holder).
    ExtendIgnoresHolder,
    /// Like `ExtendIgnoresHolder`, but the refusal is answered all the same:
    /// only reading the run back shows that it was extended.
    ExtendSilently,
    /// An end from a holder that does not run the occurrence ends the run.
    EndIgnoresHolder,
    /// An end from a holder that does not run the occurrence ends the run if
    /// the runner is of the same instance (keyed by the instance id).
    EndByInstance,
    /// An extend of a run whose lease expired starts it again for that
    /// holder.
    ExtendRevives,
    /// A finished end of a run whose lease expired marks the occurrence
    /// finished anyway.
    EndRevives,
    /// A look at an occurrence begins a run (of a holder of its own) and
    /// ends it unfinished at once: what it answers is right, but every
    /// look counts an attempt.
    StateBegins,
}

/// What the broken backend remembers across connections (the bugs emulate
/// a server, which every connection shares).
#[derive(Default)]
struct Server {
    /// The holder of the last run begun, per occurrence.
    runners: HashMap<(Namespace, Key, Key), HolderId>,
    /// Joins and leaves, per group (the counter of `SeqSkipsExpiry`).
    changes: HashMap<(Namespace, Key), u64>,
}

#[derive(Debug)]
struct Broken {
    inner: DynBackend,
    bug: Bug,
    server: Arc<Mutex<Server>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Server")
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broken({:?}, {})", self.bug, self.inner)
    }
}

type GroupArgs = (Key, HolderId, Duration);
type RunArgs = (Key, Key, HolderId, Duration);
type EndArgs = (Key, Key, HolderId, Option<Duration>);

fn reply<T: Send + 'static>(v: T) -> Result<Reply> {
    Ok(Box::new(v))
}

impl Broken {
    fn ns(&self) -> Namespace {
        self.inner.namespace().clone()
    }

    /// Another member of `g` than `holder` (of its instance, with
    /// `HeartbeatByInstance`), if any.
    async fn some_member(&self, g: &Key, holder: &HolderId) -> Result<Option<HolderId>> {
        let groups = self.inner.groups().expect("groups");
        let now = groups.members(g).await?;
        let same = |h: &HolderId| {
            self.bug != Bug::HeartbeatByInstance || h.instance() == holder.instance()
        };
        let mut others = now.members.into_iter().map(|m| m.holder);
        Ok(others.find(|h| h != holder && same(h)))
    }

    /// The runner of the occurrence's last begun run, if not `holder` (and
    /// of its instance, with `EndByInstance`).
    fn runner(&self, j: &Key, o: &Key, holder: &HolderId) -> Option<HolderId> {
        let server = self.server.lock().unwrap();
        let r = server.runners.get(&(self.ns(), j.clone(), o.clone()))?;
        let same = self.bug != Bug::EndByInstance || r.instance() == holder.instance();
        (r != holder && same).then(|| r.clone())
    }

    fn count_change(&self, g: &Key) {
        let mut server = self.server.lock().unwrap();
        *server.changes.entry((self.ns(), g.clone())).or_default() += 1;
    }

    async fn groups(&self, call: Call) -> Result<Reply> {
        let groups = self.inner.groups().expect("groups");
        match (self.bug, call.op().name) {
            (
                Bug::HeartbeatIgnoresHolder | Bug::HeartbeatByInstance | Bug::HeartbeatRevives,
                "heartbeat",
            ) => {
                let (g, h, ttl) = call.args::<GroupArgs>().cloned().expect("heartbeat args");
                if groups.heartbeat(&g, &h, ttl).await? {
                    return reply(true);
                }
                if self.bug == Bug::HeartbeatRevives {
                    groups.join(&g, &h, "", ttl).await?;
                    return reply(true);
                }
                match self.some_member(&g, &h).await? {
                    Some(m) => reply(groups.heartbeat(&g, &m, ttl).await?),
                    None => reply(false),
                }
            }
            (Bug::LeaveIgnoresHolder, "leave") => {
                let (g, h) = call.args::<(Key, HolderId)>().cloned().expect("leave args");
                if groups.leave(&g, &h).await? {
                    return reply(true);
                }
                match self.some_member(&g, &h).await? {
                    Some(m) => reply(groups.leave(&g, &m).await?),
                    None => reply(false),
                }
            }
            (Bug::SeqSkipsExpiry, "join") => {
                let (g, h, _, _) = call
                    .args::<(Key, HolderId, String, Duration)>()
                    .cloned()
                    .expect("join args");
                let listed = groups.members(&g).await?.members;
                let new = !listed.iter().any(|m| m.holder == h);
                let joined = call.run(self.inner.clone()).await?;
                if new {
                    self.count_change(&g);
                }
                Ok(joined)
            }
            (Bug::SeqSkipsExpiry, "leave") => {
                let (g, h) = call.args::<(Key, HolderId)>().cloned().expect("leave args");
                let left = groups.leave(&g, &h).await?;
                if left {
                    self.count_change(&g);
                }
                reply(left)
            }
            (Bug::SeqSkipsExpiry, "members") => {
                let (g,) = call.args::<(Key,)>().cloned().expect("members args");
                let now = groups.members(&g).await?;
                let server = self.server.lock().unwrap();
                let seq = server.changes.get(&(self.ns(), g)).copied().unwrap_or(0);
                reply(Members::new(now.members, seq))
            }
            _ => call.run(self.inner.clone()).await,
        }
    }

    async fn jobs(&self, call: Call) -> Result<Reply> {
        let jobs = self.inner.jobs().expect("jobs");
        match (self.bug, call.op().name) {
            (_, "begin") => {
                let (j, o, h, ttl) = call.args::<RunArgs>().cloned().expect("begin args");
                let begun = jobs.begin(&j, &o, &h, ttl).await?;
                if let OnceBegin::Started { .. } = begun {
                    let mut server = self.server.lock().unwrap();
                    server.runners.insert((self.ns(), j, o), h);
                }
                reply(begun)
            }
            (Bug::ExtendIgnoresHolder | Bug::ExtendSilently | Bug::ExtendRevives, "extend") => {
                let (j, o, h, ttl) = call.args::<RunArgs>().cloned().expect("extend args");
                if jobs.extend(&j, &o, &h, ttl).await? {
                    return reply(true);
                }
                if self.bug == Bug::ExtendRevives {
                    let begun = jobs.begin(&j, &o, &h, ttl).await?;
                    return reply(matches!(begun, OnceBegin::Started { .. }));
                }
                match self.runner(&j, &o, &h) {
                    Some(r) => {
                        let extended = jobs.extend(&j, &o, &r, ttl).await?;
                        reply(extended && self.bug != Bug::ExtendSilently)
                    }
                    None => reply(false),
                }
            }
            (Bug::EndIgnoresHolder | Bug::EndByInstance | Bug::EndRevives, "end") => {
                let (j, o, h, finished) = call.args::<EndArgs>().cloned().expect("end args");
                if jobs.end(&j, &o, &h, finished).await? {
                    return reply(true);
                }
                if self.bug == Bug::EndRevives {
                    if finished.is_none() {
                        return reply(false);
                    }
                    let begun = jobs.begin(&j, &o, &h, Duration::from_secs(1)).await?;
                    if !matches!(begun, OnceBegin::Started { .. }) {
                        return reply(false);
                    }
                    return reply(jobs.end(&j, &o, &h, finished).await?);
                }
                match self.runner(&j, &o, &h) {
                    Some(r) => reply(jobs.end(&j, &o, &r, finished).await?),
                    None => reply(false),
                }
            }
            (Bug::StateBegins, "state") => {
                let (j, o) = call.args::<(Key, Key)>().cloned().expect("state args");
                let looker = HolderId::new(coord_api::InstanceId::new("looker").unwrap());
                let state = match jobs.begin(&j, &o, &looker, Duration::from_secs(1)).await? {
                    OnceBegin::Started { .. } => {
                        jobs.end(&j, &o, &looker, None).await?;
                        OnceState::Idle
                    }
                    OnceBegin::Running { retry_in } => OnceState::Running { retry_in },
                    _ => OnceState::Finished,
                };
                reply(state)
            }
            _ => call.run(self.inner.clone()).await,
        }
    }
}

#[async_trait]
impl Dispatch for Broken {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: Call) -> Result<Reply> {
        match call.op().family {
            "groups" => self.groups(call).await,
            "jobs" => self.jobs(call).await,
            _ => call.run(self.inner.clone()).await,
        }
    }
}

/// Every connection reaches one store through the bug.
struct BrokenHarness {
    store: MemoryStore,
    bug: Bug,
    server: Arc<Mutex<Server>>,
}

#[async_trait]
impl Harness for BrokenHarness {
    async fn open(&self, ns: &Namespace) -> Result<DynBackend> {
        let broken = Broken {
            inner: Arc::new(self.store.backend(ns.clone())),
            bug: self.bug,
            server: self.server.clone(),
        };
        Ok(Arc::new(Dispatched::new(broken)))
    }
}

/// Runs the case `family::name` on a backend with `bug`, as the runner
/// does (a runtime of its own); its panic message if it failed.
fn run(bug: Bug, family: &str, name: &str) -> Option<String> {
    let case = coord_conformance::cases::all()
        .into_iter()
        .find(|c| c.family == family && c.name == name)
        .unwrap_or_else(|| panic!("no case {family}::{name}"));
    let harness = BrokenHarness {
        store: MemoryStore::default(),
        bug,
        server: Arc::default(),
    };
    let outcome = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on((case.run)(&harness))
    })
    .join();
    let payload = outcome.err()?;
    let text = (payload.downcast_ref::<String>().cloned())
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned());
    Some(text)
}

/// The case fails with `bug`, saying `why`, and passes without it.
#[track_caller]
fn caught(bug: Bug, case: &str, why: &str) {
    let (family, name) = case.split_once("::").expect("family::name");
    if let Some(failed) = run(Bug::None, family, name) {
        panic!("{case} fails without a bug: {failed}");
    }
    match run(bug, family, name) {
        Some(failed) => assert!(
            failed.contains(why),
            "{bug:?} failed {case}, but not as expected ({why:?}): {failed}"
        ),
        None => panic!("{bug:?} passed {case}"),
    }
}

#[test]
fn heartbeat_ignoring_the_holder_is_caught() {
    caught(
        Bug::HeartbeatIgnoresHolder,
        "group::heartbeat_by_foreign_or_stale_holder_refused",
        "foreign holder's heartbeat accepted",
    );
}

#[test]
fn heartbeat_keyed_by_instance_is_caught() {
    caught(
        Bug::HeartbeatByInstance,
        "group::heartbeat_by_foreign_or_stale_holder_refused",
        "stale holder's heartbeat accepted",
    );
}

#[test]
fn leave_ignoring_the_holder_is_caught() {
    caught(
        Bug::LeaveIgnoresHolder,
        "group::leave_by_foreign_or_stale_holder_refused",
        "foreign holder's leave accepted",
    );
}

#[test]
fn heartbeat_reviving_an_expired_member_is_caught() {
    caught(
        Bug::HeartbeatRevives,
        "group::heartbeat_after_expiry_does_not_revive",
        "heartbeat after expiry accepted",
    );
}

#[test]
fn a_change_counter_without_expiries_is_caught() {
    caught(
        Bug::SeqSkipsExpiry,
        "group::group_seq_counts_expiries",
        "the expiry a reader saw is counted",
    );
    caught(
        Bug::SeqSkipsExpiry,
        "group::leave_after_expiry_does_not_revive",
        "seq counts the join and the expiry",
    );
}

#[test]
fn an_observer_on_a_counter_without_expiries_is_caught() {
    // The observer compares counters: it never sees an uncounted expiry.
    caught(
        Bug::SeqSkipsExpiry,
        "group::group_observer_counts_expiries",
        "a's join and expiry missed",
    );
}

#[test]
fn extend_ignoring_the_holder_is_caught() {
    caught(
        Bug::ExtendIgnoresHolder,
        "jobs::run_extend_by_foreign_or_stale_holder_refused",
        "foreign holder's extend accepted",
    );
}

#[test]
fn a_silent_extend_is_caught_by_reading_the_run_back() {
    caught(
        Bug::ExtendSilently,
        "jobs::run_extend_by_foreign_or_stale_holder_refused",
        "foreign holder's extend lengthened the run",
    );
}

#[test]
fn end_ignoring_the_holder_is_caught() {
    caught(
        Bug::EndIgnoresHolder,
        "jobs::run_end_by_foreign_or_stale_holder_refused",
        "foreign holder's end",
    );
}

#[test]
fn end_keyed_by_instance_is_caught() {
    caught(
        Bug::EndByInstance,
        "jobs::run_end_by_foreign_or_stale_holder_refused",
        "stale holder's end",
    );
}

#[test]
fn extend_reviving_an_expired_run_is_caught() {
    caught(
        Bug::ExtendRevives,
        "jobs::run_extend_after_expiry_does_not_revive",
        "extend after expiry accepted",
    );
}

#[test]
fn end_finishing_an_expired_run_is_caught() {
    caught(
        Bug::EndRevives,
        "jobs::run_end_after_expiry_does_not_revive",
        "after expiry accepted",
    );
}

#[test]
fn a_look_that_begins_a_run_is_caught() {
    caught(
        Bug::StateBegins,
        "jobs::occurrence_state_is_read_without_beginning",
        "the looks counted attempts",
    );
}
