//! What a receive whose answer never came leaves behind (decision 0044): it
//! may have been applied, leasing items to this consumer that it never
//! learns of. Each receive carries a random id, and its clean-up gives back
//! exactly what that receive delivered and still holds (`QueueBackend::give_back`),
//! through [`granting`](crate::lease::undo::granting).

use crate::{Client, HolderId, Key, lease::undo::MakeUndo};

/// A receive's id: random (two receives of a consumer, or of two
/// consumers, differ), never 0 (which names none).
pub(super) fn receive_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// The clean-up of receive `receive_id` of `consumer`: gives back what it
/// delivered.
pub(super) fn give_back(queue: &Key, consumer: &HolderId, receive_id: u64) -> impl MakeUndo {
    let (queue, consumer) = (queue.clone(), consumer.clone());
    move || {
        move |client: Client| {
            let (queue, consumer) = (queue.clone(), consumer.clone());
            async move {
                let queues = client.queues()?;
                queues
                    .give_back(&queue, &consumer, receive_id)
                    .await
                    .map(drop)
            }
        }
    }
}
