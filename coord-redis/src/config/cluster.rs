//! `redis+cluster://`: a Redis Cluster named by seed nodes.

use coord_api::{Error, Result, url::BackendUrl};

use super::{Endpoint, RedisConfig};

/// The port of a node named without one.
const DEFAULT_PORT: u16 = 6379;

/// Fills `cfg` from a `redis+cluster://` URL: the seed nodes, the user and
/// password (the nodes'), and an empty path or `/0`.
pub(super) fn from_url(url: &mut BackendUrl, cfg: &mut RedisConfig) -> Result<()> {
    let nodes: Vec<(String, u16)> = (url.take_hosts().into_iter())
        .map(|(host, port)| (host, port.unwrap_or(DEFAULT_PORT)))
        .collect();
    super::hosts::check("redis+cluster", &nodes)?;
    let path = url.path().trim_start_matches('/');
    if !path.is_empty() && path != "0" {
        return Err(Error::config(
            "redis+cluster URL: a Redis Cluster has only database 0; the path may be empty or \
             `/0`, as in `redis+cluster://host1:6379,host2:6379` (not shown, since it may hold \
             part of a password: write `/` in a password as `%2F`)",
        ));
    }
    cfg.endpoint = Endpoint::Cluster { nodes };
    cfg.username = url.username().map(str::to_owned);
    cfg.password = url.password().cloned();
    Ok(())
}

/// What a cluster endpoint refuses: no seed node, a database other than 0
/// (a `db` key), TLS settings.
pub(super) fn check(cfg: &RedisConfig, nodes: &[(String, u16)]) -> Result<()> {
    if nodes.is_empty() {
        return Err(Error::config(
            "redis+cluster: no seed node given, as in `redis+cluster://host1:6379,host2:6379`",
        ));
    }
    if cfg.db != 0 {
        return Err(Error::config(format!(
            "key `db`: a Redis Cluster has only database 0, not {}",
            cfg.db
        )));
    }
    if cfg.tls_ca_file.is_some() {
        return Err(Error::config(
            "key `tls_ca_file`: TLS to a Redis Cluster is not offered yet",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use coord_api::Error;

    use crate::{Endpoint, RedisConfig};

    #[test]
    fn cluster_urls_name_seed_nodes() {
        let c = RedisConfig::from_url(
            "redis+cluster://app:pw@n1,n2:7001,[::1]:7002/0?namespace=n&timeout=500ms",
        )
        .unwrap();
        assert_eq!(
            c.endpoint(),
            &Endpoint::Cluster {
                nodes: vec![
                    ("n1".into(), 6379),
                    ("n2".into(), 7001),
                    ("::1".into(), 7002)
                ],
            }
        );
        assert_eq!(c.username(), Some("app"));
        assert_eq!(c.password(), Some("pw"));
        assert_eq!(c.db(), 0);
        assert_eq!(c.namespace().as_str(), "n");
        assert_eq!(
            c.to_string(),
            "redis+cluster(n1:6379,n2:7001,[::1]:7002/0 ns=n)"
        );
        assert!(!format!("{c:?}").contains("pw\""));
        let one = RedisConfig::from_url("redis+cluster://127.0.0.1:7000").unwrap();
        assert_eq!(one.to_string(), "redis+cluster(127.0.0.1:7000/0 ns=coord)");
    }

    #[test]
    fn bad_cluster_urls_are_config_errors_without_secrets() {
        for (url, says) in [
            ("redis+cluster://h1,h2/1", "only database 0"),
            ("redis+cluster://h1/x", "only database 0"),
            (
                "redis+cluster://u:Tr0ub4dor@h1/Tr0ub4dor",
                "only database 0",
            ),
            ("redis+cluster://h1?db=2", "only database 0"),
            ("redis+cluster:///", "no seed node"),
            ("rediss+cluster://h1", "not offered yet"),
            ("redis+cluster://h1?tls_ca_file=/ca.pem", "not offered yet"),
            (
                "redis+cluster://h1?sentinel_password=x",
                "redis+sentinel:// only",
            ),
            ("redis+cluster://h1?colour=blue", "colour"),
        ] {
            match RedisConfig::from_url(url) {
                Err(Error::Config { message }) => {
                    assert!(message.contains(says), "{url}: {message}");
                    assert!(!message.contains("Tr0ub4dor"), "{url}: {message}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
