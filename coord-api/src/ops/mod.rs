//! Operations: the questions an operator asks at 3 a.m., across every
//! family: who holds what, is it stale, release it (fenced, audited), is
//! the backend healthy. Built on [`OpsBackend`](crate::spi::OpsBackend);
//! `coordctl` is a thin shell over it.
//!
//! | item | what it is |
//! |---|---|
//! | [`Operations`] | the handle ([`Client::operations`]) |
//! | [`LiveLease`] | a listed lease and whether its holder's instance lives |
//! | [`LeaseWalk`] | a listing walked one bounded page at a time |
//! | [`Forced`] | what a fenced force release did |
//! | [`BackendClock`] | the backend's wall clock as read from here: the ages of leases |
//! | `presence` | the task that keeps a client's instance presence |
//! | `health` | [`Health`]: Ready, Degraded or Unavailable, with its checks |

use std::{collections::HashMap, time::Duration};

use tracing::Instrument;

use crate::{
    Client, Error, FencingToken, InstanceId, Result,
    spi::{
        AuditRecord, Cursor, LeaseRecord, MAX_PAGE, OpsBackend, Page, Presence, Resource,
        ResourceKind, Revoked, ops::check_limit,
    },
};

pub(crate) mod backend_clock;
pub(crate) mod health;
pub(crate) mod presence;

pub use backend_clock::BackendClock;
pub use health::{Check, Health, Status};
pub use presence::PresenceOptions;

/// A live lease as an operator sees it: the backend's record and whether
/// its holder's instance still has a live presence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveLease {
    /// What the backend lists.
    pub lease: LeaseRecord,
    /// Whether the holder's instance presence was live when the page was
    /// read. A live lease of a dead instance is **stale**: its holder
    /// crashed or was cut off, and the lease lasts until its TTL (a fixed
    /// lease) or a force release.
    pub holder_alive: bool,
}

impl LiveLease {
    /// Whether the lease outlives its holder's instance.
    pub fn is_stale(&self) -> bool {
        !self.holder_alive
    }
}

/// What [`Operations::force_release`] did (either way, it is in the audit
/// trail).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forced {
    /// The lease with the expected token was live and is gone.
    Released {
        /// Whose it was.
        holder: crate::HolderId,
    },
    /// No live lease of the resource has the expected token (it was
    /// released, expired, or a newer holder has it): nothing changed.
    NotFound {
        /// The tokens of the resource's live leases now.
        current: Vec<FencingToken>,
    },
}

/// Which leases a listing walks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseFilter {
    /// One kind of resource, or every kind.
    pub kind: Option<ResourceKind>,
    /// Resource names starting with this.
    pub prefix: String,
    /// Stale leases only.
    pub stale_only: bool,
}

impl LeaseFilter {
    /// Every live lease.
    pub fn all() -> LeaseFilter {
        LeaseFilter::default()
    }

    /// Only resources of `kind`.
    pub fn kind(mut self, kind: ResourceKind) -> LeaseFilter {
        self.kind = Some(kind);
        self
    }

    /// Only resources named with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> LeaseFilter {
        self.prefix = prefix.into();
        self
    }

    /// Only stale leases.
    pub fn stale(mut self) -> LeaseFilter {
        self.stale_only = true;
        self
    }
}

/// The operator's handle on a client's backend, from
/// [`Client::operations`].
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::{LeaseFilter, spi::Resource};
/// let ops = client.operations().operator("alice@laptop");
/// for l in ops.leases(&LeaseFilter::all().stale()).await? {
///     println!("{} held by {} (token {:?}) is stale", l.lease.resource, l.lease.holder, l.lease.token);
/// }
/// let backup: Resource = "lock:jobs/backup".parse()?;
/// if let Some(l) = ops.holders(&backup).await?.first() {
///     ops.force_release(&backup, l.lease.token.unwrap(), "holder wedged, paged by #4411").await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Operations {
    client: Client,
    operator: String,
}

impl Operations {
    pub(crate) fn new(client: Client) -> Operations {
        let operator = client.instance_id().to_string();
        Operations { client, operator }
    }

    /// Names the operator in audit records (default: the instance id).
    pub fn operator(mut self, who: impl Into<String>) -> Operations {
        self.operator = who.into();
        self
    }

    pub(crate) fn backend(&self) -> Result<&dyn OpsBackend> {
        self.client.ops_backend()
    }

    /// Runs one backend call inside its `coord.backend` span.
    pub(crate) async fn traced<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let span = tracing::debug_span!(
            "coord.backend",
            op,
            family = "operations",
            backend = %self.client.backend(),
        );
        let res = fut.instrument(span).await;
        if let Err(e) = &res {
            tracing::debug!(op, error = %e, "operations call failed");
        }
        res
    }

    /// One page of live leases matching `filter` from `cursor` (at most
    /// `limit`, 1..=1,000), each with whether its holder lives, in the
    /// listing's order ([`LeaseRecord::listing_cmp`]) within the page on
    /// every backend. Across pages the order is the backend's (in memory
    /// the same order; on Redis its SCAN's).
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn leases_page(
        &self,
        filter: &LeaseFilter,
        cursor: &Cursor,
        limit: u32,
    ) -> Result<Page<LiveLease>> {
        check_limit("leases", limit)?;
        let b = self.backend()?;
        let page = self
            .traced(
                "leases",
                b.leases(filter.kind, &filter.prefix, cursor, limit),
            )
            .await?;
        let mut records = page.items;
        records.sort_by(LeaseRecord::listing_cmp);
        let items = self.mark_alive(records).await?;
        let items = (items.into_iter())
            .filter(|l| !filter.stale_only || l.is_stale())
            .collect();
        Ok(Page::new(items, page.next))
    }

    /// A walk over every live lease matching `filter`, one bounded page at
    /// a time (memory stays bounded whatever the namespace holds).
    pub fn walk(&self, filter: LeaseFilter) -> LeaseWalk {
        LeaseWalk {
            ops: self.clone(),
            filter,
            next: Some(Cursor::start()),
            limit: MAX_PAGE,
        }
    }

    /// Every live lease matching `filter` (all pages, collected).
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn leases(&self, filter: &LeaseFilter) -> Result<Vec<LiveLease>> {
        let mut walk = self.walk(filter.clone());
        let mut all = Vec::new();
        while let Some(page) = walk.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// Every stale lease: live, while its holder's instance presence is
    /// gone.
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn stale(&self) -> Result<Vec<LiveLease>> {
        self.leases(&LeaseFilter::all().stale()).await
    }

    /// The live leases of `resource` (holders, and a read-write lock's
    /// waiting writers), in the listing's order
    /// ([`LeaseRecord::listing_cmp`]).
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn holders(&self, resource: &Resource) -> Result<Vec<LiveLease>> {
        resource.check()?;
        let b = self.backend()?;
        let mut records = self.traced("describe", b.describe(resource)).await?;
        records.sort_by(LeaseRecord::listing_cmp);
        self.mark_alive(records).await
    }

    /// Live instances (each client keeps one presence while it lives).
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn instances(&self) -> Result<Vec<Presence>> {
        let b = self.backend()?;
        let (mut all, mut cursor) = (Vec::new(), Cursor::start());
        loop {
            let page = self
                .traced("instances", b.instances(&cursor, MAX_PAGE))
                .await?;
            all.extend(page.items);
            match page.next {
                Some(next) => cursor = next,
                None => return Ok(all),
            }
        }
    }

    /// Removes the lease of `resource` whose token is `expected`, and only
    /// it: if a newer holder has the resource now, nothing changes
    /// ([`Forced::NotFound`]). The next grant draws a larger token; the old
    /// holder's next renewal is refused, so its lost signal fires (within
    /// one renewal interval). Either way an audit record names the
    /// operator, the reason, the time and the outcome.
    ///
    /// `InvalidArgument` for an empty reason or a resource whose leases
    /// carry no token (a group's members). When the release was done but
    /// its audit record could not be written, `Error::Backend` says both
    /// (what was released, and why the record failed).
    ///
    /// A revocation left unanswered (`Unavailable`: applied or not, this
    /// caller cannot tell) is recorded with the outcome `unknown: no answer
    /// (…)`, and its error names the resource and the token and says the
    /// outcome is unknown; [`holders`](Operations::holders) tells whether
    /// the lease is still live.
    ///
    /// # Cancel safety
    /// The release is one atomic step and the audit record another: a call
    /// cancelled between them released the lease without recording it.
    pub async fn force_release(
        &self,
        resource: &Resource,
        expected: FencingToken,
        reason: &str,
    ) -> Result<Forced> {
        resource.check()?;
        if !resource.kind.fenced() {
            return Err(Error::invalid(format!(
                "{resource}: its leases carry no fencing token, so none can be force released"
            )));
        }
        let mut audit = AuditRecord::new(
            self.operator.clone(),
            *self.client.instance_id(),
            "force-release",
            resource.clone(),
            expected,
            reason,
            "",
        );
        audit.check()?;
        let b = self.backend()?;
        let revoked = match self.traced("revoke", b.revoke(resource, expected)).await {
            Ok(revoked) => revoked,
            // Sent and left unanswered: it may have been applied. The
            // attempt is recorded all the same, its outcome unknown.
            Err(e) if e.is_retryable() => return Err(self.unanswered(b, audit, e).await),
            Err(e) => return Err(e),
        };
        let forced = match revoked {
            Revoked::Released { holder } => {
                audit.outcome = format!("released {holder}");
                Forced::Released { holder }
            }
            Revoked::NotFound { current } => {
                audit.outcome = format!("not found ({})", live_tokens(&current));
                Forced::NotFound { current }
            }
        };
        tracing::warn!(
            resource = %resource, token = %expected, operator = %self.operator,
            reason, outcome = %audit.outcome, "force release"
        );
        // The release happened: an audit record that cannot be written is
        // an error that says so (not one that reads as "nothing happened",
        // after which a retry finds nothing).
        if let Err(e) = self.traced("record", b.record(&audit)).await {
            tracing::error!(resource = %resource, token = %expected, error = %e,
                outcome = %audit.outcome, "force release: the audit record could not be written");
            return Err(Error::Backend {
                backend: self.client.backend().to_string(),
                message: format!(
                    "force release of {resource} (token {expected}): {}, but its audit record \
                     could not be written: {e}",
                    audit.outcome
                ),
                source: Some(Box::new(e)),
            });
        }
        Ok(forced)
    }

    /// A force release whose revocation `e` left unanswered (applied or
    /// not, this caller cannot tell): `audit` is recorded with its outcome
    /// unknown, and the error says so, naming the resource and the token.
    async fn unanswered(&self, b: &dyn OpsBackend, mut audit: AuditRecord, e: Error) -> Error {
        let (resource, token) = (audit.resource.clone(), audit.token);
        audit.outcome = format!("unknown: no answer ({e})");
        tracing::warn!(
            resource = %resource, token = %token, operator = %self.operator,
            reason = %audit.reason, outcome = %audit.outcome, "force release"
        );
        let recorded = match self.traced("record", b.record(&audit)).await {
            Ok(()) => "recorded in the audit trail as unknown".to_owned(),
            Err(r) => {
                tracing::error!(resource = %resource, token = %token, error = %r,
                    outcome = %audit.outcome, "force release: the audit record could not be written");
                format!("its audit record may be missing ({r})")
            }
        };
        match e {
            Error::Unavailable {
                backend,
                message,
                source,
            } => Error::Unavailable {
                backend,
                message: format!(
                    "force release of {resource} (token {token}): {message}; whether the lease \
                     was released is unknown ({recorded}; `holders` shows whether it is live)"
                ),
                source,
            },
            other => other,
        }
    }

    /// The newest `limit` audit records (1..=1,000), newest first.
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditRecord>> {
        check_limit("audit", limit)?;
        let b = self.backend()?;
        let page = self
            .traced("audit", b.audit(&Cursor::start(), limit))
            .await?;
        Ok(page.items)
    }

    /// One page of the audit trail from `cursor`, newest first.
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn audit_page(&self, cursor: &Cursor, limit: u32) -> Result<Page<AuditRecord>> {
        check_limit("audit", limit)?;
        let b = self.backend()?;
        self.traced("audit", b.audit(cursor, limit)).await
    }

    /// Is the backend usable from here, and how well: see [`Health`].
    /// Wire [`Status::Unavailable`] to readiness, never to liveness (a
    /// restart does not bring a backend back).
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn health(&self) -> Health {
        health::check_health(self).await
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Pairs each record with whether its holder's instance lives (one
    /// presence lookup for the page's distinct instances).
    async fn mark_alive(&self, records: Vec<LeaseRecord>) -> Result<Vec<LiveLease>> {
        let mut ids: Vec<InstanceId> = records.iter().map(|r| *r.holder.instance()).collect();
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        ids.dedup();
        let mut alive = HashMap::with_capacity(ids.len());
        if !ids.is_empty() {
            let b = self.backend()?;
            for chunk in ids.chunks(MAX_PAGE as usize) {
                let found = self.traced("presence", b.presence(chunk)).await?;
                for (id, p) in chunk.iter().zip(found) {
                    alive.insert(*id, p.is_some());
                }
            }
        }
        Ok(records
            .into_iter()
            .map(|lease| {
                let holder_alive = alive.get(lease.holder.instance()).copied().unwrap_or(false);
                LiveLease {
                    lease,
                    holder_alive,
                }
            })
            .collect())
    }
}

/// `tokens` as an audit outcome names them, as listings print tokens:
/// `live tokens: 7, 9`, or `no live lease`.
fn live_tokens(tokens: &[FencingToken]) -> String {
    if tokens.is_empty() {
        return "no live lease".to_owned();
    }
    let tokens: Vec<String> = tokens.iter().map(ToString::to_string).collect();
    format!("live tokens: {}", tokens.join(", "))
}

/// A listing walked one page at a time: [`Operations::walk`].
#[derive(Debug)]
pub struct LeaseWalk {
    ops: Operations,
    filter: LeaseFilter,
    next: Option<Cursor>,
    limit: u32,
}

impl LeaseWalk {
    /// Pages of at most `limit` records (1..=1,000; default 1,000).
    pub fn page_size(mut self, limit: u32) -> Result<LeaseWalk> {
        check_limit("leases", limit)?;
        self.limit = limit;
        Ok(self)
    }

    /// The next page (possibly empty), or `None` once the walk is over.
    ///
    /// # Cancel safety
    /// A read: a cancelled call leaves the walk where it was.
    pub async fn next_page(&mut self) -> Result<Option<Vec<LiveLease>>> {
        let Some(cursor) = &self.next else {
            return Ok(None);
        };
        let page = self
            .ops
            .leases_page(&self.filter, cursor, self.limit)
            .await?;
        self.next = page.next;
        Ok(Some(page.items))
    }
}

/// How long a presence lasts by default, and how often it is renewed
/// (a third of it).
pub(crate) const PRESENCE_TTL: Duration = Duration::from_secs(15);
