//! Who holds a lease: an instance id plus a nonce unique per acquisition.

use std::{
    collections::HashSet,
    fmt,
    hash::{Hash, Hasher},
    str::FromStr,
    sync::{Mutex, OnceLock},
};

use crate::{Error, Result};

/// Names one running instance of a service (a process, a pod). Shown to
/// operators in [`LeaseInfo`](crate::LeaseInfo); it is not a secret and not a
/// proof of anything. At most 128 bytes, no control characters, no `#`.
///
/// Ids are interned: each distinct text is stored once for the life of the
/// process, so copying one (every grant carries one) costs no reference
/// count. A process meets few: its own, and those of the holders it
/// inspects.
#[derive(Clone, Copy, Eq, PartialOrd, Ord)]
pub struct InstanceId(&'static str);

impl PartialEq for InstanceId {
    fn eq(&self, other: &Self) -> bool {
        // Interned: equal texts share one allocation.
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

impl Hash for InstanceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

/// The one stored copy of `id`'s text.
fn intern(id: &str) -> &'static str {
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(text) = seen.get(id) {
        return text;
    }
    let text: &'static str = Box::leak(id.into());
    seen.insert(text);
    text
}

impl InstanceId {
    /// Longest instance id, in bytes.
    pub const MAX_BYTES: usize = 128;

    /// Validates `id`.
    pub fn new(id: &str) -> Result<InstanceId> {
        if id.is_empty() || id.len() > Self::MAX_BYTES {
            return Err(Error::invalid(format!(
                "instance id {id:?} is {} bytes; an instance id is 1..={} bytes",
                id.len(),
                Self::MAX_BYTES
            )));
        }
        if id.chars().any(|c| c.is_control() || c == '#') {
            return Err(Error::invalid(format!(
                "instance id {id:?} contains '#' or a control character"
            )));
        }
        Ok(InstanceId(intern(id)))
    }

    /// A fresh id for this process: `<hostname>-<pid>-<16 random hex>`. The
    /// host name is `HOSTNAME`, else the kernel's (`/proc/sys/kernel/hostname`),
    /// else `host`. 64 random bits: processes whose host names and pids agree
    /// (containers are often pid 1, and `HOSTNAME` is not always exported)
    /// still get distinct ids (16 bits made a collision likely among a few
    /// hundred; two instances with one id make a dead one's leases look
    /// alive).
    pub fn generate() -> InstanceId {
        let usable = |h: &String| InstanceId::new(h).is_ok() && h.len() <= 64;
        let host = (std::env::var("HOSTNAME").ok().filter(usable))
            .or_else(|| {
                let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
                Some(kernel.trim().to_owned()).filter(usable)
            })
            .unwrap_or_else(|| "host".to_owned());
        let id = format!(
            "{host}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        InstanceId(intern(&id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The identity a lease is granted to: the instance plus a 128-bit nonce
/// unique per acquisition. Only the exact holder can extend or release a
/// lease; a stale holder changes nothing. Holder ids tell holders apart; they
/// are not secrets (`holders()` lists them) and authenticate nobody.
///
/// Its text form, used by backends to store it, is `instance#nonce-in-hex`:
///
/// ```
/// use coord_api::{HolderId, InstanceId};
/// let h = HolderId::new(InstanceId::new("web-1").unwrap());
/// let parsed: HolderId = h.to_string().parse().unwrap();
/// assert_eq!(parsed, h);
/// ```
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct HolderId {
    instance: InstanceId,
    nonce: u128,
}

impl PartialEq for HolderId {
    fn eq(&self, other: &Self) -> bool {
        // The nonce first: it tells holders apart in one comparison.
        self.nonce == other.nonce && self.instance == other.instance
    }
}

impl Hash for HolderId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.instance.hash(state);
        self.nonce.hash(state);
    }
}

impl HolderId {
    /// A holder of `instance` with a fresh nonce.
    pub fn new(instance: InstanceId) -> HolderId {
        HolderId {
            instance,
            nonce: fresh_nonce(),
        }
    }

    /// A holder with a given nonce (tests, parsing).
    pub fn from_parts(instance: InstanceId, nonce: u128) -> HolderId {
        HolderId { instance, nonce }
    }

    /// The instance this holder belongs to.
    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }

    /// The per-acquisition nonce.
    pub fn nonce(&self) -> u128 {
        self.nonce
    }
}

/// A nonce no other acquisition has: each thread draws a random 128-bit start
/// once and counts up from it (two threads' runs of nonces meet with a
/// probability of about one in 2^64). A random draw per acquisition cost as
/// much as the rest of a grant's bookkeeping on the client.
#[cfg(not(madsim))]
fn fresh_nonce() -> u128 {
    use std::cell::Cell;
    thread_local!(static NEXT: Cell<u128> = Cell::new(rand::random()));
    NEXT.with(|next| {
        let nonce = next.get();
        next.set(nonce.wrapping_add(1));
        nonce
    })
}

/// Under the simulator, a fresh draw each time: a seed's run must not depend
/// on the runs before it in the same thread.
#[cfg(madsim)]
fn fresh_nonce() -> u128 {
    rand::random()
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:032x}", self.instance, self.nonce)
    }
}

impl fmt::Debug for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HolderId({self})")
    }
}

impl FromStr for HolderId {
    type Err = Error;

    fn from_str(s: &str) -> Result<HolderId> {
        let bad = || Error::invalid(format!("{s:?} is not a holder id (instance#hex-nonce)"));
        let (instance, nonce) = s.rsplit_once('#').ok_or_else(bad)?;
        if nonce.len() != 32 {
            return Err(bad());
        }
        let nonce = u128::from_str_radix(nonce, 16).map_err(|_| bad())?;
        Ok(HolderId {
            instance: InstanceId::new(instance)?,
            nonce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ_within_and_across_threads() {
        let me = InstanceId::new("web-1").unwrap();
        let draw = move || (0..1000).map(|_| HolderId::new(me)).collect::<Vec<_>>();
        let mut all = draw();
        all.extend(std::thread::spawn(draw).join().unwrap());
        let distinct: HashSet<u128> = all.iter().map(HolderId::nonce).collect();
        assert_eq!(distinct.len(), all.len());
    }

    /// Generated ids end in the pid and 16 random hex digits (64 bits: two
    /// processes with one host name and pid do not collide).
    #[test]
    fn generated_ids_carry_the_pid_and_64_random_bits() {
        let ids: HashSet<&str> = (0..100).map(|_| InstanceId::generate().as_str()).collect();
        assert_eq!(ids.len(), 100);
        for id in ids {
            let (rest, random) = id.rsplit_once('-').unwrap();
            assert_eq!(random.len(), 16, "{id}");
            assert!(random.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            let pid = rest.rsplit_once('-').unwrap().1;
            assert_eq!(pid, std::process::id().to_string(), "{id}");
        }
    }

    #[test]
    fn equal_instance_ids_share_one_text() {
        let made = InstanceId::new("web-1").unwrap();
        let parsed: HolderId = format!("web-1#{:032x}", 7).parse().unwrap();
        assert!(std::ptr::eq(made.as_str(), parsed.instance().as_str()));
        assert_eq!(made, *parsed.instance());
        assert_ne!(made, InstanceId::new("web-2").unwrap());
    }
}
