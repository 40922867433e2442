//! `connect(url)`: picks the backend from the URL's scheme.

use std::sync::Arc;

use coord_api::{Client, ClientBuilder, Error, InstanceId, Namespace, Result, url::BackendUrl};

/// Opens a [`Client`] on the backend the URL names.
///
/// | URL | backend |
/// |---|---|
/// | `memory://` | the process-wide in-process store ([`memory::process_store`](crate::memory::process_store)) |
/// | `redis://[user:pass@]host:port/db`, `rediss://…` (TLS), `unix:///path`, `redis+unix:///path` | Redis (`coord-redis`) |
/// | `redis+sentinel://[user:pass@]host1:26379,host2:26379/mymaster[/db]` | Redis behind Sentinel: the master found through the sentinels, and followed through a failover |
/// | `redis+cluster://[user:pass@]host1:6379,host2:6379` | Redis Cluster: the seed nodes; requests routed by slot, wake-ups by sharded pub/sub |
///
/// Query keys understood for every scheme:
/// - `namespace=<ns>`: the namespace every key lives in (default `coord`);
/// - `instance=<id>`: this instance's id, shown to operators as the holder
///   (default: host name, pid and a random suffix).
///
/// The Redis backend takes further keys of its own (`timeout`,
/// `connect_timeout`, `db`, `user`, `password`, `tls_ca_file`, and for
/// Sentinel `sentinel_user`, `sentinel_password`; for confirmed writes
/// `confirm_replicas`, `confirm_fsync_local`, `confirm_fsync_replicas`,
/// `confirm_timeout`; see `coord::redis::RedisConfig` and
/// `coord::redis::Confirm`). URLs are parsed by
/// [`coord_api::url::BackendUrl`]: user name, password and query values are
/// percent-decoded, and a key given twice is refused also when spelled
/// differently (`namespace` and `namesp%61ce`). Percent-encode reserved
/// characters in a password (`/` as `%2F`, `?` as `%3F`, `#` as `%23`, `@`
/// as `%40`, `:` as `%3A`, `%` as `%25`, and in a `password=` value `&` as
/// `%26`).
///
/// `memory://` is one store per process, like a local server: every
/// `connect("memory://…")` in the process reaches the same locks, so tasks
/// that connect separately see each other, and namespaces keep unrelated
/// users apart. For a private store, build the client yourself from
/// [`memory::MemoryBackend::new`](crate::memory::MemoryBackend::new). Tests
/// that share the process store should each use a namespace of their own.
///
/// # Errors
/// `Error::Config` naming the problem for an unknown scheme, a malformed
/// URL, an unknown or repeated query key, or a bad value; whatever the
/// backend reports when it cannot be reached (`Error::Unavailable`). No error
/// quotes the URL's user-info, and none quotes a part of the URL that may be
/// a piece of a password (see [`BackendUrl`]).
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> coord::Result<()> {
/// let client = coord::connect("memory://?namespace=billing&instance=worker-1").await?;
/// assert_eq!(client.backend().namespace().as_str(), "billing");
/// assert_eq!(client.instance_id().as_str(), "worker-1");
/// // Every family: locks, elections, groups and jobs.
/// assert!(coord::spi::Families::of(&**client.backend()) == coord::spi::Families::all());
///
/// let err = coord::connect("etcd://localhost:2379").await.unwrap_err();
/// assert!(matches!(err, coord::Error::Config { .. }));
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Client> {
    let mut url = BackendUrl::parse(url)?;
    let instance = url.take_with("instance", InstanceId::new)?;
    let mut builder = match url.scheme() {
        "memory" => memory(url)?,
        "redis" | "rediss" | "unix" | "redis+unix" | "redis+sentinel" | "rediss+sentinel"
        | "redis+cluster" | "rediss+cluster" => redis(url).await?,
        other => {
            // Without `//` the "scheme" may be a user name (`user:pass@host`).
            let named = if url.has_authority() {
                format!(" `{other}`")
            } else {
                String::new()
            };
            return Err(Error::config(format!(
                "unknown URL scheme{named} (known: memory://, redis://, rediss://, unix://, \
                 redis+unix://, redis+sentinel://, redis+cluster://)"
            )));
        }
    };
    if let Some(id) = instance {
        builder = builder.instance_id(id.as_str())?;
    }
    Ok(builder.build())
}

fn memory(mut url: BackendUrl) -> Result<ClientBuilder> {
    let bare = url.host().is_none()
        && url.port().is_none()
        && url.username().is_none()
        && url.password().is_none()
        && matches!(url.path(), "" | "/");
    if !bare {
        return Err(Error::config(
            "a memory URL has no host, port, user name, password or path: write `memory://` \
             or `memory://?namespace=<ns>`",
        ));
    }
    let namespace = url
        .take_with("namespace", Namespace::new)?
        .unwrap_or_default();
    url.deny_unknown_keys()?;
    Ok(Client::builder(Arc::new(
        crate::memory::process_store().backend(namespace),
    )))
}

#[cfg(all(not(madsim), feature = "redis"))]
async fn redis(url: BackendUrl) -> Result<ClientBuilder> {
    let config = coord_redis::RedisConfig::from_backend_url(url)?;
    Ok(Client::builder(Arc::new(
        coord_redis::RedisBackend::connect(config).await?,
    )))
}

#[cfg(madsim)]
async fn redis(url: BackendUrl) -> Result<ClientBuilder> {
    Err(Error::config(format!(
        "the {}:// scheme is not available under the madsim simulator (the redis crate cannot run there)",
        url.scheme()
    )))
}

#[cfg(all(not(madsim), not(feature = "redis")))]
async fn redis(url: BackendUrl) -> Result<ClientBuilder> {
    Err(Error::config(format!(
        "the {}:// scheme needs coord's `redis` feature, which this build leaves out",
        url.scheme()
    )))
}
