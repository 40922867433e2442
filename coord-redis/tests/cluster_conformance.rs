//! The whole conformance suite against a Redis Cluster of three masters and
//! three replicas (`redis+cluster://`, three seed nodes): every primitive's
//! keys in one slot (a script touching two slots would fail with
//! CROSSSLOT), wake-ups by sharded pub/sub (SPUBLISH from the scripts,
//! SSUBSCRIBE on the shard). Every case opens its own connections in its
//! own namespace. Its own main (`harness = false`), as `conformance.rs`.

use coord_testkit::{cluster::ClusterSet, redis::RedisHarness};

fn main() -> std::process::ExitCode {
    // Started and formed: every node says cluster_state:ok.
    let set = ClusterSet::start();
    let code = coord_conformance::main(RedisHarness::new(set.config("coord")));
    // Every node killed, its directory removed.
    drop(set);
    code
}
