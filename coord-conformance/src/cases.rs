//! The cases: one behaviour of the contract each, named for it. Every case
//! starts in a fresh namespace ([`Ctx::new`]) and uses short real-time TTLs,
//! so the suite runs on a real server in seconds (and in virtual time in the
//! simulator).

use std::time::Duration;

use crate::{Ctx, Harness};

/// Two clients on one key: while one holds the lock the other's `try_lock`
/// is refused; after release it succeeds.
pub async fn exclusion(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ga = a.lock("k").try_lock().await.unwrap().expect("free lock is granted");
    assert!(b.lock("k").try_lock().await.unwrap().is_none(), "second holder refused");
    assert!(ga.release().await.unwrap());
    let gb = b.lock("k").try_lock().await.unwrap().expect("granted after release");
    let _ = Duration::ZERO;
    gb.release().await.unwrap();
}
