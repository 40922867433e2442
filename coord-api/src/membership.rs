//! Group membership: join with a heartbeat lease, list live members, observe
//! changes.

use std::time::Duration;

use crate::{
    Client, HolderId, Key, LeaseOptions, LostSignal, Members, Release, Result, Watch,
    handle::{Handle, option_setters},
    lease::{
        BoxFuture, Guard, Lease, Tenure, metrics, released,
        undo::granting,
        wait::{jittered, later},
    },
    spi::membership::check_member_metadata,
    trace::{self, Outcome, Site},
};

/// A membership's tenure: renewed by heartbeats, released by leaving.
struct Member {
    group: Key,
    holder: HolderId,
}

impl Tenure for Member {
    fn family(&self) -> &'static str {
        "group"
    }

    fn kind(&self) -> &'static str {
        "member"
    }

    fn key(&self) -> &Key {
        &self.group
    }

    fn holder(&self) -> &HolderId {
        &self.holder
    }

    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        Ok(client.groups()?.heartbeat(&self.group, &self.holder, ttl))
    }

    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let groups = client.groups()?;
        Ok(Box::pin(async move {
            Ok(released(groups.leave(&self.group, &self.holder).await?))
        }))
    }

    fn counted(&self) -> bool {
        false
    }
}

fn site<'a>(op: &'static str, key: &'a Key, holder: Option<&'a HolderId>) -> Site<'a> {
    Site {
        op,
        family: "group",
        kind: if holder.is_some() { "member" } else { "" },
        key,
        holder,
        token: None,
    }
}

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

    /// What a member publishes about itself: at most
    /// [`MAX_MEMBER_METADATA_BYTES`](crate::MAX_MEMBER_METADATA_BYTES)
    /// bytes (more is `InvalidArgument` at `join`).
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Joins the group; the returned handle heartbeats (auto-extension) and
    /// leaves on [`leave`](Membership::leave) or drop.
    ///
    /// `InvalidArgument` before any I/O for a bad name or options, or
    /// metadata over
    /// [`MAX_MEMBER_METADATA_BYTES`](crate::MAX_MEMBER_METADATA_BYTES).
    ///
    /// # Cancel safety
    /// If cancelled after the request left, the membership it may have
    /// created is ended in the background.
    pub async fn join(&self) -> Result<Membership> {
        let (key, opts) = self.handle.checked()?;
        check_member_metadata(key, &self.metadata)?;
        let client = &self.handle.client;
        let holder = HolderId::new(*client.instance_id());
        let t_sent = client.clock().now();
        let join = client
            .groups()?
            .join(key, &holder, &self.metadata, opts.ttl);
        let join = trace::call(
            client,
            || site("join", key, Some(&holder)),
            join,
            Outcome::ok,
        );
        granting(client, opts.ttl, join, || {
            let (key, holder) = (key.clone(), holder.clone());
            move |client: Client| {
                let (key, holder) = (key.clone(), holder.clone());
                async move { client.groups()?.leave(&key, &holder).await.map(drop) }
            }
        })
        .await?;
        let member = Member {
            group: key.clone(),
            holder,
        };
        let validity = self.handle.validity();
        let lease = Lease::start(client.clone(), member, None, opts, validity, t_sent)?;
        metrics::joined(client, key);
        Ok(Membership {
            guard: Guard::new(lease),
        })
    }

    /// The live members, oldest first, and the group's change counter.
    pub async fn members(&self) -> Result<Members> {
        let key = self.handle.key()?;
        let client = &self.handle.client;
        let members = client.groups()?.members(key);
        trace::call(client, || site("members", key, None), members, Outcome::ok).await
    }

    /// A stream of membership changes; its first
    /// [`next`](GroupObserver::next) returns the current members at once.
    pub async fn observe(&self) -> Result<GroupObserver> {
        let key = self.handle.key()?.clone();
        let client = &self.handle.client;
        let watch = client.groups()?.watch(&key);
        let watch = trace::call(client, || site("watch", &key, None), watch, Outcome::ok).await?;
        Ok(GroupObserver {
            client: self.handle.client.clone(),
            key,
            watch,
            retry: self.handle.opts().clone(),
            last: None,
        })
    }
}

/// This instance's membership of a group.
#[must_use = "if unused the membership ends immediately"]
#[derive(Debug)]
pub struct Membership {
    guard: Guard,
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
#[non_exhaustive]
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
    watch: Box<dyn Watch>,
    /// Whose retry delay bounds a wait for a notification (a hint, which
    /// may be lost).
    retry: LeaseOptions,
    /// The change counter and the members (their holder ids, oldest
    /// first) last returned.
    last: Option<(u64, Vec<HolderId>)>,
}

impl GroupObserver {
    /// The next membership that differs from the last one returned (the
    /// current one on the first call).
    ///
    /// A change is a new change counter or other members: a group's counter
    /// may start again (on Redis, once the group has stayed empty for a
    /// day its keys go, the counter with them), and a counter that started
    /// again may meet the value last seen; `skipped` is 0 when the counter
    /// went back.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Result<GroupChange> {
        loop {
            let (client, key) = (&self.client, &self.key);
            let members = client.groups()?.members(key);
            let members =
                trace::call(client, || site("members", key, None), members, Outcome::ok).await?;
            let holders: Vec<HolderId> = members.members.iter().map(|m| m.holder.clone()).collect();
            let skipped = match &self.last {
                None => Some(0),
                Some((seq, last)) if *seq != members.seq || *last != holders => {
                    Some(skipped(*seq, members.seq))
                }
                Some(_) => None,
            };
            if let Some(skipped) = skipped {
                self.last = Some((members.seq, holders));
                return Ok(GroupChange { members, skipped });
            }
            // A notification is a hint: one lost, or a backend that sends
            // none, delays a change by at most the retry delay.
            woken_or_after(&self.client, &mut *self.watch, &self.retry).await?;
        }
    }
}

/// Waits until `watch` wakes, or for `opts`' retry delay (jittered): what an
/// observer waits between two reads. `Err` when the watch failed.
pub(crate) async fn woken_or_after(
    client: &Client,
    watch: &mut dyn Watch,
    opts: &LeaseOptions,
) -> Result<()> {
    let clock = client.clock();
    let wake = later(clock.now(), jittered(opts));
    tokio::select! {
        biased;
        res = watch.changed() => res,
        () = clock.sleep_until(wake) => Ok(()),
        // Closed: the next read answers `Error::Closed`.
        () = client.until_closed() => Ok(()),
    }
}

/// How many changes came and went unseen between the change counter `last`
/// returned and the counter `now` (none when it went back).
fn skipped(last: u64, now: u64) -> u64 {
    now.saturating_sub(last).saturating_sub(1)
}

impl std::fmt::Debug for GroupObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupObserver")
            .field("group", &self.key)
            .field("last_seq", &self.last.as_ref().map(|(seq, _)| seq))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::skipped;
    use crate::{Client, testing::Deaf};

    #[test]
    fn skipped_changes_are_counted_from_the_counter() {
        assert_eq!(skipped(3, 7), 3);
        assert_eq!(skipped(3, 4), 0);
        // Other members, same counter; a counter that started again.
        assert_eq!(skipped(3, 3), 0);
        assert_eq!(skipped(9, 2), 0);
    }

    /// A backend reporting the largest counter (corrupt, or a counter at
    /// its end) overflowed `seq + 1`: a panic in debug builds, and in
    /// release a wrapped 0, so that the next change told it skipped every
    /// change.
    #[test]
    fn a_counter_at_its_largest_does_not_overflow() {
        assert_eq!(skipped(u64::MAX, u64::MAX), 0);
        assert_eq!(skipped(u64::MAX, 5), 0);
        assert_eq!(skipped(u64::MAX - 2, u64::MAX), 1);
    }

    /// A notification is a hint: an observer whose watch never wakes still
    /// sees the next change, at its retry delay (1 s by default).
    #[tokio::test(start_paused = true)]
    async fn an_observer_sees_changes_its_watch_never_told() {
        let client = Client::new(Arc::new(Deaf::new()));
        let mut observer = client.group("workers").observe().await.unwrap();
        assert_eq!(observer.next().await.unwrap().members.seq, 0);
        let t0 = tokio::time::Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(60), observer.next()).await;
        assert_eq!(
            next.expect("seen without a wake-up").unwrap().members.seq,
            1
        );
        assert!(t0.elapsed() <= Duration::from_secs(2), "{:?}", t0.elapsed());
    }
}
