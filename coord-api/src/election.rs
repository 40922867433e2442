//! Leader election: campaign, leadership handles, and observing leaders.

use async_trait::async_trait;

use crate::{
    Campaign, Client, Error, FencingToken, HolderId, Key, LeaderInfo, LeaseGuard, LeaseId,
    LeaseKind, LeaseWatch, LostSignal, Quorum, Result,
    acquire::{Attempts, Step, wait_for},
    clock::Instant,
    handle::{Handle, option_setters},
    lease::{LeaseShared, Target, spawn_background},
    trace::{self, Outcome},
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
/// Anyone, candidate or not, can ask [`leader`](Self::leader) and
/// [`observe`](Self::observe). With a [`quorum`](Self::quorum), nobody is
/// elected while the quorum group has fewer live members than required, and a
/// leader whose group drops below it loses leadership at its next renewal.
#[derive(Debug, Clone)]
pub struct Election {
    handle: Handle,
    metadata: String,
    quorum: Option<Quorum>,
}

impl Election {
    pub(crate) fn new(client: Client, name: &str) -> Election {
        Election {
            handle: Handle::new(client, name),
            metadata: String::new(),
            quorum: None,
        }
    }

    option_setters!();

    /// What the leader publishes about itself (an address, a version...).
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
        let key = self.handle.key()?;
        if let Some(q) = &self.quorum
            && q.min_members == 0
        {
            return Err(Error::invalid(format!(
                "election {key:?}: a quorum needs min_members of at least 1"
            )));
        }
        self.handle.client.leadership()?;
        self.handle.opts().validate(key)?;
        Ok(key)
    }

    /// One campaign round trip for `holder`.
    async fn attempt(&self, key: &Key, holder: &HolderId) -> Result<Result<Leadership, Campaign>> {
        let client = &self.handle.client;
        let opts = self.handle.opts();
        let mut pending = PendingCampaign {
            client: Some(client.clone()),
            key: key.clone(),
            holder: holder.clone(),
        };
        let t_sent = client.clock().now();
        let res = trace::call_on(
            "campaign",
            client,
            "election",
            key,
            Some(holder),
            None,
            client.leadership()?.campaign(
                key,
                holder,
                &self.metadata,
                opts.ttl,
                self.quorum.as_ref(),
            ),
            |c: &Campaign| match c {
                Campaign::Elected(info) => Outcome::Granted(info.term),
                Campaign::Busy { .. } => Outcome::Busy,
            },
        )
        .await;
        pending.client = None;
        match res? {
            Campaign::Elected(info) => Ok(Ok(self.leadership(key, holder, info, t_sent))),
            busy => Ok(Err(busy)),
        }
    }

    fn leadership(
        &self,
        key: &Key,
        holder: &HolderId,
        info: LeaderInfo,
        t_sent: Instant,
    ) -> Leadership {
        let opts = self.handle.opts();
        let shared = LeaseShared::start(
            self.handle.client.clone(),
            LeaseId {
                kind: LeaseKind::Exclusive,
                key: key.clone(),
                holder: holder.clone(),
            },
            Target::Term(self.quorum.clone()),
            info.term,
            opts,
            opts.local_validity(opts.ttl),
            t_sent,
        );
        Leadership {
            guard: LeaseGuard::new(shared),
            info,
        }
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
        Ok(self.attempt(key, &holder).await?.ok())
    }

    /// Waits until elected. Woken by the election's notifications (a
    /// resignation, a term's expiry, quorum changes), with the options' retry
    /// delay as a fallback; `Error::Timeout` after `wait_timeout`.
    ///
    /// # Cancel safety
    /// Cancel safe: a term won by a cancelled campaign is resigned.
    pub async fn campaign(&self) -> Result<Leadership> {
        let key = self.check()?;
        let holder = HolderId::new(*self.handle.client.instance_id());
        let rounds = CampaignRounds {
            election: self,
            key,
            holder: &holder,
        };
        wait_for(&self.handle.client, self.handle.opts(), None, rounds).await
    }

    /// The current leader, if any; for anyone, candidate or not.
    pub async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let key = self.handle.key()?;
        let client = &self.handle.client;
        trace::call_on(
            "leader",
            client,
            "election",
            key,
            None,
            None,
            client.leadership()?.leader(key),
            |_| Outcome::Ok,
        )
        .await
    }

    /// A stream of leader changes. Its first [`next`](LeaderObserver::next)
    /// returns the current state at once; each later one waits for a change.
    pub async fn observe(&self) -> Result<LeaderObserver> {
        let key = self.handle.key()?.clone();
        let watch = self
            .handle
            .client
            .leadership()?
            .watch_election(&key)
            .await?;
        Ok(LeaderObserver {
            client: self.handle.client.clone(),
            key,
            watch,
            last: None,
            last_seq: None,
        })
    }
}

struct CampaignRounds<'a> {
    election: &'a Election,
    key: &'a Key,
    holder: &'a HolderId,
}

impl Attempts for CampaignRounds<'_> {
    type Output = Leadership;

    async fn attempt(&mut self) -> Result<Step<Leadership>> {
        Ok(match self.election.attempt(self.key, self.holder).await? {
            Ok(leadership) => Step::Done(leadership),
            Err(Campaign::Busy { leader, .. }) => Step::Busy(leader.map(|l| l.expires_in)),
            Err(Campaign::Elected(_)) => unreachable!("attempt returns Ok for Elected"),
        })
    }

    async fn subscribe(&self) -> Result<Box<dyn LeaseWatch>> {
        let lb = self.election.handle.client.leadership()?;
        let election = lb.watch_election(self.key).await?;
        Ok(match &self.election.quorum {
            Some(q) => Box::new(EitherWatch(election, lb.watch_group(&q.group).await?)),
            None => election,
        })
    }

    fn what(&self) -> String {
        format!("leadership of {:?}", self.key.as_str())
    }
}

/// Wakes when either of two watches does.
struct EitherWatch(Box<dyn LeaseWatch>, Box<dyn LeaseWatch>);

#[async_trait]
impl LeaseWatch for EitherWatch {
    async fn changed(&mut self) -> Result<()> {
        tokio::select! {
            biased;
            r = self.0.changed() => r,
            r = self.1.changed() => r,
        }
    }
}

/// Resigns a term a cancelled campaign may have won.
struct PendingCampaign {
    client: Option<Client>,
    key: Key,
    holder: HolderId,
}

impl Drop for PendingCampaign {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let (key, holder) = (self.key.clone(), self.holder.clone());
        spawn_background(async move {
            let Ok(lb) = client.leadership() else { return };
            if let Ok(Some(l)) = lb.leader(&key).await
                && l.holder == holder
            {
                let _ = lb.resign(&key, &holder, l.term).await;
            }
        });
    }
}

/// The handle of a won term. It renews in the background (unless
/// auto-extension is off), tells when leadership is lost, and resigns on
/// [`resign`](Self::resign) or drop.
#[must_use = "if unused the leadership is resigned immediately"]
#[derive(Debug)]
pub struct Leadership {
    guard: LeaseGuard,
    info: LeaderInfo,
}

impl Leadership {
    /// The term: a fencing token strictly greater than every earlier term of
    /// this election. Hand it to whatever the leader writes to.
    pub fn term(&self) -> FencingToken {
        self.info.term
    }

    /// The leader info as published when the term began.
    pub fn info(&self) -> &LeaderInfo {
        &self.info
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

    /// Ends the term now so another candidate can win at once. Returns
    /// whether this instance was still leader.
    pub async fn resign(self) -> Result<bool> {
        self.guard.release().await
    }
}

/// One observed state of an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    /// The leader now, or `None` when nobody leads.
    pub leader: Option<LeaderInfo>,
    /// How many terms began and ended between the previous observation and
    /// this one without being observed (0 when none were missed).
    pub skipped: u64,
}

/// A stream of leader changes, from [`Election::observe`]. Each observer sees
/// every term or is told how many it skipped.
pub struct LeaderObserver {
    client: Client,
    key: Key,
    watch: Box<dyn LeaseWatch>,
    /// The last state returned: `(seq, term)` of its leader, `None` when
    /// vacant; `None` outside before the first call.
    last: Option<Option<(u64, FencingToken)>>,
    /// The seq of the last term returned.
    last_seq: Option<u64>,
}

impl LeaderObserver {
    /// The next state that differs from the last one returned (the current
    /// state on the first call).
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call loses nothing; the next one compares
    /// with the last state returned.
    pub async fn next(&mut self) -> Result<LeaderChange> {
        loop {
            let lb = self.client.leadership()?;
            // Until a term was seen, learn how many were granted before this
            // read (asked first: a term that begins and ends in between then
            // counts as skipped), so that terms missed after a first vacancy
            // are counted too.
            let granted = match self.last_seq {
                None => lb.terms_granted(&self.key).await?,
                Some(_) => None,
            };
            let leader = lb.leader(&self.key).await?;
            let state = leader.as_ref().map(|l| (l.seq, l.term));
            if self.last != Some(state) {
                let skipped = match (&leader, self.last_seq) {
                    (Some(l), Some(seq)) => l.seq.saturating_sub(seq + 1),
                    _ => 0,
                };
                match &leader {
                    Some(l) => self.last_seq = Some(l.seq),
                    None => self.last_seq = self.last_seq.or(granted),
                }
                self.last = Some(state);
                return Ok(LeaderChange { leader, skipped });
            }
            self.watch.changed().await?;
        }
    }
}

impl std::fmt::Debug for LeaderObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderObserver")
            .field("election", &self.key)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}
