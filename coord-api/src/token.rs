//! Fencing tokens.

use std::{fmt, time::SystemTime};

/// A number carried by every grant, strictly greater than every token granted
/// before for the same key, also across a backend restart that lost its data.
///
/// A guard is not proof of exclusivity (a paused process may still believe it
/// holds an expired lease). A resource that must never see two writers records
/// the highest token it has seen and refuses writes with a smaller one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The rule every backend uses to draw the next token: one more than the
    /// last stored token, but never less than the server's wall clock in
    /// microseconds since the Unix epoch. A backend that lost its counter
    /// (restart without persistence) therefore still issues larger tokens, as
    /// long as its clock does not go backwards.
    ///
    /// ```
    /// use coord_api::FencingToken;
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let now = UNIX_EPOCH + Duration::from_secs(1_000);
    /// assert_eq!(FencingToken::next_after(0, now).get(), 1_000_000_000);
    /// assert_eq!(FencingToken::next_after(2_000_000_000, now).get(), 2_000_000_001);
    /// ```
    pub fn next_after(last: u64, server_now: SystemTime) -> FencingToken {
        let micros = server_now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        FencingToken::next_after_micros(last, micros)
    }

    /// [`next_after`](Self::next_after) with the server's wall clock given in
    /// microseconds since the Unix epoch.
    pub fn next_after_micros(last: u64, server_now_micros: u64) -> FencingToken {
        FencingToken(last.saturating_add(1).max(server_now_micros))
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<FencingToken> for u64 {
    fn from(t: FencingToken) -> u64 {
        t.0
    }
}
