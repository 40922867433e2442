//! The layout of lease-bearing keys: which resource a key SCAN returned
//! bears ([`parse_key`]), and the narrowest MATCH pattern of a listing
//! ([`pattern`]).

use coord_api::{
    Key, Namespace,
    spi::{Resource, ResourceKind},
};

use crate::keys::PREFIX;

/// A key that bears leases: whose, and which of its leases (`part`: the
/// key's last letter; `None` for every lease of the resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) resource: Resource,
    pub(crate) part: Option<u8>,
}

/// `coord:{<ns>:`, the start of every key of the namespace.
pub(super) fn base(ns: &Namespace) -> String {
    format!("{PREFIX}{{{}:", ns.as_str())
}

/// `<len>:<text of len bytes>…`: the text, and what follows it.
fn counted(r: &str) -> Option<(&str, &str)> {
    let (len, r) = r.split_once(':')?;
    let len: usize = len.parse().ok()?;
    Some((r.get(..len)?, r.get(len..)?))
}

/// What `key` (of namespace `ns`) bears, when it is a lease-bearing key.
pub(crate) fn parse_key(ns: &Namespace, key: &str) -> Option<Found> {
    let rest = key.strip_prefix(&base(ns))?;
    let found = |kind, name: &str, part: u8| {
        Some(Found {
            resource: Resource::new(kind, Key::new(name).ok()?),
            part: Some(part),
        })
    };
    let part = *rest.as_bytes().last()?;
    if let Some(r) = rest.strip_prefix("lock:") {
        return found(ResourceKind::Lock, r.strip_suffix("}:l")?, b'l');
    }
    if let Some(r) = rest.strip_prefix("rwlock:") {
        let name = r.strip_suffix(['w', 'r', 'i'])?.strip_suffix("}:")?;
        return found(ResourceKind::RwLock, name, part);
    }
    if let Some(r) = rest.strip_prefix("semaphore:") {
        return found(ResourceKind::Semaphore, r.strip_suffix("}:p")?, b'p');
    }
    if let Some(r) = rest.strip_prefix("lead}:e:") {
        return found(ResourceKind::Election, r.strip_suffix(":l")?, b'l');
    }
    if let Some(r) = rest.strip_prefix("lead}:g:") {
        return found(ResourceKind::Group, r.strip_suffix(":m")?, b'm');
    }
    if let Some(r) = rest.strip_prefix("queue:") {
        let (queue, r) = counted(r)?;
        return found(ResourceKind::Queue, queue, b'l').filter(|_| r == "}:l");
    }
    if let Some(r) = rest.strip_prefix("topic:") {
        let (topic, r) = counted(r)?;
        let (sub, r) = counted(r.strip_prefix("}:")?)?;
        let resource = Resource::subscription(Key::new(topic).ok()?, Key::new(sub).ok()?);
        return (r == ":f").then_some(Found {
            resource,
            part: Some(b'f'),
        });
    }
    let (job, r) = counted(rest.strip_prefix("job:")?)?;
    let occurrence = r.strip_prefix("}:")?.strip_suffix(":r")?;
    Some(Found {
        resource: Resource::job(Key::new(job).ok()?, Key::new(occurrence).ok()?),
        part: Some(b'r'),
    })
}

/// `text` with Redis' glob characters escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The MATCH pattern of a listing: as narrow as the layout allows (the
/// exact filter is applied to every key SCAN returns).
pub(crate) fn pattern(ns: &Namespace, kind: Option<ResourceKind>, prefix: &str) -> String {
    let (b, p) = (base(ns), glob_escape(prefix));
    match kind {
        Some(ResourceKind::Lock) => format!("{b}lock:{p}*}}:l"),
        Some(ResourceKind::RwLock) => format!("{b}rwlock:{p}*}}:[wri]"),
        Some(ResourceKind::Semaphore) => format!("{b}semaphore:{p}*}}:p"),
        Some(ResourceKind::Election) => format!("{b}lead}}:e:{p}*:l"),
        Some(ResourceKind::Group) => format!("{b}lead}}:g:{p}*:m"),
        Some(ResourceKind::Job) => format!("{b}job:*:{p}*}}:*:r"),
        Some(ResourceKind::Queue) => format!("{b}queue:*:{p}*}}:l"),
        Some(ResourceKind::Topic) => format!("{b}topic:*:{p}*}}:*:f"),
        _ => format!("{b}*"),
    }
}
