//! Watches of shared values: every change after a version, in order, or a
//! gap that says what was missed and carries the current state.

use std::collections::VecDeque;

use serde::de::DeserializeOwned;

use super::{Named, Versioned, checked, decode, decode_value, metrics};
use crate::{
    Client, Instant, Key, Result,
    spi::{ChangeKind, Changes, MAX_CHANGES_PAGE, Select, Watch, state::check_changes},
    trace::{self, Outcome, Site},
};

/// A watch's backend call `op` about `key`, as its span names it.
fn site<'a>(op: &'static str, key: &'a Key) -> Site<'a> {
    Site {
        op,
        family: "state",
        kind: "watch",
        key,
        holder: None,
        token: None,
    }
}

/// What a [`StateWatch`] hands out, in version order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateEvent<T> {
    /// `key` was written: its new value and version.
    Put {
        /// The key.
        key: String,
        /// The change's version.
        version: u64,
        /// The value written.
        value: T,
    },
    /// `key` was deleted.
    Deleted {
        /// The key.
        key: String,
        /// The change's version.
        version: u64,
    },
    /// `key`'s TTL passed: it is gone.
    Expired {
        /// The key.
        key: String,
        /// The change's version.
        version: u64,
    },
    /// The changes after `after` are no longer all kept (the log dropped
    /// them, or the backend lost its data): the watch missed those before
    /// `oldest`, the oldest version still kept (`None`: none is). Instead,
    /// `current` is every watched key's current value, a complete
    /// snapshot, and the watch goes on from there. A present key whose
    /// value does not decode as `T` is not in `current`:
    /// [`StateWatch::next`] hands out an error naming it right after the
    /// gap (one per such key, in key order). A key neither in `current`
    /// nor named so is absent.
    Gap {
        /// The version the watch had seen up to.
        after: u64,
        /// The oldest version still kept.
        oldest: Option<u64>,
        /// The version the snapshot is at: the watch goes on after it.
        head: u64,
        /// Every watched key present now whose value decodes, with its
        /// value, in key order.
        current: Vec<(String, Versioned<T>)>,
    },
}

/// Every change of a value (or of the keys of a space starting with a
/// prefix) after a version: in order, each exactly once, or an explicit
/// [`StateEvent::Gap`] — never a silent skip.
///
/// It reads the space's change log from the last version it handed out;
/// the backend's notifications only wake it (a lost one delays it by at
/// most the client's retry delay, and a TTL's expiry is read when due).
/// After an error (the backend unreachable) the next call subscribes
/// again and resumes from where it was: what it missed meanwhile is in the
/// log, or it gets a gap with the current state, so a lost notification
/// or a lost connection never leaves a stale value standing.
///
/// A value that does not decode as `T` is an `Err` from
/// [`next`](Self::next) naming the key, the type and the backend, in its
/// place (a gap's: right after the gap); the watch goes on after it.
pub struct StateWatch<T> {
    client: Client,
    space: Named,
    select: std::result::Result<Select, String>,
    /// The version read up to.
    after: u64,
    /// The version handed out up to (see [`position`](Self::position)).
    position: u64,
    /// Events read, not handed out yet, each with the position it brings
    /// the watch to.
    pending: VecDeque<(Result<StateEvent<T>>, u64)>,
    watch: Option<Box<dyn Watch>>,
}

impl<T> std::fmt::Debug for StateWatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateWatch")
            .field("space", &self.space)
            .field("select", &self.select)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + 'static> StateWatch<T> {
    pub(crate) fn new(
        client: Client,
        space: Named,
        select: std::result::Result<Select, String>,
        after: u64,
    ) -> StateWatch<T> {
        StateWatch {
            client,
            space,
            select,
            after,
            position: after,
            pending: VecDeque::new(),
            watch: None,
        }
    }

    /// The version the watch has handed out up to: every change up to it
    /// was handed out (or summed up by a gap), none after it. A watch made
    /// again from this version (after the process restarted, say) goes on
    /// exactly where this one is. A gap that left out a key whose value
    /// does not decode brings the watch to the gap's head only with the
    /// last error naming such a key (before it, a watch made again gets
    /// the gap and the errors again).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next change (waiting for one as long as it takes).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a change is handed out only when this returns.
    pub async fn next(&mut self) -> Result<StateEvent<T>> {
        let space = checked(&self.space)?.clone();
        // (Its waits use the client's retry delay: zero would poll.)
        self.client.lease_options().validate(&space)?;
        let select = match &self.select {
            Ok(s) => s.clone(),
            Err(raw) => return Err(Key::new(raw).expect_err("validated before")),
        };
        check_changes(&space, &select, MAX_CHANGES_PAGE)?;
        // A closed client's: `Closed`, also with changes read, not handed
        // out yet (they stay: the position has not passed them).
        self.client.state_backend()?;
        loop {
            if let Some((event, position)) = self.pending.pop_front() {
                self.position = position;
                // Counted as handed out, not as read: a watch dropped with
                // events still queued counts only those its caller saw.
                if let Ok(event) = &event {
                    metrics::event(match event {
                        StateEvent::Put { .. } => "put",
                        StateEvent::Deleted { .. } => "deleted",
                        StateEvent::Expired { .. } => "expired",
                        StateEvent::Gap { .. } => "gap",
                    });
                }
                return event;
            }
            let state = self.client.state_backend()?;
            // What the spans name: the value's key, or the space watched.
            let key = match &select {
                Select::Key(k) => k,
                Select::Prefix(_) => &space,
            };
            // Subscribed before the read, so a change after it wakes us.
            if self.watch.is_none() {
                let watch = state.watch(&space);
                let watch = trace::call(&self.client, || site("watch", key), watch, Outcome::ok);
                self.watch = Some(watch.await?);
            }
            let read = state.changes(&space, &select, self.after, MAX_CHANGES_PAGE);
            let read = trace::call(&self.client, || site("changes", key), read, Outcome::ok);
            let page = match read.await {
                Ok(page) => page,
                Err(e) => {
                    self.watch = None;
                    return Err(e);
                }
            };
            let next_expiry = page.next_expiry_in.map(|d| self.client.clock().now() + d);
            self.take(&space, page);
            if !self.pending.is_empty() {
                continue;
            }
            self.wait(next_expiry).await;
        }
    }

    /// Queues the events of `page` and moves past it.
    fn take(&mut self, space: &Key, page: Changes) {
        let gap = page.gap.is_some();
        if let Some(gap) = page.gap {
            let mut current = Vec::with_capacity(page.current.len());
            let mut undecodable = Vec::new();
            // A key not reported yet holds the watch where it was, as a
            // change whose value does not decode does until its error is
            // handed out: a watch made again from there is told too.
            let held = self.position;
            for (key, stored) in page.current {
                match decode(&self.client, space, &key, stored) {
                    Ok(v) => current.push((key.as_str().to_owned(), v)),
                    Err(e) => undecodable.push((Err(e), held)),
                }
            }
            let event = StateEvent::Gap {
                after: gap.after,
                oldest: gap.oldest,
                head: page.head,
                current,
            };
            let at = if undecodable.is_empty() {
                page.head
            } else {
                held
            };
            self.pending.push_back((Ok(event), at));
            self.pending.extend(undecodable);
        }
        for change in page.changes {
            let (key, version) = (change.key.as_str().to_owned(), change.version);
            let event = match change.kind {
                ChangeKind::Put(bytes) => decode_value(&self.client, space, &change.key, &bytes)
                    .map(|value| StateEvent::Put {
                        key,
                        version,
                        value,
                    }),
                ChangeKind::Deleted => Ok(StateEvent::Deleted { key, version }),
                ChangeKind::Expired => Ok(StateEvent::Expired { key, version }),
            };
            self.pending.push_back((event, version));
        }
        // After a gap the watch goes on from the head even when it is below
        // where it was (the backend lost its data); otherwise it never
        // goes back.
        self.after = if gap {
            page.head
        } else {
            self.after.max(page.head)
        };
        // The last event brings the watch to the head: the changes after it
        // up to the head are of keys it does not select.
        match self.pending.back_mut() {
            Some((_, position)) => *position = self.after,
            None => self.position = self.after,
        }
    }

    /// Waits for a notification, the next expiry, the retry delay, or the
    /// client's close (the next step then answers `Closed` at once).
    async fn wait(&mut self, next_expiry: Option<Instant>) {
        let clock = self.client.clock().clone();
        let fallback =
            crate::lease::wait::later(clock.now(), self.client.lease_options().retry_delay);
        let until = next_expiry.map_or(fallback, |e| e.min(fallback));
        let watch = self.watch.as_mut().expect("subscribed above");
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    self.watch = None;
                }
            }
            _ = clock.sleep_until(until) => {}
            () = self.client.until_closed() => {}
        }
    }
}
