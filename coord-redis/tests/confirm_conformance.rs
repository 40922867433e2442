//! The whole conformance suite with confirmed writes (`confirm_replicas=1`)
//! against a master with one replica: every family's writes are followed
//! by `WAIT` in the same pipeline, and nothing the suite checks changes.
//! Its own main (`harness = false`), as `conformance.rs`.

use std::time::{Duration, Instant};

use coord_redis::{Confirm, RedisConfig};
use coord_testkit::redis::{RedisHarness, RedisServer};

fn main() -> std::process::ExitCode {
    let master = RedisServer::start();
    let port = master.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while master.command(&["WAIT", "1", "100"]).ok() != Some(redis::Value::Int(1)) {
        assert!(Instant::now() < deadline, "the replica did not attach");
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = RedisConfig::builder()
        .with_url(master.url())
        .timeout(Duration::from_secs(3))
        .confirm(Confirm::Replicas {
            count: 1,
            timeout: Duration::from_secs(2),
        })
        .build()
        .expect("valid confirming configuration");
    let code = coord_conformance::main(RedisHarness::new(config));
    drop(replica);
    code
}
