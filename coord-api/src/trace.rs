//! One tracing span per backend call: operation, backend, kind, key, holder,
//! token and outcome. Holder ids and keys are not secrets; credentials never
//! reach a span because backends redact them from their `Display`.

use std::future::Future;

use tracing::{Instrument, field::Empty};

use crate::{Client, FencingToken, HolderId, Key, LeaseId, Result};

/// How a backend call ended, recorded as the span's `outcome` field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Ok,
    Granted(FencingToken),
    Busy,
    NotHeld,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Granted(_) => "granted",
            Outcome::Busy => "busy",
            Outcome::NotHeld => "not_held",
        }
    }
}

/// What a call's span says before the call is made.
struct Site<'a> {
    op: &'static str,
    client: &'a Client,
    /// The primitive (`exclusive`, `election`, `group`, `job`...).
    kind: &'static str,
    key: &'a Key,
    holder: Option<&'a HolderId>,
    token: Option<FencingToken>,
}

impl<'a> Site<'a> {
    /// A call on the lease `id`.
    fn lease(
        op: &'static str,
        client: &'a Client,
        id: &'a LeaseId,
        token: Option<FencingToken>,
    ) -> Self {
        Site {
            op,
            client,
            kind: id.kind.as_str(),
            key: &id.key,
            holder: Some(&id.holder),
            token,
        }
    }

    /// Runs `fut` inside this site's span.
    async fn run<T>(
        &self,
        fut: impl Future<Output = Result<T>>,
        classify: impl FnOnce(&T) -> Outcome,
    ) -> Result<T> {
        let Some(span) = self.open() else {
            return fut.await;
        };
        let res = fut.instrument(span.clone()).await;
        close(&span, &res, classify);
        res
    }

    /// The span of the call; `None` when nobody wants it. Whether anything
    /// listens at debug level at all is one atomic load, inlined into the
    /// caller, so a call nobody traces (the common case in production) skips
    /// even a span's callsite check.
    #[inline(always)]
    fn open(&self) -> Option<tracing::Span> {
        if !tracing::level_enabled!(tracing::Level::DEBUG) {
            return None;
        }
        self.open_span()
    }

    #[inline(never)]
    fn open_span(&self) -> Option<tracing::Span> {
        let span = tracing::debug_span!(
            "coord.backend",
            op = self.op,
            backend = %self.client.backend(),
            kind = self.kind,
            key = %self.key,
            holder = Empty,
            token = Empty,
            outcome = Empty,
        );
        if span.is_disabled() {
            return None;
        }
        if let Some(h) = self.holder {
            span.record("holder", tracing::field::display(h));
        }
        if let Some(t) = self.token {
            span.record("token", t.get());
        }
        Some(span)
    }
}

/// Runs one backend call on a lease inside a `coord.backend` span.
pub(crate) async fn call<T>(
    op: &'static str,
    client: &Client,
    id: &LeaseId,
    token: Option<FencingToken>,
    fut: impl Future<Output = Result<T>>,
    classify: impl FnOnce(&T) -> Outcome,
) -> Result<T> {
    Site::lease(op, client, id, token).run(fut, classify).await
}

/// [`call`] for a synchronous call (an in-process backend's answer).
pub(crate) fn call_now<T>(
    op: &'static str,
    client: &Client,
    id: &LeaseId,
    token: Option<FencingToken>,
    f: impl FnOnce() -> Result<T>,
    classify: impl FnOnce(&T) -> Outcome,
) -> Result<T> {
    let Some(span) = Site::lease(op, client, id, token).open() else {
        return f();
    };
    let res = span.in_scope(f);
    close(&span, &res, classify);
    res
}

/// Runs one backend call inside a `coord.backend` span: `kind` names the
/// primitive (`exclusive`, `election`, `group`, `job`...).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call_on<T>(
    op: &'static str,
    client: &Client,
    kind: &'static str,
    key: &Key,
    holder: Option<&HolderId>,
    token: Option<FencingToken>,
    fut: impl Future<Output = Result<T>>,
    classify: impl FnOnce(&T) -> Outcome,
) -> Result<T> {
    let site = Site {
        op,
        client,
        kind,
        key,
        holder,
        token,
    };
    site.run(fut, classify).await
}

/// Records how the call ended.
fn close<T>(span: &tracing::Span, res: &Result<T>, classify: impl FnOnce(&T) -> Outcome) {
    match res {
        Ok(v) => {
            let outcome = classify(v);
            if let Outcome::Granted(t) = outcome {
                span.record("token", t.get());
            }
            span.record("outcome", outcome.as_str())
        }
        Err(e) => span.record("outcome", tracing::field::display(e)),
    };
}
