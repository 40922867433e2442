//! The whole conformance suite against a real redis-server (started once per
//! test binary; every case opens its own connections in its own namespace).
//! Its own main (`harness = false`): one test per case, the cases of a
//! family a backend lacks shown as ignored.

fn main() -> std::process::ExitCode {
    coord_conformance::main(coord_testkit::redis::RedisHarness::shared())
}
