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

/// Runs one backend call on a lease inside a `coord.backend` span.
pub(crate) async fn call<T, F>(
    op: &'static str,
    client: &Client,
    id: &LeaseId,
    token: Option<FencingToken>,
    fut: F,
    classify: impl FnOnce(&T) -> Outcome,
) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    call_on(
        op,
        client,
        id.kind.as_str(),
        &id.key,
        Some(&id.holder),
        token,
        fut,
        classify,
    )
    .await
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
    let Some(span) = open(
        op,
        client,
        id.kind.as_str(),
        &id.key,
        Some(&id.holder),
        token,
    ) else {
        return f();
    };
    let res = span.in_scope(f);
    close(&span, &res, classify);
    res
}

/// Runs one backend call inside a `coord.backend` span: `kind` names the
/// primitive (`exclusive`, `election`, `group`, `job`...).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call_on<T, F>(
    op: &'static str,
    client: &Client,
    kind: &'static str,
    key: &Key,
    holder: Option<&HolderId>,
    token: Option<FencingToken>,
    fut: F,
    classify: impl FnOnce(&T) -> Outcome,
) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    let Some(span) = open(op, client, kind, key, holder, token) else {
        return fut.await;
    };
    let res = fut.instrument(span.clone()).await;
    close(&span, &res, classify);
    res
}

/// The span of one call, with what is known before it; `None` when nobody
/// wants it. Whether anything listens at debug level at all is one atomic
/// load, inlined into the caller, so a call nobody traces (the common case in
/// production) skips even a span's callsite check.
#[inline(always)]
fn open(
    op: &'static str,
    client: &Client,
    kind: &'static str,
    key: &Key,
    holder: Option<&HolderId>,
    token: Option<FencingToken>,
) -> Option<tracing::Span> {
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return None;
    }
    open_span(op, client, kind, key, holder, token)
}

#[inline(never)]
fn open_span(
    op: &'static str,
    client: &Client,
    kind: &'static str,
    key: &Key,
    holder: Option<&HolderId>,
    token: Option<FencingToken>,
) -> Option<tracing::Span> {
    let span = tracing::debug_span!(
        "coord.backend",
        op,
        backend = %client.backend(),
        kind,
        key = %key,
        holder = Empty,
        token = Empty,
        outcome = Empty,
    );
    if span.is_disabled() {
        return None;
    }
    if let Some(h) = holder {
        span.record("holder", tracing::field::display(h));
    }
    if let Some(t) = token {
        span.record("token", t.get());
    }
    Some(span)
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
