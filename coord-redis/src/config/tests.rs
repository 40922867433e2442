use super::*;

#[test]
fn full_url() {
    let c = RedisConfig::from_url(
        "redis://bob:p%40ss%3Aw0rd@example.com:7000/3?namespace=ns1&timeout=2s&connect_timeout=150ms",
    )
    .unwrap();
    assert_eq!(
        c.endpoint(),
        &Endpoint::Tcp {
            host: "example.com".into(),
            port: 7000
        }
    );
    assert_eq!(c.db(), 3);
    assert_eq!(c.username(), Some("bob"));
    assert_eq!(c.password(), Some("p@ss:w0rd"));
    assert_eq!(c.namespace().as_str(), "ns1");
    assert_eq!(c.timeout(), Duration::from_secs(2));
    assert_eq!(c.connect_timeout(), Duration::from_millis(150));
    assert_eq!(c.to_string(), "redis(example.com:7000/3 ns=ns1)");
}

#[test]
fn defaults_tls_ipv6_and_unix() {
    let c = RedisConfig::from_url("redis://localhost").unwrap();
    assert_eq!(c.to_string(), "redis(localhost:6379/0 ns=coord)");
    assert_eq!(c.timeout(), DEFAULT_TIMEOUT);
    let c = RedisConfig::from_url("rediss://:pw@[::1]:6380/1").unwrap();
    assert_eq!(c.to_string(), "rediss([::1]:6380/1 ns=coord)");
    assert_eq!(c.username(), None);
    let c = RedisConfig::from_url("redis+unix:///run/redis.sock?db=2&namespace=x").unwrap();
    assert_eq!(c.endpoint(), &Endpoint::Unix("/run/redis.sock".into()));
    assert_eq!(c.to_string(), "redis(unix:/run/redis.sock/2 ns=x)");
    let c = RedisConfig::from_url("unix:///tmp/r.sock?password=pw").unwrap();
    assert!(c.has_password());
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let e = RedisConfig::from_url("redis://h/0?namepsace=x").unwrap_err();
    assert!(matches!(e, Error::Config { .. }));
    assert!(e.to_string().contains("`namepsace`"), "{e}");
    let e = RedisConfig::builder()
        .with_config("retries", "3")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("`retries`"), "{e}");
    let e = RedisConfig::from_url("redis://h/0?timeout=5").unwrap_err();
    assert!(e.to_string().contains("`timeout`"), "{e}");
    let e = RedisConfig::from_url("redis://h/0?timeout=0ms").unwrap_err();
    assert!(e.to_string().contains("`timeout`"), "{e}");
    let e = RedisConfig::from_url("redis://h/0?namespace=a:b").unwrap_err();
    assert!(e.to_string().contains("`namespace`"), "{e}");
    assert!(RedisConfig::from_url("memory://").is_err());
    assert!(RedisConfig::from_url("redis://h:99999").is_err());
    assert!(RedisConfig::from_url("redis://h/x").is_err());
}

#[test]
fn password_never_printed() {
    let secret = "hunter2-Very-Secret";
    for url in [
        format!("redis://u:{secret}@h:1/0"),
        format!("redis://u:{secret}@h:notaport/0"),
        format!("redis://u:{secret}@h:1/0?bogus=1"),
        format!("redis+unix:///s?password={secret}&bogus=1"),
    ] {
        match RedisConfig::from_url(&url) {
            Ok(c) => {
                assert!(!format!("{c:?}").contains(secret));
                assert!(!c.to_string().contains(secret));
            }
            Err(e) => {
                assert!(!format!("{e:?}").contains(secret));
                assert!(!e.to_string().contains(secret));
            }
        }
    }
    let b = RedisConfig::builder().password(secret);
    assert!(!format!("{b:?}").contains(secret));
    let c = b.build().unwrap();
    assert!(!format!("{c:?}").contains(secret));
    assert_eq!(c.redact(format!("x {secret} y")), "x *** y");
}

/// Issue 21.3: a password with reserved characters left unencoded is
/// not echoed by any error, whichever part of the URL it spills into.
#[test]
fn a_password_spilling_into_other_parts_is_not_echoed() {
    let secret = "Tr0ub4dor";
    for url in [
        "redis://app:Tr0ub4dor/x@host:6379/0",
        "redis://app:1234/Tr0ub4dor@host:6379/0",
        "redis://:x?Tr0ub4dor@host/0",
        "redis://u:12?Tr0ub4dor@host/0",
        "redis://u:12?Tr0ub4dor=1@host/0",
        "redis://u:12?db=Tr0ub4dor@host/0",
        "redis://u:12#Tr0ub4dor@host/0",
        "redis://h:6379/0?password=x&Tr0ub4dor",
        "redis://h:6379/0?password=x&Tr0ub4dor=1",
        "redis://h:6379/0?password=x&timeout=Tr0ub4dor",
        "unix:///s?password=x&Tr0ub4dor=1",
    ] {
        let e = RedisConfig::from_url(url).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{url}: {e:?}");
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(!shown.contains(secret), "{url}: {shown}");
        assert!(!debug.contains(secret), "{url}: {debug}");
        assert!(shown.contains('%'), "says how to encode: {url}: {shown}");
    }
    // Without `//`, what looks like a scheme may be the user name.
    let e = RedisConfig::from_url("app:Tr0ub4dor@host:6379").unwrap_err();
    assert!(!e.to_string().contains("app") && !format!("{e:?}").contains("app"));
    let e = RedisConfig::from_url("etcd://host").unwrap_err();
    assert!(e.to_string().contains("`etcd`"), "{e}");
}

#[test]
fn duplicate_keys_are_found_after_percent_decoding() {
    for url in [
        "redis://h/0?namespace=a&namesp%61ce=b",
        "unix:///s?namespace=a&namesp%61ce=b",
        "redis://h/0?db=1&%64b=2",
    ] {
        let e = RedisConfig::from_url(url).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{url}: {e}");
    }
}

#[test]
fn a_long_value_is_cut() {
    let long = "9".repeat(1 << 20);
    let e = RedisConfig::from_url(&format!("redis://h/0?timeout={long}")).unwrap_err();
    assert!(e.to_string().contains("`timeout`"), "{e}");
    assert!(e.to_string().len() < 600, "{} bytes", e.to_string().len());
    assert!(format!("{e:?}").len() < 700);
}

#[test]
fn unix_urls_have_no_host_port_or_user_info() {
    for url in [
        "unix://host/run/redis.sock",
        "unix://:1/s",
        "unix://u:p@/s",
        "redis+unix:relative.sock",
    ] {
        assert!(RedisConfig::from_url(url).is_err(), "{url}");
    }
    let c = RedisConfig::from_url("unix:///run/my%20redis.sock").unwrap();
    assert_eq!(c.endpoint(), &Endpoint::Unix("/run/my redis.sock".into()));
}

#[test]
fn a_parsed_url_keeps_its_keys_taken() {
    let mut url = BackendUrl::parse("redis://h:1/2?instance=w&namespace=n").unwrap();
    assert_eq!(url.take("instance").as_deref(), Some("w"));
    let c = RedisConfig::from_backend_url(url).unwrap();
    assert_eq!(c.to_string(), "redis(h:1/2 ns=n)");
    // A key nobody took is refused, and the known ones listed.
    let e = RedisConfig::from_backend_url(BackendUrl::parse("redis://h?instance=w").unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("`instance`"), "{e}");
    assert!(e.to_string().contains("tls_ca_file"), "{e}");
}

#[test]
fn builder_overrides_url() {
    let c = RedisConfig::builder()
        .with_url("redis://a:1/1?namespace=one")
        .namespace("two")
        .tcp("b", 2)
        .db(4)
        .build()
        .unwrap();
    assert_eq!(c.to_string(), "redis(b:2/4 ns=two)");
}

#[test]
fn sentinel_urls() {
    let c = RedisConfig::from_url(
        "redis+sentinel://app:pw@s1,s2:26380,[::1]:26381/mymaster?db=3&sentinel_user=watch&sentinel_password=spw&namespace=n",
    )
    .unwrap();
    assert_eq!(
        c.endpoint(),
        &Endpoint::Sentinel {
            sentinels: vec![
                ("s1".into(), DEFAULT_SENTINEL_PORT),
                ("s2".into(), 26380),
                ("::1".into(), 26381)
            ],
            master: "mymaster".into(),
        }
    );
    assert_eq!(
        (c.db(), c.username(), c.password()),
        (3, Some("app"), Some("pw"))
    );
    assert_eq!(c.sentinel_username(), Some("watch"));
    assert_eq!(c.sentinel_password(), Some("spw"));
    assert_eq!(
        c.to_string(),
        "redis+sentinel(s1:26379,s2:26380,[::1]:26381/mymaster/3 ns=n)"
    );
    let c = RedisConfig::from_url("redis+sentinel://127.0.0.1:1/m/2").unwrap();
    assert_eq!(c.db(), 2);
    let c = RedisConfig::builder()
        .sentinel([("h".to_owned(), 5)], "m")
        .build()
        .unwrap();
    assert_eq!(c.to_string(), "redis+sentinel(h:5/m/0 ns=coord)");
}

#[test]
fn bad_sentinel_urls_are_refused_without_echoing_secrets() {
    let secret = "Tr0ub4dor";
    for url in [
        "redis+sentinel://h1,h2/",
        "redis+sentinel://h1,h2",
        "redis+sentinel://h1/m/x",
        "redis+sentinel://h1/m/-1",
        "redis+sentinel://u:Tr0ub4dor@h1/m/Tr0ub4dor",
        "redis+sentinel://u:x/Tr0ub4dor@h1/m",
        "redis+sentinel:///m",
        "rediss+sentinel://h1/m",
        "redis+sentinel://h1/m?tls_ca_file=/ca.pem",
        "redis+sentinel://h1/m?sentinel_password=x&Tr0ub4dor=1",
        "redis://h1/0?sentinel_password=Tr0ub4dor",
        "redis://h1,h2/0",
    ] {
        let e = RedisConfig::from_url(url).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{url}: {e:?}");
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(
            !shown.contains(secret) && !debug.contains(secret),
            "{url}: {shown}"
        );
    }
    let long = "m".repeat(MAX_MASTER_NAME + 1);
    assert!(RedisConfig::from_url(&format!("redis+sentinel://h/{long}")).is_err());
    let ok = "m".repeat(MAX_MASTER_NAME);
    assert!(RedisConfig::from_url(&format!("redis+sentinel://h/{ok}")).is_ok());
    let c = RedisConfig::from_url("redis+sentinel://h/m?sentinel_password=Tr0ub4dor").unwrap();
    assert!(!format!("{c:?}").contains(secret));
    assert_eq!(c.redact(format!("x {secret}")), "x ***");
}

#[test]
fn confirm_from_the_url_and_the_builder() {
    let c = RedisConfig::from_url("redis://h").unwrap();
    assert_eq!(c.confirm(), None);
    let c = RedisConfig::from_url("redis://h?confirm_replicas=2").unwrap();
    assert_eq!(
        c.confirm(),
        Some(Confirm::Replicas {
            count: 2,
            timeout: DEFAULT_CONFIRM_TIMEOUT
        })
    );
    let c = RedisConfig::from_url(
        "redis://h?confirm_fsync_local=true&confirm_fsync_replicas=1&confirm_timeout=50ms",
    )
    .unwrap();
    assert_eq!(
        c.confirm(),
        Some(Confirm::Fsync {
            local: true,
            replicas: 1,
            timeout: Duration::from_millis(50)
        })
    );
    // A typed setting replaces the URL's keys.
    let c = RedisConfig::builder()
        .with_url("redis://h?confirm_replicas=2")
        .confirm(Confirm::Fsync {
            local: true,
            replicas: 0,
            timeout: Duration::from_millis(10),
        })
        .build()
        .unwrap();
    assert!(matches!(
        c.confirm(),
        Some(Confirm::Fsync {
            local: true,
            replicas: 0,
            ..
        })
    ));
}

#[test]
fn bad_confirm_values_are_refused_naming_the_key() {
    for (query, key, says) in [
        ("confirm_replicas=0", "confirm_replicas", "1 to 64"),
        ("confirm_replicas=65", "confirm_replicas", "1 to 64"),
        ("confirm_replicas=two", "confirm_replicas", "not a number"),
        ("confirm_replicas=-1", "confirm_replicas", "not a number"),
        (
            "confirm_fsync_local=maybe",
            "confirm_fsync_local",
            "not a boolean",
        ),
        (
            "confirm_fsync_local=false",
            "confirm_fsync_replicas",
            "1 to 64",
        ),
        (
            "confirm_fsync_replicas=99",
            "confirm_fsync_replicas",
            "1 to 64",
        ),
        (
            "confirm_fsync_local=true&confirm_fsync_replicas=99",
            "confirm_fsync_replicas",
            "0 to 64",
        ),
        (
            "confirm_replicas=1&confirm_timeout=soon",
            "confirm_timeout",
            "not a duration",
        ),
        (
            "confirm_replicas=1&confirm_timeout=0ms",
            "confirm_timeout",
            "at least 1ms",
        ),
        (
            "confirm_replicas=1&confirm_timeout=3s",
            "confirm_timeout",
            "below the operation",
        ),
        (
            "confirm_replicas=1&timeout=100ms&confirm_timeout=100ms",
            "confirm_timeout",
            "100ms",
        ),
        (
            "confirm_timeout=100ms",
            "confirm_timeout",
            "nothing to confirm",
        ),
        (
            "confirm_replicas=1&confirm_fsync_local=true",
            "confirm_replicas",
            "exclude",
        ),
    ] {
        let err = RedisConfig::from_url(&format!("redis://h?{query}")).unwrap_err();
        let Error::Config { message } = &err else {
            panic!("{query}: {err:?}");
        };
        assert!(message.contains(&format!("`{key}")), "{query}: {message}");
        assert!(message.contains(says), "{query}: {message}");
    }
    let err = RedisConfig::builder()
        .confirm(Confirm::Replicas {
            count: 0,
            timeout: Duration::from_millis(10),
        })
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`confirm_replicas`"), "{err}");
}

/// Port 0, a host named twice and a database named twice are `Config`
/// errors that say so (each was taken silently: port 0 never connects, a
/// sentinel counted twice hides a missing one, the query's `db` won).
#[test]
fn hosts_and_the_database_are_named_once() {
    let err = |url: &str| match RedisConfig::from_url(url) {
        Err(Error::Config { message }) => message,
        other => panic!("{url}: {other:?}"),
    };
    assert!(err("redis://h:0").contains("port 0"));
    assert!(err("redis+sentinel://h1:0,h2/m").contains("host h1 has port 0"));
    let twice = err("redis+sentinel://h1,H1:26379/m");
    assert!(twice.contains("H1:26379 is named twice"), "{twice}");
    assert!(err("redis+cluster://a:7000,b:7001,a:7000").contains("a:7000 is named twice"));
    for url in ["redis://h/1?db=2", "redis+sentinel://h/m/1?db=2"] {
        let message = err(url);
        assert!(
            message.contains("named twice") && message.contains("`db`"),
            "{message}"
        );
    }
    // Once is fine, either way; the same host on two ports is two hosts.
    assert_eq!(RedisConfig::from_url("redis://h?db=2").unwrap().db(), 2);
    assert_eq!(
        RedisConfig::from_url("redis+sentinel://h/m/1")
            .unwrap()
            .db(),
        1
    );
    assert!(RedisConfig::from_url("redis+cluster://a:7000,a:7001").is_ok());
}
