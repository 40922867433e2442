//! What a read whose answer never came leaves behind (decision 0044): it
//! may have been applied, leasing events to this subscriber that it never
//! learns of. Each read carries a random id, and its clean-up gives back
//! exactly what that read delivered and still holds (`TopicBackend::give_back`),
//! through [`granting`](crate::lease::undo::granting).

use crate::{Client, HolderId, Key, lease::undo::MakeUndo};

/// A read's id: random (two reads of a subscriber, or of two subscribers,
/// differ), never 0 (which names none).
pub(super) fn read_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// The clean-up of read `read_id` of `consumer` in `sub`: gives back what
/// it delivered.
pub(super) fn give_back(
    topic: &Key,
    sub: &Key,
    consumer: &HolderId,
    read_id: u64,
) -> impl MakeUndo {
    let (topic, sub, consumer) = (topic.clone(), sub.clone(), consumer.clone());
    move || {
        move |client: Client| {
            let (topic, sub, consumer) = (topic.clone(), sub.clone(), consumer.clone());
            async move {
                let topics = client.topics()?;
                topics
                    .give_back(&topic, &sub, &consumer, read_id)
                    .await
                    .map(drop)
            }
        }
    }
}
