//! Unit tests of the client types: what is refused before any I/O; what
//! a watch's backend calls trace.

use std::{sync::Arc, time::Duration};

use crate::{
    Client, Error, Key,
    spi::{
        Backend, Changes, DynBackend, Expect, MAX_VALUE_BYTES, Select, StateBackend, Stored, Watch,
        Written,
    },
    testing::Spans,
};

/// A backend offering no family: any I/O would be `NotSupported`, so an
/// `InvalidArgument` proves the check came first.
#[derive(Debug)]
struct Nothing(crate::Namespace);

impl std::fmt::Display for Nothing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nothing")
    }
}

impl Backend for Nothing {
    fn namespace(&self) -> &crate::Namespace {
        &self.0
    }
}

fn client() -> Client {
    let backend: DynBackend = Arc::new(Nothing(crate::Namespace::default()));
    Client::new(backend)
}

#[track_caller]
fn invalid<T: std::fmt::Debug>(res: crate::Result<T>, words: &[&str]) {
    match res {
        Err(Error::InvalidArgument { message }) => {
            for w in words {
                assert!(message.contains(w), "{message:?} lacks {w:?}");
            }
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_values_and_bad_options_are_refused_before_io() {
    let c = client();
    let big = "x".repeat(MAX_VALUE_BYTES);
    let s = c.state::<String>("cfg");
    invalid(s.put(&big).await, &["cfg", "65536"]);
    invalid(s.compare_and_set(None, &big).await, &["cfg", "65536"]);
    let space = c.state_space::<String>("app");
    invalid(space.value("db").put(&big).await, &["app/db", "65536"]);
    let ttl = s.clone().ttl(Some(Duration::ZERO));
    invalid(ttl.put(&"a".into()).await, &["ttl"]);
    invalid(ttl.update(|_| "a".into()).await, &["ttl"]);
    invalid(
        s.clone().max_attempts(0).update(|_| "a".into()).await,
        &["max_attempts"],
    );
    invalid(c.state::<u8>("").get().await, &["empty"]);
    invalid(
        c.state_space::<u8>("s").value("a\nb").delete().await,
        &["control"],
    );
    invalid(c.state::<u8>("").watch(0).next().await, &["empty"]);
    let long = "p".repeat(600);
    let mut w = c.state_space::<u8>("s").watch(&long, 0);
    invalid(w.next().await, &["\"s\"", "512"]);
    let mut w = c.state_space::<u8>("s").watch("ok/", 0);
    assert!(matches!(w.next().await, Err(Error::NotSupported { .. })));
}

/// A state backend whose space never changes: every read of changes is an
/// empty page at the reader's version; its watches never wake.
#[derive(Debug)]
struct Still(crate::Namespace);

impl std::fmt::Display for Still {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("still")
    }
}

impl Backend for Still {
    fn namespace(&self) -> &crate::Namespace {
        &self.0
    }
    fn state(&self) -> Option<&dyn StateBackend> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl StateBackend for Still {
    async fn get(&self, _: &Key, _: &Key) -> crate::Result<Option<Stored>> {
        Ok(None)
    }
    async fn put(
        &self,
        _: &Key,
        _: &Key,
        _: Vec<u8>,
        _: Expect,
        _: Option<Duration>,
        _: u64,
    ) -> crate::Result<Written> {
        Ok(Written::Done(1))
    }
    async fn delete(&self, _: &Key, _: &Key, _: Expect) -> crate::Result<Written> {
        Ok(Written::Unchanged)
    }
    async fn changes(&self, _: &Key, _: &Select, after: u64, _: u32) -> crate::Result<Changes> {
        Ok(Changes {
            head: after,
            ..Changes::default()
        })
    }
    async fn watch(&self, _: &Key) -> crate::Result<Box<dyn Watch>> {
        Ok(Box::new(crate::testing::Never))
    }
}

/// A watch's reads of the log and its subscription are backend calls like
/// any other: each in a `coord.backend` span naming the family and the key
/// (a value's key, or a prefix watch's space).
#[tokio::test(flavor = "current_thread")]
async fn a_watchs_backend_calls_have_spans() {
    let (spans, _default) = Spans::install();
    let backend: DynBackend = Arc::new(Still(crate::Namespace::default()));
    let c = Client::new(backend);
    let space = c.state_space::<u8>("flags");
    // (A put, traced before, shows the spans are seen.)
    space.value("app/x").put(&1).await.unwrap();
    let mut watches = [space.value("app/x").watch(3), space.watch("app/", 3)];
    for w in &mut watches {
        let waited = tokio::time::timeout(Duration::from_millis(20), w.next()).await;
        assert!(waited.is_err(), "nothing changed: {waited:?}");
    }
    for (op, key) in [
        ("put", "app/x"),
        ("changes", "app/x"),
        ("watch", "app/x"),
        ("changes", "flags"),
        ("watch", "flags"),
    ] {
        let (op, key) = (format!("op=\"{op}\""), format!("key={key}"));
        spans.assert_has(&["coord.backend", &op, "family=\"state\"", &key]);
    }
}
