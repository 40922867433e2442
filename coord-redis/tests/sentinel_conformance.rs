//! The whole conformance suite through `redis+sentinel://`: a master (with
//! a replica) found through three sentinels, every case opening its own
//! connections in its own namespace. Its own main (`harness = false`), as
//! `conformance.rs`.

fn main() -> std::process::ExitCode {
    let set = coord_testkit::sentinel::SentinelSet::start_with(1);
    let config = set.config(coord_api::Namespace::DEFAULT);
    let code = coord_conformance::main(coord_testkit::redis::RedisHarness::new(config));
    // Every server and sentinel killed, their directories removed.
    drop(set);
    code
}
