//! Validated keys, namespaces and TTLs.

use std::{fmt, time::Duration};

use smol_str::SmolStr;

use crate::{Error, Result};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 64;
/// Shortest TTL a lease may have.
pub const MIN_TTL: Duration = Duration::from_millis(1);
/// Longest TTL a lease may have.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The name of a lock, election, queue...: UTF-8, 1..=512 bytes, no control
/// characters. Cheap to clone; hashes in constant time (its hash is computed
/// once, at validation).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Interned);

impl Key {
    /// Validates `key`.
    ///
    /// ```
    /// use coord_api::Key;
    /// assert!(Key::new("jobs/nightly-backup").is_ok());
    /// assert!(Key::new("").is_err());
    /// assert!(Key::new("a\nb").is_err());
    /// ```
    pub fn new(key: &str) -> Result<Key> {
        if key.is_empty() {
            return Err(Error::invalid("key is empty (a key is 1..=512 bytes)"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::invalid(format!(
                "key {:?}... is {} bytes, over the limit of {MAX_KEY_BYTES}",
                truncate(key, 32),
                key.len()
            )));
        }
        if let Some(c) = key.chars().find(|c| c.is_control()) {
            return Err(Error::invalid(format!(
                "key {key:?} contains the control character {c:?} (control characters are not allowed)"
            )));
        }
        Ok(Key(Interned::new(key)))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0.text, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0.text
    }
}

/// The namespace a client is bound to (default `coord`): 1..=64 bytes of
/// ASCII letters, digits, `-`, `_` and `.`. Keys of two namespaces never
/// collide.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Interned);

impl Namespace {
    /// The namespace used when none is configured.
    pub const DEFAULT: &'static str = "coord";

    /// Validates `ns`.
    ///
    /// ```
    /// use coord_api::Namespace;
    /// assert!(Namespace::new("billing-prod").is_ok());
    /// assert!(Namespace::new("a:b").is_err());
    /// ```
    pub fn new(ns: &str) -> Result<Namespace> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if ns.is_empty() || ns.len() > MAX_NAMESPACE_BYTES {
            return Err(Error::invalid(format!(
                "namespace {:?} is {} bytes; a namespace is 1..={MAX_NAMESPACE_BYTES} bytes",
                truncate(ns, 32),
                ns.len()
            )));
        }
        if let Some(c) = ns.chars().find(|&c| !ok_char(c)) {
            return Err(Error::invalid(format!(
                "namespace {ns:?} contains {c:?}; allowed are ASCII letters, digits, '-', '_' and '.'"
            )));
        }
        Ok(Namespace(Interned::new(ns)))
    }

    /// The namespace as a string.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace(Interned::new(Self::DEFAULT))
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0.text, f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

/// A string (inline up to 23 bytes, else shared) with its hash computed once, at validation: hashing a
/// key or namespace in a backend's table then costs one `u64` write, not a
/// pass over up to 512 bytes. Equality and order are those of the text.
#[derive(Clone)]
struct Interned {
    /// Up to 23 bytes inline (a clone copies them), longer ones shared.
    text: SmolStr,
    hash: u64,
}

impl Interned {
    fn new(text: &str) -> Interned {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        text.hash(&mut h);
        Interned {
            text: SmolStr::new(text),
            hash: h.finish(),
        }
    }
}

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        // The hashes tell most different keys apart without a byte
        // comparison.
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for Interned {}

impl std::hash::Hash for Interned {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Interned {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Interned {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

/// Checks that `ttl` is within [`MIN_TTL`]..=[`MAX_TTL`]; `key` names the
/// lease in the error.
pub fn validate_ttl(key: &Key, ttl: Duration) -> Result<()> {
    check_in_ttl_range("ttl", "key", key, ttl)
}

/// `raw` as the key of a `part` of the `owner` named `name` (a graph's
/// node name, a job's occurrence): a bad one is `InvalidArgument` naming
/// the part and its owner, with the key's rule.
pub(crate) fn part_key(owner: &str, name: &Key, part: &str, raw: &str) -> Result<Key> {
    Key::new(raw).map_err(|e| match e {
        Error::InvalidArgument { message } => {
            Error::invalid(format!("{owner} {:?}: {part}: {message}", name.as_str()))
        }
        other => other,
    })
}

/// `InvalidArgument` naming the option `what` (of the `owner` named
/// `key`) unless `d` is within [`MIN_TTL`]..=[`MAX_TTL`].
pub(crate) fn check_in_ttl_range(what: &str, owner: &str, key: &Key, d: Duration) -> Result<()> {
    if d < MIN_TTL || d > MAX_TTL {
        return Err(Error::invalid(format!(
            "{what} {d:?} for {owner} {key:?} is out of range: a {what} is from {MIN_TTL:?} to \
             {MAX_TTL:?}"
        )));
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits() {
        assert!(Key::new(&"k".repeat(512)).is_ok());
        let e = Key::new(&"k".repeat(513)).unwrap_err().to_string();
        assert!(e.contains("513") && e.contains("512"), "{e}");
        assert!(Key::new("tab\there").is_err());
        assert!(Key::new("\u{7f}").is_err());
        assert!(Key::new("ünïcødé/ok").is_ok());
    }

    #[test]
    fn ttl_limits() {
        let k = Key::new("k").unwrap();
        assert!(validate_ttl(&k, Duration::ZERO).is_err());
        assert!(validate_ttl(&k, MIN_TTL).is_ok());
        assert!(validate_ttl(&k, MAX_TTL).is_ok());
        let e = validate_ttl(&k, MAX_TTL + Duration::from_millis(1)).unwrap_err();
        assert!(e.to_string().contains("\"k\""), "{e}");
    }

    #[test]
    fn namespace_rules() {
        assert_eq!(Namespace::default().as_str(), "coord");
        assert!(Namespace::new("").is_err());
        assert!(Namespace::new("a{b}").is_err());
        assert!(Namespace::new(&"n".repeat(65)).is_err());
    }
}
