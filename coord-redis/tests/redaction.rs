//! A password never shows in a configuration's or backend's `Debug` or
//! `Display`, in errors, or in traces. Its own test binary: it installs a
//! tracing subscriber for its thread and checks that the backend's spans
//! reach it, and a test running beside it in the same process could hit a
//! span's callsite first, with no subscriber, racing the registration that
//! enables it (it failed that way once in CI while in `redis_only.rs`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{Client, Error};
use coord_redis::{RedisBackend, RedisConfig};
use coord_testkit::redis::RedisServer;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn password_never_in_debug_display_errors_or_traces() {
    let secret = "S3cr3t-pa55word-xyz";
    let server = RedisServer::start_with_password(secret);
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || sink.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let config = server.config("secret");
    let b = RedisBackend::connect(config.clone()).await.unwrap();
    let mut seen = vec![
        format!("{config:?}"),
        config.to_string(),
        format!("{b:?}"),
        b.to_string(),
    ];
    let c = Client::builder(Arc::new(b))
        .instance_id("a")
        .unwrap()
        .build();
    let g = c.lock("k").try_lock().await.unwrap().unwrap();
    assert!(c.lock("k").try_lock().await.unwrap().is_none());
    g.release().await.unwrap();

    // Wrong password, refused connection, frozen server: errors all around.
    let wrong = format!("{secret}-wrong");
    let bad = RedisConfig::builder()
        .with_url(format!("redis://:{wrong}@127.0.0.1:{}/0", server.port()))
        .build()
        .unwrap();
    let e = RedisBackend::connect(bad).await.unwrap_err();
    seen.push(format!("{e:?} {e}"));
    let refused = RedisConfig::builder()
        .with_url(format!("redis://user:{secret}@127.0.0.1:1/0"))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = RedisBackend::connect(refused).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    seen.push(format!("{e:?} {e}"));
    server.stop();
    let e = c.lock("k2").try_lock().await.unwrap_err();
    seen.push(format!("{e:?} {e}"));

    let traces = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(traces.contains("coord.redis"), "backend spans are traced");
    seen.push(traces);
    for s in &seen {
        assert!(!s.contains(secret), "password leaked: {s}");
    }
}
