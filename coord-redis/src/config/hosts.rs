//! The hosts a URL names: each a real port, each once.

use coord_api::{Error, Result};

/// `hosts` of a `scheme` URL: no port 0 (nothing listens there), and no
/// host named twice (a sentinel or seed node counted twice would hide
/// that one is missing). Host names are shown: they hold no secret.
pub(super) fn check(scheme: &str, hosts: &[(String, u16)]) -> Result<()> {
    for (i, (host, port)) in hosts.iter().enumerate() {
        if *port == 0 {
            return Err(Error::config(format!(
                "{scheme} URL: host {host} has port 0; a port is 1 to 65535"
            )));
        }
        if hosts[..i]
            .iter()
            .any(|(h, p)| h.eq_ignore_ascii_case(host) && p == port)
        {
            return Err(Error::config(format!(
                "{scheme} URL: {host}:{port} is named twice; name each host once"
            )));
        }
    }
    Ok(())
}
