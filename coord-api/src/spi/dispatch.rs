//! Every family's calls carried as values, for what must see all of them:
//! decorators (a kill switch, a fault layer, deliberately broken variants in
//! tests) and transports (the simulator's network).
//!
//! [`Dispatched<D>`] implements [`Backend`] and every family trait by turning
//! each method call into a [`Call`] and handing it to `D`'s one method,
//! [`Dispatch::dispatch`]. A call names its operation ([`Op`]), carries its
//! arguments (owned, as a tuple a decorator may read or change), and runs
//! against any root backend with [`Call::run`]: a decorator runs it on the
//! backend it wraps, a transport ships it and runs it on the far side.
//!
//! ```
//! use std::sync::Arc;
//! use coord_api::{Result, Namespace, async_trait};
//! use coord_api::spi::{Backend, Call, Dispatch, Dispatched, DynBackend, Families, Reply};
//!
//! /// Counts every call of every family, then forwards it.
//! #[derive(Debug)]
//! struct Counting {
//!     inner: DynBackend,
//!     calls: std::sync::atomic::AtomicU64,
//! }
//!
//! impl std::fmt::Display for Counting {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         write!(f, "Counting({})", self.inner)
//!     }
//! }
//!
//! #[async_trait]
//! impl Dispatch for Counting {
//!     fn namespace(&self) -> &Namespace {
//!         self.inner.namespace()
//!     }
//!     fn families(&self) -> Families {
//!         Families::of(&*self.inner)
//!     }
//!     async fn dispatch(&self, call: Call) -> Result<Reply> {
//!         self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         call.run(self.inner.clone()).await
//!     }
//! }
//!
//! fn counted(inner: DynBackend) -> DynBackend {
//!     Arc::new(Dispatched::new(Counting { inner, calls: Default::default() }))
//! }
//! ```

use std::{any::Any, fmt, future::Future, pin::Pin};

use async_trait::async_trait;

use super::{
    Backend, BarrierBackend, BreakerBackend, DynBackend, ElectionBackend, Families, GraphBackend,
    GroupBackend, JobBackend, LockBackend, OpsBackend, QueueBackend, StateBackend, TopicBackend,
};
use crate::{Error, Namespace, Result};

/// An operation of the SPI: its family (`locks`, `elections`, `groups`,
/// `jobs`, `barriers`) and its method's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Op {
    /// The family, as its [`Backend`] accessor is named.
    pub family: &'static str,
    /// The family trait's method.
    pub name: &'static str,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.family, self.name)
    }
}

/// What a call answered, type-erased: the family method's `Ok` value
/// (`Acquire`, `bool`, `Box<dyn Watch>`...). [`Dispatched`] downcasts it
/// back; a decorator that replaces a reply must put in the same type.
pub type Reply = Box<dyn Any + Send>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type Run = Box<dyn FnOnce(DynBackend, Box<dyn Any + Send>) -> BoxFuture<Result<Reply>> + Send>;

/// One call of a family method, carried as a value: which operation, its
/// arguments (owned, as the tuple [`Dispatched`] built them, in the method's
/// order), and how to run it on a backend.
pub struct Call {
    op: Op,
    args: Box<dyn Any + Send>,
    run: Run,
}

impl Call {
    /// A call of `op` with `args`, run by `run` on the backend it is given.
    pub fn new<A, T, F, Fut>(op: Op, args: A, run: F) -> Call
    where
        A: Send + 'static,
        T: Send + 'static,
        F: FnOnce(DynBackend, A) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        Call {
            op,
            args: Box::new(args),
            run: Box::new(move |backend, args| {
                let args = *args
                    .downcast::<A>()
                    .expect("a call keeps its arguments' type");
                Box::pin(async move { run(backend, args).await.map(|v| Box::new(v) as Reply) })
            }),
        }
    }

    /// The operation.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The arguments, if they are an `A` (the method's arguments as a tuple,
    /// references made owned: `(LeaseId, Duration)` for `locks.acquire`).
    pub fn args<A: 'static>(&self) -> Option<&A> {
        self.args.downcast_ref()
    }

    /// The arguments, to change before the call runs.
    pub fn args_mut<A: 'static>(&mut self) -> Option<&mut A> {
        self.args.downcast_mut()
    }

    /// Runs the call on `backend` (the method of the same name on its
    /// family); `NotSupported` if `backend` lacks the family.
    pub async fn run(self, backend: DynBackend) -> Result<Reply> {
        (self.run)(backend, self.args).await
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("op", &self.op)
            .finish_non_exhaustive()
    }
}

/// Receives every call of every family. Implement it for a decorator or a
/// transport, and wrap it in [`Dispatched`] to get a [`Backend`].
#[async_trait]
pub trait Dispatch: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// The namespace of the backend behind it.
    fn namespace(&self) -> &Namespace;
    /// The families (and capabilities) offered: [`Dispatched`] offers these.
    fn families(&self) -> Families;
    /// Runs `call` (or not: a decorator may fail it, delay it, or replace
    /// its reply with one of the same type).
    async fn dispatch(&self, call: Call) -> Result<Reply>;
}

/// A [`Backend`] whose every family method becomes a [`Call`] handed to
/// `D`. Its `Display` is `D`'s.
#[derive(Debug)]
pub struct Dispatched<D> {
    inner: D,
    families: Families,
}

impl<D: Dispatch> Dispatched<D> {
    /// Wraps `inner`, offering the families it names.
    pub fn new(inner: D) -> Dispatched<D> {
        let families = inner.families();
        Dispatched { inner, families }
    }

    /// The dispatcher.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// Unwraps the dispatcher.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Carries one call of `op` to the dispatcher and takes its reply back
    /// as a `T`.
    pub(crate) async fn carry<A, T, F, Fut>(&self, op: Op, args: A, run: F) -> Result<T>
    where
        A: Send + 'static,
        T: Send + 'static,
        F: FnOnce(DynBackend, A) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let reply = self.inner.dispatch(Call::new(op, args, run)).await?;
        match reply.downcast::<T>() {
            Ok(v) => Ok(*v),
            Err(_) => Err(Error::backend(
                self,
                format!("{op}: the reply is not of the method's type"),
            )),
        }
    }
}

impl<D: Dispatch> fmt::Display for Dispatched<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl<D: Dispatch> Backend for Dispatched<D> {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn locks(&self) -> Option<&dyn LockBackend> {
        self.families.locks.map(|_| self as _)
    }
    fn elections(&self) -> Option<&dyn ElectionBackend> {
        self.families.elections.then_some(self as _)
    }
    fn groups(&self) -> Option<&dyn GroupBackend> {
        self.families.groups.then_some(self as _)
    }
    fn jobs(&self) -> Option<&dyn JobBackend> {
        self.families.jobs.then_some(self as _)
    }
    fn barriers(&self) -> Option<&dyn BarrierBackend> {
        self.families.barriers.then_some(self as _)
    }
    fn graphs(&self) -> Option<&dyn GraphBackend> {
        self.families.graphs.then_some(self as _)
    }
    fn queues(&self) -> Option<&dyn QueueBackend> {
        self.families.queues.then_some(self as _)
    }
    fn topics(&self) -> Option<&dyn TopicBackend> {
        self.families.topics.then_some(self as _)
    }
    fn state(&self) -> Option<&dyn StateBackend> {
        self.families.state.then_some(self as _)
    }
    fn breakers(&self) -> Option<&dyn BreakerBackend> {
        self.families.breakers.then_some(self as _)
    }
    fn ops(&self) -> Option<&dyn OpsBackend> {
        self.families.ops.then_some(self as _)
    }
}

impl<D> Dispatched<D> {
    pub(crate) fn lock_capabilities(&self) -> super::LockCapabilities {
        self.families.locks.unwrap_or_default()
    }
}

/// `NotSupported` for a family `backend` lacks, naming the call.
pub(crate) fn unsupported(op: Op, backend: &dyn Backend) -> Error {
    Error::NotSupported {
        operation: op.family,
        backend: backend.to_string(),
    }
}

/// The family `$family` of `$backend`, or `NotSupported` naming `$op`.
macro_rules! family {
    ($backend:expr, $family:ident, $op:expr) => {
        $backend
            .$family()
            .ok_or_else(|| $crate::spi::dispatch::unsupported($op, &*$backend))
    };
}
pub(crate) use family;
