//! A `tower::Layer` that wraps any service with a [`Breaker`] (feature
//! `tower`): a refused request is not sent, and fails with
//! [`Error::CircuitOpen`](crate::Error::CircuitOpen) (boxed, as tower's own
//! layers do); a sent one's `Err` counts as a failure.
//!
//! Layer order (the first layer a `ServiceBuilder` adds is the outermost):
//! put the breaker outside the timeouts you want counted as failures (add
//! it before them: a timeout's error then reaches it; a timeout outside it
//! cancels the call, and a cancelled call's permit counts nothing), and
//! outside retries (a retry outside it sends a refused request again, to be
//! refused again at once).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower_layer::Layer;
use tower_service::Service;

use super::Breaker;
use crate::BoxError;

/// Wraps services with a breaker: `ServiceBuilder::new().layer(BreakerLayer::new(b))`.
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breaker: Breaker,
}

impl BreakerLayer {
    /// A layer of `breaker` (shared by every service it wraps).
    pub fn new(breaker: Breaker) -> BreakerLayer {
        BreakerLayer { breaker }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;

    fn layer(&self, inner: S) -> BreakerService<S> {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// A service behind a breaker (see [`BreakerLayer`]).
#[derive(Debug, Clone)]
pub struct BreakerService<S> {
    inner: S,
    breaker: Breaker,
}

impl<S> BreakerService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, R> Service<R> for BreakerService<S>
where
    S: Service<R> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // The service made ready is the one that takes the request (tower's
        // clone-and-swap pattern): the call waits for the breaker first.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let breaker = self.breaker.clone();
        Box::pin(async move {
            let permit = breaker.permit().await?;
            let res = inner.call(request).await;
            permit.record(res.is_err());
            res.map_err(Into::into)
        })
    }
}
