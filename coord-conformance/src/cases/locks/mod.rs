//! The lock family's cases: exclusive and reentrant locks, what every lease
//! of the family does, monitoring, read-write locks, semaphores, invalid
//! input, fair mode, the SPI's notifications, and several locks at once.

use crate::{Harness, cases::prelude::*, runner::Case};

pub mod exclusive;
pub mod fair;
pub mod input;
pub mod lease;
pub mod monitoring;
pub mod multi;
pub mod questions;
pub mod reentrant;
pub mod rwlock;
pub mod semaphore;
pub mod watch;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [
        exclusive::cases(),
        fair::cases(),
        lease::cases(),
        monitoring::cases(),
        questions::cases(),
        multi::cases(),
        rwlock::cases(),
        semaphore::cases(),
        input::cases(),
        watch::cases(),
        reentrant::cases(),
    ]
    .concat()
}

/// The holder of `lease` asks for it again at the SPI: a new grant that
/// replaces its lease (one lease listed in `space`, of the second, larger
/// token), gone after one release. `what` names the lease in failures.
pub(crate) async fn asking_again_replaces(
    h: &dyn Harness,
    lease: LeaseId,
    space: LockSpace,
    what: &str,
) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        match locks(&backend).acquire(&lease, ms(2000)).await.unwrap() {
            Acquire::Granted(g) => tokens.push(g.token),
            other => panic!("{what} refused to its holder asking again: {other:?}"),
        }
    }
    let listed = locks(&backend).inspect(space, &lease.key).await.unwrap();
    let released = locks(&backend).release(&lease).await;
    let left = locks(&backend).inspect(space, &lease.key).await.unwrap();
    let _ = locks(&backend).force_release(space, &lease.key).await;
    assert!(tokens[1] > tokens[0], "{what} again: tokens {tokens:?}");
    assert!(
        listed.len() == 1 && listed[0].token == tokens[1],
        "one {what}, of the new token {:?}: {listed:?}",
        tokens[1]
    );
    assert!(
        left.is_empty(),
        "one release ({released:?}) leaves nothing: {left:?}"
    );
}
