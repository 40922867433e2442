//! What operations name: a [`ResourceKind`] and a [`Resource`] (a
//! primitive, a job's run, a queue's or a topic subscription's delivery),
//! and their text forms (`lock:jobs/backup`, `job:nightly@2026-12-01`,
//! `queue:orders@17`, `topic:payments@billing@42`).

use std::{fmt, str::FromStr};

use crate::{Error, Key, Result};

/// What kind of primitive a resource is.
///
/// Non-exhaustive: a family added later adds its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ResourceKind {
    /// An exclusive or reentrant lock.
    Lock,
    /// A read-write lock.
    RwLock,
    /// A semaphore.
    Semaphore,
    /// A leader election (its lease is the leader's term).
    Election,
    /// A membership group (its leases are members' heartbeats).
    Group,
    /// A run-once job (its leases are runs of an occurrence).
    Job,
    /// A work queue (its leases are deliveries of its items to consumers).
    Queue,
    /// A topic's subscription (its leases are deliveries of its events to
    /// consumers).
    Topic,
}

impl ResourceKind {
    /// Every kind, in listing order.
    pub const ALL: [ResourceKind; 8] = [
        ResourceKind::Lock,
        ResourceKind::RwLock,
        ResourceKind::Semaphore,
        ResourceKind::Election,
        ResourceKind::Group,
        ResourceKind::Job,
        ResourceKind::Queue,
        ResourceKind::Topic,
    ];

    /// The kind's name in listings and on the command line (`lock`,
    /// `rwlock`, `semaphore`, `election`, `group`, `job`, `queue`,
    /// `topic`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Lock => "lock",
            ResourceKind::RwLock => "rwlock",
            ResourceKind::Semaphore => "semaphore",
            ResourceKind::Election => "election",
            ResourceKind::Group => "group",
            ResourceKind::Job => "job",
            ResourceKind::Queue => "queue",
            ResourceKind::Topic => "topic",
        }
    }

    /// Whether its leases carry fencing tokens (and can be revoked).
    pub fn fenced(self) -> bool {
        !matches!(self, ResourceKind::Group)
    }

    /// Whether its resources are written in parts split at `@` (a job's,
    /// queue's or topic's), each part escaped (see [`Resource`]).
    fn in_parts(self) -> bool {
        matches!(
            self,
            ResourceKind::Job | ResourceKind::Queue | ResourceKind::Topic
        )
    }

    /// The prefix of the names whose resources of this kind are written
    /// starting `kind:text`: `text` itself for a kind written `kind:name`;
    /// for a job, queue or topic, the name unescaped up to its first
    /// unescaped `@` (a `\` ending `text` escapes what is not typed yet,
    /// and is left out). What a listing's filter asks the backend for when
    /// a user types the start of a resource as listings print it.
    ///
    /// ```
    /// use coord_api::spi::ResourceKind;
    /// assert_eq!(ResourceKind::Lock.name_prefix("jobs/"), "jobs/");
    /// assert_eq!(ResourceKind::Queue.name_prefix(r"a\@b@17"), "a@b");
    /// assert_eq!(ResourceKind::Queue.name_prefix(r"a\"), "a");
    /// ```
    pub fn name_prefix(self, text: &str) -> String {
        if !self.in_parts() {
            return text.to_owned();
        }
        let trailing = text.len() - text.trim_end_matches('\\').len();
        let typed = if trailing % 2 == 1 {
            &text[..text.len() - 1]
        } else {
            text
        };
        split_at_unescaped(typed).swap_remove(0)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<ResourceKind> {
        (ResourceKind::ALL.into_iter().find(|k| k.as_str() == s)).ok_or_else(|| {
            let all: Vec<&str> = ResourceKind::ALL.iter().map(|k| k.as_str()).collect();
            Error::invalid(format!(
                "unknown resource kind {s:?} (one of {})",
                all.join(", ")
            ))
        })
    }
}

/// One primitive: its kind and name; for a run-once job the occurrence;
/// for a topic the subscription; for a work queue or a topic's
/// subscription, the item (event) whose delivery is meant.
///
/// Written `kind:name` (`lock:jobs/backup`, `election:scheduler`,
/// `queue:orders`), `job:name@occurrence` for a job's occurrence,
/// `queue:name@item` for the delivery of a queue's item,
/// `topic:name@subscription` for a topic's subscription and
/// `topic:name@subscription@offset` for the delivery of one of its events
/// (unescaped `@`s split; an `@` or `\` inside a job's, queue's or topic's
/// name, an occurrence or a subscription is written `\@`, `\\`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// What it is.
    pub kind: ResourceKind,
    /// Its name (the key the application used).
    pub name: Key,
    /// The occurrence, for [`ResourceKind::Job`] only.
    pub occurrence: Option<Key>,
    /// The subscription, for [`ResourceKind::Topic`] only (and always).
    pub subscription: Option<Key>,
    /// The item, for [`ResourceKind::Queue`] (its id in the queue) and
    /// [`ResourceKind::Topic`] (the event's offset) only: its delivery is
    /// the lease meant. Without one, every delivery of the queue or
    /// subscription is meant (to describe; a revocation names its item).
    pub item: Option<u64>,
}

impl Resource {
    /// The resource `name` of `kind` (not a job occurrence, nor a queue's
    /// item).
    pub fn new(kind: ResourceKind, name: Key) -> Resource {
        Resource {
            kind,
            name,
            occurrence: None,
            subscription: None,
            item: None,
        }
    }

    /// Occurrence `occurrence` of the run-once job `job`.
    pub fn job(job: Key, occurrence: Key) -> Resource {
        Resource {
            occurrence: Some(occurrence),
            ..Resource::new(ResourceKind::Job, job)
        }
    }

    /// The delivery of item `item` of work queue `queue`.
    pub fn delivery(queue: Key, item: u64) -> Resource {
        Resource {
            item: Some(item),
            ..Resource::new(ResourceKind::Queue, queue)
        }
    }

    /// Subscription `subscription` of topic `topic` (every delivery of it).
    pub fn subscription(topic: Key, subscription: Key) -> Resource {
        Resource {
            subscription: Some(subscription),
            ..Resource::new(ResourceKind::Topic, topic)
        }
    }

    /// The delivery of the event at `offset` to subscription `subscription`
    /// of topic `topic`.
    pub fn event_delivery(topic: Key, subscription: Key, offset: u64) -> Resource {
        Resource {
            item: Some(offset),
            ..Resource::subscription(topic, subscription)
        }
    }

    /// `InvalidArgument` unless a job names its occurrence and a topic its
    /// subscription, only they name one, and only a queue or a topic names
    /// an item.
    pub fn check(&self) -> Result<()> {
        use ResourceKind::{Job, Queue, Topic};
        let (kind, name) = (self.kind, self.name.as_str());
        let refused = match kind {
            Job if self.occurrence.is_none() => "name its occurrence (job:NAME@OCCURRENCE)",
            Topic if self.subscription.is_none() => {
                "name its subscription (topic:NAME@SUBSCRIPTION)"
            }
            _ if self.occurrence.is_some() && kind != Job => "only a job has an occurrence",
            _ if self.subscription.is_some() && kind != Topic => "only a topic has subscriptions",
            _ if self.item.is_some() && !matches!(kind, Queue | Topic) => {
                "only a queue or a topic has items"
            }
            _ => return Ok(()),
        };
        Err(Error::invalid(format!("{kind} {name:?}: {refused}")))
    }
}

/// A job's or queue's name, or an occurrence, in the text form: `\` and
/// `@` escaped with `\`, so that the `@` between two parts is the one
/// unescaped.
fn escaped(part: &str) -> String {
    part.replace('\\', "\\\\").replace('@', "\\@")
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind;
        if !kind.in_parts() {
            return write!(f, "{kind}:{}", self.name.as_str());
        }
        write!(f, "{kind}:{}", escaped(self.name.as_str()))?;
        for part in [&self.occurrence, &self.subscription].into_iter().flatten() {
            write!(f, "@{}", escaped(part.as_str()))?;
        }
        match self.item {
            Some(item) => write!(f, "@{item}"),
            None => Ok(()),
        }
    }
}

/// Splits `text` at its unescaped `@`s, unescaping each part. A `\` that
/// escapes neither `\` nor `@` is itself (`job:C:\tmp@1` names the job
/// `C:\tmp`, as typed), not dropped.
fn split_at_unescaped(text: &str) -> Vec<String> {
    let (mut parts, mut part) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => part.push(chars.next_if(|&n| n == '\\' || n == '@').unwrap_or('\\')),
            '@' => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    parts
}

impl FromStr for Resource {
    type Err = Error;
    /// Parses `kind:name`, `job:name@occurrence`, `queue:name@item`,
    /// `topic:name@subscription` or `topic:name@subscription@offset` (in a
    /// job's, queue's or topic's name, an occurrence and a subscription,
    /// `\@` is an `@` and `\\` a `\`, as they are written; any other `\` is
    /// itself).
    fn from_str(s: &str) -> Result<Resource> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            Error::invalid(format!(
                "resource {s:?}: write it KIND:NAME (lock:jobs/backup, election:scheduler, \
                 job:nightly@2026-12-01, queue:orders@17, topic:payments@billing@42)"
            ))
        })?;
        let kind: ResourceKind = kind.parse()?;
        let form = match kind {
            ResourceKind::Job => "job:NAME@OCCURRENCE",
            ResourceKind::Queue => "queue:NAME or queue:NAME@ITEM",
            ResourceKind::Topic => "topic:NAME@SUBSCRIPTION or topic:NAME@SUBSCRIPTION@OFFSET",
            _ => return Resource::new(kind, Key::new(name)?).checked(),
        };
        let bad = || {
            Error::invalid(format!(
                "resource {s:?}: write it {form} (an @ inside a part as \\@, a \\ as \\\\)"
            ))
        };
        let item = |text: &str| text.parse::<u64>().map_err(|_| bad());
        let resource = match (kind, &split_at_unescaped(name)[..]) {
            (ResourceKind::Job, [job, occ]) => Resource::job(Key::new(job)?, Key::new(occ)?),
            (ResourceKind::Queue, [queue]) => Resource::new(kind, Key::new(queue)?),
            (ResourceKind::Queue, [queue, i]) => Resource::delivery(Key::new(queue)?, item(i)?),
            (ResourceKind::Topic, [topic, sub]) => {
                Resource::subscription(Key::new(topic)?, Key::new(sub)?)
            }
            (ResourceKind::Topic, [topic, sub, o]) => {
                Resource::event_delivery(Key::new(topic)?, Key::new(sub)?, item(o)?)
            }
            _ => return Err(bad()),
        };
        resource.checked()
    }
}

impl Resource {
    fn checked(self) -> Result<Resource> {
        self.check()?;
        Ok(self)
    }
}
