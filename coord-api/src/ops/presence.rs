//! Instance presence: every client keeps one heartbeat lease of its
//! instance id (with its pid, host and metadata) while it lives, so that an
//! operator can tell a lease whose holder is gone (**stale**) from one
//! whose holder is merely slow. Started with the client's first call (and
//! again at the next call if the runtime it ran on shut down), renewed
//! every third of its TTL, withdrawn by `Client::close`, left to
//! expire when the client is dropped or its process dies.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    Error, Result,
    client::WeakClient,
    lease::spawn_background,
    spi::{Presence, ops::MAX_PRESENCE_BYTES},
    validate_ttl,
};

/// How a client keeps its instance presence
/// ([`ClientBuilder::presence`](crate::ClientBuilder::presence)).
///
/// ```
/// # fn demo(backend: coord_api::spi::DynBackend) -> coord_api::Result<()> {
/// use coord_api::{Client, PresenceOptions};
/// use std::time::Duration;
/// let presence = PresenceOptions::default()
///     .ttl(Duration::from_secs(6))?
///     .metadata("version=1.4.2 addr=10.0.0.7:8080")?;
/// let client = Client::builder(backend).presence(presence).build();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceOptions {
    ttl: Option<Duration>,
    metadata: String,
}

impl Default for PresenceOptions {
    /// A presence of 15 s, renewed every 5 s, no metadata.
    fn default() -> PresenceOptions {
        PresenceOptions {
            ttl: Some(super::PRESENCE_TTL),
            metadata: String::new(),
        }
    }
}

impl PresenceOptions {
    /// No presence: every lease of this client looks stale to operators.
    /// For tests that count backend calls, and tools (`coordctl`) that
    /// hold nothing.
    pub fn disabled() -> PresenceOptions {
        PresenceOptions {
            ttl: None,
            metadata: String::new(),
        }
    }

    /// The presence's TTL (renewed every third of it): how long after a
    /// crash its leases start to look stale. `InvalidArgument` outside
    /// 1 s..=24 h.
    pub fn ttl(mut self, ttl: Duration) -> Result<PresenceOptions> {
        validate_ttl(&crate::Key::new("presence")?, ttl)?;
        if ttl < Duration::from_secs(1) {
            return Err(Error::invalid(format!(
                "presence ttl {ttl:?} is below the 1 s minimum (it is renewed every third of it)"
            )));
        }
        self.ttl = Some(ttl);
        Ok(self)
    }

    /// What the presence publishes besides pid and host (a version, an
    /// address). `InvalidArgument` past 4,096 bytes.
    pub fn metadata(mut self, metadata: impl Into<String>) -> Result<PresenceOptions> {
        let metadata = metadata.into();
        if metadata.len() > MAX_PRESENCE_BYTES / 2 {
            return Err(Error::invalid(format!(
                "presence metadata is {} bytes, the limit is {}",
                metadata.len(),
                MAX_PRESENCE_BYTES / 2
            )));
        }
        self.metadata = metadata;
        Ok(self)
    }

    /// The TTL, or `None` when disabled.
    pub fn ttl_value(&self) -> Option<Duration> {
        self.ttl
    }
}

/// A client's presence: its options and whether its task runs.
#[derive(Debug)]
pub(crate) struct Slot {
    opts: PresenceOptions,
    /// True while a presence task lives. Its [`Running`] guard sets it back
    /// to false if the task is dropped unfinished (its runtime shut down),
    /// so that the next call, on whatever runtime, starts another.
    started: Arc<AtomicBool>,
}

impl Slot {
    pub(crate) fn new(opts: PresenceOptions) -> Slot {
        Slot {
            opts,
            started: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts the presence task if none lives (on the current runtime;
    /// without one, at the next call made inside one). A task that died
    /// with its runtime is started again at the next call.
    pub(crate) fn start(&self, client: WeakClient) {
        let Some(ttl) = self.opts.ttl else { return };
        if self.started.load(Ordering::Acquire)
            || tokio::runtime::Handle::try_current().is_err()
            || self.started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let metadata = self.opts.metadata.clone();
        let running = Running {
            started: self.started.clone(),
            finished: false,
        };
        spawn_background(async move {
            let mut running = running;
            run(client, metadata, ttl).await;
            running.finished = true;
        });
    }

    /// Whether a presence is kept.
    pub(crate) fn enabled(&self) -> bool {
        self.opts.ttl.is_some()
    }
}

/// Held by the presence task. Dropped unfinished (the task was cancelled
/// because its runtime shut down), it marks the slot as having no task;
/// a task that ended on its own (client dropped or closed, no operations
/// support) leaves it marked, so nothing starts it again.
struct Running {
    started: Arc<AtomicBool>,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            self.started.store(false, Ordering::Release);
        }
    }
}

/// The host name this process reports (`HOSTNAME`, else `/etc/hostname`).
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Announces, then renews every third of `ttl`, until the client is
/// dropped or closed (or its backend offers no operations).
async fn run(weak: WeakClient, metadata: String, ttl: Duration) {
    let every = ttl / 3;
    let mut presence = None;
    loop {
        let Some(client) = weak.upgrade() else { return };
        let presence = presence.get_or_insert_with(|| {
            Presence::new(
                *client.instance_id(),
                std::process::id(),
                host_name(),
                metadata.clone(),
            )
        });
        let clock = client.clock().clone();
        let res = match client.ops_backend() {
            Ok(b) => b.announce(presence, ttl).await,
            Err(e) => Err(e),
        };
        let wait = match res {
            Ok(()) => every,
            Err(Error::NotSupported { .. } | Error::Closed { .. }) => return,
            Err(e) => {
                tracing::debug!(instance = %client.instance_id(), error = %e, "presence not renewed");
                every.min(Duration::from_secs(1))
            }
        };
        drop(client);
        clock.sleep_until(clock.now() + wait).await;
    }
}
