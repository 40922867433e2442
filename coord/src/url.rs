//! The small part of URL syntax `connect` needs: the scheme, and the query
//! as `key=value` pairs. Values are percent-decoded; nothing else is.

use coord_api::{Error, Result};

/// A URL split into its scheme, what lies between the scheme and the query,
/// and the query's pairs (raw, as written).
#[derive(Debug)]
pub(crate) struct SplitUrl<'a> {
    pub(crate) scheme: &'a str,
    /// Everything after `scheme:` up to the `?` (e.g. `//host:6379/0`).
    pub(crate) body: &'a str,
    pub(crate) pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> SplitUrl<'a> {
    pub(crate) fn parse(url: &'a str) -> Result<SplitUrl<'a>> {
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(Error::config(
                "a coord URL starts with a scheme, e.g. `memory://` or `redis://host:6379`",
            ));
        };
        let (body, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(Error::config(format!(
                    "URL query key `{}` has no value (write `{0}=<value>`)",
                    printable(pair)
                )));
            };
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(Error::config(format!(
                    "URL query key `{}` is given twice",
                    printable(key)
                )));
            }
            pairs.push((key, value));
        }
        Ok(SplitUrl {
            scheme,
            body,
            pairs,
        })
    }

    /// Removes `key` from the query and returns its decoded value.
    pub(crate) fn take(&mut self, key: &str) -> Result<Option<String>> {
        match self.pairs.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let (_, value) = self.pairs.remove(i);
                decode(key, value).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Fails with `Error::Config` naming the first key left in the query.
    pub(crate) fn reject_rest(&self, scheme_keys: &str) -> Result<()> {
        match self.pairs.first() {
            Some((key, _)) => Err(Error::config(format!(
                "unknown URL query key `{}` for {}:// (known keys: {scheme_keys})",
                printable(key),
                self.scheme
            ))),
            None => Ok(()),
        }
    }

    /// The URL again, with the pairs taken out removed.
    #[cfg_attr(madsim, allow(dead_code))]
    pub(crate) fn to_url(&self) -> String {
        let mut url = format!("{}:{}", self.scheme, self.body);
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(v);
        }
        url
    }
}

/// Percent-decodes a query value.
fn decode(key: &str, value: &str) -> Result<String> {
    let bad = || Error::config(format!("URL query key `{key}` has a malformed %-escape"));
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::config(format!("URL query key `{key}` is not UTF-8")))
}

/// A key as it may appear in an error: short and free of control characters.
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scheme_body_and_query() {
        let u = SplitUrl::parse("redis://h:1/2?namespace=a&instance=w%231").unwrap();
        assert_eq!(u.scheme, "redis");
        assert_eq!(u.body, "//h:1/2");
        assert_eq!(u.pairs, [("namespace", "a"), ("instance", "w%231")]);
    }

    #[test]
    fn take_decodes_and_removes() {
        let mut u = SplitUrl::parse("redis://h?instance=web%2D1&namespace=x").unwrap();
        assert_eq!(u.take("instance").unwrap().as_deref(), Some("web-1"));
        assert_eq!(u.take("instance").unwrap(), None);
        assert_eq!(u.to_url(), "redis://h?namespace=x");
        assert!(u.reject_rest("none").is_err());
    }

    #[test]
    fn malformed_queries_are_config_errors() {
        for url in ["memory://?a", "memory://?a=1&a=2", "nothing"] {
            assert!(
                matches!(SplitUrl::parse(url), Err(Error::Config { .. })),
                "{url}"
            );
        }
        let mut u = SplitUrl::parse("memory://?namespace=%4").unwrap();
        assert!(matches!(u.take("namespace"), Err(Error::Config { .. })));
    }
}
