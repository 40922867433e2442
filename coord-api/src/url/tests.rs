use super::*;
use crate::{InstanceId, Namespace};

const SECRET: &str = "Tr0ub4dor";

fn config_error(res: Result<impl fmt::Debug>) -> Error {
    match res {
        Err(e @ Error::Config { .. }) => e,
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

/// The error's `Display` and `Debug`, checked free of `secret`.
#[track_caller]
fn assert_hidden(e: &Error, secret: &str) -> String {
    let (shown, debug) = (e.to_string(), format!("{e:?}"));
    assert!(!shown.contains(secret), "{secret:?} in {shown}");
    assert!(!debug.contains(secret), "{secret:?} in {debug}");
    shown
}

/// Parses `url`, takes `known` keys as a backend would, and refuses the rest.
fn parse_as_backend(url: &str, known: &[&'static str]) -> Result<BackendUrl> {
    let mut u = BackendUrl::parse(url)?;
    for key in known {
        u.take(key);
    }
    u.deny_unknown_keys()?;
    Ok(u)
}

#[test]
fn a_redis_url_in_full() {
    let mut u = BackendUrl::parse(
        "redis://bob:p%40ss%3Aw0rd@example.com:7000/3?namespace=ns1&timeout=2s&instance=web%201",
    )
    .unwrap();
    assert_eq!(u.scheme(), "redis");
    assert!(u.has_authority());
    assert_eq!(u.host(), Some("example.com"));
    assert_eq!(u.port(), Some(7000));
    assert_eq!(u.path(), "/3");
    assert_eq!(u.username(), Some("bob"));
    assert_eq!(u.password().map(Password::expose), Some("p@ss:w0rd"));
    assert_eq!(
        u.query_pairs().collect::<Vec<_>>(),
        [
            ("namespace", "ns1"),
            ("timeout", "2s"),
            ("instance", "web 1")
        ]
    );
    assert_eq!(u.take("instance").as_deref(), Some("web 1"));
    assert_eq!(u.take("instance"), None);
    assert_eq!(u.query_pairs().count(), 2);
    let debug = format!("{u:?}");
    assert!(!debug.contains("w0rd") && !debug.contains("ns1"), "{debug}");
    assert!(debug.contains("\"namespace\""), "{debug}");
}

#[test]
fn the_sim_url_parses() {
    let mut u = BackendUrl::parse("sim://10.0.0.1:7000?namespace=x").unwrap();
    assert_eq!(u.scheme(), "sim");
    assert_eq!(u.ip(), Some(IpAddr::from([10, 0, 0, 1])));
    assert_eq!(u.port(), Some(7000));
    assert_eq!(u.path(), "");
    let ns = u.take_with("namespace", Namespace::new).unwrap().unwrap();
    assert_eq!(ns.as_str(), "x");
    u.deny_unknown_keys().unwrap();
}

#[test]
fn hosts_ports_and_paths() {
    let u = BackendUrl::parse("rediss://:pw@[::1]:6380/1").unwrap();
    assert_eq!(u.host(), Some("::1"));
    assert_eq!(u.ip(), Some("::1".parse().unwrap()));
    assert_eq!(u.username(), None);
    assert_eq!(u.password().map(Password::expose), Some("pw"));
    let u = BackendUrl::parse("REDIS://localhost").unwrap();
    assert_eq!(
        (u.scheme(), u.host(), u.port(), u.path()),
        ("redis", Some("localhost"), None, "")
    );
    let u = BackendUrl::parse("unix:///run/my%20redis.sock?db=2").unwrap();
    assert_eq!((u.host(), u.path()), (None, "/run/my redis.sock"));
    for (url, path) in [
        ("memory://", ""),
        ("memory:///", "/"),
        ("memory://?namespace=a", ""),
    ] {
        let u = BackendUrl::parse(url).unwrap();
        assert_eq!((u.host(), u.port(), u.path()), (None, None, path), "{url}");
        assert!(u.has_authority(), "{url}");
    }
    assert!(!BackendUrl::parse("memory:").unwrap().has_authority());
}

#[test]
fn plus_is_a_plus_and_escapes_are_checked() {
    let mut u = BackendUrl::parse("x://h?password=a+b%2Bc").unwrap();
    assert_eq!(u.take("password").as_deref(), Some("a+b+c"));
    for url in [
        "x://h?namespace=%4",
        "x://h?namespace=%zz",
        "x://h?name%zzspace=1",
        "x://u:50%off@h",
        "x://%ff@h",
        "x://h/%",
    ] {
        let e = config_error(BackendUrl::parse(url));
        assert!(
            e.to_string().contains("%25") || e.to_string().contains("UTF-8"),
            "{e}"
        );
    }
}

#[test]
fn malformed_queries_are_refused() {
    for (url, says) in [
        ("memory://?namespace", "`namespace` has no value"),
        ("memory://?=x", "empty key"),
        (
            "memory://?namespace=a&namespace=b",
            "`namespace` is given twice",
        ),
        ("x://h#frag", "fragment"),
        ("no scheme at all", "no scheme"),
    ] {
        let e = config_error(BackendUrl::parse(url));
        assert!(e.to_string().contains(says), "{url}: {e}");
    }
    // Empty pairs are nothing.
    assert_eq!(
        BackendUrl::parse("x://h?&a=1&&")
            .unwrap()
            .query_pairs()
            .count(),
        1
    );
}

#[test]
fn duplicates_are_found_after_percent_decoding() {
    for scheme in [
        "memory://",
        "redis://h:1/0",
        "rediss://h",
        "unix:///s",
        "sim://10.0.0.1:1",
    ] {
        let url = format!("{scheme}?namespace=a&namesp%61ce=b");
        let e = config_error(BackendUrl::parse(&url));
        assert!(
            e.to_string().contains("`namespace` is given twice"),
            "{url}: {e}"
        );
    }
}

#[test]
fn unknown_keys_are_named_with_the_known_ones() {
    let e = config_error(parse_as_backend(
        "redis://h?namespace=x&colour=blue",
        &["namespace", "db"],
    ));
    let msg = e.to_string();
    assert!(
        msg.contains("`colour`") && msg.contains("redis://"),
        "{msg}"
    );
    assert!(msg.contains("db, namespace"), "{msg}");
    assert!(!msg.contains("blue"), "{msg}");
}

#[test]
fn values_are_checked_by_their_taker_and_name_the_key() {
    let mut u = BackendUrl::parse("memory://?namespace=a:b").unwrap();
    let e = config_error(u.take_with("namespace", Namespace::new));
    assert!(e.to_string().contains("URL query key `namespace`"), "{e}");
    assert!(
        e.to_string().contains("a:b"),
        "short values are quoted: {e}"
    );
}

#[test]
fn a_long_value_is_cut() {
    let long = "w".repeat(1 << 20);
    let mut u = BackendUrl::parse(&format!("memory://?instance={long}")).unwrap();
    let e = config_error(u.take_with("instance", InstanceId::new));
    let msg = assert_hidden(&e, &"w".repeat(SHOWN_VALUE_CHARS + 1));
    assert!(msg.len() < 600, "{} bytes", msg.len());
    assert!(
        msg.contains("`instance`") && msg.contains("1048576 bytes"),
        "{msg}"
    );
    // A taker whose message quotes the value in its own way is cut too.
    let mut u = BackendUrl::parse(&format!("memory://?instance={long}")).unwrap();
    let e = config_error(u.take_with("instance", |v: &str| -> Result<()> {
        Err(Error::invalid(format!("bad: [{v}]")))
    }));
    assert!(assert_hidden(&e, &long[..400]).len() < 600);
}

// Issue 21.3: reserved characters left unencoded in a password.

#[test]
fn a_slash_in_the_password_names_the_port_not_the_password() {
    let e = config_error(BackendUrl::parse("redis://app:Tr0ub4dor/x@host:6379/0"));
    let msg = assert_hidden(&e, SECRET);
    assert!(msg.contains("port"), "{msg}");
    assert!(msg.contains("%2F"), "says how to encode: {msg}");
    assert!(!msg.contains("app"), "no user-info: {msg}");
}

#[test]
fn a_question_mark_in_the_password_is_not_echoed() {
    let e = config_error(BackendUrl::parse("redis://:x?Tr0ub4dor@host/0"));
    let msg = assert_hidden(&e, SECRET);
    assert!(msg.contains("%3F"), "{msg}");
    // With a numeric start the authority parses, and the rest is a query
    // holding the `@`: no key of it is named.
    let e = config_error(parse_as_backend("redis://u:12?Tr0ub4dor=1@host/0", &["db"]));
    assert_hidden(&e, SECRET);
    let e = config_error(BackendUrl::parse("redis://u:12?Tr0ub4dor@host/0"));
    assert_hidden(&e, SECRET);
    let e = config_error(BackendUrl::parse(
        "redis://u:12?Tr0ub4dor&Tr0ub4dor=@host/0",
    ));
    assert_hidden(&e, SECRET);
}

#[test]
fn a_hash_in_the_password_is_not_echoed() {
    for url in [
        "redis://u:x#Tr0ub4dor@host/0",
        "redis://u:1#Tr0ub4dor@host/0",
    ] {
        let e = config_error(BackendUrl::parse(url));
        assert!(assert_hidden(&e, SECRET).contains("%23"), "{e}");
    }
}

#[test]
fn an_ampersand_in_a_query_password_is_not_named_as_a_key() {
    let known = &["namespace", "password", "db"];
    for url in [
        "redis://h/0?password=x&Tr0ub4dor",
        "redis://h/0?password=x&Tr0ub4dor=1",
        "redis://h/0?namespace=n&password=x&Tr0ub4dor=1&db=1",
        "redis://h/0?password=x&Tr0ub4dor=1&Tr0ub4dor=2",
        "redis://h/0?password=x&Tr0ub4dor%zz=1",
        "redis://h/0?password=x&a=Tr0ub4dor%zz",
    ] {
        let e = config_error(parse_as_backend(url, known));
        let msg = assert_hidden(&e, SECRET);
        assert!(msg.contains("%26"), "{url}: {msg}");
    }
    // A known key's bad value after the password is not quoted either.
    let mut u = BackendUrl::parse("redis://h/0?password=x&namespace=Tr0ub4dor:").unwrap();
    let e = config_error(u.take_with("namespace", Namespace::new));
    assert!(assert_hidden(&e, SECRET).contains("`namespace`"));
}

#[test]
fn keys_that_are_not_plainly_keys_are_not_named() {
    let long = "k".repeat(MAX_SHOWN_KEY + 1);
    for key in [long.as_str(), "a.b", "p@ss", "wörd", "a%20b"] {
        let e = config_error(parse_as_backend(&format!("x://h?{key}=1"), &[]));
        assert_hidden(&e, key);
        let e = config_error(BackendUrl::parse(&format!("x://h?{key}")));
        assert_hidden(&e, key);
    }
}

#[test]
fn the_password_is_never_printed() {
    let mut u = BackendUrl::parse("redis://u:Tr0ub4dor@h/0?password=Tr0ub4dor").unwrap();
    assert!(!format!("{u:?}").contains(SECRET));
    let e = config_error(u.take_with("password", |_| -> Result<()> {
        Err(Error::config(format!("bad {SECRET}")))
    }));
    assert_hidden(&e, SECRET);
}

#[test]
fn a_host_list_is_read_by_whoever_takes_it() {
    let mut u = BackendUrl::parse(
        "redis+sentinel://u:p%2Cw@a.example:26379,10.0.0.2:26380,[::1]/mymaster/2?db=1",
    )
    .unwrap();
    assert_eq!(u.username(), Some("u"));
    assert_eq!(u.password().map(Password::expose), Some("p,w"));
    assert_eq!(u.path(), "/mymaster/2");
    assert_eq!(
        u.take_hosts(),
        [
            ("a.example".to_owned(), Some(26379)),
            ("10.0.0.2".to_owned(), Some(26380)),
            ("::1".to_owned(), None),
        ]
    );
    u.take("db");
    u.deny_unknown_keys().unwrap();
    // One host is a list of one, taken or not.
    let mut u = BackendUrl::parse("redis://h:1/0").unwrap();
    u.deny_unknown_keys().unwrap();
    assert_eq!(u.take_hosts(), [("h".to_owned(), Some(1))]);
    // A backend that takes one host refuses a list it did not take.
    let e = config_error(BackendUrl::parse("redis://a:1,b:2/0").and_then(|u| {
        u.deny_unknown_keys()?;
        Ok(u)
    }));
    assert!(e.to_string().contains("names 2"), "{e}");
}

#[test]
fn a_bad_host_list_is_refused_without_quoting_it() {
    for url in [
        "redis+sentinel://a:1,,b:2/m",
        "redis+sentinel://a:1,/m",
        "redis+sentinel://a:1,b:notaport/m",
        "redis+sentinel://u:Tr0ub4dor@a:1,b:Tr0ub4dor/m",
        "redis+sentinel://a:1,[::1/m",
    ] {
        let e = config_error(BackendUrl::parse(url));
        assert_hidden(&e, SECRET);
        assert!(e.to_string().contains("malformed URL"), "{url}: {e}");
    }
}

#[test]
fn a_sentinel_password_is_never_quoted_and_what_follows_is_suspect() {
    let mut u = BackendUrl::parse("x://h?sentinel_password=Tr0ub4dor").unwrap();
    let e = config_error(u.take_with("sentinel_password", |_| -> Result<()> {
        Err(Error::config(format!("bad {SECRET}")))
    }));
    assert!(assert_hidden(&e, SECRET).contains("`sentinel_password`"));
    // `&` unencoded in the password: the rest is never named.
    let e = config_error(parse_as_backend(
        "x://h?sentinel_password=ab&Tr0ub4dor=1",
        &["sentinel_password"],
    ));
    assert_hidden(&e, SECRET);
}
