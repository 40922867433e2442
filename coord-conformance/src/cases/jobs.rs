//! Singleton jobs: `Job::run` and run-once occurrences.

use coord_api::spi::OnceState;

use crate::cases::prelude::*;

cases! {
    family: "jobs", needs: [];

/// Six instances call `run_once` on one occurrence at the same time: exactly
/// one runs it (alone), the others answer `AlreadyFinished`.
#[needs(Need::Jobs)]
pub async fn run_once_runs_once_across_instances(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let runs = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let job = ctx.client(&format!("c{i}")).await.job("nightly");
        let (runs, inside, most) = (runs.clone(), inside.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            job.run_once("2026-11-26", |ctx| async move {
                runs.fetch_add(1, SeqCst);
                let n = inside.fetch_add(1, SeqCst) + 1;
                most.fetch_max(n, SeqCst);
                sleep(ms(50)).await;
                inside.fetch_sub(1, SeqCst);
                ctx.attempt
            })
            .await
        }));
    }
    let mut ran = 0;
    for t in tasks {
        match join(t, ms(5000), "run_once").await.unwrap() {
            RunOnce::Ran(attempt) => {
                assert_eq!(attempt, 1);
                ran += 1;
            }
            RunOnce::AlreadyFinished => {}
            other => panic!("run_once answered {other:?}, which this case does not know"),
        }
    }
    assert_eq!((ran, runs.load(SeqCst)), (1, 1), "exactly one run");
    assert_eq!(most.load(SeqCst), 1);
}

/// Once a run finished, later instances get `AlreadyFinished` without
/// running the body.
#[needs(Need::Jobs)]
pub async fn run_once_never_reruns_finished(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let first = a.job("j").run_once("o", |c| async move { c.token }).await;
    assert!(matches!(first, Ok(RunOnce::Ran(_))), "{first:?}");
    for name in ["a", "b", "c"] {
        let c = ctx.client(name).await;
        let res = at_once(c.job("j").run_once("o", |_| async { panic!("ran again") })).await;
        assert_eq!(res.unwrap(), RunOnce::<()>::AlreadyFinished, "{name}");
    }
}

/// A body that returned an `Err` finished the occurrence as much as one
/// that returned `Ok`: `run_once` hands the `Err` back (`Ran`), and later
/// calls answer `AlreadyFinished` without running the body.
#[needs(Need::Jobs)]
pub async fn run_once_body_returning_err_finished_the_occurrence(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let failed = a.job("j").run_once("o", |_| async { Err::<(), _>("disk full") }).await;
    assert_eq!(failed.unwrap(), RunOnce::Ran(Err("disk full")));
    for name in ["a", "b"] {
        let c = ctx.client(name).await;
        let again = at_once(c.job("j").run_once("o", |_| async { panic!("ran again") })).await;
        assert_eq!(again.unwrap(), RunOnce::<()>::AlreadyFinished, "{name}");
    }
}

/// A run whose instance is cut off mid-body is retried by another instance
/// only after its lease expired (the first run had already learnt it lost),
/// with attempt 2; then the occurrence is finished for everyone.
#[needs(Need::Jobs)]
pub async fn crashed_run_retried_after_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(500)))
        .await;
    let (b, c) = (ctx.client("b").await, ctx.client("c").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job_a = a.job("j");
    let first = tokio::spawn(async move {
        job_a
            .run_once("o", |ctx| async move {
                tx.send((ctx.lost.clone(), Instant::now(), ctx.attempt))
                    .unwrap();
                switch.off(); // crash mid-body: no renewal, no end
                ctx.lost.wait().await;
            })
            .await
    });
    let (lost_a, t_a, attempt_a) = timeout(ms(2000), rx.recv())
        .await
        .expect("a starts")
        .unwrap();
    assert_eq!(attempt_a, 1);
    let res = b
        .job("j")
        .run_once("o", |ctx| async move {
            (ctx.attempt, lost_a.is_lost(), Instant::now())
        })
        .await
        .unwrap();
    let RunOnce::Ran((attempt, a_lost_then, t_b)) = res else {
        panic!("b should retry the crashed run, got {res:?}");
    };
    assert_eq!(attempt, 2, "the retry is attempt 2");
    assert!(a_lost_then, "b ran while a still believed it ran");
    assert!(
        t_b - t_a >= ms(450),
        "retried {:?} after the first start, TTL 500 ms",
        t_b - t_a
    );
    assert!(
        t_b - t_a <= ms(500 + 1000),
        "retried only after {:?}",
        t_b - t_a
    );
    let first = join(first, ms(3000), "a's run").await;
    assert!(first.is_err(), "the crashed run did not finish: {first:?}");
    let later = c.job("j").run_once("o", |_| async {}).await.unwrap();
    assert_eq!(later, RunOnce::AlreadyFinished);
}

/// A body that outlives its never-renewed lease does not count as finished
/// (`LeaseLost`), and another instance retries the occurrence after the TTL
/// with attempt 2, once the first body's lost signal has fired.
#[needs(Need::Jobs)]
pub async fn run_outliving_its_lease_is_retried(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(300)).await;
    let b = ctx.client("b").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job_a = a.job("j");
    let first = tokio::spawn(async move {
        job_a
            .run_once("o", |ctx| async move {
                tx.send(ctx.lost.clone()).unwrap();
                sleep(ms(800)).await; // outlives the 300 ms lease
            })
            .await
    });
    let lost_a = timeout(ms(2000), rx.recv())
        .await
        .expect("a starts")
        .unwrap();
    let t0 = Instant::now();
    let res = b
        .job("j")
        .run_once("o", |ctx| async move { (ctx.attempt, lost_a.is_lost()) })
        .await
        .unwrap();
    assert_eq!(res, RunOnce::Ran((2, true)), "retry after the TTL");
    assert!(
        t0.elapsed() >= ms(250),
        "retried {:?} after start",
        t0.elapsed()
    );
    let first = join(first, ms(3000), "a's run").await;
    assert!(
        matches!(first, Err(Error::LeaseLost { .. })),
        "a's late end is LeaseLost: {first:?}"
    );
}

/// A run whose body returned while its lease was held, and whose end met a
/// transient error (the backend unreachable for 20 ms), sends its end again
/// while its lease is still held: the occurrence is finished, `run_once`
/// answers `Ran`, and another instance answers `AlreadyFinished` without
/// running the body a second time.
#[needs(Need::Jobs)]
pub async fn finished_run_not_rerun_after_end_blip(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(1000)))
        .await;
    let b = ctx.client("b").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let (r, sw) = (runs.clone(), switch.clone());
    let first = a
        .job("j")
        .run_once("o", |_| async move {
            r.fetch_add(1, SeqCst);
            // A 20 ms blip, just as the body ends.
            sw.off();
            let sw = sw.clone();
            tokio::spawn(async move {
                sleep(ms(20)).await;
                sw.on();
            });
        })
        .await;
    let r = runs.clone();
    let second = timeout(
        ms(3000),
        b.job("j").run_once("o", |_| async move {
            r.fetch_add(1, SeqCst);
        }),
    )
    .await
    .expect("b answers");
    assert_eq!(
        runs.load(SeqCst),
        1,
        "the body ran twice: a's run_once answered {first:?}, b's {second:?}"
    );
    assert!(matches!(first, Ok(RunOnce::Ran(()))), "{first:?}");
    assert!(matches!(second, Ok(RunOnce::AlreadyFinished)), "{second:?}");
}

/// A finished occurrence runs again once its marker's retention passed.
#[needs(Need::Jobs)]
pub async fn run_once_retention_expiry_allows_rerun(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let first = a
        .job("j")
        .retention(ms(300))
        .run_once("o", |_| async {})
        .await;
    assert_eq!(first.unwrap(), RunOnce::Ran(()));
    let again = b.job("j").run_once("o", |_| async {}).await.unwrap();
    assert_eq!(again, RunOnce::AlreadyFinished, "within the retention");
    sleep(ms(300)).await; // let the retention pass
    let rerun = eventually(ms(1000), || async {
        match b.job("j").run_once("o", |_| async {}).await.unwrap() {
            RunOnce::Ran(()) => Some(()),
            RunOnce::AlreadyFinished => None,
            other => panic!("run_once answered {other:?}, which this case does not know"),
        }
    })
    .await;
    assert!(rerun.is_some(), "still finished after the retention");
}

/// A rerun after the retention passed is the occurrence's next attempt:
/// attempt 2 after one run, attempt 3 after two (the count outlives the
/// retention, decision 0007), with a larger token each time.
#[needs(Need::Jobs)]
pub async fn rerun_after_retention_counts_the_next_attempt(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let job = a.job("j").retention(ms(200));
    let mut seen = Vec::new();
    for round in 0..3 {
        let ran = eventually(ms(2000), || async {
            match job.run_once("o", |c| async move { (c.attempt, c.token) }).await.unwrap() {
                RunOnce::Ran(v) => Some(v),
                RunOnce::AlreadyFinished => None,
                other => panic!("run_once answered {other:?}, which this case does not know"),
            }
        });
        let ran = ran.await.unwrap_or_else(|| panic!("round {round} never ran"));
        seen.push(ran);
        sleep(ms(250)).await; // the retention passes
    }
    let attempts: Vec<u32> = seen.iter().map(|(attempt, _)| *attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1].1 > w[0].1), "tokens increase: {seen:?}");
}

/// Occurrences are independent: finishing one leaves the others (and the
/// same occurrence of another job) to run.
#[needs(Need::Jobs)]
pub async fn run_once_occurrences_independent(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ran = |r: coord_api::Result<RunOnce<()>>| r.unwrap() == RunOnce::Ran(());
    assert!(ran(a.job("j").run_once("t1", |_| async {}).await));
    assert!(ran(b.job("j").run_once("t2", |_| async {}).await));
    assert!(ran(b.job("other").run_once("t1", |_| async {}).await));
    assert!(!ran(b.job("j").run_once("t1", |_| async {}).await));
    assert!(!ran(a.job("j").run_once("t2", |_| async {}).await));
}

/// `Job::run` runs bodies one at a time across instances, each with a fencing
/// token greater than the previous run's.
#[needs(Need::Locks)]
pub async fn job_run_is_exclusive_with_token(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::<FencingToken>::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let job = ctx.client(&format!("c{i}")).await.job("j");
        let (inside, most, tokens) = (inside.clone(), most.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                let (inside, most, tokens) = (inside.clone(), most.clone(), tokens.clone());
                job.run(|ctx| async move {
                    assert!(!ctx.lost.is_lost());
                    assert_eq!(ctx.attempt, 1);
                    let n = inside.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(n, SeqCst);
                    tokens.lock().unwrap().push(ctx.token);
                    sleep(ms(10)).await;
                    inside.fetch_sub(1, SeqCst);
                })
                .await
                .expect("ran");
            }
        }));
    }
    for t in tasks {
        join(t, ms(10_000), "job runner").await;
    }
    assert_eq!(most.load(SeqCst), 1, "two bodies at once");
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 8);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// A `Job::run` whose lease was lost while the body ran (the instance cut
/// off from the backend, so that the release fails too) still returns the
/// body's value.
#[needs(Need::Locks)]
pub async fn job_run_returns_value_after_lease_lost(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(300)))
        .await;
    let sw = switch.clone();
    let out = timeout(
        ms(3000),
        a.job("j").run(|ctx| async move {
            sw.off(); // cut off mid-body: the lease is lost
            ctx.lost.wait().await;
            42u32
        }),
    )
    .await
    .expect("run returns");
    assert!(
        matches!(out, Ok(42)),
        "the body ran to completion but run() lost its value: {out:?}"
    );
}

/// A bad occurrence key, an empty job name, a zero TTL and a zero retention
/// are `InvalidArgument` at once, without running the body.
#[needs(Need::Jobs)]
pub async fn job_invalid_input_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let body = |_| async { panic!("the body ran") };
    let long = "o".repeat(513);
    let bad = [
        ("empty occurrence", a.job("j"), ""),
        ("control character occurrence", a.job("j"), "a\nb"),
        ("513-byte occurrence", a.job("j"), long.as_str()),
        ("empty job", a.job(""), "o"),
        ("zero ttl", a.job("j").ttl(Duration::ZERO), "o"),
        ("zero retention", a.job("j").retention(Duration::ZERO), "o"),
    ];
    for (what, job, occ) in bad {
        assert_invalid(at_once(job.run_once(occ, body)).await, what);
    }
    assert_invalid(at_once(a.job("").run(body)).await, "run empty job");
    let ok = a.job("j").run_once("o", |_| async {}).await.unwrap();
    assert_eq!(ok, RunOnce::Ran(()), "nothing recorded by the refusals");
}

/// Cancelling `run_once` after its body returned, while the end of the run
/// is on its way (held by a slow network), ends the run unfinished: another
/// instance runs the occurrence at once, as attempt 2, not after the 5 s
/// TTL.
#[needs(Need::Jobs)]
pub async fn cancelled_run_once_ends_run_unfinished(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(5000)))
        .await;
    let b = ctx.client("b").await;
    let sw = switch.clone();
    let job = a.job("j");
    let cancelled = timeout(
        ms(300),
        job.run_once("o", |_| async move {
            // The body is done; the end of the run that follows is held
            // on the way, and the caller gives up.
            sw.holding();
        }),
    )
    .await;
    assert!(cancelled.is_err(), "run_once should still wait on its end: {cancelled:?}");
    switch.on();
    let t0 = Instant::now();
    let out = timeout(
        ms(2000),
        b.job("j").run_once("o", |ctx| async move { ctx.attempt }),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the cancelled run still blocks the occurrence {:?} later (TTL 5 s)",
            t0.elapsed()
        )
    })
    .unwrap();
    assert_eq!(out, RunOnce::Ran(2), "retried as attempt 2");
}

/// A run-once whose begin reply was lost after the backend started the run
/// gives that run back: another instance runs the occurrence within a
/// renewal interval, not after the run's TTL, and as attempt 1, since no
/// body ran under the lost begin.
#[needs(Need::Jobs)]
pub async fn lost_begin_reply_frees_run(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    let job = a.job("j");
    let ran = with_lost_reply(&switch, "run_once", job.run_once("o", |_| async {})).await;
    let _: () = ran;
    let t0 = Instant::now();
    let out = timeout(FREED_WITHIN, b.job("j").run_once("o", |ctx| async move { ctx.attempt }))
        .await
        .unwrap_or_else(|_| panic!("still running {:?} after the lost reply", t0.elapsed()))
        .unwrap();
    assert_eq!(
        out,
        RunOnce::Ran(1),
        "no body ran under the lost begin: its attempt is given back"
    );
}

/// An extend through the SPI by a holder that does not run the occurrence
/// (another client's id; an earlier incarnation of the runner's instance,
/// whose run ended) answers `false` and changes nothing: the run keeps its
/// deadline and its runner, and the attempt count stays.
#[needs(Need::Jobs)]
pub async fn run_extend_by_foreign_or_stale_holder_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.backend().await, ctx.backend().await);
    let (ja, jb) = (job_backend(&a), job_backend(&b));
    let (j, o) = (key("j"), key("o"));
    let (stale, live) = second_attempt(ja, &j, &o).await;
    let left = running_for(ja, &j, &o).await;
    let foreign = holder("b");
    for (who, jobs, by) in [("foreign", jb, &foreign), ("stale", ja, &stale)] {
        let took = jobs.extend(&j, &o, by, ms(60_000)).await.unwrap();
        assert!(!took, "{who} holder's extend accepted");
        let now = running_for(ja, &j, &o).await;
        assert!(now <= left, "{who} holder's extend lengthened the run: {left:?}, then {now:?}");
    }
    assert!(ja.extend(&j, &o, &live, RUN_TTL).await.unwrap(), "the runner's own extend");
    assert!(ja.end(&j, &o, &live, None).await.unwrap(), "still the runner's run");
    assert_next_attempt(ja, &j, &o, 3).await;
}

/// An end through the SPI, finished or not, by a holder that does not run
/// the occurrence (another client's id; an earlier incarnation of the
/// runner's instance, whose run ended) answers `false` and changes nothing:
/// the run goes on with its deadline and runner, nothing is marked finished,
/// and the attempt count stays. A stale end after a run finished leaves the
/// occurrence finished.
#[needs(Need::Jobs)]
pub async fn run_end_by_foreign_or_stale_holder_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.backend().await, ctx.backend().await);
    let (ja, jb) = (job_backend(&a), job_backend(&b));
    let (j, o) = (key("j"), key("o"));
    let (stale, live) = second_attempt(ja, &j, &o).await;
    let left = running_for(ja, &j, &o).await;
    let foreign = holder("b");
    for (who, jobs, by) in [("foreign", jb, &foreign), ("stale", ja, &stale)] {
        for finished in [Some(ms(3_600_000)), None] {
            let ended = jobs.end(&j, &o, by, finished).await.unwrap();
            assert!(!ended, "{who} holder's end ({finished:?}) accepted");
            let now = running_for(ja, &j, &o).await;
            assert!(now <= left, "{who} holder's end lengthened the run: {left:?}, then {now:?}");
        }
    }
    assert!(ja.end(&j, &o, &live, None).await.unwrap(), "still the runner's run");
    assert_next_attempt(ja, &j, &o, 3).await;

    let done = key("done");
    let runner = holder("a");
    let begun = ja.begin(&j, &done, &runner, RUN_TTL).await.unwrap();
    assert!(matches!(begun, OnceBegin::Started { .. }), "{begun:?}");
    assert!(ja.end(&j, &done, &runner, Some(ms(3_600_000))).await.unwrap());
    for (who, jobs, by) in [("foreign", jb, &foreign), ("finished run's", ja, &runner)] {
        assert!(!jobs.end(&j, &done, by, None).await.unwrap(), "{who} end accepted");
        assert!(!jobs.extend(&j, &done, by, RUN_TTL).await.unwrap(), "{who} extend accepted");
    }
    let again = ja.begin(&j, &done, &holder("c"), RUN_TTL).await.unwrap();
    assert_eq!(again, OnceBegin::Finished, "a stale end unmarked the finished run");
}

/// A give-back through the SPI ends the run unfinished and takes back its
/// attempt: the next begin starts the same attempt again. By a holder that
/// does not run the occurrence (another client's id, an earlier run's), or
/// once the run ended, it answers `false` and changes nothing: the run goes
/// on, and no attempt is taken back twice.
#[needs(Need::Jobs)]
pub async fn run_given_back_takes_its_attempt_back(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.backend().await, ctx.backend().await);
    let (ja, jb) = (job_backend(&a), job_backend(&b));
    let (j, o) = (key("j"), key("o"));
    let (stale, live) = second_attempt(ja, &j, &o).await;
    let left = running_for(ja, &j, &o).await;
    let foreign = holder("b");
    for (who, jobs, by) in [("foreign", jb, &foreign), ("stale", ja, &stale)] {
        assert!(!jobs.give_back(&j, &o, by).await.unwrap(), "{who} give-back accepted");
        let now = running_for(ja, &j, &o).await;
        assert!(now <= left, "{who} give-back lengthened the run");
    }
    assert!(ja.give_back(&j, &o, &live).await.unwrap(), "the runner's own");
    assert_state(ja, &j, &o, OnceState::Idle, "given back").await;
    assert!(!ja.give_back(&j, &o, &live).await.unwrap(), "given back twice");
    assert_next_attempt(ja, &j, &o, 2).await;
    assert!(!ja.give_back(&j, &o, &live).await.unwrap(), "after another run");
    assert_next_attempt(ja, &j, &o, 3).await;
}

/// `state` reads an occurrence as a begin would find it, and changes
/// nothing. Never begun, it is `Idle`; running, `Running` with the time
/// left on the lease (the run goes on, its runner's extend accepted);
/// ended unfinished, or expired with nobody having looked since, `Idle`;
/// finished, `Finished` until the retention passed, then `Idle`. However
/// often it was read, the next begin is the attempt after the runs begun.
#[needs(Need::Jobs)]
pub async fn occurrence_state_is_read_without_beginning(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.backend().await;
    let ja = job_backend(&a);
    let (j, o) = (key("j"), key("o"));
    let runner = holder("a");
    assert_state(ja, &j, &o, OnceState::Idle, "never begun").await;
    let begun = ja.begin(&j, &o, &runner, RUN_TTL).await.unwrap();
    let first = matches!(begun, OnceBegin::Started { attempt: 1, .. });
    assert!(first, "the looks counted attempts: {begun:?}");
    for _ in 0..3 {
        match ja.state(&j, &o).await.unwrap() {
            OnceState::Running { retry_in } if retry_in > ms(1000) && retry_in <= RUN_TTL => {}
            other => panic!("running for {RUN_TTL:?}, the occurrence reads {other:?}"),
        }
    }
    let extended = ja.extend(&j, &o, &runner, RUN_TTL).await.unwrap();
    assert!(extended, "the looks took the run from its runner");
    assert!(ja.end(&j, &o, &runner, None).await.unwrap(), "still the runner's run");
    assert_state(ja, &j, &o, OnceState::Idle, "ended unfinished").await;
    assert_next_attempt(ja, &j, &o, 2).await;

    let expired = key("expired");
    begin_and_let_expire(ja, &j, &expired, &runner).await;
    assert_state(ja, &j, &expired, OnceState::Idle, "expired").await;
    assert_next_attempt(ja, &j, &expired, 2).await;

    let done = key("done");
    let begun = ja.begin(&j, &done, &runner, RUN_TTL).await.unwrap();
    assert!(matches!(begun, OnceBegin::Started { attempt: 1, .. }), "{begun:?}");
    assert!(ja.end(&j, &done, &runner, Some(ms(300))).await.unwrap());
    let ended = Instant::now();
    assert_state(ja, &j, &done, OnceState::Finished, "finished").await;
    past_deadline(ended, ms(300)).await;
    assert_state(ja, &j, &done, OnceState::Idle, "past its retention").await;
    assert_next_attempt(ja, &j, &done, 2).await;
}

/// An extend by the runner after its run's lease expired (nobody having
/// looked at the occurrence since) answers `false` and does not bring the
/// run back: the next begin starts attempt 2 at once.
#[needs(Need::Jobs)]
pub async fn run_extend_after_expiry_does_not_revive(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.backend().await;
    let ja = job_backend(&a);
    let (j, o) = (key("j"), key("o"));
    let runner = holder("a");
    begin_and_let_expire(ja, &j, &o, &runner).await;
    let took = ja.extend(&j, &o, &runner, ms(60_000)).await.unwrap();
    assert!(!took, "extend after expiry accepted");
    assert_next_attempt(ja, &j, &o, 2).await;
}

/// An end by the runner after its run's lease expired (nobody having looked
/// at the occurrence since), finished or not, answers `false` and marks
/// nothing: the next begin starts attempt 2 at once.
#[needs(Need::Jobs)]
pub async fn run_end_after_expiry_does_not_revive(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.backend().await;
    let ja = job_backend(&a);
    let (j, o) = (key("j"), key("o"));
    let runner = holder("a");
    begin_and_let_expire(ja, &j, &o, &runner).await;
    for finished in [Some(ms(3_600_000)), None] {
        let ended = ja.end(&j, &o, &runner, finished).await.unwrap();
        assert!(!ended, "end ({finished:?}) after expiry accepted");
    }
    assert_next_attempt(ja, &j, &o, 2).await;
}
}

/// The lease of runs the holder-bound cases begin: long enough that they
/// never expire during a case.
const RUN_TTL: Duration = Duration::from_secs(5);

/// An occurrence in its second attempt: `(stale, live)`, the holder whose
/// first attempt ended (failed) and the holder running the second, both of
/// instance `a`.
async fn second_attempt(jobs: &dyn JobBackend, j: &Key, o: &Key) -> (HolderId, HolderId) {
    let stale = holder("a");
    let first = jobs.begin(j, o, &stale, RUN_TTL).await.unwrap();
    assert!(
        matches!(first, OnceBegin::Started { attempt: 1, .. }),
        "{first:?}"
    );
    assert!(
        jobs.end(j, o, &stale, None).await.unwrap(),
        "the first attempt fails"
    );
    let live = holder("a");
    let second = jobs.begin(j, o, &live, RUN_TTL).await.unwrap();
    assert!(
        matches!(second, OnceBegin::Started { attempt: 2, .. }),
        "{second:?}"
    );
    (stale, live)
}

/// How long the running attempt has left, as a bystander's begin finds it;
/// panics unless the occurrence runs.
async fn running_for(jobs: &dyn JobBackend, j: &Key, o: &Key) -> Duration {
    match jobs
        .begin(j, o, &holder("bystander"), RUN_TTL)
        .await
        .unwrap()
    {
        OnceBegin::Running { retry_in } => retry_in,
        other => panic!("the occurrence should still run, a bystander's begin found {other:?}"),
    }
}

/// Begins the occurrence as a new holder and panics unless that starts
/// `attempt` (then ends it, failed).
async fn assert_next_attempt(jobs: &dyn JobBackend, j: &Key, o: &Key, attempt: u32) {
    let next = holder("c");
    match jobs.begin(j, o, &next, RUN_TTL).await.unwrap() {
        OnceBegin::Started { attempt: a, .. } if a == attempt => {}
        other => panic!("the next begin should start attempt {attempt}, found {other:?}"),
    }
    assert!(jobs.end(j, o, &next, None).await.unwrap());
}

/// Reads the occurrence three times and panics unless each read is `want`
/// (the occurrence `what`).
async fn assert_state(jobs: &dyn JobBackend, j: &Key, o: &Key, want: OnceState, what: &str) {
    for _ in 0..3 {
        let state = jobs.state(j, o).await.unwrap();
        assert_eq!(state, want, "{o:?} {what}");
    }
}

/// Begins attempt 1 of occurrence `o` of job `j` for `runner` with a 150 ms
/// lease, then waits past its deadline without reading anything (so that a
/// backend cannot hide a missing expiry check behind a read's cleanup).
async fn begin_and_let_expire(ja: &dyn JobBackend, j: &Key, o: &Key, runner: &HolderId) {
    let begun = ja.begin(j, o, runner, ms(150)).await.unwrap();
    let replied = Instant::now();
    assert!(
        matches!(begun, OnceBegin::Started { attempt: 1, .. }),
        "{begun:?}"
    );
    past_deadline(replied, ms(150)).await;
}
