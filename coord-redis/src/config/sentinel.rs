//! `redis+sentinel://`: a master named by the sentinels that watch it.

use coord_api::{Error, Result, url::BackendUrl};

use super::{
    DEFAULT_SENTINEL_PORT, Endpoint, MAX_MASTER_NAME, RedisConfig, check_db, hosts, prefixed,
};

/// Fills `cfg` from a `redis+sentinel://` URL: the sentinels (each named
/// once), the master's name, the database (`/master/db`), the user and
/// password (the data nodes'). Whether the path named the database.
pub(super) fn from_url(url: &mut BackendUrl, cfg: &mut RedisConfig) -> Result<bool> {
    let sentinels: Vec<(String, u16)> = (url.take_hosts().into_iter())
        .map(|(host, port)| (host, port.unwrap_or(DEFAULT_SENTINEL_PORT)))
        .collect();
    hosts::check("redis+sentinel", &sentinels)?;
    // `/master` or `/master/db`.
    let mut path = url.path().trim_start_matches('/').splitn(2, '/');
    let master = path.next().unwrap_or("").to_owned();
    let db = path.next().filter(|d| !d.is_empty());
    if let Some(db) = db {
        let db = db.parse().map_err(|_| {
            Error::config(
                "redis+sentinel URL: after the master name the path is not a database \
                 number, as in `redis+sentinel://host:26379/mymaster/0` (not shown, \
                 since it may hold part of a password: write `/` in a password as `%2F`)",
            )
        })?;
        cfg.db = check_db(db).map_err(|e| prefixed("db", e))?;
    }
    cfg.endpoint = Endpoint::Sentinel { sentinels, master };
    cfg.username = url.username().map(str::to_owned);
    cfg.password = url.password().cloned();
    Ok(db.is_some())
}

/// A master name: 1 to [`MAX_MASTER_NAME`] bytes, no control character,
/// space or `/`. Never quoted (a URL's path may hold part of a password).
pub(super) fn check_master_name(master: &str) -> Result<()> {
    let ok = !master.is_empty()
        && master.len() <= MAX_MASTER_NAME
        && !master
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '/');
    if !ok {
        return Err(Error::config(format!(
            "redis+sentinel: the master name must be 1 to {MAX_MASTER_NAME} bytes without \
             spaces, `/` or control characters, as in `redis+sentinel://host:26379/mymaster` \
             (not shown, since it may hold part of a password: write `/` in a password as `%2F`)"
        )));
    }
    Ok(())
}
