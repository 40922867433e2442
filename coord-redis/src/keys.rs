//! The key layout. Every Redis key coord writes looks like
//! `coord:{<namespace>:<family>:<key>}:<part>`: the hash tag holds the
//! namespace, the family and the key, so all keys of one primitive live in
//! one Redis Cluster slot (and one Lua script may touch them all), and keys
//! of two namespaces never collide. `<part>` is one letter, so two different
//! keys can never produce the same Redis key name.

use coord_api::{Key, LeaseFamily, Namespace};

/// The fixed prefix of every Redis key and channel coord creates.
pub const PREFIX: &str = "coord:";

/// The Redis keys and the notification channel of one primitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The keys, in the order the family's script expects them.
    pub(crate) keys: Vec<String>,
    /// The pub/sub channel release notifications go to.
    pub(crate) channel: String,
}

/// The parts of each family, in script order (see `lua/*.lua`).
pub(crate) fn parts(family: LeaseFamily) -> &'static [char] {
    match family {
        // lease, token counter (only while ahead of the server clock)
        LeaseFamily::Lock => &['l', 't'],
        // writer hash, readers, reader tokens, writer intents, token counter
        LeaseFamily::RwLock => &['w', 'r', 's', 'i', 't'],
        // permits, permit tokens, limit, token counter
        LeaseFamily::Semaphore => &['p', 's', 'n', 't'],
    }
}

/// The hash-tagged base name `coord:{<ns>:<family>:<key>}`.
pub(crate) fn base(ns: &Namespace, family: LeaseFamily, key: &Key) -> String {
    format!("{PREFIX}{{{ns}:{}:{key}}}", family.as_str())
}

/// The keys and channel of `key` in `family`.
pub(crate) fn layout(ns: &Namespace, family: LeaseFamily, key: &Key) -> Layout {
    let base = base(ns, family, key);
    Layout {
        keys: parts(family)
            .iter()
            .map(|p| format!("{base}:{p}"))
            .collect(),
        channel: format!("{base}:c"),
    }
}

/// The names of one primitive, written straight into a command's argument
/// buffer: what [`layout`] spells, built once per call instead of a `String`
/// per name (the lease operations are on the hot path).
pub(crate) struct Names {
    /// `coord:{<ns>:<family>:<key>}:` and, past `base`, the last part.
    buf: Vec<u8>,
    base: usize,
}

impl Names {
    /// The names of `key` in `family`.
    pub(crate) fn new(ns: &Namespace, family: LeaseFamily, key: &Key) -> Names {
        let (ns, family, key) = (ns.as_str(), family.as_str(), key.as_str());
        let base = PREFIX.len() + ns.len() + family.len() + key.len() + 5;
        let mut buf = Vec::with_capacity(base + 1);
        buf.extend_from_slice(PREFIX.as_bytes());
        buf.push(b'{');
        buf.extend_from_slice(ns.as_bytes());
        buf.push(b':');
        buf.extend_from_slice(family.as_bytes());
        buf.push(b':');
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(b"}:");
        debug_assert_eq!(buf.len(), base);
        Names { buf, base }
    }

    /// Appends `<base>:<part>` as the next argument of `cmd` (`part` `'c'` is
    /// the channel).
    pub(crate) fn write(&mut self, cmd: &mut redis::Cmd, part: char) {
        use redis::RedisWrite;
        self.buf.truncate(self.base);
        self.buf.push(part as u8);
        cmd.write_arg(&self.buf);
    }

    /// The length of one name.
    pub(crate) fn len(&self) -> usize {
        self.base + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAMILIES: [LeaseFamily; 3] = [
        LeaseFamily::Lock,
        LeaseFamily::RwLock,
        LeaseFamily::Semaphore,
    ];

    /// The slot-deciding part of a Redis key: between the first `{` and the
    /// next `}`, if non-empty.
    fn hash_tag(k: &str) -> &str {
        let open = k.find('{').unwrap();
        let close = open + 1 + k[open + 1..].find('}').unwrap();
        &k[open + 1..close]
    }

    #[test]
    fn one_slot_per_primitive() {
        let ns = Namespace::new("ns").unwrap();
        for key in ["a", "x}y", "{weird}", "ü/1"] {
            let key = Key::new(key).unwrap();
            for family in FAMILIES {
                let l = layout(&ns, family, &key);
                let tag = hash_tag(&l.keys[0]);
                assert!(
                    tag.starts_with(&format!("ns:{}:", family.as_str())),
                    "{tag}"
                );
                assert!(l.keys.iter().all(|k| hash_tag(k) == tag));
                assert!(l.keys.iter().all(|k| k.starts_with(PREFIX)));
            }
        }
        let l = layout(&ns, LeaseFamily::Lock, &Key::new("jobs/backup").unwrap());
        assert_eq!(
            l.keys,
            [
                "coord:{ns:lock:jobs/backup}:l",
                "coord:{ns:lock:jobs/backup}:t"
            ]
        );
        assert_eq!(l.channel, "coord:{ns:lock:jobs/backup}:c");
    }

    #[test]
    fn names_write_what_layout_spells() {
        let ns = Namespace::new("ns").unwrap();
        for key in ["a", "x}y", "ü/1", &"k".repeat(512)] {
            let key = Key::new(key).unwrap();
            for family in FAMILIES {
                let l = layout(&ns, family, &key);
                let mut names = Names::new(&ns, family, &key);
                let mut cmd = redis::Cmd::new();
                for p in parts(family) {
                    names.write(&mut cmd, *p);
                }
                names.write(&mut cmd, 'c');
                let written: Vec<String> = cmd
                    .args_iter()
                    .map(|a| match a {
                        redis::Arg::Simple(b) => String::from_utf8(b.to_vec()).unwrap(),
                        _ => panic!("not a plain argument"),
                    })
                    .collect();
                let mut expected = l.keys.clone();
                expected.push(l.channel.clone());
                assert_eq!(written, expected);
                assert!(expected.iter().all(|n| n.len() == names.len()));
            }
        }
    }
}
