//! What every family's handle (`Lock`, `RwLock`, `Semaphore`, `Election`,
//! `Group`, `Job`) is made of: a client, a name checked once, and lease
//! options checked once per change.

use std::time::Duration;

use crate::{Client, Key, LeaseOptions, Result};

#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) client: Client,
    key: std::result::Result<Key, String>,
    opts: LeaseOptions,
    /// Whether `opts` passed validation (checked once per change, not per call).
    opts_ok: bool,
    /// `opts.local_validity()`, computed once per change.
    validity: Duration,
}

impl Handle {
    pub(crate) fn new(client: Client, key: &str) -> Handle {
        let opts = client.lease_options().clone();
        let mut handle = Handle {
            client,
            key: Key::new(key).map_err(|_| key.to_owned()),
            opts,
            opts_ok: false,
            validity: Duration::ZERO,
        };
        handle.set_options(|_| {});
        handle
    }

    pub(crate) fn opts(&self) -> &LeaseOptions {
        &self.opts
    }

    /// Changes the options and checks them again.
    pub(crate) fn set_options(&mut self, change: impl FnOnce(&mut LeaseOptions)) {
        change(&mut self.opts);
        self.validity = self.opts.local_validity();
        self.opts_ok = match &self.key {
            Ok(k) => self.opts.validate(k).is_ok(),
            Err(_) => false,
        };
    }

    /// The validated key, or the `InvalidArgument` it failed with.
    pub(crate) fn key(&self) -> Result<&Key> {
        match &self.key {
            Ok(k) => Ok(k),
            Err(raw) => Err(Key::new(raw).expect_err("validated before")),
        }
    }

    pub(crate) fn key_str(&self) -> &str {
        match &self.key {
            Ok(k) => k.as_str(),
            Err(raw) => raw,
        }
    }

    /// How long a lease counts as valid locally (see
    /// [`LeaseOptions::local_validity`]).
    pub(crate) fn validity(&self) -> Duration {
        self.validity
    }

    /// The key and the options, both valid, or the `InvalidArgument` of the
    /// first that is not. Every operation that takes a lease checks this
    /// before any I/O.
    pub(crate) fn checked(&self) -> Result<(&Key, &LeaseOptions)> {
        let key = self.key()?;
        if !self.opts_ok {
            self.opts.validate(key)?;
        }
        Ok((key, &self.opts))
    }
}

/// The option setters every handle type offers, written once; the handle
/// is the field `handle`, or the field path given (`party.handle`).
macro_rules! option_setters {
    () => {
        $crate::handle::option_setters!(handle);
    };
    ($($field:ident).+) => {
        /// Replaces all options (defaults come from the client).
        pub fn with_options(mut self, opts: $crate::LeaseOptions) -> Self {
            self.$($field).+.set_options(|o| *o = opts);
            self
        }

        /// The options in force.
        pub fn options(&self) -> &$crate::LeaseOptions {
            self.$($field).+.opts()
        }

        /// Sets the lease TTL (1 ms ..= 24 h).
        pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
            self.$($field).+.set_options(|o| o.ttl = ttl);
            self
        }

        /// Sets how long waiting acquisitions wait (`None`: for ever).
        pub fn wait_timeout(mut self, wait: Option<std::time::Duration>) -> Self {
            self.$($field).+.set_options(|o| o.wait_timeout = wait);
            self
        }

        /// Turns background renewal on or off.
        pub fn auto_extend(mut self, on: bool) -> Self {
            self.$($field).+.set_options(|o| o.auto_extend = on);
            self
        }

        /// A fixed lease of `ttl` (1 ms ..= 24 h) in one call: the TTL,
        /// with no background renewal, the way Redisson's
        /// `lock(leaseTime)` works. The lease ends `ttl` after its grant
        /// unless extended by hand (`extend`); its lost signal fires then.
        /// The opposite of [`ttl`](Self::ttl), which keeps the lease
        /// renewed while its guard lives.
        pub fn lease(mut self, ttl: std::time::Duration) -> Self {
            self.$($field).+.set_options(|o| {
                o.ttl = ttl;
                o.auto_extend = false;
            });
            self
        }

        /// Sets the fallback delay between attempts of a waiting
        /// acquisition (above zero): waiters are woken by notifications,
        /// so this is the most a lost one costs.
        pub fn retry_delay(mut self, delay: std::time::Duration) -> Self {
            self.$($field).+.set_options(|o| o.retry_delay = delay);
            self
        }

        /// Sets the retry delay's jitter: each delay is scaled by a random
        /// factor in `1 ± jitter` (0.0 ..= 1.0).
        pub fn retry_jitter(mut self, jitter: f64) -> Self {
            self.$($field).+.set_options(|o| o.retry_jitter = jitter);
            self
        }

        /// Sets how many refused attempts a waiting acquisition makes
        /// before `Error::Timeout` (`None`: no limit).
        pub fn max_retries(mut self, max: Option<u32>) -> Self {
            self.$($field).+.set_options(|o| o.max_retries = max);
            self
        }

        /// The key, as given.
        pub fn key(&self) -> &str {
            self.$($field).+.key_str()
        }
    };
}
pub(crate) use option_setters;

/// A watch a handle keeps between calls (a worker's or a consumer's
/// subscription while idle). Reached only through `&mut`, behind a mutex
/// that is never locked, so that the handle stays `Sync` (a backend's
/// watch is `Send` only) and its futures `Send`.
#[derive(Default)]
pub(crate) struct KeptWatch(std::sync::Mutex<Option<Box<dyn crate::Watch>>>);

impl KeptWatch {
    /// The watch, if one is kept.
    pub(crate) fn get(&mut self) -> &mut Option<Box<dyn crate::Watch>> {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether one is kept.
    pub(crate) fn is_some(&mut self) -> bool {
        self.get().is_some()
    }
}
