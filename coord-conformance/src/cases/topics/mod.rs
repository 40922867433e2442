//! Topics (`contract::topics`): publishing (every event checked before any
//! I/O, offsets in order), subscriptions (each sees every event; one
//! subscription's subscribers share them; a subscriber that was down
//! replays what it missed; start, seek by offset and by time), retention
//! (trimmed offsets reported as missed, never skipped silently), leases
//! (redelivery after expiry or a dead subscriber's presence, stale acks
//! change nothing, nack; an ack and the next read in one step; a read whose answer never came
//! gives back what it delivered), refused events (tag or decode: dead-lettered,
//! reported, the subscription goes on), and the ephemeral tier (at most
//! once: only listeners connected hear it, nothing kept).
//!
//! Clients run with a 10 s retry delay, so a subscriber that is prompt was
//! woken by the backend's notification or told when to look again.

pub(crate) use crate::cases::queues::{PROMPTLY, assert_lease_lost, invalid, within};
use crate::{cases::prelude::*, runner::Case};
pub(crate) use coord_api::{
    Ephemeral, EventDelivery, Next, Subscriber, Topic,
    spi::{
        MAX_EVENT_BATCH, MAX_EVENT_BYTES, NewEvent, ReadOptions, Retention, Settle, Start, Tag,
        TopicBackend,
    },
};

pub mod ack_and_next;
pub mod ephemeral;
pub mod give_back;
pub mod leases;
pub mod publish;
pub mod retention;
pub mod subscriptions;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [
        publish::cases(),
        subscriptions::cases(),
        retention::cases(),
        leases::cases(),
        ack_and_next::cases(),
        give_back::cases(),
        ephemeral::cases(),
    ]
    .concat()
}

/// The topic name every case uses.
pub(crate) const T: &str = "t";

/// The topic `T` of numbers on `client`.
pub(crate) fn numbers(client: &Client) -> Topic<u64> {
    client.topic(T)
}

/// The topic SPI of `backend` (the family's needs say it is there).
pub(crate) fn spi(backend: &DynBackend) -> &dyn TopicBackend {
    backend.topics().expect("the backend offers topics")
}

/// The next event of `sub` (within [`PROMPTLY`]), or a panic naming `what`
/// if the subscriber hands out anything else.
pub(crate) async fn event(sub: &mut Subscriber<u64>, what: &str) -> EventDelivery<u64> {
    match within(sub.next(), what).await {
        Next::Event(d) => d,
        other => panic!("{what}: expected an event, got {other:?}"),
    }
}

/// Reads `n` events of `sub`, acking each; their (offset, value).
pub(crate) async fn drain(sub: &mut Subscriber<u64>, n: usize, what: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for i in 0..n {
        let d = event(sub, &format!("{what}: event {i}")).await;
        out.push((d.offset(), *d.event()));
        within(d.ack(), &format!("{what}: ack {i}")).await;
    }
    out
}

/// Panics unless `sub` has nothing to hand out for `wait` (its wait
/// timeout is set to it).
pub(crate) async fn nothing(sub: Subscriber<u64>, wait: Duration, what: &str) -> Subscriber<u64> {
    let mut sub = sub.wait_timeout(Some(wait));
    match sub.next().await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("{what}: expected nothing (Timeout), got {other:?}"),
    }
    sub.wait_timeout(Some(Duration::from_secs(10)))
}
