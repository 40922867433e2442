//! Every backend call has a `coord.backend` span with its key, holder, token
//! and outcome, also on the in-process backend, whose calls skip the future
//! (`LeaseBackend::in_process`).

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn memory_calls_have_spans_with_key_holder_token_and_outcome() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let client = coord::connect("memory://?namespace=tracing-test")
        .await
        .unwrap();
    let lock = client.lock("jobs/traced").auto_extend(false);
    let guard = lock.try_lock().await.unwrap().expect("free");
    let (token, holder) = (guard.token().get(), guard.holder().to_string());
    assert!(lock.try_lock().await.unwrap().is_none());
    assert!(guard.release().await.unwrap());

    let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let spans: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("coord.backend"))
        .collect();
    let find = |what: &[&str]| spans.iter().any(|l| what.iter().all(|w| l.contains(w)));
    let key = "key=jobs/traced";
    let holder = format!("holder={holder}");
    let token = format!("token={token}");
    assert!(
        find(&[
            "op=\"acquire\"",
            key,
            &holder,
            &token,
            "outcome=\"granted\""
        ]),
        "no granted acquire span in:\n{out}"
    );
    assert!(
        find(&["op=\"acquire\"", key, "outcome=\"busy\""]),
        "no busy acquire span in:\n{out}"
    );
    assert!(
        find(&["op=\"release\"", key, &holder, &token, "outcome=\"ok\""]),
        "no release span in:\n{out}"
    );
}
