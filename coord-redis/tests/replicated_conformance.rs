//! The whole conformance suite against replicated Redis: a master with one
//! replica, found through three sentinels (`redis+sentinel://`), with
//! confirmed writes (`confirm_replicas=1`: every family's writes followed by
//! `WAIT` in the same pipeline). Every case opens its own connections in its
//! own namespace, and nothing the suite checks changes. Its own main
//! (`harness = false`), as `conformance.rs`.

use std::time::Duration;

use coord_redis::{Confirm, RedisConfig};
use coord_testkit::{redis::RedisHarness, sentinel::SentinelSet};

fn main() -> std::process::ExitCode {
    // Started and formed: the replica is attached, the sentinels know it.
    let set = SentinelSet::start_with(1);
    let config = RedisConfig::builder()
        .with_url(set.url())
        .timeout(Duration::from_secs(3))
        .confirm(Confirm::Replicas {
            count: 1,
            timeout: Duration::from_secs(2),
        })
        .build()
        .expect("valid sentinel and confirming configuration");
    let code = coord_conformance::main(RedisHarness::new(config));
    // Every server and sentinel killed, their directories removed.
    drop(set);
    code
}
