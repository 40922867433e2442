//! Barriers and latches: a cyclic [`Barrier`], a [`DoubleBarrier`] (enter,
//! then leave) and a countdown [`Latch`]. The contract is
//! [`contract::barriers`](crate::contract::barriers).
//!
//! | module | what it holds |
//! |---|---|
//! | `arrival` | the wait every barrier shares: arrive, renew by arriving again, break the generation at the deadline, read the outcome |
//! | `barrier` | [`Barrier`], [`Tripped`] |
//! | `double` | [`DoubleBarrier`], [`Inside`] |
//! | `latch` | [`Latch`], [`LatchWait`] |
//! | `metrics` | what the family counts |

mod arrival;
mod barrier;
mod double;
mod latch;
pub(crate) mod metrics;

pub(crate) use arrival::sleep_or_woken;
pub use barrier::{Barrier, Tripped};
pub use double::{DoubleBarrier, Inside};
pub use latch::{Latch, LatchWait};

use crate::{Client, Key, LeaseOptions, Result, handle::Handle, spi::BarrierKind};

/// What both kinds of barrier handle hold: the name and options, the
/// parties each generation waits for, and who arrives.
#[derive(Debug, Clone)]
pub(crate) struct Party {
    pub(crate) handle: Handle,
    parties: u32,
    participant: Participant,
}

impl Party {
    pub(crate) fn new(client: Client, name: &str, parties: u32) -> Party {
        Party {
            participant: Participant::of_instance(&client),
            handle: Handle::new(client, name),
            parties,
        }
    }

    pub(crate) fn set_participant(&mut self, id: &str) {
        self.participant = Participant::named(id);
    }

    pub(crate) fn parties(&self) -> u32 {
        self.parties
    }

    /// The name, options, participant and parties, all valid, or the
    /// `InvalidArgument` of the first that is not.
    pub(crate) fn checked(&self, kind: BarrierKind) -> Result<(&Key, &LeaseOptions, &Key)> {
        let (key, opts) = self.handle.checked()?;
        barrier::check_parties(kind, key, self.parties)?;
        Ok((key, opts, self.participant.key()?))
    }
}

/// A participant id as given (checked once), or the client's instance id.
#[derive(Debug, Clone)]
pub(crate) struct Participant(std::result::Result<Key, String>);

impl Participant {
    pub(crate) fn of_instance(client: &crate::Client) -> Participant {
        Participant::named(client.instance_id().as_str())
    }

    pub(crate) fn named(id: &str) -> Participant {
        Participant(Key::new(id).map_err(|_| id.to_owned()))
    }

    /// The id, or `InvalidArgument` naming it.
    pub(crate) fn key(&self) -> Result<&Key> {
        match &self.0 {
            Ok(k) => Ok(k),
            Err(raw) => Err(crate::Error::invalid(format!(
                "participant id {:?}: {}",
                raw.chars().take(64).collect::<String>(),
                Key::new(raw).expect_err("checked before")
            ))),
        }
    }
}
