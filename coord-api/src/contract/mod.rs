//! The contract: what every coord backend promises and every coord user may
//! rely on, one module per family. Each promise is a short sentence naming
//! the conformance case(s) that check it (`coord-conformance`), or saying
//! that only the simulator (`coord-sim`) checks it, or that nothing does
//! yet. Where this text and the code disagree, one of them is a bug. Why a
//! promise is what it is, where it departs from an earlier design, is
//! recorded in `docs/decisions/`.
//!
//! | module | what it covers |
//! |---|---|
//! | [`common`] | the words (namespace, key, TTL, holder, fencing token, local validity, lost), invalid input and options, waiting, release and the clean-up of unanswered acquisitions, what holds through a Redis failover, errors, backends and families, tracing |
//! | [`locks`] | exclusive, reentrant and read-write locks, semaphores, fair mode, auto-extension, `holders()` and `force_release()` |
//! | [`election`] | elections, observers, the leader runner, quorum |
//! | [`membership`] | membership groups |
//! | [`jobs`] | `Job::run` and `run_once` |
//! | [`barriers`] | cyclic and double barriers, countdown latches |
//! | [`queues`] | work queues: pushing, deliveries as leases, settling, dead letters, consumers' presence, work stealing |
//! | [`topics`] | topics: ephemeral events (at most once), durable streams with retention, named subscriptions (at least once, acks, replay, missed offsets, refused events) |
//! | [`graphs`] | job graphs: declaring, submitting, working, resolving, cancelling, observing runs |
//! | [`state`] | shared values: versions, compare-and-set, update, TTL, watches with gaps |
//! | [`operations`] | operations across families: instance presence and stale leases, listing with a cursor, fenced and audited force release, health |
//! | [`breaker`] | circuit breakers shared by name: windows, thresholds, trials as leases, no round trip per call, manual actions, an unreachable backend |

#[doc = include_str!("common.md")]
pub mod common {}
#[doc = include_str!("locks.md")]
pub mod locks {}
#[doc = include_str!("election.md")]
pub mod election {}
#[doc = include_str!("membership.md")]
pub mod membership {}
#[doc = include_str!("jobs.md")]
pub mod jobs {}
#[doc = include_str!("barriers.md")]
pub mod barriers {}
#[doc = include_str!("graphs.md")]
pub mod graphs {}
#[doc = include_str!("queues.md")]
pub mod queues {}
#[doc = include_str!("topics.md")]
pub mod topics {}
#[doc = include_str!("state.md")]
pub mod state {}
#[doc = include_str!("breaker.md")]
pub mod breaker {}
#[doc = include_str!("operations.md")]
pub mod operations {}
