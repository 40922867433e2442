//! The client side of queues without a backend: every item is checked
//! before any I/O. The backends' behaviour is the conformance suite's
//! (`coord-conformance`, cases `queue_*`).

use std::{sync::Arc, time::Duration};

use super::*;
use crate::spi::{MAX_BATCH, MAX_PAYLOAD_BYTES};
use crate::testing::Counting;

fn queue() -> Queue<String> {
    Client::new(Arc::new(Counting::default())).queue("orders")
}

async fn err(opts: PushOptions) -> String {
    queue()
        .push_with(&"x".to_owned(), opts)
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn bad_items_are_refused_before_any_io_naming_the_limit() {
    assert!(
        err(PushOptions::new().priority(10))
            .await
            .contains("priority 10, above the limit of 9")
    );
    assert!(
        err(PushOptions::new().max_attempts(0))
            .await
            .contains("max_attempts 0, outside 1..=1000")
    );
    assert!(
        err(PushOptions::new().dedup("", Duration::from_secs(1)))
            .await
            .contains("dedup id")
    );
    assert!(
        err(PushOptions::new().dedup("d", Duration::ZERO))
            .await
            .contains("dedup window 0ns of \"d\", outside 1ms..=86400s")
    );
    let e = err(PushOptions::new().delay(Duration::from_secs(25 * 3600))).await;
    assert!(e.contains("delay"), "{e}");
    let big = "x".repeat(MAX_PAYLOAD_BYTES);
    let e = queue().push(&big).await.unwrap_err().to_string();
    assert!(e.contains("more than the limit of 524288"), "{e}");
    let many = vec!["x".to_owned(); MAX_BATCH + 1];
    let e = queue().push_many(&many).await.unwrap_err().to_string();
    assert!(e.contains("1001 items, more than the limit of 1000"), "{e}");
    let e = Client::new(Arc::new(Counting::default()))
        .queue::<u8>("")
        .push(&1)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
}

#[tokio::test]
async fn a_valid_push_reaches_the_backend_which_may_not_offer_queues() {
    let e = queue().push(&"x".to_owned()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotSupported {
                operation: "queues",
                ..
            }
        ),
        "{e}"
    );
    // Even an empty batch: it is a queue call (a closed client's is
    // `Closed`), though it needs no I/O.
    let e = queue().push_many(&[]).await.unwrap_err();
    assert!(matches!(e, Error::NotSupported { .. }), "{e}");
}

#[tokio::test]
async fn bad_consumer_options_are_refused_before_any_io() {
    let e = queue().consumer().prefetch(0).receive().await.unwrap_err();
    assert!(
        e.to_string().contains("prefetch 0, outside 1..=1000"),
        "{e}"
    );
    let e = queue()
        .consumer()
        .presence_ttl(Duration::ZERO)
        .receive()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    let e = queue()
        .consumer()
        .backoff(Duration::from_secs(2), Duration::from_secs(1))
        .receive()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("the consumer has back-off 2s..1s"),
        "{e}"
    );
}

/// Consumers and deliveries go into `tokio::spawn`: their futures are
/// `Send`.
#[allow(dead_code)]
fn futures_are_send(queue: Queue<String>, mut consumer: Consumer<String>, d: Delivery<String>) {
    fn send<T: Send>(_: T) {}
    send(queue.push(&String::new()));
    send(consumer.receive());
    send(d.ack());
    send(queue.consumer().run(|_item, _ctx| async { Ok(()) }));
}
