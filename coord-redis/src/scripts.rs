//! The Lua scripts, one per family, each a shared prelude plus the family's
//! operations (`acquire`, `extend`, `release`, `force`, `inspect`). They run
//! by EVALSHA; `redis::Script` loads them again after a NOSCRIPT reply (a
//! SCRIPT FLUSH or a restarted server), so every operation stays one round
//! trip in the steady state.

use std::sync::LazyLock;

use coord_api::LeaseFamily;
use redis::Script;

// The lock script is self-contained: the common prelude's helpers cost
// server time on every call, and the lock's common path needs none of them.
static LOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/lock.lua")));
static RWLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/common.lua"),
        include_str!("lua/rwlock.lua")
    ))
});
static SEMAPHORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/common.lua"),
        include_str!("lua/semaphore.lua")
    ))
});

/// The script of `family`.
pub(crate) fn script(family: LeaseFamily) -> &'static Script {
    match family {
        LeaseFamily::Lock => &LOCK,
        LeaseFamily::RwLock => &RWLOCK,
        LeaseFamily::Semaphore => &SEMAPHORE,
    }
}
