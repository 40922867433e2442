//! The scenarios: each a workload and the faults its plans may draw (see
//! the `Scenario` fields), named as the tests that sweep them.

#[cfg(feature = "broken")]
use super::Bug;
use super::{Drift, Scenario, Workload};

impl Scenario {
    /// Every fault but server restarts, drift in bounds: checkers (a)–(d).
    pub fn partitions_in_bounds() -> Scenario {
        Scenario {
            name: "partitions_in_bounds",
            workload: Workload::Lock,
            clients: 4,
            partitions: true,
            packet_loss: true,
            latency_spikes: true,
            holder_kills: true,
            holder_pauses: true,
            server_restarts: false,
            drift: Drift::InBounds,
            lost_notifications: false,
            #[cfg(feature = "broken")]
            bug: None,
        }
    }

    /// Multi-locks on overlapping sets of 2 or 3 of five keys, asked in
    /// random orders, half the clients in one backend step and half one
    /// lock at a time, under every fault but server restarts, drift in
    /// bounds: per key (a) fencing, (b) tokens, (c) no two believers at
    /// once; (d) after the heal a prober gets every key at once in time.
    pub fn multi_lock_partitions() -> Scenario {
        Scenario {
            name: "multi_lock_partitions",
            workload: Workload::MultiLock,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// Multi-locks as in [`multi_lock_partitions`](Self::multi_lock_partitions),
    /// with server restarts that lose state: (a), (b), (d).
    pub fn multi_lock_server_restarts() -> Scenario {
        Scenario {
            name: "multi_lock_server_restarts",
            server_restarts: true,
            ..Scenario::multi_lock_partitions()
        }
    }

    /// Every fault including server restarts that lose state: (a), (b), (d)
    /// (a server that forgets its leases lets two clients believe at once;
    /// fencing is what protects then).
    pub fn server_restarts() -> Scenario {
        Scenario {
            name: "server_restarts",
            server_restarts: true,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// Every fault but server restarts, some clocks drifting beyond
    /// `max_drift`: (a), (b), (d).
    pub fn drift_beyond_bounds() -> Scenario {
        Scenario {
            name: "drift_beyond_bounds",
            drift: Drift::Beyond,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// Leadership under partitions, packet loss, latency spikes and killed
    /// leaders, drift in bounds: one holder per term, terms increasing, no
    /// two leaders believing at once (a partitioned leader stops believing
    /// before the backend elects the next), fencing by term.
    pub fn leadership_partitions() -> Scenario {
        Scenario {
            name: "leadership_partitions",
            workload: Workload::Leadership,
            holder_pauses: false,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// The same with some clocks drifting beyond `max_drift` and leaders
    /// paused: only the term rules and fencing by term are checked.
    pub fn leadership_drift_beyond() -> Scenario {
        Scenario {
            name: "leadership_drift_beyond",
            holder_pauses: true,
            drift: Drift::Beyond,
            ..Scenario::leadership_partitions()
        }
    }

    /// Leaders killed at random instants (restarted later as new
    /// processes), a LAN otherwise: the next leader is elected within TTL
    /// plus [`FAILOVER_BOUND`](super::FAILOVER_BOUND); failover times are reported.
    pub fn leader_crash() -> Scenario {
        Scenario {
            name: "leader_crash",
            workload: Workload::LeaderCrash,
            clients: 4,
            partitions: false,
            packet_loss: false,
            latency_spikes: false,
            holder_kills: true,
            holder_pauses: false,
            server_restarts: false,
            drift: Drift::InBounds,
            lost_notifications: false,
            #[cfg(feature = "broken")]
            bug: None,
        }
    }

    /// Run-once occurrences under partitions, packet loss, latency spikes
    /// and killed runners, drift in bounds.
    pub fn run_once_faults() -> Scenario {
        Scenario {
            name: "run_once_faults",
            workload: Workload::RunOnce,
            holder_pauses: false,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// The cyclic barrier under partitions, packet loss, latency spikes,
    /// killed and paused participants, clocks skewed and drifting in
    /// bounds: no trip early or counting a dead participant, all-or-none
    /// per generation, no wait past its deadline by more than a bound,
    /// generations increasing, a round trips after the heal.
    pub fn barrier_faults() -> Scenario {
        Scenario {
            name: "barrier_faults",
            workload: Workload::Barrier,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// The same with server restarts that lose every barrier's record:
    /// generations keep increasing across them (see the `barriers` module
    /// for the one rule judged otherwise).
    pub fn barrier_server_restarts() -> Scenario {
        Scenario {
            name: "barrier_server_restarts",
            server_restarts: true,
            ..Scenario::barrier_faults()
        }
    }

    /// The cyclic barrier with every notification lost (and no other
    /// fault but the plans' last second of lost answers): every waiter
    /// still returns within its renewal period (a third of the TTL) of its
    /// generation's trip, by reading again when it renews its arrival.
    pub fn barrier_notifications_lost() -> Scenario {
        Scenario {
            name: "barrier_notifications_lost",
            partitions: false,
            packet_loss: false,
            latency_spikes: false,
            holder_kills: false,
            holder_pauses: false,
            lost_notifications: true,
            ..Scenario::barrier_faults()
        }
    }

    /// The double barrier under the faults of
    /// [`barrier_faults`](Scenario::barrier_faults): entries never early
    /// nor counting a dead member, all-or-none per generation, leaves
    /// returning only once every member left or expired (a member killed
    /// inside is dropped at its TTL), nothing past its deadline by more
    /// than a bound, a round after the heal.
    pub fn double_barrier_faults() -> Scenario {
        Scenario {
            name: "double_barrier_faults",
            workload: Workload::DoubleBarrier,
            ..Scenario::barrier_faults()
        }
    }

    /// The countdown latch under the faults of
    /// [`barrier_faults`](Scenario::barrier_faults) (a latch living an
    /// hour: expiry is not the point): no generation at zero before its
    /// count of distinct participants called, no wait opened before the
    /// zero, a retried count-down counted once, never more count-downs than
    /// the count, no wait past its deadline by more than a bound,
    /// generations increasing, a generation opens after the heal.
    pub fn latch_faults() -> Scenario {
        Scenario {
            name: "latch_faults",
            workload: Workload::Latch,
            ..Scenario::barrier_faults()
        }
    }

    /// Job graphs under partitions, packet loss, latency spikes, pauses
    /// (some longer than the TTL), clocks skewed and drifting in bounds,
    /// workers crashing at every step boundary: every run ends after the
    /// heal with no node stranded, each node completed at most once and
    /// only by its latest attempt, none started before its upstream edges
    /// held, final states as the edges say, attempts within bounds.
    pub fn graph_faults() -> Scenario {
        Scenario {
            name: "graph_faults",
            workload: Workload::Graphs,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// Job graphs with every notification lost (workers learn of ready
    /// nodes only from `Take::Idle`'s time and their fallback retry), and
    /// crashing workers: every run still ends.
    pub fn graph_notifications_lost() -> Scenario {
        Scenario {
            name: "graph_notifications_lost",
            partitions: false,
            packet_loss: false,
            latency_spikes: false,
            holder_pauses: false,
            lost_notifications: true,
            ..Scenario::graph_faults()
        }
    }

    /// Work queues under partitions, packet loss, latency spikes, pauses
    /// (past the presence TTL and past the lease's), clocks skewed and
    /// drifting in bounds, consumers crashing at every step boundary and
    /// producers around their pushes: the server's answers follow the
    /// SPI's rules step by step, nothing acknowledged is lost, no item is
    /// acked twice, every second handler start follows an ended lease or a
    /// nack, stealing takes only unstarted deliveries, dead consumers'
    /// deliveries come back when their presence ends, writes are fenced,
    /// the dead letters are exactly those the rules made (see the `queues`
    /// module).
    pub fn queue_faults() -> Scenario {
        Scenario {
            name: "queue_faults",
            workload: Workload::Queues,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// The same with the server killed and restarted with an empty store:
    /// tokens keep increasing across restarts, no delivery made before a
    /// restart settles after it, the rules hold within each incarnation,
    /// nothing acknowledged after the last restart is lost.
    pub fn queue_server_restarts() -> Scenario {
        Scenario {
            name: "queue_server_restarts",
            server_restarts: true,
            ..Scenario::queue_faults()
        }
    }

    /// Topics: durable events published over partitions, loss, latency,
    /// pauses past the presence TTL, subscribers killed and restarted, a
    /// retention that trims (half the seeds): nothing acknowledged lost
    /// without the subscription being told, settlements fenced, tokens
    /// increasing, values as published, refused events dead-lettered.
    pub fn topic_faults() -> Scenario {
        Scenario {
            name: "topic_faults",
            workload: Workload::Topics,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// The same with the server killed and restarted with an empty store:
    /// tokens keep increasing across restarts, and the rules hold for what
    /// was published after the last restart.
    pub fn topic_server_restarts() -> Scenario {
        Scenario {
            name: "topic_server_restarts",
            server_restarts: true,
            ..Scenario::topic_faults()
        }
    }

    /// Shared values under every fault but server restarts: a counter
    /// incremented through `update` by four clients ends exact, versions
    /// never repeat, two watchers (restarted from their checkpoints after
    /// crashes) see every change in order, never skipping silently, and
    /// catch up after the heal.
    pub fn state_faults() -> Scenario {
        Scenario {
            name: "state_faults",
            workload: Workload::State,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// The same with the server killed and restarted with an empty store:
    /// versions keep increasing, no acknowledged update lost within an
    /// incarnation, and every watcher is told of the lost state by a gap.
    pub fn state_server_restarts() -> Scenario {
        Scenario {
            name: "state_server_restarts",
            server_restarts: true,
            ..Scenario::state_faults()
        }
    }

    /// Circuit breakers under every fault but server restarts: twenty
    /// instances (clocks skewed and drifting) call a downstream that fails
    /// in phases through one shared breaker; instances killed, paused and
    /// partitioned. Checkers `breaker-*`: never more trials than allowed per
    /// generation, every instance sees an open within the bound once
    /// healed, no transition lost.
    pub fn breaker_faults() -> Scenario {
        Scenario {
            name: "breaker_faults",
            workload: Workload::Breaker,
            clients: super::INSTANCES,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// The same with every instance's notifications lost: an open reaches
    /// each instance by its refresh alone, still within the bound.
    pub fn breaker_lost_notifications() -> Scenario {
        Scenario {
            name: "breaker_lost_notifications",
            lost_notifications: true,
            ..Scenario::breaker_faults()
        }
    }

    /// With a deliberately broken server or client.
    #[cfg(feature = "broken")]
    pub fn with_bug(mut self, bug: Bug) -> Scenario {
        self.bug = Some(bug);
        self
    }

    /// Whether checker (c) applies: drift in bounds and a server that keeps
    /// its state.
    pub fn checks_exclusion(&self) -> bool {
        self.drift == Drift::InBounds && !self.server_restarts
    }

    /// Operations under kills, pauses and partitions of holders (no
    /// packet loss: a holder is either reachable or not): eight holders
    /// with a 3 s instance presence and fixed leases; an operator lists
    /// every live lease every 250 ms. Checkers `ops-*`: every lease
    /// listed, and stale exactly when its holder is gone for longer than
    /// its presence TTL.
    pub fn ops_stale() -> Scenario {
        Scenario {
            name: "ops_stale",
            workload: Workload::Ops,
            clients: super::ops::HOLDERS,
            partitions: true,
            packet_loss: false,
            latency_spikes: false,
            holder_kills: true,
            holder_pauses: true,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// A fair lock under kills, pauses and partitions of its waiters (and
    /// holders): six workers wait with a 600 ms waiter TTL. Checkers:
    /// `fair-order` (a waiter that queued before another began and kept its
    /// place is granted first), tokens, fencing, liveness after the heal.
    pub fn fair_lock() -> Scenario {
        Scenario {
            name: "fair_lock",
            workload: Workload::Fair,
            clients: super::fair::WAITERS,
            partitions: true,
            packet_loss: false,
            latency_spikes: false,
            holder_kills: true,
            holder_pauses: true,
            ..Scenario::partitions_in_bounds()
        }
    }
}
