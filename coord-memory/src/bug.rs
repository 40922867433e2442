//! Deliberately broken variants of the store (feature `broken`, tests only):
//! the simulator's checkers must report each of them.

/// A deliberate bug in a [`MemoryStore`](crate::MemoryStore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// `release` frees the key's lease whoever asks.
    ReleaseIgnoresHolder,
    /// Tokens are a plain counter from 1, without the wall-clock floor: a
    /// restarted (emptied) store reuses old tokens.
    NoTokenFloor,
    /// `extend` answers `true` when the key is held by someone else.
    RenewAfterTakeover,
    /// Watches never wake at expiry and `Busy::retry_in` is `None`: waiters
    /// only learn of an expiry by their fallback retry.
    NoExpiryWake,
}
