//! Leader election: campaign, the [`Leadership`] handle of a won term,
//! observing leaders ([`observer`]), and a runner that campaigns for a
//! process's whole life ([`runner`]). A term is a lease the engine keeps;
//! [`Term`] tells it how to renew (with the quorum check) and resign one.

mod observer;
mod runner;

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;

pub use observer::{LeaderChange, LeaderObserver};
pub use runner::{LeaderContext, LeaderRunner, RunnerHandle};

use crate::{
    Campaign, Candidate, Client, Error, FencingToken, HolderId, Key, LeaderInfo, LostSignal,
    Quorum, Release, Result, Watch,
    clock::Instant,
    handle::{Handle, option_setters},
    lease::{
        BoxFuture, Guard, Lease, Tenure,
        metrics::{self, Waited},
        released,
        undo::{Undo, granting},
        wait::{Attempts, Step, wait_for},
    },
    spi::election::check_leader_metadata,
    trace::{self, Outcome, Site},
};

/// A leader election: at most one leader per election at a time, each term
/// with a fencing token strictly greater than every term before.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// let election = client.election("scheduler").metadata("10.0.0.7:8080");
/// let leadership = election.campaign().await?; // waits until elected
/// println!("leading term {}", leadership.term());
/// tokio::select! {
///     _ = leadership.lost() => { /* stop scheduling at once */ }
///     _ = async { /* schedule, passing leadership.term() to what you write */ } => {}
/// }
/// # Ok(()) }
/// ```
///
/// Anyone, candidate or not, can ask [`leader`](Self::leader),
/// [`candidates`](Self::candidates) and [`observe`](Self::observe). With a
/// [`quorum`](Self::quorum), nobody is elected while the quorum group has
/// fewer live members than required, and a leader whose group drops below
/// it loses leadership at its next renewal.
#[derive(Debug, Clone)]
pub struct Election {
    handle: Handle,
    metadata: String,
    quorum: Option<Quorum>,
}

/// A term's tenure: renewed with the election's quorum check, released by
/// resigning.
struct Term {
    election: Key,
    holder: HolderId,
    term: FencingToken,
    quorum: Option<Quorum>,
}

impl Tenure for Term {
    fn family(&self) -> &'static str {
        "election"
    }

    fn kind(&self) -> &'static str {
        "term"
    }

    fn key(&self) -> &Key {
        &self.election
    }

    fn holder(&self) -> &HolderId {
        &self.holder
    }

    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        let (e, h, q) = (&self.election, &self.holder, self.quorum.as_ref());
        Ok(client.elections()?.renew(e, h, self.term, ttl, q))
    }

    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let elections = client.elections()?;
        Ok(Box::pin(async move {
            let resigned = elections
                .resign(&self.election, &self.holder, self.term)
                .await?;
            Ok(released(resigned))
        }))
    }

    fn counted(&self) -> bool {
        false
    }
}

impl Election {
    /// The client this election's calls go through.
    pub(crate) fn client(&self) -> &Client {
        &self.handle.client
    }

    pub(crate) fn new(client: Client, name: &str) -> Election {
        Election {
            handle: Handle::new(client, name),
            metadata: String::new(),
            quorum: None,
        }
    }

    option_setters!();

    /// What the leader publishes about itself (an address, a version...):
    /// at most [`MAX_LEADER_METADATA_BYTES`](crate::MAX_LEADER_METADATA_BYTES)
    /// bytes, or a campaign is `InvalidArgument`.
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Requires at least `min_members` live members of the membership group
    /// `group` (see [`Client::group`]) to elect and keep a leader.
    pub fn quorum(mut self, quorum: Quorum) -> Self {
        self.quorum = Some(quorum);
        self
    }

    fn check(&self) -> Result<&Key> {
        let (key, _) = self.handle.checked()?;
        if let Some(q) = &self.quorum
            && q.min_members == 0
        {
            return Err(Error::invalid(format!(
                "election {key:?}: a quorum needs min_members of at least 1"
            )));
        }
        check_leader_metadata(key, &self.metadata)?;
        self.handle.client.elections()?;
        Ok(key)
    }

    fn site<'a>(&self, op: &'static str, key: &'a Key, holder: Option<&'a HolderId>) -> Site<'a> {
        Site {
            op,
            family: "election",
            kind: if holder.is_some() { "term" } else { "" },
            key,
            holder,
            token: None,
        }
    }

    /// One campaign round trip for `holder`; when refused, with `stand`, it
    /// records (or refreshes) `holder`'s candidacy. A round that got no
    /// answer (cancelled, timed out, reply lost) resigns in the background a
    /// term it may have won (see [`give_up`]; the candidacy it may have
    /// recorded is [`campaign`](Self::campaign)'s to withdraw).
    async fn attempt(
        &self,
        key: &Key,
        holder: &HolderId,
        stand: bool,
    ) -> Result<Result<Leadership, Campaign>> {
        let client = &self.handle.client;
        let opts = self.handle.opts();
        let t_sent = client.clock().now();
        let campaign = (client.elections()?).campaign(
            key,
            holder,
            &self.metadata,
            opts.ttl,
            self.quorum.as_ref(),
            stand,
        );
        let classify = |c: &Campaign| match c {
            Campaign::Elected(info) => Outcome::Granted(info.term),
            Campaign::Busy { .. } => Outcome::Busy,
        };
        let site = || self.site("campaign", key, Some(holder));
        let campaign = trace::call(client, site, campaign, classify);
        match granting(client, opts.ttl, campaign, || give_up(key, holder)).await? {
            // Won as the client closed: `Closed`, the term resigned at once
            // (see `Leases::note`).
            Campaign::Elected(info) => Ok(Ok(self.leadership(key, holder, info, t_sent)?)),
            busy => Ok(Err(busy)),
        }
    }

    fn leadership(
        &self,
        key: &Key,
        holder: &HolderId,
        info: LeaderInfo,
        t_sent: Instant,
    ) -> Result<Leadership> {
        let term = Term {
            election: key.clone(),
            holder: holder.clone(),
            term: info.term,
            quorum: self.quorum.clone(),
        };
        let (client, opts) = (self.handle.client.clone(), self.handle.opts());
        let validity = self.handle.validity();
        let lease = Lease::start(client, term, Some(info.term), opts, validity, t_sent)?;
        metrics::term_won(&self.handle.client, key);
        Ok(Leadership {
            guard: Guard::new(lease),
            info,
        })
    }

    /// Becomes leader if nobody leads (and the quorum holds); `Ok(None)`
    /// otherwise. Never waits.
    ///
    /// # Cancel safety
    /// If cancelled after the request left, a term it may have won is
    /// resigned in the background.
    pub async fn try_campaign(&self) -> Result<Option<Leadership>> {
        let key = self.check()?;
        let holder = HolderId::new(*self.handle.client.instance_id());
        let won = self.attempt(key, &holder, false).await?.ok();
        let outcome = if won.is_some() {
            Waited::Acquired
        } else {
            Waited::Busy
        };
        metrics::campaign(&self.handle.client, key, outcome);
        Ok(won)
    }

    /// Waits until elected. Woken by the election's notifications (a
    /// resignation, a term's expiry, quorum changes), with the options' retry
    /// delay as a fallback; `Error::Timeout` after `wait_timeout`.
    ///
    /// While it waits, the campaign is a candidate: listed by
    /// [`candidates`](Self::candidates), as a lease of the election's TTL
    /// that each campaign round refreshes (at least every renewal interval,
    /// `ttl / 3` unless set) and that ends when the campaign wins, fails,
    /// times out or is dropped, or at its TTL if the process stops.
    ///
    /// # Cancel safety
    /// Cancel safe: a term won by a cancelled campaign is resigned, and its
    /// candidacy is withdrawn (both in the background).
    pub async fn campaign(&self) -> Result<Leadership> {
        let holder = HolderId::new(*self.handle.client.instance_id());
        self.campaign_as(&holder).await
    }

    /// [`campaign`](Self::campaign) as `holder` (fresh per campaign).
    pub(crate) async fn campaign_as(&self, holder: &HolderId) -> Result<Leadership> {
        let key = self.check()?;
        let rounds = CampaignRounds {
            election: self,
            key,
            holder,
        };
        let client = &self.handle.client;
        let opts = self.handle.opts();
        // Withdraws the candidacy unless the campaign won (the winning step
        // removed it).
        let mut on_exit = Undo::new(client, opts.ttl, || withdraw(key, holder));
        let res = wait_for(client, opts, Some(opts.renew_every()), rounds).await;
        if res.is_ok() {
            on_exit.disarm();
        }
        match &res {
            Ok(_) => metrics::campaign(client, key, Waited::Acquired),
            Err(Error::Timeout { .. }) => metrics::campaign(client, key, Waited::Timeout),
            Err(_) => {}
        }
        res
    }

    /// After a campaign of `holder`'s was dropped: resigns a term that a
    /// round of it on its way may have won, and waits for that (one
    /// attempt: the dropped campaign's own clean-up, in the background,
    /// retries while the backend is unreachable). For a runner's shutdown,
    /// after which the process may exit and its background tasks with it.
    pub(crate) async fn give_up_now(&self, holder: &HolderId) {
        if let Ok(key) = self.handle.key() {
            let _ = give_up(key, holder)(self.handle.client.closer()).await;
        }
    }

    /// The current leader, if any; for anyone, candidate or not.
    pub async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let key = self.handle.key()?;
        let client = &self.handle.client;
        let leader = client.elections()?.leader(key);
        trace::call(
            client,
            || self.site("leader", key, None),
            leader,
            Outcome::ok,
        )
        .await
    }

    /// The candidates waiting in the election (campaigns refused while
    /// someone leads, or while the quorum is missing), earliest first; for
    /// anyone, candidate or not. One backend step.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// for c in client.election("scheduler").candidates().await? {
    ///     println!("{} waits since {:?} ({})", c.instance(), c.since, c.metadata);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn candidates(&self) -> Result<Vec<Candidate>> {
        let key = self.handle.key()?;
        let client = &self.handle.client;
        let candidates = client.elections()?.candidates(key);
        let site = || self.site("candidates", key, None);
        trace::call(client, site, candidates, Outcome::ok).await
    }

    /// A stream of leader changes. Its first [`next`](LeaderObserver::next)
    /// returns the current state at once; each later one waits for a change.
    pub async fn observe(&self) -> Result<LeaderObserver> {
        let key = self.handle.key()?.clone();
        let client = &self.handle.client;
        let watch = client.elections()?.watch(&key);
        let watch = trace::call(
            client,
            || self.site("watch", &key, None),
            watch,
            Outcome::ok,
        );
        Ok(LeaderObserver {
            client: client.clone(),
            watch: watch.await?,
            key,
            retry: self.handle.opts().clone(),
            last: None,
            last_seq: None,
        })
    }
}

type UndoFn =
    dyn FnMut(Client) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + 'static;

/// Undoes, for an unanswered campaign round, the term it may have won:
/// resigns it if `holder` leads. (A candidacy the round may have recorded
/// is withdrawn by [`Election::campaign`], as for every campaign that ends
/// without a term; `try_campaign` never stands.)
///
/// Two round trips: the leader, to learn the term, and the resignation. A
/// retry repeats only the step that did not answer: once the leader was
/// read, the term found (or that `holder` leads none) stays found, since
/// `holder` (fresh per campaign, which ends at its first unanswered round)
/// wins at most one term. So a fault on the way costs the retry of one call,
/// not of the whole clean-up, and the resignation never waits behind a
/// withdrawal: the orphaned term blocks the election until it is resigned,
/// a candidacy blocks nobody.
fn give_up(key: &Key, holder: &HolderId) -> Box<UndoFn> {
    let (key, holder) = (key.clone(), holder.clone());
    // `Some(term)` once the leader answered: `holder`'s term, if it leads.
    let found: Arc<Mutex<Option<Option<FencingToken>>>> = Arc::default();
    Box::new(move |client: Client| {
        let (key, holder, found) = (key.clone(), holder.clone(), found.clone());
        Box::pin(async move {
            // (Run by the engine through the closer: also once closed.)
            let elections = client.elections()?;
            let known = *found.lock().unwrap_or_else(|e| e.into_inner());
            let term = match known {
                Some(term) => term,
                None => {
                    let leader = elections.leader(&key);
                    let site = || clean_up_site("leader", &key, &holder, None);
                    let leader = trace::call(&client, site, leader, Outcome::ok);
                    let term = leader.await?.filter(|l| l.holder == holder).map(|l| l.term);
                    *found.lock().unwrap_or_else(|e| e.into_inner()) = Some(term);
                    term
                }
            };
            if let Some(term) = term {
                let resign = elections.resign(&key, &holder, term);
                let site = || clean_up_site("resign", &key, &holder, Some(term));
                trace::call(&client, site, resign, Outcome::held).await?;
            }
            Ok(())
        })
    })
}

/// Withdraws `holder`'s candidacy, for a campaign that ended without a term.
fn withdraw(key: &Key, holder: &HolderId) -> Box<UndoFn> {
    let (key, holder) = (key.clone(), holder.clone());
    Box::new(move |client: Client| {
        let (key, holder) = (key.clone(), holder.clone());
        Box::pin(async move {
            // (Run by the engine through the closer: a campaign of a closed
            // client, answering `Closed` or dropped, withdraws too.)
            let elections = client.elections()?;
            let withdraw = elections.withdraw_candidacy(&key, &holder);
            let site = || clean_up_site("withdraw_candidacy", &key, &holder, None);
            trace::call(&client, site, withdraw, Outcome::held)
                .await
                .map(drop)
        })
    })
}

/// The span site of a clean-up's call for `holder` (a term it may have
/// won, a candidacy it may have left), as [`Election::site`] names a
/// holder's calls.
fn clean_up_site<'a>(
    op: &'static str,
    key: &'a Key,
    holder: &'a HolderId,
    token: Option<FencingToken>,
) -> Site<'a> {
    Site::new(("election", "term", op), key, Some(holder), token)
}

struct CampaignRounds<'a> {
    election: &'a Election,
    key: &'a Key,
    holder: &'a HolderId,
}

impl Attempts for CampaignRounds<'_> {
    type Output = Leadership;

    async fn attempt(&mut self) -> Result<Step<Leadership>> {
        Ok(
            match self.election.attempt(self.key, self.holder, true).await? {
                Ok(leadership) => Step::Done(leadership),
                Err(Campaign::Busy { leader, .. }) => Step::Busy(leader.map(|l| l.expires_in)),
                Err(Campaign::Elected(_)) => unreachable!("attempt returns Ok for Elected"),
            },
        )
    }

    async fn subscribe(&self) -> Result<Box<dyn Watch>> {
        let client = &self.election.handle.client;
        let election = client.elections()?.watch(self.key).await?;
        Ok(match &self.election.quorum {
            Some(q) => Box::new(EitherWatch(
                election,
                client.groups()?.watch(&q.group).await?,
            )),
            None => election,
        })
    }

    fn what(&self) -> String {
        format!("leadership of {:?}", self.key.as_str())
    }
}

/// Wakes when either of two watches does.
struct EitherWatch(Box<dyn Watch>, Box<dyn Watch>);

#[async_trait]
impl Watch for EitherWatch {
    async fn changed(&mut self) -> Result<()> {
        tokio::select! {
            biased;
            r = self.0.changed() => r,
            r = self.1.changed() => r,
        }
    }
}

/// The handle of a won term. It renews in the background (unless
/// auto-extension is off), tells when leadership is lost, and resigns on
/// [`resign`](Self::resign) or drop.
#[must_use = "if unused the leadership is resigned immediately"]
#[derive(Debug)]
pub struct Leadership {
    guard: Guard,
    info: LeaderInfo,
}

impl Leadership {
    /// The term: a fencing token strictly greater than every earlier term of
    /// this election. Hand it to whatever the leader writes to.
    pub fn term(&self) -> FencingToken {
        self.info.term
    }

    /// The leader info as published when the term began, with the
    /// metadata of the latest successful [`proclaim`](Self::proclaim).
    pub fn info(&self) -> &LeaderInfo {
        &self.info
    }

    /// Publishes `metadata` as this term's (what [`Election::leader`] and
    /// observers then show), in one backend step that checks the term: the
    /// term, its `seq` and its expiry stay; observers report the change.
    /// A term that is no longer held (lost locally, or ended at the
    /// backend: taken over, expired, resigned) is refused with
    /// `Error::LeaseLost` and nothing changes; a refusal by the backend also
    /// marks the leadership lost. Metadata of more than
    /// [`MAX_LEADER_METADATA_BYTES`](crate::MAX_LEADER_METADATA_BYTES) bytes
    /// is `InvalidArgument` before any I/O, and the term goes on.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let mut leadership = client.election("scheduler").metadata("v1").campaign().await?;
    /// leadership.proclaim("v2 at 10.0.0.7:8080").await?;
    /// assert_eq!(leadership.info().metadata, "v2 at 10.0.0.7:8080");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// If cancelled after the request left, the backend may or may not show
    /// the new metadata, and [`info`](Self::info) keeps the old one.
    pub async fn proclaim(&mut self, metadata: impl Into<String>) -> Result<()> {
        let metadata = metadata.into();
        let lease = self.guard.lease();
        let (client, key, holder) = (&lease.client, self.guard.key(), self.guard.holder());
        let term = self.info.term;
        let lost = || Error::LeaseLost {
            key: key.as_str().to_owned(),
            backend: client.backend().to_string(),
        };
        check_leader_metadata(key, &metadata)?;
        if !self.guard.is_held() {
            return Err(lost());
        }
        let proclaim = client.elections()?.proclaim(key, holder, term, &metadata);
        let site = || Site {
            op: "proclaim",
            family: "election",
            kind: "term",
            key,
            holder: Some(holder),
            token: Some(term),
        };
        if !trace::call(client, site, proclaim, Outcome::held).await? {
            lease.mark(true);
            return Err(lost());
        }
        self.info.metadata = metadata;
        Ok(())
    }

    /// Whether this instance still leads as far as it can tell (renewed in
    /// time, not refused, quorum held, not resigned).
    pub fn is_leader(&self) -> bool {
        self.guard.is_held()
    }

    /// Completes when leadership is lost (at the local validity deadline at
    /// the latest, even when the backend is unreachable).
    pub async fn lost(&self) {
        self.guard.lost().await
    }

    /// A `'static` handle on the lost signal, to hand to a task.
    pub fn lost_signal(&self) -> LostSignal {
        self.guard.lost_signal()
    }

    /// Whether the term ended given up rather than lost: resigned, or
    /// ended by its client's [`close`](Client::close).
    pub(crate) fn was_given_up(&self) -> bool {
        self.guard.is_released()
    }

    /// Ends the term now so another candidate can win at once. Returns
    /// whether this instance was still leader.
    pub async fn resign(self) -> Result<bool> {
        self.guard.release().await
    }
}
