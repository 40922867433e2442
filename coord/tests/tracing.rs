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
    let _default = tracing::subscriber::set_default(writing_to(&sink));
    body.await;
    let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    out.lines().map(str::to_owned).collect()
}

/// A subscriber that writes events and closed spans (debug and above) to
/// `sink`.
fn writing_to(sink: &Sink) -> impl tracing::Subscriber + Send + Sync + 'static {
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
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

/// The memory backend, the calls named in `lose` (family, operation)
/// applied and their replies lost.
struct RepliesLost {
    backend: coord::spi::DynBackend,
    lose: Lose,
}

/// The calls whose replies a [`RepliesLost`] loses: (family, operation).
type Lose = Arc<Mutex<Vec<(&'static str, &'static str)>>>;

impl RepliesLost {
    /// A client of `backend` through a `RepliesLost` losing nothing yet,
    /// and the list of calls to lose (changed as the test goes).
    fn client(backend: coord::spi::DynBackend) -> (coord::Client, Lose) {
        let lose = Arc::new(Mutex::new(Vec::new()));
        let lossy = RepliesLost {
            backend,
            lose: lose.clone(),
        };
        let client = coord::Client::new(Arc::new(coord::spi::Dispatched::new(lossy)));
        (client, lose)
    }
}

impl std::fmt::Display for RepliesLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replies-lost({})", self.backend)
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
        self.backend.namespace()
    }
    fn families(&self) -> coord::spi::Families {
        coord::spi::Families::of(&*self.backend)
    }
    async fn dispatch(&self, call: coord::spi::Call) -> coord::Result<coord::spi::Reply> {
        let op = (call.op().family, call.op().name);
        let reply = call.run(self.backend.clone()).await;
        if self.lose.lock().unwrap().contains(&op) {
            return Err(coord::Error::unavailable(self, "the reply was lost"));
        }
        reply
    }
}

/// The calls a client makes in the background are traced too: the
/// give-back of a queue receive and of a topic read whose replies were lost.
#[tokio::test(flavor = "current_thread")]
async fn background_give_backs_have_spans() {
    let spans = spans_of(async {
        let ns = coord::Namespace::new("tracing-background").unwrap();
        let (client, lose) = RepliesLost::client(Arc::new(coord::memory::MemoryBackend::new(ns)));
        *lose.lock().unwrap() = vec![("queues", "receive"), ("topics", "read")];
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

/// A run-once begin whose reply was lost is given back in the background,
/// in its own span naming the job.
#[tokio::test(flavor = "current_thread")]
async fn a_lost_begins_give_back_has_a_span() {
    use coord::spi::{JobBackend, OnceState};
    let spans = spans_of(async {
        let ns = coord::Namespace::new("tracing-give-back").unwrap();
        let memory = Arc::new(coord::memory::MemoryBackend::new(ns));
        let (client, lose) = RepliesLost::client(memory.clone());
        *lose.lock().unwrap() = vec![("jobs", "begin")];
        let job = client.job("nightly");
        assert!(job.run_once("o", |_| async {}).await.is_err(), "reply lost");
        let (j, o) = (
            coord::Key::new("nightly").unwrap(),
            coord::Key::new("o").unwrap(),
        );
        let back = async {
            while memory.state(&j, &o).await.unwrap() != OnceState::Idle {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), back)
            .await
            .expect("given back");
    })
    .await;
    let give_back = [
        "op=\"give_back\"",
        "family=\"job\"",
        "kind=\"run\"",
        "key=nightly",
        "holder=",
    ];
    assert_span(&spans, &give_back);
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

/// The `coord.backend` lines written so far by the subscriber of
/// [`traced`], to wait for one made in the background; those waited for
/// in vain.
struct Written(Sink, Vec<String>);

impl Written {
    fn lines(&self) -> Vec<String> {
        let out = String::from_utf8(self.0.0.lock().unwrap().clone()).unwrap();
        (out.lines())
            .filter(|l| l.contains("coord.backend"))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (5 s at most) until a closed span has every one of `what` and
    /// none of `not`; if none comes, notes it as missing.
    async fn wait_for(&mut self, what: &[&str], not: &[&str]) {
        let seen = || {
            (self.lines().iter())
                .any(|l| what.iter().all(|w| l.contains(w)) && !not.iter().any(|n| l.contains(n)))
        };
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while !seen() {
            if tokio::time::Instant::now() >= until {
                self.1.push(format!("{what:?} (none of {not:?})"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Panics, listing the spans made, if a span waited for never came.
    #[track_caller]
    fn assert_none_missing(&self) {
        assert!(
            self.1.is_empty(),
            "no span with:\n{}\nin:\n{}",
            self.1.join("\n"),
            self.lines().join("\n")
        );
    }
}

/// Runs `body` with a subscriber that writes closed spans to a buffer,
/// which `body` reads to wait for the spans of calls made in the
/// background.
async fn traced<F: Future<Output = ()>>(body: impl FnOnce(Written) -> F) {
    let sink = Sink::default();
    let _default = tracing::subscriber::set_default(writing_to(&sink));
    body(Written(sink, Vec::new())).await;
}

/// The lock family's clean-ups are backend calls like the others, each in
/// its span: the release of a grant whose answer was lost (a lock's, a
/// fair lock's beside leaving the queue, a multi-lock's members, the read
/// lease a lost downgrade may have made), the look (`inspect`) after a
/// re-entry whose answer was lost, and the release of every hold of a
/// grant that re-entry turned out to be.
#[tokio::test(flavor = "current_thread")]
async fn lock_clean_ups_have_spans() {
    traced(|mut spans| async move {
        let ns = coord::Namespace::new("tracing-lock-clean-ups").unwrap();
        let (client, lose) = RepliesLost::client(Arc::new(coord::memory::MemoryBackend::new(ns)));
        let losing = |ops: &[&'static str]| {
            *lose.lock().unwrap() = ops.iter().map(|op| ("locks", *op)).collect();
        };
        let release = "op=\"release\"";
        let (lock, exclusive) = ("family=\"lock\"", "kind=\"exclusive\"");

        losing(&["acquire"]);
        assert!(client.lock("lost/plain").try_lock().await.is_err());
        (spans.wait_for(
            &[release, lock, exclusive, "key=lost/plain", "holder="],
            &[],
        ))
        .await;

        losing(&["acquire_queued"]);
        let fair = client.lock("lost/fair").fair(true);
        assert!(fair.try_lock().await.is_err());
        (spans.wait_for(&[release, lock, exclusive, "key=lost/fair"], &[])).await;

        losing(&["acquire_all"]);
        let multi = client.multi_lock(["lost/m1", "lost/m2"]);
        assert!(multi.try_lock().await.is_err());
        for key in ["key=lost/m1", "key=lost/m2"] {
            spans.wait_for(&[release, lock, exclusive, key], &[]).await;
        }

        losing(&["downgrade"]);
        let mut writer = client.rwlock("lost/rw").write().await.unwrap();
        assert!(writer.downgrade().await.is_err());
        let read = ["family=\"rwlock\"", "kind=\"read\"", "key=lost/rw"];
        spans.wait_for(&[&[release][..], &read].concat(), &[]).await;

        // A re-entry whose answer was lost after a force release: granted
        // afresh to the old holder, found by a look and given back.
        losing(&[]);
        let reentrant = client.lock("lost/re").reentrant(true);
        let first = reentrant.try_lock().await.unwrap().expect("free");
        assert_eq!(reentrant.force_release().await.unwrap(), 1);
        losing(&["acquire"]);
        assert!(reentrant.try_lock().await.is_err());
        let inspect = ["op=\"inspect\"", lock, "key=lost/re"];
        spans.wait_for(&inspect, &[]).await;
        // Not the first guard's (it carries its token, and is not released).
        let every_hold = [
            release,
            lock,
            "kind=\"reentrant\"",
            "key=lost/re",
            "holder=",
        ];
        spans.wait_for(&every_hold, &["token="]).await;
        losing(&[]);
        assert!(!first.is_held(), "the old guard is lost");
        spans.assert_none_missing();
    })
    .await;
}

/// A waiter's watch is a backend call like the others, in its span: a
/// lock's, a read-write lock's and a semaphore's subscription, a fair
/// waiter's (`subscribe_queued`) and a multi-lock's on the member in its
/// way.
#[tokio::test(flavor = "current_thread")]
async fn lock_waiters_watches_have_spans() {
    traced(|mut spans| async move {
        let client = coord::connect("memory://?namespace=tracing-lock-watches")
            .await
            .unwrap();
        let patience = Some(Duration::from_millis(50));
        let timed_out = |r: coord::Result<_>| matches!(r, Err(coord::Error::Timeout { .. }));
        let _plain = client.lock("w/plain").try_lock().await.unwrap().unwrap();
        let wait = client.lock("w/plain").wait_timeout(patience).lock().await;
        assert!(timed_out(wait.map(drop)));
        let _reader = client.rwlock("w/rw").read().await.unwrap();
        let wait = client.rwlock("w/rw").wait_timeout(patience).write().await;
        assert!(timed_out(wait.map(drop)));
        let _permit = client.semaphore("w/sem", 1).acquire().await.unwrap();
        let wait = client.semaphore("w/sem", 1).wait_timeout(patience);
        assert!(timed_out(wait.acquire().await.map(drop)));
        let fair = client.lock("w/fair").fair(true);
        let _fair = fair.try_lock().await.unwrap().unwrap();
        let wait = fair.clone().wait_timeout(patience).lock().await;
        assert!(timed_out(wait.map(drop)));
        let _member = client.lock("w/m2").try_lock().await.unwrap().unwrap();
        let multi = client.multi_lock(["w/m1", "w/m2"]).wait_timeout(patience);
        assert!(timed_out(multi.lock().await.map(drop)));

        let subscribe = "op=\"subscribe\"";
        for (family, key) in [
            ("lock", "w/plain"),
            ("rwlock", "w/rw"),
            ("semaphore", "w/sem"),
            ("lock", "w/m2"),
        ] {
            let (family, key) = (format!("family=\"{family}\""), format!("key={key}"));
            spans.wait_for(&[subscribe, &family, &key], &[]).await;
        }
        let queued = [
            "op=\"subscribe_queued\"",
            "family=\"lock\"",
            "key=w/fair",
            "holder=",
        ];
        spans.wait_for(&queued, &[]).await;
        spans.assert_none_missing();
    })
    .await;
}

/// The election's clean-ups are backend calls in their spans: after a
/// campaign round whose answer was lost, the look at the leader and the
/// resignation of the term the round won; after a campaign that ended
/// without a term, the withdrawal of its candidacy.
#[tokio::test(flavor = "current_thread")]
async fn election_clean_ups_have_spans() {
    traced(|mut spans| async move {
        let ns = coord::Namespace::new("tracing-election-clean-ups").unwrap();
        let (client, lose) = RepliesLost::client(Arc::new(coord::memory::MemoryBackend::new(ns)));
        let (election, term) = ("family=\"election\"", "kind=\"term\"");

        *lose.lock().unwrap() = vec![("elections", "campaign")];
        assert!(client.election("lost").try_campaign().await.is_err());
        let leader = ["op=\"leader\"", election, term, "key=lost", "holder="];
        spans.wait_for(&leader, &[]).await;
        let resign = ["op=\"resign\"", election, term, "key=lost", "token="];
        spans.wait_for(&resign, &[]).await;

        lose.lock().unwrap().clear();
        let leads = client.election("held").try_campaign().await.unwrap();
        let _leads = leads.expect("nobody leads");
        let patience = Some(Duration::from_millis(50));
        let waited = client
            .election("held")
            .wait_timeout(patience)
            .campaign()
            .await;
        assert!(
            matches!(waited, Err(coord::Error::Timeout { .. })),
            "{waited:?}"
        );
        let withdraw = ["op=\"withdraw_candidacy\"", election, term, "key=held"];
        spans.wait_for(&withdraw, &[]).await;
        spans.assert_none_missing();
    })
    .await;
}
