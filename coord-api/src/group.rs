//! Group membership: join with a heartbeat lease, list live members, observe
//! changes.

use crate::{
    Client, FencingToken, HolderId, Key, LeaseGuard, LeaseId, LeaseKind, LeaseWatch, LostSignal,
    Members, Result,
    handle::{Handle, option_setters},
    lease::{LeaseShared, Target},
    trace::{self, Outcome},
};

/// A membership group: instances join it with a heartbeat lease; a crashed
/// member disappears when its lease expires. Elections use groups for their
/// quorum.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// let workers = client.group("workers").metadata("10.0.0.7");
/// let me = workers.join().await?;          // heartbeats in the background
/// let live = workers.members().await?;      // everyone alive now
/// println!("{} workers", live.members.len());
/// me.leave().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Group {
    handle: Handle,
    metadata: String,
}

impl Group {
    pub(crate) fn new(client: Client, name: &str) -> Group {
        Group {
            handle: Handle::new(client, name),
            metadata: String::new(),
        }
    }

    option_setters!();

    /// What a member publishes about itself.
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Joins the group; the returned handle heartbeats (auto-extension) and
    /// leaves on [`leave`](Membership::leave) or drop.
    pub async fn join(&self) -> Result<Membership> {
        let key = self.handle.key()?;
        let opts = self.handle.opts();
        opts.validate(key)?;
        let client = &self.handle.client;
        let lb = client.leadership()?;
        let holder = HolderId::new(*client.instance_id());
        let t_sent = client.clock().now();
        trace::call_on(
            "join",
            client,
            "group",
            key,
            Some(&holder),
            None,
            lb.join(key, &holder, &self.metadata, opts.ttl),
            |_| Outcome::Ok,
        )
        .await?;
        let shared = LeaseShared::start(
            client.clone(),
            LeaseId {
                kind: LeaseKind::Exclusive,
                key: key.clone(),
                holder,
            },
            Target::Member,
            FencingToken(0),
            opts,
            opts.local_validity(opts.ttl),
            t_sent,
        );
        Ok(Membership {
            guard: LeaseGuard::new(shared),
        })
    }

    /// The live members, oldest first, and the group's change counter.
    pub async fn members(&self) -> Result<Members> {
        let key = self.handle.key()?;
        let client = &self.handle.client;
        trace::call_on(
            "members",
            client,
            "group",
            key,
            None,
            None,
            client.leadership()?.members(key),
            |_| Outcome::Ok,
        )
        .await
    }

    /// A stream of membership changes; its first
    /// [`next`](GroupObserver::next) returns the current members at once.
    pub async fn observe(&self) -> Result<GroupObserver> {
        let key = self.handle.key()?.clone();
        let watch = self.handle.client.leadership()?.watch_group(&key).await?;
        Ok(GroupObserver {
            client: self.handle.client.clone(),
            key,
            watch,
            last: None,
        })
    }
}

/// This instance's membership of a group.
#[must_use = "if unused the membership ends immediately"]
#[derive(Debug)]
pub struct Membership {
    guard: LeaseGuard,
}

impl Membership {
    /// Whether this instance is still a member as far as it can tell.
    pub fn is_member(&self) -> bool {
        self.guard.is_held()
    }

    /// The member id the group knows this instance by.
    pub fn holder(&self) -> &HolderId {
        self.guard.holder()
    }

    /// Completes when the membership is lost (heartbeats failed past local
    /// validity, or the group dropped it).
    pub async fn lost(&self) {
        self.guard.lost().await
    }

    /// A `'static` handle on the lost signal.
    pub fn lost_signal(&self) -> LostSignal {
        self.guard.lost_signal()
    }

    /// Leaves the group; returns whether this instance was still a member.
    pub async fn leave(self) -> Result<bool> {
        self.guard.release().await
    }
}

/// One observed state of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    /// The live members now.
    pub members: Members,
    /// How many changes (joins, leaves, expiries) happened since the previous
    /// observation beyond the one that woke this call; 0 when none were missed.
    pub skipped: u64,
}

/// A stream of membership changes, from [`Group::observe`].
pub struct GroupObserver {
    client: Client,
    key: Key,
    watch: Box<dyn LeaseWatch>,
    last: Option<u64>,
}

impl GroupObserver {
    /// The next membership that differs from the last one returned (the
    /// current one on the first call).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Result<GroupChange> {
        loop {
            let members = self.client.leadership()?.members(&self.key).await?;
            if self.last != Some(members.seq) {
                let skipped = self
                    .last
                    .map_or(0, |seq| members.seq.saturating_sub(seq + 1));
                self.last = Some(members.seq);
                return Ok(GroupChange { members, skipped });
            }
            self.watch.changed().await?;
        }
    }
}

impl std::fmt::Debug for GroupObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupObserver")
            .field("group", &self.key)
            .field("last_seq", &self.last)
            .finish_non_exhaustive()
    }
}
