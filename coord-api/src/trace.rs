//! One `coord.backend` tracing span per backend call: operation, backend,
//! family, kind, key, holder, token and outcome. Holder ids and keys are not
//! secrets; credentials never reach a span because backends redact them from
//! their `Display`.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tracing::{Instrument, field::Empty};

use crate::{Client, FencingToken, HolderId, Key, Result};

/// How a backend call ended, recorded as the span's `outcome` field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Ok,
    Granted(FencingToken),
    Busy,
    NotHeld,
    /// A compare-and-set whose expectation was not met.
    Conflict,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Granted(_) => "granted",
            Outcome::Busy => "busy",
            Outcome::NotHeld => "not_held",
            Outcome::Conflict => "conflict",
        }
    }

    /// `Ok` for `true`, `NotHeld` for `false` (renewals and releases).
    pub(crate) fn held(held: &bool) -> Outcome {
        if *held { Outcome::Ok } else { Outcome::NotHeld }
    }

    /// `Ok` whatever the answer (reads).
    pub(crate) fn ok<T>(_: &T) -> Outcome {
        Outcome::Ok
    }

    /// A release's answer: `Ok` when released, `NotHeld` when not.
    pub(crate) fn released(r: &crate::Release) -> Outcome {
        match r {
            crate::Release::Released { .. } => Outcome::Ok,
            crate::Release::NotHeld => Outcome::NotHeld,
        }
    }
}

/// What a call is about, as its span names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site<'a> {
    /// The operation (`acquire`, `renew`, `campaign`, `members`...).
    pub(crate) op: &'static str,
    /// The primitive (`lock`, `rwlock`, `semaphore`, `election`, `group`,
    /// `job`).
    pub(crate) family: &'static str,
    /// The lease's kind (`exclusive`, `read`, `permit`, `term`, `member`,
    /// `run`...), empty for a call that is about no lease.
    pub(crate) kind: &'static str,
    pub(crate) key: &'a Key,
    pub(crate) holder: Option<&'a HolderId>,
    pub(crate) token: Option<FencingToken>,
}

/// Runs `fut`, a call to `client`'s backend, inside the `coord.backend`
/// span of the site `site` makes, when anything listens at debug level; as it
/// is otherwise. The site is only made, and the call only wrapped (in a boxed
/// future), when traced: an untraced call costs one check of the log level,
/// and its future is the backend's own.
pub(crate) fn call<'a, 's, T, F>(
    client: &Client,
    site: impl FnOnce() -> Site<'s>,
    fut: F,
    classify: impl FnOnce(&T) -> Outcome + Send + 'a,
) -> Traced<'a, F>
where
    F: Future<Output = Result<T>> + Unpin + Send + 'a,
    T: Send + 'a,
{
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return Traced::Plain(fut);
    }
    match site().open_span(client) {
        None => Traced::Plain(fut),
        Some(span) => Traced::Spanned(Box::pin(async move {
            let res = fut.instrument(span.clone()).await;
            close(&span, &res, classify);
            res
        })),
    }
}

/// A backend call as [`call`] returns it: the backend's own future, or,
/// traced, that future inside its span.
pub(crate) enum Traced<'a, F: Future> {
    Plain(F),
    Spanned(Pin<Box<dyn Future<Output = F::Output> + Send + 'a>>),
}

impl<F: Future + Unpin> Future for Traced<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.get_mut() {
            Traced::Plain(f) => Pin::new(f).poll(cx),
            Traced::Spanned(f) => f.as_mut().poll(cx),
        }
    }
}

impl<'a> Site<'a> {
    /// A site in one line: what a background clean-up's call (a give-back,
    /// a leave or a settle sent again) names.
    pub(crate) fn new(
        (family, kind, op): (&'static str, &'static str, &'static str),
        key: &'a Key,
        holder: Option<&'a HolderId>,
        token: Option<FencingToken>,
    ) -> Site<'a> {
        Site {
            op,
            family,
            kind,
            key,
            holder,
            token,
        }
    }

    #[inline(never)]
    fn open_span(&self, client: &Client) -> Option<tracing::Span> {
        let span = tracing::debug_span!(
            "coord.backend",
            op = self.op,
            backend = %client.backend(),
            family = self.family,
            kind = Empty,
            key = %self.key,
            holder = Empty,
            token = Empty,
            outcome = Empty,
        );
        if span.is_disabled() {
            return None;
        }
        if !self.kind.is_empty() {
            span.record("kind", self.kind);
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
