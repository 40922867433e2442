//! Unit tests of the client types: what is refused before any I/O.

use std::{sync::Arc, time::Duration};

use crate::{
    Client, Error,
    spi::{Backend, DynBackend, MAX_VALUE_BYTES},
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
