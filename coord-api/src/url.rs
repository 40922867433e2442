//! [`BackendUrl`]: the one parser of the URLs that name a backend
//! (`memory://`, `redis://…`, `sim://…` and any backend's own scheme), built
//! on the [`url`](https://docs.rs/url) crate.
//!
//! A backend reads what it needs from the parsed URL — scheme, host, port,
//! path, user name, [`Password`] — and takes its query keys one by one
//! ([`BackendUrl::take`], [`BackendUrl::take_with`]); then
//! [`BackendUrl::deny_unknown_keys`] refuses whatever nobody took.
//!
//! ```
//! use coord_api::{Namespace, url::BackendUrl};
//! let mut url = BackendUrl::parse("sim://10.0.0.1:7000?namespace=x")?;
//! assert_eq!(url.scheme(), "sim");
//! assert_eq!(url.ip(), Some("10.0.0.1".parse().unwrap()));
//! assert_eq!(url.port(), Some(7000));
//! let ns = url.take_with("namespace", Namespace::new)?.unwrap_or_default();
//! assert_eq!(ns.as_str(), "x");
//! url.deny_unknown_keys()?;
//! # Ok::<(), coord_api::Error>(())
//! ```
//!
//! # Syntax
//! `scheme://[user[:password]@]host[:port][/path][?key=value&…]`. A backend
//! that takes several hosts (`redis+sentinel://h1:26379,h2:26379/mymaster`)
//! reads them with [`BackendUrl::take_hosts`]; every other backend refuses a
//! host list (through [`BackendUrl::deny_unknown_keys`]). User name,
//! password, host, path, query keys and values are percent-decoded (a
//! malformed `%`-escape is an error); `+` is a plus sign, not a space. A
//! query key given twice is an error, also when the two are spelled
//! differently (`namespace` and `namesp%61ce`); so is a key without `=`. A
//! `#fragment` is refused.
//!
//! # Errors never echo a secret
//! Every error is [`Error::Config`]. A URL that fails to parse is never
//! quoted: the error names the part that is malformed and says how to
//! percent-encode a password. A query key is named only when it is short and
//! plainly a key (ASCII letters, digits, `_` and `-`, at most 32 bytes) and
//! cannot be a piece of a password: keys after a `password` key, and every
//! key of a query holding an unencoded `@` (a piece of the user-info cut off
//! by an unencoded `?`), are described but not named. A bad value is quoted
//! only under the same conditions, and cut to its first 32 characters.

use std::{fmt, net::IpAddr};

use crate::{Error, Result};

/// The longest query key an error names.
const MAX_SHOWN_KEY: usize = 32;
/// How much of a bad value an error quotes.
const SHOWN_VALUE_CHARS: usize = 32;
/// The longest message of a value's validation error an error quotes.
const MAX_INNER_MESSAGE: usize = 300;

/// How to write reserved characters in a user name or password.
const ENCODE_HINT: &str = "percent-encode reserved characters in a user name or password: \
     `%` as `%25`, `/` as `%2F`, `?` as `%3F`, `#` as `%23`, `@` as `%40`, `:` as `%3A`, \
     `&` as `%26`";

/// A password that never prints: `Debug` shows `***`, and there is no
/// `Display`.
///
/// ```
/// let p = coord_api::url::Password::new("s3cret");
/// assert_eq!(format!("{p:?}"), "***");
/// assert_eq!(p.expose(), "s3cret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps `password`.
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The password itself, to hand to a server. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A backend URL, parsed and percent-decoded. `Debug` shows neither the
/// password nor any query value.
#[derive(Clone)]
pub struct BackendUrl {
    scheme: String,
    has_authority: bool,
    host: Option<String>,
    port: Option<u16>,
    /// The hosts after the first of a comma-separated host list.
    more_hosts: Vec<(String, Option<u16>)>,
    /// Whether a backend took the host list.
    hosts_taken: bool,
    path: String,
    username: Option<String>,
    password: Option<Password>,
    pairs: Vec<Pair>,
    /// Every key a caller asked for, found or not: the known keys.
    asked: Vec<&'static str>,
}

#[derive(Clone)]
struct Pair {
    key: String,
    value: String,
    suspect: Option<Suspect>,
}

/// Why a query pair may be a piece of a password, so is never quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Suspect {
    /// It follows a `password` key: `&` unencoded in that password.
    AfterPassword,
    /// The query holds an unencoded `@`: `?` unencoded in the user-info.
    AtSign,
}

impl Suspect {
    fn why(self) -> &'static str {
        match self {
            Suspect::AfterPassword => {
                "it follows the `password` key and may be part of the password \
                 (write `&` in a password as `%26`)"
            }
            Suspect::AtSign => {
                "the query holds an `@` and may be part of a password cut off by a `?` \
                 (write `?` in a password as `%3F` and `@` as `%40`)"
            }
        }
    }
}

impl BackendUrl {
    /// Parses `url`. Whether the scheme, host, path and query keys suit a
    /// backend is the backend's to check.
    ///
    /// # Errors
    /// [`Error::Config`] naming the malformed part (never quoting it): no
    /// scheme, a bad host or port, a malformed `%`-escape, text that is not
    /// UTF-8 once decoded, a fragment, a query key without `=`, an empty
    /// key, a key given twice.
    pub fn parse(url: &str) -> Result<BackendUrl> {
        let (url, more) = split_host_list(url);
        let parsed = url::Url::parse(&url).map_err(parse_error)?;
        let more_hosts = more
            .iter()
            .map(|h| parse_extra_host(parsed.scheme(), h))
            .collect::<Result<Vec<_>>>()?;
        if parsed.fragment().is_some() {
            return Err(malformed(
                "it has a `#fragment`, which no backend URL takes",
            ));
        }
        let host = match parsed.host() {
            None => None,
            Some(url::Host::Domain(d)) => Some(decode(d).map_err(|e| e.of("the host"))?),
            Some(url::Host::Ipv4(ip)) => Some(ip.to_string()),
            Some(url::Host::Ipv6(ip)) => Some(ip.to_string()),
        }
        .filter(|h| !h.is_empty());
        let username = decode(parsed.username()).map_err(|e| e.of("the user name"))?;
        let password = match parsed.password() {
            Some(p) => Some(Password(decode(p).map_err(|e| e.of("the password"))?)),
            None => None,
        };
        let path = decode(parsed.path()).map_err(|e| e.of("the path"))?;
        Ok(BackendUrl {
            scheme: parsed.scheme().to_owned(),
            has_authority: parsed.has_authority(),
            host,
            port: parsed.port(),
            more_hosts,
            hosts_taken: false,
            path,
            username: Some(username).filter(|u| !u.is_empty()),
            password,
            pairs: parse_query(parsed.query().unwrap_or(""))?,
            asked: Vec::new(),
        })
    }

    /// The scheme, in lower case (`redis`, `memory`, `sim`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the scheme is followed by `//` (`memory://` has an authority,
    /// `memory:` none).
    pub fn has_authority(&self) -> bool {
        self.has_authority
    }

    /// The host, decoded; an IPv6 address without its brackets. `None` when
    /// absent or empty (`unix:///run/redis.sock`).
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The host as an IP address, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host()?.parse().ok()
    }

    /// The port, if the URL gives one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Every host of the URL with its port, in order: one for
    /// `redis://h:1`, three for `redis+sentinel://a:1,b:2,c/name` (`c`
    /// without a port); none when the URL has no host. Records the list as
    /// taken: [`deny_unknown_keys`](Self::deny_unknown_keys) refuses a list
    /// of several hosts that no backend took.
    ///
    /// ```
    /// use coord_api::url::BackendUrl;
    /// let mut url = BackendUrl::parse("redis+sentinel://a:1,b:2,[::1]/mymaster")?;
    /// assert_eq!(url.host(), Some("a"));
    /// let hosts = url.take_hosts();
    /// assert_eq!(hosts, [("a".to_owned(), Some(1)), ("b".to_owned(), Some(2)), ("::1".to_owned(), None)]);
    /// url.deny_unknown_keys()?;
    /// assert!(BackendUrl::parse("redis://a:1,b:2/0")?.deny_unknown_keys().is_err());
    /// # Ok::<(), coord_api::Error>(())
    /// ```
    pub fn take_hosts(&mut self) -> Vec<(String, Option<u16>)> {
        self.hosts_taken = true;
        (self.host.iter().map(|h| (h.clone(), self.port)))
            .chain(self.more_hosts.iter().cloned())
            .collect()
    }

    /// The path, decoded: `""` or `"/"` when there is none, `"/0"` for
    /// `redis://host/0`, `"/run/redis.sock"` for `unix:///run/redis.sock`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The user name of the user-info, decoded; `None` when absent or empty.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password of the user-info, decoded.
    pub fn password(&self) -> Option<&Password> {
        self.password.as_ref()
    }

    /// The query's pairs not taken yet, decoded, in order. Values may hold a
    /// password: never print them.
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
    }

    /// Removes `key` from the query and returns its value; records `key` as
    /// known (see [`deny_unknown_keys`](Self::deny_unknown_keys)).
    pub fn take(&mut self, key: &'static str) -> Option<String> {
        self.take_pair(key).map(|p| p.value)
    }

    /// Removes `key` from the query and parses its value with `parse`;
    /// records `key` as known.
    ///
    /// # Errors
    /// `parse`'s error as [`Error::Config`] naming `key`. The value is
    /// quoted only cut to its first 32 characters, and not at all when it
    /// may be part of a password.
    pub fn take_with<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T>,
    ) -> Result<Option<T>> {
        let Some(pair) = self.take_pair(key) else {
            return Ok(None);
        };
        parse(&pair.value)
            .map(Some)
            .map_err(|e| value_error(key, &pair, e))
    }

    /// Fails if a query key is left that nobody took, listing the keys taken
    /// or asked for as the known ones.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first key left (when it may be named).
    pub fn deny_unknown_keys(&self) -> Result<()> {
        if !self.more_hosts.is_empty() && !self.hosts_taken {
            return Err(Error::config(format!(
                "{}:// takes one host, and the URL names {} (a comma-separated host list is for \
                 e.g. `redis+sentinel://`)",
                self.scheme,
                self.more_hosts.len() + 1
            )));
        }
        let Some(pair) = self.pairs.first() else {
            return Ok(());
        };
        let mut known = self.asked.clone();
        known.sort_unstable();
        known.dedup();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        let (subject, note) = key_or_why(&pair.key, pair.suspect);
        let subject = subject.strip_prefix("a ").unwrap_or(&subject);
        Err(Error::config(format!(
            "unknown {subject} for {}:// (known keys: {known}){note}",
            self.scheme
        )))
    }

    fn take_pair(&mut self, key: &'static str) -> Option<Pair> {
        self.asked.push(key);
        let i = self.pairs.iter().position(|p| p.key == key)?;
        Some(self.pairs.remove(i))
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// The keys of the query that may be named; values never shown.
        struct Keys<'a>(&'a [Pair]);
        impl fmt::Debug for Keys<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut list = f.debug_list();
                for p in self.0 {
                    match (p.suspect, plain_key(&p.key)) {
                        (None, Some(k)) => list.entry(&k),
                        _ => list.entry(&format_args!("<not shown>")),
                    };
                }
                list.finish()
            }
        }
        f.debug_struct("BackendUrl")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("more_hosts", &self.more_hosts)
            .field("path", &self.path)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("query_keys", &Keys(&self.pairs))
            .finish()
    }
}

/// `key` if an error may name it: short and plainly a key.
fn plain_key(key: &str) -> Option<&str> {
    let plain = !key.is_empty()
        && key.len() <= MAX_SHOWN_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    plain.then_some(key)
}

/// How an error calls a key: `` URL query key `key` `` when it may be named,
/// else `a URL query key` and a note saying why it is not named.
fn key_or_why(key: &str, suspect: Option<Suspect>) -> (String, String) {
    match (suspect, plain_key(key)) {
        (None, Some(key)) => (format!("URL query key `{key}`"), String::new()),
        (Some(why), _) => (
            "a URL query key".to_owned(),
            format!("; not named, since {}", why.why()),
        ),
        (None, None) => (
            "a URL query key".to_owned(),
            "; not named, since it does not look like a key".to_owned(),
        ),
    }
}

/// Whether the value of `key` is a password (`password`,
/// `sentinel_password`): never quoted, and what follows it is suspect.
fn is_password_key(key: &str) -> bool {
    key == "password" || key.ends_with("_password")
}

/// `url` with a comma-separated host list cut to its first host, and the
/// other hosts as written (`h2:26379`, `[::1]:26380`). The authority ends at
/// the first `/`, `?` or `#` after `://`; its user-info at its last `@`.
fn split_host_list(url: &str) -> (std::borrow::Cow<'_, str>, Vec<&str>) {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return (url.into(), Vec::new());
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let hosts_at = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    let hosts = &url[hosts_at..end];
    if !hosts.contains(',') {
        return (url.into(), Vec::new());
    }
    let mut list = hosts.split(',');
    let first = list.next().unwrap_or("");
    let single = format!("{}{first}{}", &url[..hosts_at], &url[end..]);
    (single.into(), list.collect())
}

/// One host of a host list after the first: `host[:port]`, an IPv6
/// address in brackets.
fn parse_extra_host(scheme: &str, host: &str) -> Result<(String, Option<u16>)> {
    if host.is_empty() {
        return Err(malformed("the host list has an empty entry"));
    }
    if host.contains(['@', ' ']) {
        return Err(malformed("a host of the host list is not a host name"));
    }
    let parsed = url::Url::parse(&format!("{scheme}://{host}")).map_err(parse_error)?;
    let name = match parsed.host() {
        None => return Err(malformed("the host list has an empty entry")),
        Some(url::Host::Domain(d)) => decode(d).map_err(|e| e.of("a host of the host list"))?,
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
    };
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(malformed("a host of the host list is not a host name"));
    }
    Ok((name, parsed.port()))
}

fn parse_query(query: &str) -> Result<Vec<Pair>> {
    let at_sign = query.contains('@');
    let mut after_password = false;
    let mut pairs: Vec<Pair> = Vec::new();
    for raw in query.split('&').filter(|p| !p.is_empty()) {
        let suspect = if at_sign {
            Some(Suspect::AtSign)
        } else if after_password {
            Some(Suspect::AfterPassword)
        } else {
            None
        };
        let (raw_key, raw_value) = match raw.split_once('=') {
            Some(kv) => kv,
            None => {
                let key = decode(raw).ok().unwrap_or_default();
                let (subject, note) = key_or_why(&key, suspect);
                return Err(Error::config(format!(
                    "{subject} has no value (write `key=value`){note}"
                )));
            }
        };
        let key = decode(raw_key).map_err(|e| {
            e.of(match suspect {
                None => "a query key",
                Some(_) => "a query key (which may be part of a password)",
            })
        })?;
        if key.is_empty() {
            return Err(Error::config(
                "a URL query pair has an empty key (write `key=value`)",
            ));
        }
        let (subject, note) = key_or_why(&key, suspect);
        let value = decode(raw_value)
            .map_err(|e| Error::config(format!("the value of {subject} {}{note}", e.what())))?;
        if pairs.iter().any(|p| p.key == key) {
            return Err(Error::config(format!(
                "{subject} is given twice (perhaps spelled differently: keys are compared after \
                 percent-decoding){note}"
            )));
        }
        after_password |= is_password_key(&key);
        pairs.push(Pair {
            key,
            value,
            suspect,
        });
    }
    Ok(pairs)
}

/// Why a piece of a URL could not be decoded.
#[derive(Debug)]
enum DecodeError {
    Escape,
    NotUtf8,
}

impl DecodeError {
    fn what(&self) -> &'static str {
        match self {
            DecodeError::Escape => "has a malformed %-escape (write `%` as `%25`)",
            DecodeError::NotUtf8 => "is not UTF-8 once percent-decoded",
        }
    }

    /// The error for `part` (e.g. "the password").
    fn of(&self, part: &str) -> Error {
        malformed(&format!("{part} {}", self.what()))
    }
}

/// Percent-decodes `s`, refusing a `%` not followed by two hex digits.
fn decode(s: &str) -> Result<String, DecodeError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|&b| (b as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(DecodeError::Escape);
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

/// A URL that did not parse: says which part, never quotes it.
fn malformed(what: &str) -> Error {
    Error::config(format!(
        "malformed URL: {what}. The URL is not shown, since it may hold a password; \
         {ENCODE_HINT}"
    ))
}

fn parse_error(e: url::ParseError) -> Error {
    use url::ParseError as P;
    malformed(match e {
        P::RelativeUrlWithoutBase => {
            return Error::config(
                "malformed URL: it has no scheme; a backend URL starts with one, e.g. \
                 `memory://` or `redis://host:6379` (the URL is not shown, since it may hold a \
                 password)",
            );
        }
        P::EmptyHost => "the host is empty",
        P::InvalidPort => "the port is not a number from 0 to 65535",
        P::InvalidIpv4Address => "the host is not a valid IPv4 address",
        P::InvalidIpv6Address => "the host is not a valid IPv6 address",
        P::InvalidDomainCharacter | P::IdnaError => {
            "the host holds a character no host name may hold"
        }
        P::Overflow => "it is too long",
        _ => {
            "it does not follow the syntax `scheme://[user[:password]@]host[:port][/path][?query]`"
        }
    })
}

/// The error of `parse` on the value of `key`, quoting the value only when
/// it is no secret, and cut.
fn value_error(key: &str, pair: &Pair, error: Error) -> Error {
    if let Some(why) = pair.suspect {
        return Error::config(format!(
            "URL query key `{key}`: the value is not valid; not shown, since {}",
            why.why()
        ));
    }
    if is_password_key(key) {
        return Error::config(format!("URL query key `{key}`: the value is not valid"));
    }
    let inner = match error {
        Error::Config { message } | Error::InvalidArgument { message } => message,
        other => other.to_string(),
    };
    let mut message = if pair.value.chars().nth(SHOWN_VALUE_CHARS).is_some() {
        let quoted = format!("{:?}", pair.value);
        let cut: String = pair.value.chars().take(SHOWN_VALUE_CHARS).collect();
        inner.replace(&quoted, &format!("{cut:?}… (cut)"))
    } else {
        inner
    };
    if message.len() > MAX_INNER_MESSAGE {
        let mut end = MAX_INNER_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (cut)");
    }
    Error::config(format!("URL query key `{key}`: {message}"))
}

#[cfg(test)]
mod tests;
