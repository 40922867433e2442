//! [`LeaderObserver`]: every change of leader, or how many were skipped.

use crate::{
    Client, FencingToken, Key, LeaderInfo, LeaseOptions, Result, Watch,
    membership::woken_or_after,
    trace::{self, Outcome, Site},
};

/// What tells two observed leaders apart: the term (and its `seq`), and the
/// metadata, which a leader may change within its term (`proclaim`).
type Seen = (u64, FencingToken, String);

/// One observed state of an election: a new term, a vacancy, or new
/// metadata proclaimed by the same term's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderChange {
    /// The leader now, or `None` when nobody leads.
    pub leader: Option<LeaderInfo>,
    /// How many terms began and ended between the previous observation and
    /// this one without being observed (0 when none were missed).
    pub skipped: u64,
}

/// A stream of leader changes, from [`Election::observe`](crate::Election::observe). Each observer sees
/// every term or is told how many it skipped.
pub struct LeaderObserver {
    pub(super) client: Client,
    pub(super) key: Key,
    pub(super) watch: Box<dyn Watch>,
    /// Whose retry delay bounds a wait for a notification (a hint, which
    /// may be lost).
    pub(super) retry: LeaseOptions,
    /// The last state returned: `(seq, term, metadata)` of its leader,
    /// `None` when vacant; `None` outside before the first call.
    pub(super) last: Option<Option<Seen>>,
    /// The seq of the last term returned.
    pub(super) last_seq: Option<u64>,
}

impl LeaderObserver {
    /// The next state that differs from the last one returned (the current
    /// state on the first call): another term, a vacancy, or the same
    /// term's leader with other metadata (after
    /// [`Leadership::proclaim`](crate::Leadership::proclaim)).
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call loses nothing; the next one compares
    /// with the last state returned.
    pub async fn next(&mut self) -> Result<LeaderChange> {
        loop {
            let (client, key) = (&self.client, &self.key);
            let elections = client.elections()?;
            let site = |op| move || Site::new(("election", "", op), key, None, None);
            // How many terms were granted before this read (asked first: a
            // term that begins and ends in between then counts as skipped
            // at the next change), so that a vacancy tells the terms that
            // came and went unseen since the last one seen.
            let granted = elections.terms_granted(key);
            let granted = trace::call(client, site("terms_granted"), granted, Outcome::ok).await?;
            let leader = elections.leader(key);
            let leader = trace::call(client, site("leader"), leader, Outcome::ok).await?;
            let state = leader.as_ref().map(|l| (l.seq, l.term, l.metadata.clone()));
            if self.last.as_ref() != Some(&state) {
                let skipped = skipped(leader.as_ref().map(|l| l.seq), self.last_seq, granted);
                match &leader {
                    Some(l) => self.last_seq = Some(l.seq),
                    None => self.last_seq = self.last_seq.max(granted),
                }
                self.last = Some(state);
                return Ok(LeaderChange { leader, skipped });
            }
            // A notification is a hint: one lost, or a backend that sends
            // none, delays a change by at most the retry delay.
            woken_or_after(&self.client, &mut *self.watch, &self.retry).await?;
        }
    }
}

/// How many terms came and went unseen: between the `last_seq` returned
/// and the leader's `seq` now, or, at a vacancy, up to the terms `granted`.
fn skipped(leader_seq: Option<u64>, last_seq: Option<u64>, granted: Option<u64>) -> u64 {
    match (leader_seq, last_seq) {
        (Some(now), Some(seq)) => now.saturating_sub(seq).saturating_sub(1),
        (None, Some(seq)) => granted.map_or(0, |g| g.saturating_sub(seq)),
        (_, None) => 0,
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

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::skipped;
    use crate::{Client, FencingToken, testing::Deaf};

    #[test]
    fn skipped_terms_are_counted_from_seq() {
        assert_eq!(skipped(Some(7), Some(3), None), 3);
        assert_eq!(skipped(Some(4), Some(3), None), 0);
        assert_eq!(skipped(None, Some(3), Some(5)), 2);
        assert_eq!(skipped(Some(9), None, Some(9)), 0);
        // A seq that went back (a backend that lost its data) skips none.
        assert_eq!(skipped(Some(2), Some(3), None), 0);
    }

    /// A backend reporting the largest seq (corrupt, or a counter at its
    /// end) overflowed `seq + 1`: a panic in debug builds, and in release
    /// a wrapped 0, so that the next term told it skipped every term.
    #[test]
    fn a_seq_at_its_largest_does_not_overflow() {
        assert_eq!(skipped(Some(u64::MAX), Some(u64::MAX), None), 0);
        assert_eq!(skipped(Some(5), Some(u64::MAX), None), 0);
        assert_eq!(skipped(None, Some(u64::MAX), Some(u64::MAX)), 0);
        assert_eq!(skipped(Some(u64::MAX), Some(u64::MAX - 2), None), 1);
    }

    /// A notification is a hint: an observer whose watch never wakes still
    /// sees the next leader, at its retry delay (1 s by default).
    #[tokio::test(start_paused = true)]
    async fn an_observer_sees_a_leader_its_watch_never_told() {
        let client = Client::new(Arc::new(Deaf::new()));
        let mut observer = client.election("leader").observe().await.unwrap();
        assert_eq!(observer.next().await.unwrap().leader, None);
        let next = tokio::time::timeout(Duration::from_secs(60), observer.next()).await;
        let led = next.expect("seen without a wake-up").unwrap().leader;
        assert_eq!(led.map(|l| l.term), Some(FencingToken(7)));
    }
}
