//! The whole conformance suite against a real redis-server (started once per
//! test binary; every case opens its own connections in its own namespace).

coord_conformance::suite!(coord_redis::testing::RedisHarness::shared());
