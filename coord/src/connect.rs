//! `connect(url)`: picks the backend from the URL's scheme.

use std::sync::Arc;

use coord_api::{Client, ClientBuilder, Error, Namespace, Result};

use crate::url::SplitUrl;

/// Opens a [`Client`] on the backend the URL names.
///
/// | URL | backend |
/// |---|---|
/// | `memory://` | the process-wide in-process store ([`memory::process_store`](crate::memory::process_store)) |
/// | `redis://[user:pass@]host:port/db`, `rediss://…` (TLS), `unix:///path`, `redis+unix:///path` | Redis (`coord-redis`) |
///
/// Query keys understood for every scheme:
/// - `namespace=<ns>`: the namespace every key lives in (default `coord`);
/// - `instance=<id>`: this instance's id, shown to operators as the holder
///   (default: host name, pid and a random suffix).
///
/// The Redis backend takes further keys of its own (`timeout`,
/// `connect_timeout`, `db`, `user`, `password`; see `coord::redis::RedisConfig`).
///
/// `memory://` is one store per process, like a local server: every
/// `connect("memory://…")` in the process reaches the same locks, so tasks
/// that connect separately see each other, and namespaces keep unrelated
/// users apart. For a private store, build the client yourself from
/// [`memory::MemoryBackend::new`](crate::memory::MemoryBackend::new). Tests
/// that share the process store should each use a namespace of their own.
///
/// # Errors
/// `Error::Config` naming the problem for an unknown scheme, an unknown or
/// repeated query key, or a bad value; whatever the backend reports when it
/// cannot be reached (`Error::Unavailable`). The URL's password never appears
/// in an error.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> coord::Result<()> {
/// let client = coord::connect("memory://?namespace=billing&instance=worker-1").await?;
/// assert_eq!(client.backend().namespace().as_str(), "billing");
/// assert_eq!(client.instance_id().as_str(), "worker-1");
/// assert!(client.leadership().is_ok()); // elections, groups and jobs too
///
/// let err = coord::connect("etcd://localhost:2379").await.unwrap_err();
/// assert!(matches!(err, coord::Error::Config { .. }));
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Client> {
    let mut split = SplitUrl::parse(url)?;
    let instance = split.take("instance")?;
    // Both backends offer leadership (elections, groups, jobs) too.
    let mut builder = match split.scheme {
        "memory" => memory(&mut split)?,
        "redis" | "rediss" | "unix" | "redis+unix" => redis(&split).await?,
        other => {
            return Err(Error::config(format!(
                "unknown URL scheme `{}` (known: memory, redis, rediss, unix, redis+unix)",
                other.escape_debug()
            )));
        }
    };
    if let Some(id) = instance {
        builder = builder
            .instance_id(&id)
            .map_err(|e| Error::config(format!("URL query key `instance`: {e}")))?;
    }
    Ok(builder.build())
}

fn memory(url: &mut SplitUrl<'_>) -> Result<ClientBuilder> {
    if !matches!(url.body, "//" | "///") {
        return Err(Error::config(
            "a memory URL has no host or path: write `memory://` or `memory://?namespace=<ns>`",
        ));
    }
    let namespace = match url.take("namespace")? {
        Some(ns) => Namespace::new(&ns)
            .map_err(|e| Error::config(format!("URL query key `namespace`: {e}")))?,
        None => Namespace::default(),
    };
    url.reject_rest("namespace, instance")?;
    Ok(Client::builder_with(Arc::new(
        crate::memory::process_store().backend(namespace),
    )))
}

#[cfg(not(madsim))]
async fn redis(url: &SplitUrl<'_>) -> Result<ClientBuilder> {
    Ok(Client::builder_with(Arc::new(
        coord_redis::RedisBackend::connect_url(&url.to_url()).await?,
    )))
}

#[cfg(madsim)]
async fn redis(url: &SplitUrl<'_>) -> Result<ClientBuilder> {
    Err(Error::config(format!(
        "the {}:// scheme is not available under the madsim simulator (the redis crate cannot run there)",
        url.scheme
    )))
}
