//! Unit tests of the client types: what is refused before any I/O; what
//! a watch's backend calls trace.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{
    Client, Error, Key,
    spi::{
        Backend, Changes, DynBackend, Expect, MAX_VALUE_BYTES, Select, StateBackend, Stored, Watch,
        Written,
    },
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

struct Never;

#[async_trait::async_trait]
impl Watch for Never {
    async fn changed(&mut self) -> crate::Result<()> {
        std::future::pending().await
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
        Ok(Box::new(Never))
    }
}

/// Records every span made: its name and fields, one line each.
struct Spans(Arc<Mutex<Vec<String>>>, AtomicU64);

struct Line<'a>(&'a mut String);

impl tracing::field::Visit for Line<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = span.metadata().name().to_owned();
        span.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
        tracing::span::Id::from_u64(self.1.fetch_add(1, Ordering::Relaxed))
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A watch's reads of the log and its subscription are backend calls like
/// any other: each in a `coord.backend` span naming the family and the key
/// (a value's key, or a prefix watch's space).
#[tokio::test(flavor = "current_thread")]
async fn a_watchs_backend_calls_have_spans() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let spans = Spans(lines.clone(), AtomicU64::new(1));
    let _default = tracing::subscriber::set_default(spans);
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
    let lines = lines.lock().unwrap().clone();
    for (op, key) in [
        ("put", "app/x"),
        ("changes", "app/x"),
        ("watch", "app/x"),
        ("changes", "flags"),
        ("watch", "flags"),
    ] {
        let want = [
            "coord.backend".to_owned(),
            format!("op=\"{op}\""),
            "family=\"state\"".to_owned(),
            format!("key={key}"),
        ];
        assert!(
            (lines.iter()).any(|l| want.iter().all(|w| l.split(' ').any(|f| f == w))),
            "no span with {want:?} in {lines:#?}"
        );
    }
}
