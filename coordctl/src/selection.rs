//! Which leases `locks` and `watch` list: `--kind`, `--prefix` and
//! `--stale`. Without `--kind`, a prefix that starts with a kind and a
//! colon is a resource's, as listings print it (`lock:jobs/`,
//! `queue:orders@17`), as the dashboard's filter takes it: the walk asks
//! the backend for that kind and the name's prefix, and each lease's
//! resource text is then checked against the whole prefix. With `--kind`
//! the prefix is a name's, whatever it holds (a key may start `lock:`).

use coord_api::{LeaseFilter, LiveLease};

use crate::exit::Fail;

/// What a listing walks, and what it keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// What the backend is asked for.
    pub filter: LeaseFilter,
    /// A prefix of the resource's text form, checked on each lease.
    resource_prefix: Option<String>,
}

impl Selection {
    /// The leases `filter` asks the backend for, all kept.
    pub fn of(filter: LeaseFilter) -> Selection {
        Selection {
            filter,
            resource_prefix: None,
        }
    }

    /// The selection of `--kind` (parsed: one line naming the kinds when
    /// unknown), `--prefix` and `--stale`.
    pub fn new(kind: Option<&str>, prefix: String, stale: bool) -> Result<Selection, Fail> {
        let mut selection = match kind {
            Some(kind) => Selection::of(LeaseFilter::all().kind(kind.parse()?).prefix(prefix)),
            None => Selection::of_prefix(prefix),
        };
        selection.filter.stale_only = stale;
        Ok(selection)
    }

    /// Every lease (no kind given) whose name, or resource, starts with
    /// `prefix`.
    fn of_prefix(prefix: String) -> Selection {
        let kind = (prefix.split_once(':')).and_then(|(k, rest)| Some((k.parse().ok()?, rest)));
        match kind {
            Some((kind, rest)) => Selection {
                filter: LeaseFilter::all().kind(kind).prefix(kind.name_prefix(rest)),
                resource_prefix: Some(prefix),
            },
            None => Selection::of(LeaseFilter::all().prefix(prefix)),
        }
    }

    /// Whether the listing keeps `lease`.
    pub fn keeps(&self, lease: &LiveLease) -> bool {
        (self.resource_prefix.as_deref())
            .is_none_or(|p| lease.lease.resource.to_string().starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use coord_api::spi::ResourceKind;

    use super::*;

    fn of(kind: Option<&str>, prefix: &str) -> (LeaseFilter, Option<String>) {
        let s = Selection::new(kind, prefix.to_owned(), false).unwrap();
        (s.filter, s.resource_prefix)
    }

    #[test]
    fn a_prefix_naming_a_kind_selects_it() {
        let named = |kind: ResourceKind, name: &str| LeaseFilter::all().kind(kind).prefix(name);
        assert_eq!(
            of(None, "jobs/"),
            (LeaseFilter::all().prefix("jobs/"), None)
        );
        assert_eq!(of(None, "table:x").0, LeaseFilter::all().prefix("table:x"));
        let lock = of(None, "lock:jobs/");
        assert_eq!(lock.0, named(ResourceKind::Lock, "jobs/"));
        assert_eq!(lock.1.as_deref(), Some("lock:jobs/"));
        assert_eq!(
            of(None, "queue:a\\@b@1").0,
            named(ResourceKind::Queue, "a@b")
        );
        assert_eq!(of(None, "queue:a\\").0, named(ResourceKind::Queue, "a"));
        assert_eq!(
            of(None, "job:C:\\tmp@1").0,
            named(ResourceKind::Job, "C:\\tmp")
        );
        assert_eq!(of(None, "topic:t@s@4").0, named(ResourceKind::Topic, "t"));
        let kind = of(Some("lock"), "lock:x");
        assert_eq!(kind, (named(ResourceKind::Lock, "lock:x"), None));
        assert!(Selection::new(Some("table"), String::new(), false).is_err());
        assert!(
            Selection::new(None, String::new(), true)
                .unwrap()
                .filter
                .stale_only
        );
    }
}
