//! What operations name: a [`ResourceKind`] and a [`Resource`] (a
//! primitive, a job's run, a queue's delivery), and their text forms
//! (`lock:jobs/backup`, `job:nightly@2026-12-01`, `queue:orders@17`).

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
}

impl ResourceKind {
    /// Every kind, in listing order.
    pub const ALL: [ResourceKind; 7] = [
        ResourceKind::Lock,
        ResourceKind::RwLock,
        ResourceKind::Semaphore,
        ResourceKind::Election,
        ResourceKind::Group,
        ResourceKind::Job,
        ResourceKind::Queue,
    ];

    /// The kind's name in listings and on the command line (`lock`,
    /// `rwlock`, `semaphore`, `election`, `group`, `job`, `queue`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Lock => "lock",
            ResourceKind::RwLock => "rwlock",
            ResourceKind::Semaphore => "semaphore",
            ResourceKind::Election => "election",
            ResourceKind::Group => "group",
            ResourceKind::Job => "job",
            ResourceKind::Queue => "queue",
        }
    }

    /// Whether its leases carry fencing tokens (and can be revoked).
    pub fn fenced(self) -> bool {
        !matches!(self, ResourceKind::Group)
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
/// for a work queue, the item whose delivery is meant.
///
/// Written `kind:name` (`lock:jobs/backup`, `election:scheduler`,
/// `queue:orders`), `job:name@occurrence` for a job's occurrence and
/// `queue:name@item` for the delivery of a queue's item (the one unescaped
/// `@` splits; an `@` or `\` inside a job's or queue's name, or inside an
/// occurrence, is written `\@`, `\\`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// What it is.
    pub kind: ResourceKind,
    /// Its name (the key the application used).
    pub name: Key,
    /// The occurrence, for [`ResourceKind::Job`] only.
    pub occurrence: Option<Key>,
    /// The item (its id in the queue), for [`ResourceKind::Queue`] only:
    /// its delivery is the lease meant. A queue without one names every
    /// delivery of the queue (to describe; a revocation names its item).
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

    /// `InvalidArgument` unless a job names its occurrence, only a job
    /// names one, and only a queue names an item.
    pub fn check(&self) -> Result<()> {
        let name = self.name.as_str();
        match (self.kind, &self.occurrence, self.item) {
            (ResourceKind::Job, None, _) => Err(Error::invalid(format!(
                "job {name:?}: name its occurrence (job:NAME@OCCURRENCE)"
            ))),
            (kind, Some(_), _) if kind != ResourceKind::Job => Err(Error::invalid(format!(
                "{kind} {name:?}: only a job has an occurrence"
            ))),
            (kind, _, Some(_)) if kind != ResourceKind::Queue => Err(Error::invalid(format!(
                "{kind} {name:?}: only a queue has items"
            ))),
            _ => Ok(()),
        }
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
        match (&self.occurrence, self.item, kind) {
            (Some(o), _, _) => {
                let (job, occ) = (escaped(self.name.as_str()), escaped(o.as_str()));
                write!(f, "{kind}:{job}@{occ}")
            }
            (None, Some(item), _) => write!(f, "{kind}:{}@{item}", escaped(self.name.as_str())),
            (None, None, ResourceKind::Queue) => {
                write!(f, "{kind}:{}", escaped(self.name.as_str()))
            }
            (None, None, _) => write!(f, "{kind}:{}", self.name.as_str()),
        }
    }
}

/// Splits `name@part` at its unescaped `@` (none: the name alone),
/// unescaping both; `None` with two unescaped `@`.
fn split_at_unescaped(text: &str) -> Option<(String, Option<String>)> {
    let (mut parts, mut part, mut chars) = (Vec::new(), String::new(), text.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => part.push(chars.next().unwrap_or('\\')),
            '@' => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    let mut parts = parts.into_iter();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), second, None) => Some((name, second)),
        _ => None,
    }
}

impl FromStr for Resource {
    type Err = Error;
    /// Parses `kind:name`, `job:name@occurrence` or `queue:name@item` (in a
    /// job's or queue's name and an occurrence, `\@` is an `@` and `\\` a
    /// `\`, as they are written).
    fn from_str(s: &str) -> Result<Resource> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            Error::invalid(format!(
                "resource {s:?}: write it KIND:NAME (lock:jobs/backup, election:scheduler, \
                 job:nightly@2026-12-01, queue:orders@17)"
            ))
        })?;
        let kind: ResourceKind = kind.parse()?;
        let split = || {
            split_at_unescaped(name).ok_or_else(|| {
                Error::invalid(format!(
                    "resource {s:?}: a {kind}'s part is {kind}:NAME@PART, with one unescaped @ \
                     (write an @ inside either as \\@, a \\ as \\\\)"
                ))
            })
        };
        let resource = match kind {
            ResourceKind::Job if name.contains('@') => match split()? {
                (job, Some(occ)) => Resource::job(Key::new(&job)?, Key::new(&occ)?),
                (job, None) => Resource::new(kind, Key::new(&job)?),
            },
            ResourceKind::Queue => match split()? {
                (queue, None) => Resource::new(kind, Key::new(&queue)?),
                (queue, Some(item)) => {
                    let item = item.parse().map_err(|_| {
                        Error::invalid(format!(
                            "resource {s:?}: a queue's item is its id, a number (queue:orders@17)"
                        ))
                    })?;
                    Resource::delivery(Key::new(&queue)?, item)
                }
            },
            _ => Resource::new(kind, Key::new(name)?),
        };
        resource.check()?;
        Ok(resource)
    }
}
