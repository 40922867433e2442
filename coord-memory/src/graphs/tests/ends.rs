//! Counting (rule 8), the end of a run and its retention (rule 7), and
//! wake-ups (rule 9).

use super::*;

// Rule 8: counting.

#[tokio::test(start_paused = true)]
async fn every_change_of_a_node_counts_one_transition() {
    let t = T::new();
    t.submit(
        "r",
        vec![
            node("a", &[]).max_attempts(2),
            node("b", &[(0, On::Success)]),
        ],
    )
    .await;
    let mut seen = vec![t.status("r").await.transitions];
    let a = t.take().await;
    seen.push(t.status("r").await.transitions);
    t.fail(&a, Some(Duration::ZERO)).await;
    seen.push(t.status("r").await.transitions);
    let a = t.take().await;
    t.ok(&a).await; // a succeeded, b ready
    seen.push(t.status("r").await.transitions);
    t.take().await;
    advance(TTL).await; // b expired, its last attempt: failed
    let s = t.status("r").await;
    seen.push(s.transitions);
    assert_eq!(seen, [0, 1, 2, 5, 7]);
    assert_eq!(s.state, RunState::Failed);
}

// Rule 7 and retention.

#[tokio::test(start_paused = true)]
async fn an_ended_run_is_kept_for_its_retention_then_forgotten() {
    let t = T::new();
    let nodes = || vec![node("a", &[])];
    t.submit("r", nodes()).await;
    let a = t.take().await;
    advance(SEC).await;
    assert_eq!(t.ok(&a).await, recorded(Succeeded, RunState::Succeeded));
    let s = t.status("r").await;
    assert_eq!(s.ended_at, Some(s.submitted_at + SEC));
    assert_eq!(s.nodes[0].ended_at, s.ended_at);
    assert_eq!(
        t.submit("r", nodes()).await,
        Submit::Exists { same_graph: true }
    );
    advance(KEEP - Duration::from_millis(1)).await;
    assert_eq!(t.status("r").await.state, RunState::Succeeded);
    advance(Duration::from_millis(1)).await;
    assert_eq!(t.b.status(&t.g, &k("r"), false).await.unwrap(), None);
    assert_eq!(t.cancel("r").await, Cancel::NotFound);
    // Submitted anew, with tokens still above the old run's.
    assert_eq!(t.submit("r", nodes()).await, Submit::Created);
    assert_eq!(t.states("r").await, [Ready]);
    assert!(t.take().await.token > a.token);
}

#[tokio::test(start_paused = true)]
async fn the_store_forgets_ended_runs_and_idle_graphs_in_its_sweep() {
    let t = T::new();
    let spec = spec(vec![node("a", &[])]);
    for i in 0..256 {
        let g = k(&format!("g{i}"));
        t.b.submit(&g, &k("r"), &spec, KEEP).await.unwrap();
        t.b.cancel(&g, &k("r"), "done").await.unwrap();
    }
    assert_eq!(t.b.store.graphs().map.len(), 256);
    advance(MAX_TTL + KEEP + SEC).await;
    t.submit("r", vec![node("a", &[])]).await;
    assert_eq!(t.b.store.graphs().map.len(), 1);
}

// Rule 9: wake-ups.

#[tokio::test(start_paused = true)]
async fn watches_wake_when_a_node_is_made_ready_or_a_run_changes() {
    let t = T::new();
    let mut ready = t.b.watch_ready(&t.g).await.unwrap();
    let mut run = t.b.watch_run(&t.g, &k("r")).await.unwrap();
    let mut other = t.b.watch_run(&t.g, &k("r2")).await.unwrap();
    t.submit(
        "r",
        vec![
            node("a", &[]).max_attempts(3),
            node("b", &[(0, On::Success)]),
        ],
    )
    .await;
    assert!(woke(&mut ready).await, "submit made a ready");
    assert!(!woke(&mut run).await, "submit counts no transition");
    let a = t.take().await;
    assert!(woke(&mut run).await, "take");
    assert!(!woke(&mut ready).await, "take made nothing ready");
    assert_eq!(t.renew(&a).await, Renew::Renewed);
    assert!(!woke(&mut run).await, "a renewal changes no state");
    t.fail(&a, Some(5 * SEC)).await;
    assert!(woke(&mut ready).await && woke(&mut run).await, "retry");
    // The delay passes without a wake-up.
    let quiet = tokio::time::timeout(6 * SEC, ready.changed()).await;
    assert!(quiet.is_err());
    let a = t.take().await;
    assert!(woke(&mut run).await);
    // So does the lease's deadline; the step that notices it wakes both.
    let quiet = tokio::time::timeout(TTL + SEC, run.changed()).await;
    assert!(quiet.is_err());
    assert_eq!(t.renew(&a).await, Renew::Lost);
    assert!(woke(&mut ready).await && woke(&mut run).await, "expiry");
    let a = t.take().await;
    assert!(woke(&mut run).await);
    t.ok(&a).await;
    assert!(
        woke(&mut ready).await && woke(&mut run).await,
        "b resolved ready"
    );
    let b = t.take().await;
    t.ok(&b).await;
    assert!(!woke(&mut ready).await && woke(&mut run).await, "run ended");
    assert!(!woke(&mut other).await, "another run");
    t.submit("r2", vec![node("a", &[]), node("b", &[])]).await;
    assert_eq!(t.cancel("r2").await, Cancel::Cancelled { running: 0 });
    assert!(woke(&mut other).await && !woke(&mut run).await, "cancel");
}

// Rule 4's completion that takes the next node, and rule 9.

/// A completion that asks for the next node takes it in its step, after
/// resolving (the node it made ready first, being the only one): that
/// step wakes no `watch_ready` watcher, since nothing it made ready is left
/// to take. A completion that does not ask wakes them.
#[tokio::test(start_paused = true)]
async fn a_completion_that_takes_what_it_made_ready_wakes_nobody() {
    let t = T::new();
    let chain = || vec![node("a", &[]), node("b", &[(0, On::Success)])];
    t.submit("r", chain()).await;
    let mut w = t.b.watch_ready(&t.g).await.unwrap();
    let a = t.take().await;
    let ok = || NodeResult::Success(b"1".to_vec());
    let next = Some((t.h.clone(), TTL));
    let done =
        (t.b.complete(&t.g, &a.run, &a.node, a.token, ok(), next.clone()))
            .await
            .unwrap();
    let Complete::Recorded {
        state: Succeeded,
        next: Some(Take::Taken(b)),
        ..
    } = done
    else {
        panic!("b taken with a's completion: {done:?}");
    };
    assert_eq!((b.node.as_str(), b.attempt), ("b", 1));
    assert!(b.token > a.token);
    assert!(
        !woke(&mut w).await,
        "b was taken in the step that made it ready"
    );
    let last = (t.b.complete(&t.g, &b.run, &b.node, b.token, ok(), next)).await;
    assert_eq!(
        last.unwrap(),
        Complete::Recorded {
            state: Succeeded,
            run: RunState::Succeeded,
            next: Some(Take::Idle { next_in: None }),
        }
    );
    t.submit("r2", chain()).await;
    assert!(woke(&mut w).await, "r2's root is ready");
    let a = t.take().await;
    t.ok(&a).await;
    assert!(woke(&mut w).await, "b made ready and left to take");
}
