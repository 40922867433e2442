//! What a push carries ([`NewItem`]) and the limits every backend checks
//! on a queue's input.

use std::time::Duration;

use crate::{Error, Key, MAX_TTL, MIN_TTL, Result};

/// The highest priority (priorities are 0 ..= `MAX_PRIORITY`, higher first;
/// the default is 0).
pub const MAX_PRIORITY: u8 = 9;

/// The largest payload of an item, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 512 * 1024;

/// The most items one push or one receive may carry.
pub const MAX_BATCH: usize = 1_000;

/// The most attempts an item may be given.
pub const MAX_ITEM_ATTEMPTS: u32 = 1_000;

/// The most dead items a backend keeps per queue, at least.
pub const MAX_DEAD_KEPT: usize = 10_000;

/// The longest error or reason kept with an item, in bytes (longer ones are
/// cut at a character boundary: [`cut_reason`]).
pub const MAX_REASON_BYTES: usize = 4 * 1024;

/// The error a delivery an operator revoked leaves with its item (and
/// the reason it dies with, on its last attempt): see
/// [`OpsBackend::revoke`](crate::spi::OpsBackend::revoke).
pub const REVOKED: &str = "revoked by an operator";

/// An item to push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewItem {
    /// The encoded value (at most [`MAX_PAYLOAD_BYTES`]).
    pub payload: Vec<u8>,
    /// Ready only after this delay.
    pub delay: Option<Duration>,
    /// 0 ..= [`MAX_PRIORITY`], higher delivered first.
    pub priority: u8,
    /// Attempts it is given (1 ..= [`MAX_ITEM_ATTEMPTS`]).
    pub max_attempts: u32,
    /// A key making a repeated push within the window (the duration) a
    /// no-op.
    pub dedup: Option<(Key, Duration)>,
}

impl NewItem {
    /// An item with no delay, priority 0, `max_attempts` attempts and no
    /// dedup key.
    pub fn new(payload: Vec<u8>, max_attempts: u32) -> NewItem {
        NewItem {
            payload,
            delay: None,
            priority: 0,
            max_attempts,
            dedup: None,
        }
    }

    /// Ready after `delay`.
    pub fn delay(mut self, delay: Option<Duration>) -> NewItem {
        self.delay = delay;
        self
    }

    /// With priority `priority`.
    pub fn priority(mut self, priority: u8) -> NewItem {
        self.priority = priority;
        self
    }

    /// With a dedup key and its window.
    pub fn dedup(mut self, dedup: Option<(Key, Duration)>) -> NewItem {
        self.dedup = dedup;
        self
    }

    /// Checks the item against the limits every backend enforces at push:
    /// a payload of at most [`MAX_PAYLOAD_BYTES`], a priority of at most
    /// [`MAX_PRIORITY`], `max_attempts` in 1..=[`MAX_ITEM_ATTEMPTS`], a
    /// delay of at most [`MAX_TTL`] and a dedup window in
    /// [`MIN_TTL`]..=[`MAX_TTL`]. `queue` names the queue in errors.
    pub fn check(&self, queue: &Key) -> Result<()> {
        let size = self.payload.len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(invalid(
                queue,
                format_args!("an item of {size} bytes, more than the limit of {MAX_PAYLOAD_BYTES}"),
            ));
        }
        if self.priority > MAX_PRIORITY {
            let p = self.priority;
            return Err(invalid(
                queue,
                format_args!("priority {p}, above the limit of {MAX_PRIORITY}"),
            ));
        }
        if !(1..=MAX_ITEM_ATTEMPTS).contains(&self.max_attempts) {
            let n = self.max_attempts;
            return Err(invalid(
                queue,
                format_args!("max_attempts {n}, outside 1..={MAX_ITEM_ATTEMPTS}"),
            ));
        }
        if let Some(delay) = self.delay
            && delay > MAX_TTL
        {
            return Err(invalid(
                queue,
                format_args!("a delay of {delay:?}, above the limit of {MAX_TTL:?}"),
            ));
        }
        if let Some((id, window)) = &self.dedup
            && !(MIN_TTL..=MAX_TTL).contains(window)
        {
            return Err(invalid(
                queue,
                format_args!(
                    "dedup window {window:?} of \"{id}\", outside {MIN_TTL:?}..={MAX_TTL:?}"
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a push against the limits every backend enforces: at most
/// [`MAX_BATCH`] items, each within [`NewItem::check`]. `queue` names the
/// queue in errors.
pub fn check_push(queue: &Key, items: &[NewItem]) -> Result<()> {
    if items.len() > MAX_BATCH {
        let n = items.len();
        return Err(invalid(
            queue,
            format_args!("a push of {n} items, more than the limit of {MAX_BATCH}"),
        ));
    }
    items.iter().try_for_each(|item| item.check(queue))
}

/// Checks the size of a page of dead items, which every backend enforces:
/// 1..=[`MAX_BATCH`]. `queue` names the queue in errors.
pub fn check_dead_page(queue: &Key, limit: u32) -> Result<()> {
    if limit == 0 || limit as usize > MAX_BATCH {
        return Err(invalid(
            queue,
            format_args!("a page of {limit} dead letters, outside 1..={MAX_BATCH}"),
        ));
    }
    Ok(())
}

/// `reason` (an error or a dead-letter reason) cut to [`MAX_REASON_BYTES`]
/// at a character boundary, as every backend keeps it.
pub fn cut_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// `InvalidArgument` naming `queue` and what is wrong.
pub(super) fn invalid(queue: &Key, what: std::fmt::Arguments<'_>) -> Error {
    Error::invalid(format!("queue \"{queue}\": {what}"))
}
