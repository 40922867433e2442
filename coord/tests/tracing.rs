//! Every backend call has a `coord.backend` span naming its operation,
//! family, kind, key, holder, token and outcome; a renewal is traced as the
//! family it renews (an election's term as an election, not as a lock).

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
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

/// Runs `body` with a subscriber that writes closed spans to a buffer, and
/// returns the `coord.backend` lines.
async fn spans_of<F: Future<Output = ()>>(body: F) -> Vec<String> {
    let lines = output_of(body).await;
    (lines.into_iter())
        .filter(|l| l.contains("coord.backend"))
        .collect()
}

/// Runs `body` with a subscriber that writes events and closed spans to a
/// buffer, and returns its lines.
async fn output_of<F: Future<Output = ()>>(body: F) -> Vec<String> {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    body.await;
    let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    out.lines().map(str::to_owned).collect()
}

#[track_caller]
fn assert_span(spans: &[String], what: &[&str]) {
    assert!(
        spans.iter().any(|l| what.iter().all(|w| l.contains(w))),
        "no span with {what:?} in:\n{}",
        spans.join("\n")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn lock_calls_have_spans_with_family_kind_key_holder_token_and_outcome() {
    let seen = Arc::new(Mutex::new(None));
    let seen_in = seen.clone();
    let spans = spans_of(async move {
        let client = coord::connect("memory://?namespace=tracing-lock")
            .await
            .unwrap();
        let lock = client.lock("jobs/traced").auto_extend(false);
        let guard = lock.try_lock().await.unwrap().expect("free");
        *seen_in.lock().unwrap() = Some((guard.token().get(), guard.holder().to_string()));
        assert!(lock.try_lock().await.unwrap().is_none());
        assert!(guard.release().await.unwrap());
    })
    .await;
    let (token, holder) = seen.lock().unwrap().clone().unwrap();
    let (key, family, kind) = ("key=jobs/traced", "family=\"lock\"", "kind=\"exclusive\"");
    let holder = format!("holder={holder}");
    let token = format!("token={token}");
    assert_span(
        &spans,
        &[
            "op=\"acquire\"",
            family,
            kind,
            key,
            &holder,
            &token,
            "outcome=\"granted\"",
        ],
    );
    assert_span(
        &spans,
        &["op=\"acquire\"", family, kind, key, "outcome=\"busy\""],
    );
    assert_span(
        &spans,
        &[
            "op=\"release\"",
            family,
            kind,
            key,
            &holder,
            &token,
            "outcome=\"ok\"",
        ],
    );
}

#[tokio::test(flavor = "current_thread")]
async fn renewals_are_traced_as_their_own_family() {
    let spans = spans_of(async {
        let client = coord::connect("memory://?namespace=tracing-renew")
            .await
            .unwrap();
        let ttl = Duration::from_millis(60);
        let guard = client
            .semaphore("pool", 2)
            .ttl(ttl)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let term = client
            .election("leader")
            .ttl(ttl)
            .try_campaign()
            .await
            .unwrap()
            .expect("nobody leads");
        // Long enough for a few renewals of each (every TTL/3).
        tokio::time::sleep(ttl * 2).await;
        assert!(guard.is_held() && term.is_leader());
        assert!(guard.release().await.unwrap());
        assert!(term.resign().await.unwrap());
    })
    .await;
    let sem = ["family=\"semaphore\"", "kind=\"permit\"", "key=pool"];
    let elect = ["family=\"election\"", "kind=\"term\"", "key=leader"];
    for op in ["op=\"acquire\"", "op=\"renew\"", "op=\"release\""] {
        assert_span(&spans, &[&[op][..], &sem].concat());
    }
    for op in ["op=\"campaign\"", "op=\"renew\""] {
        assert_span(&spans, &[&[op][..], &elect].concat());
    }
    assert!(
        !spans
            .iter()
            .any(|l| l.contains("key=leader") && l.contains("family=\"lock\"")),
        "an election traced as a lock:\n{}",
        spans.join("\n")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn breaker_calls_have_spans_with_family_key_and_outcome() {
    let spans = spans_of(async {
        let client = coord::connect("memory://?namespace=tracing-breaker")
            .await
            .unwrap();
        let breaker = client.breaker("payments").build().unwrap();
        breaker.state().await.unwrap();
        breaker.permit().await.unwrap().failure();
        breaker.flush().await.unwrap();
        breaker.force_open("traced").await.unwrap();
    })
    .await;
    let (key, family) = ("key=payments", "family=\"breaker\"");
    for op in ["op=\"state\"", "op=\"report\"", "op=\"force_open\""] {
        assert_span(&spans, &[op, family, key, "outcome=\"ok\""]);
    }
}

/// A lost lease is traced as a warning naming its family, kind, key,
/// holder and token: here a lock force released by an operator, noticed at
/// the holder's next renewal.
#[tokio::test(flavor = "current_thread")]
async fn a_lost_lease_is_a_warning_naming_it() {
    let seen = Arc::new(Mutex::new(None));
    let seen_in = seen.clone();
    let lines = output_of(async move {
        let client = coord::connect("memory://?namespace=tracing-lost")
            .await
            .unwrap();
        let opts = coord::LeaseOptions::default()
            .ttl(Duration::from_secs(3))
            .extend_interval(Some(Duration::from_millis(50)));
        let lock = client.lock("jobs/lost").with_options(opts);
        let guard = lock.try_lock().await.unwrap().expect("free");
        *seen_in.lock().unwrap() = Some((guard.token().get(), guard.holder().to_string()));
        assert_eq!(lock.force_release().await.unwrap(), 1);
        tokio::time::timeout(Duration::from_secs(2), guard.lost())
            .await
            .expect("lost at the next renewal");
    })
    .await;
    let (token, holder) = seen.lock().unwrap().clone().unwrap();
    let warning = [
        "WARN",
        "lease lost",
        "family=\"lock\"",
        "kind=\"exclusive\"",
        "key=jobs/lost",
        &format!("holder={holder}"),
        &format!("token={token}"),
    ];
    assert_span(&lines, &warning);
}

/// The memory backend, its queue receives and topic reads applied and their
/// replies lost.
struct RepliesLost(coord::spi::DynBackend);

impl std::fmt::Display for RepliesLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replies-lost({})", self.0)
    }
}

impl std::fmt::Debug for RepliesLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[async_trait::async_trait]
impl coord::spi::Dispatch for RepliesLost {
    fn namespace(&self) -> &coord::Namespace {
        self.0.namespace()
    }
    fn families(&self) -> coord::spi::Families {
        coord::spi::Families::of(&*self.0)
    }
    async fn dispatch(&self, call: coord::spi::Call) -> coord::Result<coord::spi::Reply> {
        let (family, name) = (call.op().family, call.op().name);
        let reply = call.run(self.0.clone()).await;
        match (family, name) {
            ("queues", "receive") | ("topics", "read") => {
                Err(coord::Error::unavailable(self, "the reply was lost"))
            }
            _ => reply,
        }
    }
}

/// The calls a client makes in the background are traced too: the
/// give-back of a queue receive and of a topic read whose replies were lost.
#[tokio::test(flavor = "current_thread")]
async fn background_give_backs_have_spans() {
    let spans = spans_of(async {
        let ns = coord::Namespace::new("tracing-background").unwrap();
        let memory = Arc::new(coord::memory::MemoryBackend::new(ns));
        let lossy = coord::spi::Dispatched::new(RepliesLost(memory));
        let client = coord::Client::new(Arc::new(lossy));
        let queue = client.queue::<u64>("orders");
        queue.push(&1).await.unwrap();
        assert!(queue.consumer().receive().await.is_err(), "reply lost");
        let topic = client.topic::<u64>("events");
        let mut sub = topic.subscriber("s").start(coord::spi::Start::Earliest);
        sub.subscribe().await.unwrap();
        topic.publish(&1).await.unwrap();
        assert!(sub.next().await.is_err(), "reply lost");
        // Both given back, in the background.
        let back = async {
            loop {
                let q = queue.stats().await.unwrap();
                let t = sub.stats().await.unwrap();
                if q.ready == 1 && t.in_flight == 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), back)
            .await
            .expect("given back");
    })
    .await;
    for (family, kind, key) in [
        ("queue", "consumer", "orders"),
        ("topic", "subscriber", "events"),
    ] {
        let (family, kind) = (format!("family=\"{family}\""), format!("kind=\"{kind}\""));
        let key = format!("key={key}");
        let give_back = ["op=\"give_back\"", &family, &kind, &key, "holder="];
        assert_span(&spans, &give_back);
    }
}

/// A group's and an election's observer's reads and the watches of
/// observers and latch waiters are backend calls like the others: each runs in its
/// span, naming its family and key.
#[tokio::test(flavor = "current_thread")]
async fn observer_reads_and_watches_have_spans() {
    let spans = spans_of(async {
        let client = coord::connect("memory://?namespace=tracing-observe")
            .await
            .unwrap();
        let mut observer = client.group("workers").observe().await.unwrap();
        observer.next().await.unwrap();
        let latch = client.latch("ready");
        assert!(latch.try_set_count(1).await.unwrap());
        latch.count_down().await.unwrap();
        latch.wait().await.unwrap();
        let mut leader = client.election("leader").observe().await.unwrap();
        leader.next().await.unwrap();
    })
    .await;
    for op in ["op=\"watch\"", "op=\"members\""] {
        assert_span(&spans, &[op, "family=\"group\"", "key=workers"]);
    }
    assert_span(&spans, &["op=\"watch\"", "family=\"latch\"", "key=ready"]);
    for op in ["op=\"watch\"", "op=\"leader\"", "op=\"terms_granted\""] {
        assert_span(&spans, &[op, "family=\"election\"", "key=leader"]);
    }
}
