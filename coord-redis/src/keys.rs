//! Naming the Redis keys and channels coord creates. Every name looks like
//! `coord:{<namespace>:<tag…>}:<sub…>:<part>`: the hash tag between the
//! braces decides the Redis Cluster slot, so all keys one script touches
//! share a tag (and one script may touch them all); keys of two namespaces
//! never collide (a namespace holds no `:`); `<part>` is one letter ending the
//! name (`c` is the notification channel), so two primitives never produce
//! the same name. A primitive's channel shares its keys' tag too, so on a
//! Redis Cluster a script may `SPUBLISH` on it from the keys' slot (the
//! scripts' sharded twins, decision 0037). Each family's module documents
//! its own layout:
//!
//! | family | tag | names |
//! |---|---|---|
//! | locks | `<ns>:<lock\|rwlock\|semaphore>:<key>` | `coord:{ns:lock:k}:l` … |
//! | elections | `<ns>:lead` (shared with groups, for quorums) | `coord:{ns:lead}:e:<election>:l` … |
//! | groups | `<ns>:lead` | `coord:{ns:lead}:g:<group>:m` … |
//! | jobs | `<ns>:job:<job's length>:<job>` | `coord:{ns:job:3:job}:<occurrence>:r` …, `coord:{ns:job:3:job}:t` |
//! | barriers | `<ns>:<barrier\|double_barrier>:<name>` | `coord:{ns:barrier:b}:s` … |
//! | latches | `<ns>:latch:<name>` | `coord:{ns:latch:l}:s` … |
//! | job graphs | `<ns>:graph:<graph's length>:<graph>` | `coord:{ns:graph:1:g}:q` …, `coord:{ns:graph:1:g}:<run>:h` |
//! | work queues | `<ns>:queue:<queue's length>:<queue>` | `coord:{ns:queue:1:q}:r` …, `coord:{ns:queue:1:q}:<id>:i` |
//! | topics | `<ns>:topic:<topic's length>:<topic>` | `coord:{ns:topic:1:t}:s` …, `coord:{ns:topic:1:t}:<sub's length>:<sub>:f` … |
//! | shared values | `<ns>:state:<space's length>:<space>` | `coord:{ns:state:1:s}:m` … |
//! | circuit breakers | `<ns>:breaker:<name's length>:<name>` | `coord:{ns:breaker:1:b}:h` … |
//! | operations | `<ns>:ops` (presence and the audit trail) | `coord:{ns:ops}:p`, `coord:{ns:ops}:i`, `coord:{ns:ops}:n`, `coord:{ns:ops}:a` |

use coord_api::Namespace;

use crate::eval::Eval;

/// The fixed prefix of every Redis key and channel coord creates.
pub const PREFIX: &str = "coord:";

/// The names of one primitive's keys and channel: the common base
/// `coord:{<ns>:<tag…>}:<sub…>:` is spelled once, and each name is written
/// straight into a command's argument buffer (no `String` per name; the lock
/// operations are on the hot path).
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The base and, past `base`, the last part written.
    buf: Vec<u8>,
    base: usize,
}

impl Names {
    /// The names `coord:{<ns>:<tag[0]>:<tag[1]>…}:<sub[0]>:…:<part>`.
    pub(crate) fn new(ns: &Namespace, tag: &[&str], sub: &[&str]) -> Names {
        let len = |parts: &[&str]| parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let base = PREFIX.len() + 1 + ns.as_str().len() + len(tag) + 2 + len(sub);
        let mut buf = Vec::with_capacity(base + 1);
        buf.extend_from_slice(PREFIX.as_bytes());
        buf.push(b'{');
        buf.extend_from_slice(ns.as_str().as_bytes());
        for t in tag {
            buf.push(b':');
            buf.extend_from_slice(t.as_bytes());
        }
        buf.extend_from_slice(b"}:");
        for s in sub {
            buf.extend_from_slice(s.as_bytes());
            buf.push(b':');
        }
        debug_assert_eq!(buf.len(), base);
        Names { buf, base }
    }

    /// `<base><part>`, pointing into the buffer until the next call.
    fn spell(&mut self, part: char) -> &[u8] {
        self.buf.truncate(self.base);
        self.buf.push(part as u8);
        &self.buf
    }

    /// Appends `<base><part>` as the next argument of `eval`.
    pub(crate) fn write(&mut self, eval: &mut Eval, part: char) {
        eval.arg_bytes(self.spell(part));
    }

    /// `<base><part>` as a `String`.
    pub(crate) fn name(&mut self, part: char) -> String {
        String::from_utf8_lossy(self.spell(part)).into_owned()
    }

    /// The length of one name.
    pub(crate) fn len(&self) -> usize {
        self.base + 1
    }
}

/// The slot-deciding part of a Redis key: between the first `{` and the
/// next `}`.
#[cfg(test)]
pub(crate) fn hash_tag(k: &str) -> &str {
    let open = k.find('{').unwrap();
    let close = open + 1 + k[open + 1..].find('}').unwrap();
    &k[open + 1..close]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_spell_tag_and_sub() {
        let ns = Namespace::new("ns").unwrap();
        let mut n = Names::new(&ns, &["lock", "a}b"], &[]);
        assert_eq!(n.name('l'), "coord:{ns:lock:a}b}:l");
        assert_eq!(n.len(), "coord:{ns:lock:a}b}:l".len());
        let mut n = Names::new(&ns, &["lead"], &["e", "x"]);
        assert_eq!(n.name('c'), "coord:{ns:lead}:e:x:c");
        assert_eq!(n.len(), "coord:{ns:lead}:e:x:c".len());
        assert_eq!(hash_tag(&n.name('l')), "ns:lead");
    }
}
