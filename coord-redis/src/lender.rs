//! Connections of their own for confirmed writes (decision 0079).
//!
//! A `WAIT` (or `WAITAOF`) blocks the connection it is sent on until enough
//! replicas answer or its timeout passes: Redis reads nothing more from that
//! client meanwhile. Sent on the backend's one multiplexed connection, every
//! other request of every task (reads, renewals, releases) queued behind it:
//! with a replica gone, each write held the connection for the whole
//! confirmation timeout, and a few writes at once made calls fail
//! `Unavailable` at the operation timeout, reads included. So a confirmed
//! write borrows a connection from its server's [`Lender`], sends its
//! request and its confirmation there (`WAIT` covers what that connection
//! wrote: this request), and gives it back once answered. Reads and writes
//! that are not confirmed stay on the shared connection.
//!
//! A standalone server and a master behind sentinels have a lender (a new
//! one with each new master); a Redis Cluster does not (its connection
//! routes by slot: see decision 0079 for why it keeps the shared one).

use std::sync::{Arc, Mutex};

use redis::{
    RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many confirmed writes of one [`RedisBackend`](crate::RedisBackend)
/// may wait for their confirmation at once, each on a connection of its
/// own (decision 0079); more wait for one of those to be answered, within
/// their operation timeout. Idle ones are kept for the next.
pub const CONFIRMING_CONNECTIONS: usize = 16;

/// The connections confirmed writes borrow, to one server: opened when
/// first needed, kept once answered (at most [`CONFIRMING_CONNECTIONS`]).
pub(crate) struct Lender {
    client: redis::Client,
    config: ConnectionManagerConfig,
    idle: Mutex<Vec<ConnectionManager>>,
    slots: Arc<Semaphore>,
}

impl Lender {
    /// A lender of connections made by `client` with `config` (those of the
    /// backend's shared connection to the same server).
    pub(crate) fn new(client: redis::Client, config: ConnectionManagerConfig) -> Lender {
        Lender {
            client,
            config,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(CONFIRMING_CONNECTIONS)),
        }
    }

    /// A connection no other request uses until it is [given back](Lent::give_back):
    /// an idle one, or a new one (connecting on its first request). Waits
    /// while [`CONFIRMING_CONNECTIONS`] are lent.
    pub(crate) async fn lend(self: &Arc<Self>) -> RedisResult<Lent> {
        let permit = (self.slots.clone().acquire_owned().await)
            .expect("the lender never closes its semaphore");
        let idle = self.idle.lock().unwrap().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())?
            }
        };
        Ok(Lent {
            lender: self.clone(),
            conn,
            _permit: permit,
        })
    }

    /// How many connections wait idle (for tests).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

/// A connection lent to one request. Dropped without being given back (its
/// request was cancelled or timed out, maybe inside a `WAIT`), it is
/// closed: a next request on it could queue behind that `WAIT`.
pub(crate) struct Lent {
    lender: Arc<Lender>,
    conn: ConnectionManager,
    _permit: OwnedSemaphorePermit,
}

impl Lent {
    /// The connection (a handle on it; the request runs on a clone).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The request was answered (whatever the answer): the connection is
    /// free for the next.
    pub(crate) fn give_back(self) {
        self.lender.idle.lock().unwrap().push(self.conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lender() -> Arc<Lender> {
        // Lazy: nothing connects to this address.
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        Arc::new(Lender::new(client, ConnectionManagerConfig::new()))
    }

    /// A connection given back is lent again; one dropped (its request
    /// cancelled) is not; the lent ones are bounded.
    #[tokio::test]
    async fn answered_connections_are_lent_again_and_cancelled_ones_closed() {
        let lender = lender();
        let a = lender.lend().await.unwrap();
        a.give_back();
        assert_eq!(lender.idle(), 1);
        let b = lender.lend().await.unwrap();
        assert_eq!(lender.idle(), 0, "the idle one was lent");
        drop(b);
        assert_eq!(
            lender.idle(),
            0,
            "a cancelled request's connection is closed"
        );

        let mut all = Vec::new();
        for _ in 0..CONFIRMING_CONNECTIONS {
            all.push(lender.lend().await.unwrap());
        }
        // Polled once: pending while all are lent.
        tokio::select! {
            biased;
            _ = lender.lend() => panic!("more than {CONFIRMING_CONNECTIONS} lent at once"),
            _ = std::future::ready(()) => {}
        }
        drop(all);
        assert!(lender.lend().await.is_ok());
    }
}
