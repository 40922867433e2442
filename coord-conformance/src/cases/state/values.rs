//! Values: a typed value round trip with its version; versions that only
//! increase; compare-and-set from the version read, or absent; `update`
//! exact under contention and bounded; delete; TTL; limits checked before
//! any I/O.

use std::sync::atomic::{AtomicU32, AtomicU64};

use super::*;

/// A backend on which another writer always gets in first: before every
/// put it puts (unconditionally) the value it reads plus one, so that every
/// compare-and-set through it conflicts.
#[derive(Debug)]
struct Rival {
    inner: DynBackend,
    writes: AtomicUsize,
}

impl std::fmt::Display for Rival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rival({})", self.inner)
    }
}

#[coord_api::async_trait]
impl coord_api::spi::Dispatch for Rival {
    fn namespace(&self) -> &coord_api::Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> coord_api::spi::Families {
        coord_api::spi::Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: coord_api::spi::Call) -> Result<coord_api::spi::Reply> {
        if call.op().family == "state" && call.op().name == "put" {
            another_writer_adds(&self.inner, 1).await?;
            self.writes.fetch_add(1, SeqCst);
        }
        call.run(self.inner.clone()).await
    }
}

/// Adds `n` to the number at `K`, unconditionally, as another writer
/// straight on `inner`.
async fn another_writer_adds(inner: &DynBackend, n: u64) -> Result<()> {
    let state = inner.state().expect("offered");
    let (space, k) = (key(K), key(K));
    let now = state.get(&space, &k).await?.expect("present");
    // A u64 in JSON is its decimal digits.
    let was: u64 = (String::from_utf8_lossy(&now.value).parse()).expect("a number");
    let bytes = (was + n).to_string().into_bytes();
    state.put(&space, &k, bytes, Expect::Any, None, 0).await?;
    Ok(())
}

/// A client "b" whose every state write a [`Rival`] write beats, and the
/// rival (which counts its writes).
async fn rival_client(ctx: &Ctx<'_>) -> (Arc<coord_api::spi::Dispatched<Rival>>, Client) {
    let rival = Rival {
        inner: ctx.backend().await,
        writes: AtomicUsize::new(0),
    };
    let rival = Arc::new(coord_api::spi::Dispatched::new(rival));
    let b = Client::builder(rival.clone())
        .instance_id("b")
        .unwrap()
        .build();
    (rival, b)
}

/// A backend that applies a state put and then loses its reply
/// (`Unavailable`, as after a dropped connection), for the next `lose`
/// puts; after each put it loses, another writer adds `then_add` to the
/// value (unconditionally) before the error is answered. Other calls pass.
#[derive(Debug)]
struct PutRepliesLost {
    inner: DynBackend,
    lose: AtomicU32,
    then_add: AtomicU64,
}

impl std::fmt::Display for PutRepliesLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PutRepliesLost({})", self.inner)
    }
}

#[coord_api::async_trait]
impl coord_api::spi::Dispatch for PutRepliesLost {
    fn namespace(&self) -> &coord_api::Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> coord_api::spi::Families {
        coord_api::spi::Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: coord_api::spi::Call) -> Result<coord_api::spi::Reply> {
        let put = call.op().family == "state" && call.op().name == "put";
        let reply = call.run(self.inner.clone()).await;
        let lost = put
            && self
                .lose
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if !lost {
            return reply;
        }
        let add = self.then_add.load(SeqCst);
        if add > 0 {
            another_writer_adds(&self.inner, add).await?;
        }
        Err(Error::unavailable(self, "the reply was lost"))
    }
}

/// A typed value with text, numbers, a list and an option.
type Config = (String, u32, Vec<bool>, Option<i64>);

/// Instance `b` over a [`PutRepliesLost`] of the harness's backend
/// (losing nothing until told).
async fn lossy_client(ctx: &Ctx<'_>) -> (Arc<coord_api::spi::Dispatched<PutRepliesLost>>, Client) {
    let lossy = PutRepliesLost {
        inner: ctx.backend().await,
        lose: AtomicU32::new(0),
        then_add: AtomicU64::new(0),
    };
    let lossy = Arc::new(coord_api::spi::Dispatched::new(lossy));
    let b = Client::builder(lossy.clone())
        .instance_id("b")
        .unwrap()
        .build();
    (lossy, b)
}

cases! {
    family: "state", needs: [Need::State];

/// A typed value put by one client is read back equal by another, with the
/// version the put returned; a key never written is absent.
pub async fn state_put_get_round_trip_typed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let value: Config = ("ünï 🚀 \"q\"\n".into(), u32::MAX, vec![true, false], Some(i64::MIN));
    assert_eq!(b.state::<Config>(K).get().await.expect("get"), None);
    let version = a.state::<Config>(K).put(&value).await.expect("put");
    assert!(version > 0, "a version is never 0");
    let got = b.state::<Config>(K).get().await.expect("get").expect("present");
    assert_eq!((got.value, got.version, got.expires_in), (value, version, None));
}

/// Every change of a key (put, compare-and-set, update, delete, put again)
/// has a version above all before it; in a space, across its keys too.
pub async fn state_versions_strictly_increase(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut seen = vec![number(&a).put(&1).await.unwrap()];
    let last = *seen.last().unwrap();
    seen.push(set(number(&b).compare_and_set(Some(last), &2).await.unwrap(), "cas"));
    seen.push(number(&a).update(|n| n.unwrap() + 1).await.unwrap().version);
    seen.push(number(&b).delete().await.unwrap().expect("was present"));
    seen.push(number(&a).put(&9).await.unwrap());
    let space = a.state_space::<u64>("s");
    for i in 0..6 {
        seen.push(space.value(&format!("k{}", i % 3)).put(&i).await.unwrap());
    }
    assert!(seen[..5].windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen[5..].windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

/// A compare-and-set writes only from the version expected (`None`: only
/// if absent); otherwise it writes nothing and returns the current value
/// and version.
pub async fn state_compare_and_set_from_read_version(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let v1 = set(number(&a).compare_and_set(None, &1).await.unwrap(), "absent");
    let lost = number(&b).compare_and_set(None, &7).await.unwrap();
    match lost {
        CasOutcome::Conflict(Some(now)) => assert_eq!((now.value, now.version, now.expires_in), (1, v1, None)),
        other => panic!("absent expected, but present: {other:?}"),
    }
    let v2 = set(number(&b).compare_and_set(Some(v1), &2).await.unwrap(), "from v1");
    match number(&a).compare_and_set(Some(v1), &3).await.unwrap() {
        CasOutcome::Conflict(Some(now)) => assert_eq!((now.value, now.version), (2, v2)),
        other => panic!("a stale version: {other:?}"),
    }
    assert_eq!(number(&a).get().await.unwrap().unwrap().value, 2);
    number(&a).delete().await.unwrap();
    let stale = number(&b).compare_and_set(Some(v2), &4).await.unwrap();
    assert_eq!(stale, CasOutcome::Conflict(None), "absent now");
}

/// Of clients racing to create a value with compare-and-set from absent,
/// exactly one wins.
pub async fn state_compare_and_set_absent_creates_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let c = ctx.client(&format!("c{i}")).await;
        tasks.push(tokio::spawn(async move {
            number(&c).compare_and_set(None, &i).await.expect("cas")
        }));
    }
    let mut wins = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if let CasOutcome::Set(v) = t.await.expect("task") {
            wins.push((i as u64, v));
        }
    }
    assert_eq!(wins.len(), 1, "{wins:?}");
    let now = number(&ctx.client("r").await).get().await.unwrap().unwrap();
    assert_eq!((now.value, now.version), wins[0]);
}

/// A counter incremented through `update` by many clients at once ends
/// exact: no update is lost.
pub async fn state_update_counter_exact_under_contention(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = ctx.client(&format!("c{i}")).await;
        tasks.push(tokio::spawn(async move {
            let counter = number(&c).max_attempts(1_000);
            for _ in 0..25 {
                counter.update(|n| n.copied().unwrap_or(0) + 1).await.expect("update");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let end = number(&ctx.client("r").await).get().await.unwrap().unwrap();
    assert_eq!(end.value, 200);
}

/// An `update` that loses the race on every attempt gives up with
/// `Error::Conflict` naming the key and its attempts, and writes nothing.
pub async fn state_update_gives_up_with_conflict(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    number(&a).put(&0).await.unwrap();
    let (rival, b) = rival_client(&ctx).await;
    let calls = AtomicUsize::new(0);
    let res = number(&b)
        .max_attempts(3)
        .update(|n| {
            calls.fetch_add(1, SeqCst);
            n.unwrap() + 1_000
        })
        .await;
    match res {
        Err(Error::Conflict { key, attempts: 3, .. }) => assert_eq!(key, K),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(calls.load(SeqCst), 3, "one computation per attempt");
    assert_eq!(rival.get_ref().writes.load(SeqCst), 3);
    let end = number(&a).get().await.unwrap().unwrap();
    assert_eq!(end.value, 3, "only the rival's writes");
}

/// An `update` whose write's reply was lost (applied, the answer dropped)
/// sends the write again under its call's id: the backend answers it with
/// the version it made and writes nothing, even once another writer
/// changed the value since; the update returns that write. An update
/// whose every send's reply was lost (`UPDATE_RESENDS` resends) fails
/// retryable, having written once.
pub async fn state_update_retried_after_a_lost_reply_applies_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    number(&a).put(&0).await.unwrap();
    let (lossy, b) = lossy_client(&ctx).await;
    let (lose, then_add) = (&lossy.get_ref().lose, &lossy.get_ref().then_add);
    let add = |n: Option<&u64>| n.copied().unwrap_or(0) + 1;
    lose.store(1, SeqCst);
    let once = number(&b).update(add).await.expect("sent again, answered");
    let now = number(&a).get().await.unwrap().unwrap();
    assert_eq!((once.value, once.version), (1, now.version), "written once");
    assert_eq!(now.value, 1, "written once");
    // Another writer in between: the write sent again is still its own.
    lose.store(1, SeqCst);
    then_add.store(10, SeqCst);
    let once = number(&b).update(add).await.expect("sent again, answered");
    assert_eq!(once.value, 2, "its own write");
    let now = number(&a).get().await.unwrap().unwrap();
    assert_eq!(now.value, 12, "1 + 1, then the other writer's 10; not 13");
    assert!(once.version < now.version, "{once:?} before {now:?}");
    // Every send's reply lost: the error, and one write.
    let sends = coord_api::UPDATE_RESENDS + 1;
    lose.store(sends, SeqCst);
    then_add.store(0, SeqCst);
    let lost = number(&b).update(add).await;
    assert!(matches!(&lost, Err(e) if e.is_retryable()), "{lost:?}");
    assert_eq!(lose.load(SeqCst), 0, "sent {sends} times");
    assert_eq!(number(&a).get().await.unwrap().unwrap().value, 13, "written once");
}

/// A compare-and-set or a put whose reply is lost (applied, answered
/// `Unavailable`) is sent again under the same call, as an update's write
/// is: the one that had landed is answered with the version it made, even
/// when another writer changed the value since. So the winner of a
/// compare-and-set is not told `Conflict` with its own write (the caller's
/// own retry would be), and the write lands once: the other writer's value
/// stands. When every send's reply is lost, the error, one write.
pub async fn state_write_whose_reply_is_lost_is_answered_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let v0 = number(&a).put(&0).await.unwrap();
    let (lossy, b) = lossy_client(&ctx).await;
    let (lose, then_add) = (&lossy.get_ref().lose, &lossy.get_ref().then_add);
    lose.store(1, SeqCst);
    let set = number(&b).compare_and_set(Some(v0), &1).await;
    let now = number(&a).get().await.unwrap().unwrap();
    assert_eq!(now.value, 1, "written once");
    let set = set.expect("sent again, answered");
    assert_eq!(set, CasOutcome::Set(now.version), "its own write");
    // Another writer in between: the compare-and-set sent again is
    // answered with its own version, and writes nothing more.
    lose.store(1, SeqCst);
    then_add.store(10, SeqCst);
    let set = number(&b).compare_and_set(Some(now.version), &2).await;
    let later = number(&a).get().await.unwrap().unwrap();
    assert_eq!(later.value, 12, "2, then the other writer's 10, and no more");
    let v2 = set.expect("sent again, answered").version().expect("set");
    assert!(now.version < v2 && v2 < later.version, "{v2}: {later:?}");
    // A put the same way: its own version, the other writer's value stands.
    lose.store(1, SeqCst);
    let put = number(&b).put(&5).await.expect("sent again, answered");
    let last = number(&a).get().await.unwrap().unwrap();
    assert_eq!(last.value, 15, "5, then 10 added; not put again over it");
    assert!(later.version < put && put < last.version, "{put}: {last:?}");
    // Every send's reply lost: the error (retryable), one write.
    lose.store(coord_api::UPDATE_RESENDS + 1, SeqCst);
    then_add.store(0, SeqCst);
    let lost = number(&b).compare_and_set(Some(last.version), &7).await;
    assert!(matches!(&lost, Err(e) if e.is_retryable()), "{lost:?}");
    assert_eq!(lose.load(SeqCst), 0, "sent {} times", coord_api::UPDATE_RESENDS + 1);
    let end = number(&a).get().await.unwrap().unwrap();
    assert_eq!(end.value, 7, "written once");
}

/// A put's call is remembered while its change is in the space's log and
/// no longer (rules 3 and 5 of `spi::state`): sent again while it is, the
/// put is answered with its version; once later changes pushed it out (a
/// read of the changes after it reports a gap), the same put is judged by
/// its expectation like any other.
pub async fn state_put_call_forgotten_once_its_change_left_the_log(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let state = backend.state().expect("offered");
    let (space, named, other) = (key(K), key("named"), key("other"));
    let put = || state.put(&space, &named, b"1".to_vec(), Expect::Absent, None, 0x5eed);
    let Written::Done(v) = put().await.unwrap() else {
        panic!("a put of an absent key")
    };
    let again = put().await.unwrap();
    assert!(matches!(again, Written::Done(w) if w == v), "remembered: {again:?}");
    let everything = Select::Prefix(String::new());
    let mut written = 0;
    while state.changes(&space, &everything, v - 1, 1).await.unwrap().gap.is_none() {
        assert!(written < 4 * CHANGES_KEPT, "the log keeps {written} changes more");
        let n = written.to_string().into_bytes();
        state.put(&space, &other, n, Expect::Any, None, 0).await.unwrap();
        written += 1;
    }
    match put().await.unwrap() {
        Written::Conflict(Some(now)) => assert_eq!(now.version, v, "the entry it made"),
        forgot => panic!("{written} changes later, the call is still remembered: {forgot:?}"),
    }
}

/// An `update` whose back-off is `Duration::MAX` (valid: above zero, the
/// initial at most the max) waits "for ever" after a conflict, and never
/// panics (whatever wait it draws: sixteen of them here).
pub async fn state_update_extreme_backoff_does_not_panic(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    number(&a).put(&0).await.unwrap();
    let (rival, b) = rival_client(&ctx).await;
    let forever = coord_api::Backoff { initial: Duration::MAX, max: Duration::MAX };
    let update = number(&b).max_attempts(2).backoff(forever);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let update = update.clone();
            tokio::spawn(async move { update.update(|n| n.unwrap() + 1).await })
        })
        .collect();
    // Each first attempt conflicts (the rival writes first); then it waits.
    let rival_wrote = || async { (rival.get_ref().writes.load(SeqCst) == 16).then_some(()) };
    eventually(ms(5_000), rival_wrote).await.expect("every first attempt");
    sleep(ms(200)).await;
    for task in tasks {
        assert!(!task.is_finished(), "waiting after the conflict: {:?}", task.await);
        task.abort();
    }
}

/// A delete is a change with a version; the value is then absent; a delete
/// of an absent value changes nothing; a compare-and-delete needs the
/// current version.
pub async fn state_delete_reports_version_and_absence(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let v1 = number(&a).put(&1).await.unwrap();
    let v2 = number(&a).put(&2).await.unwrap();
    let stale = number(&a).compare_and_delete(v1).await.unwrap();
    assert!(matches!(stale, CasOutcome::Conflict(Some(ref n)) if n.version == v2), "{stale:?}");
    let gone = set(number(&a).compare_and_delete(v2).await.unwrap(), "delete");
    assert!(gone > v2);
    assert_eq!(number(&a).get().await.unwrap(), None);
    assert_eq!(number(&a).delete().await.unwrap(), None, "already absent");
    let v3 = number(&a).put(&3).await.unwrap();
    assert!(v3 > gone);
}

/// A value put with a TTL is there with its time left, and gone once the
/// TTL passed; a put without a TTL clears it.
pub async fn state_ttl_expires_value(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let short = number(&a).ttl(Some(ms(300)));
    short.put(&1).await.unwrap();
    let got = number(&a).get().await.unwrap().expect("present");
    let left = got.expires_in.expect("a TTL");
    assert!(left <= ms(300) && left > ms(100), "{left:?}");
    sleep(ms(450)).await;
    assert_eq!(number(&a).get().await.unwrap(), None, "expired");
    short.put(&2).await.unwrap();
    number(&a).put(&3).await.unwrap();
    sleep(ms(450)).await;
    let kept = number(&a).get().await.unwrap().expect("no TTL any more");
    assert_eq!((kept.value, kept.expires_in), (3, None));
}

/// A value over 64 KiB, a bad TTL, a bad key are `InvalidArgument` naming
/// the key and the limit, before any I/O (the backend is cut off); so is
/// an update's value over the limit, before any write.
pub async fn state_bad_input_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, switch) = ctx.switchable_client("a", default_options()).await;
    switch.off();
    let big = "x".repeat(MAX_VALUE_BYTES);
    let text = c.state::<String>(K);
    for res in [
        text.put(&big).await.map(drop),
        text.compare_and_set(Some(3), &big).await.map(drop),
        c.state_space::<String>("s").value("k").put(&big).await.map(drop),
        text.clone().ttl(Some(Duration::ZERO)).put(&"a".into()).await.map(drop),
        text.clone().ttl(Some(MAX_TTL * 2)).put(&"a".into()).await.map(drop),
        c.state::<u8>("").get().await.map(drop),
    ] {
        assert_invalid(res, "refused before I/O");
    }
    let e = text.put(&big).await.unwrap_err().to_string();
    assert!(e.contains(K) && e.contains(&MAX_VALUE_BYTES.to_string()), "{e}");
    switch.on();
    text.put(&"small".into()).await.unwrap();
    assert_invalid(text.update(|_| big.clone()).await, "an update too large");
    assert_eq!(text.get().await.unwrap().unwrap().value, "small");
}

/// A space holds at most 1,000 keys: a new key past them is refused with
/// `InvalidArgument` naming the space; existing keys still change.
pub async fn state_space_full_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let space = a.state_space::<u64>("full");
    for i in 0..MAX_SPACE_KEYS as u64 {
        space.value(&format!("k{i}")).put(&i).await.expect("within the limit");
    }
    let e = space.value("one-more").put(&0).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("full/one-more"), "{e}");
    space.value("k0").put(&7).await.expect("an existing key");
    space.value("k1").delete().await.unwrap();
    space.value("one-more").put(&0).await.expect("room again");
}

/// A stored value that does not decode as the handle's type is an error
/// naming the key, the type and the backend, not a wrong value.
pub async fn state_value_of_another_type_is_an_error(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    a.state::<String>(K).put(&"text".into()).await.unwrap();
    let e = a.state::<u64>(K).get().await.unwrap_err();
    let backend = a.backend().to_string();
    assert!(matches!(&e, Error::Backend { backend: b, .. } if *b == backend), "{e:?}");
    let e = e.to_string();
    assert!(e.contains(K) && e.contains("u64"), "{e}");
}

/// A value JSON cannot carry back as its type (a NaN or infinite float:
/// serde_json writes `null`, which no `f64` reads) is `InvalidArgument`
/// naming the key, before any I/O, from a put, a compare-and-set and an
/// update alike; nothing is written, and the value stays readable.
pub async fn state_value_that_does_not_read_back_is_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let ratio = a.state::<f64>(K);
    let v1 = ratio.put(&0.5).await.unwrap();
    let (c, switch) = ctx.switchable_client("c", default_options()).await;
    switch.off();
    let cut = c.state::<f64>(K);
    for res in [
        cut.put(&f64::NAN).await.map(drop),
        cut.compare_and_set(Some(v1), &f64::INFINITY).await.map(drop),
    ] {
        let e = res.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "refused before I/O: {e:?}");
        assert!(e.to_string().contains(K) && e.to_string().contains("f64"), "{e}");
    }
    switch.on();
    assert_invalid(ratio.put(&f64::NEG_INFINITY).await, "a put");
    let calls = AtomicUsize::new(0);
    let updated = ratio
        .update(|_| {
            calls.fetch_add(1, SeqCst);
            f64::NAN
        })
        .await;
    assert_invalid(updated, "an update");
    assert_eq!(calls.load(SeqCst), 1, "refused, not retried");
    let now = ratio.get().await.expect("still readable").expect("present");
    assert_eq!((now.value, now.version), (0.5, v1), "nothing written");
}
}
