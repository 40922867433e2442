//! What Lock, RwLock and Semaphore have in common: a client, a key checked
//! once, and options.

use crate::{
    Client, Error, HolderId, Key, LeaseFamily, LeaseGuard, LeaseId, LeaseInfo, LeaseKind,
    LockOptions, Result,
    acquire::{Attempt, Request, Wait},
};

#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) client: Client,
    key: std::result::Result<Key, String>,
    opts: LockOptions,
    /// Whether `opts` passed validation (checked once per change, not per call).
    opts_ok: bool,
    /// `opts.local_validity(opts.ttl)`, computed once per change.
    validity: std::time::Duration,
}

impl Handle {
    pub(crate) fn new(client: Client, key: &str) -> Handle {
        let opts = client.lock_options().clone();
        let mut handle = Handle {
            client,
            key: Key::new(key).map_err(|_| key.to_owned()),
            opts,
            opts_ok: false,
            validity: Default::default(),
        };
        handle.set_options(|_| {});
        handle
    }

    pub(crate) fn opts(&self) -> &LockOptions {
        &self.opts
    }

    /// Changes the options and checks them again.
    pub(crate) fn set_options(&mut self, change: impl FnOnce(&mut LockOptions)) {
        change(&mut self.opts);
        self.validity = self.opts.local_validity(self.opts.ttl);
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

    /// A request for `kind` by `holder` (a fresh one when `None`), with the
    /// key and options validated first.
    pub(crate) fn request(&self, kind: LeaseKind, holder: Option<HolderId>) -> Result<Request<'_>> {
        let key = self.key()?;
        if !self.opts_ok {
            self.opts.validate(key)?;
        }
        let holder = holder.unwrap_or_else(|| HolderId::new(*self.client.instance_id()));
        Ok(Request {
            client: &self.client,
            id: LeaseId {
                kind,
                key: key.clone(),
                holder,
            },
            opts: &self.opts,
            validity: self.validity,
        })
    }

    /// One attempt for a new holder of `kind`: answered in the caller's
    /// thread by an in-process backend, else one round trip, boxed so that
    /// the in-process path's futures (and their callers') stay small.
    pub(crate) async fn attempt(&self, kind: LeaseKind) -> Result<Attempt> {
        // Nothing but the boxed future lives across the await.
        let remote = match self.request(kind, None)?.attempt_now() {
            Ok(attempt) => return attempt,
            Err(remote) => Box::pin(remote.attempt_once()),
        };
        remote.await
    }

    /// A lease of `kind` for a new holder, waiting while refused (see
    /// [`Request::wait`]). Nothing but the boxed wait lives across the await.
    pub(crate) async fn wait(&self, kind: LeaseKind) -> Result<LeaseGuard> {
        let wait = match self.request(kind, None)?.wait() {
            Wait::Ready(answer) => return answer,
            Wait::Waiting(wait) => wait,
        };
        wait.await
    }

    pub(crate) async fn inspect(&self, family: LeaseFamily) -> Result<Vec<LeaseInfo>> {
        let key = self.key()?;
        let span = tracing::debug_span!("coord.backend", op = "inspect", family = family.as_str(), key = %key);
        tracing::Instrument::instrument(self.client.backend().inspect(family, key), span).await
    }

    pub(crate) async fn force_release(&self, family: LeaseFamily) -> Result<usize> {
        let key = self.key()?;
        let span = tracing::debug_span!("coord.backend", op = "force_release", family = family.as_str(), key = %key);
        let n =
            tracing::Instrument::instrument(self.client.backend().force_release(family, key), span)
                .await?;
        tracing::info!(key = %key, family = family.as_str(), removed = n, "force released");
        Ok(n)
    }

    pub(crate) fn unsupported(&self, operation: &'static str) -> Error {
        Error::NotSupported {
            operation,
            backend: self.client.backend().to_string(),
        }
    }
}

/// The option setters every handle type offers, written once.
macro_rules! option_setters {
    () => {
        /// Replaces all options (defaults come from the client).
        pub fn with_options(mut self, opts: $crate::LockOptions) -> Self {
            self.handle.set_options(|o| *o = opts);
            self
        }

        /// The options in force.
        pub fn options(&self) -> &$crate::LockOptions {
            self.handle.opts()
        }

        /// Sets the lease TTL (1 ms ..= 24 h).
        pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
            self.handle.set_options(|o| o.ttl = ttl);
            self
        }

        /// Sets how long waiting acquisitions wait (`None`: for ever).
        pub fn wait_timeout(mut self, wait: Option<std::time::Duration>) -> Self {
            self.handle.set_options(|o| o.wait_timeout = wait);
            self
        }

        /// Turns background renewal on or off.
        pub fn auto_extend(mut self, on: bool) -> Self {
            self.handle.set_options(|o| o.auto_extend = on);
            self
        }

        /// The key, as given.
        pub fn key(&self) -> &str {
            self.handle.key_str()
        }
    };
}
pub(crate) use option_setters;
