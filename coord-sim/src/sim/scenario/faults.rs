//! Fault plans drawn from the seed, and their application to the nodes of a
//! run: partitions (whole node, one link, one direction), packet loss,
//! latency spikes, the holder killed or paused, the server killed and
//! restarted with its state lost; and the heal.

use std::{sync::Arc, time::Duration};

use madsim::{net::NetSim, rand::Rng, runtime::Handle, task::NodeId};

use super::{FAULTS_FROM, HEAL_AT, Scenario, Workload};

/// Applies a fault plan's steps to the server and worker nodes, and heals.
pub(super) struct Faults {
    handle: Handle,
    net: Arc<NetSim>,
    server: NodeId,
    workers: Vec<NodeId>,
    dead: Vec<NodeId>,
    paused: Vec<NodeId>,
}

impl Faults {
    pub(super) fn new(server: NodeId, workers: Vec<NodeId>) -> Faults {
        Faults {
            handle: Handle::current(),
            net: NetSim::current(),
            server,
            workers,
            dead: Vec::new(),
            paused: Vec::new(),
        }
    }

    /// Applies `action` (`holder`: the worker `Target::Holder` names now);
    /// returns what it did and the worker it killed, or `None` if it did
    /// nothing (no holder, already dead...).
    pub(super) fn apply(
        &mut self,
        action: Action,
        holder: Option<usize>,
    ) -> Option<(String, Option<usize>)> {
        let (net, handle, server) = (&self.net, &self.handle, self.server);
        let target = |who: Target| match who {
            Target::Server => Some(server),
            Target::Client(i) => Some(self.workers[i]),
            Target::Holder => holder.map(|i| self.workers[i]),
        };
        let mut killed = None;
        let done = match action {
            Action::Clog(how, who) => target(who).map(|n| {
                match how {
                    Clog::Node => net.clog_node(n),
                    Clog::In => net.clog_node_in(n),
                    Clog::Out => net.clog_node_out(n),
                    Clog::ToServer => net.clog_link(n, server),
                    Clog::FromServer => net.clog_link(server, n),
                }
                format!("clog {how:?} {n}")
            }),
            Action::Unclog(how, who) => target(who).map(|n| {
                match how {
                    Clog::Node | Clog::In | Clog::Out => net.unclog_node(n),
                    Clog::ToServer => net.unclog_link(n, server),
                    Clog::FromServer => net.unclog_link(server, n),
                }
                format!("unclog {n}")
            }),
            Action::Loss(rate) => {
                net.update_config(|c| c.packet_loss_rate = rate);
                Some(format!("packet loss {rate:.2}"))
            }
            Action::Latency(max) => {
                net.update_config(|c| c.send_latency = latency(max));
                Some(format!("latency up to {max:?}"))
            }
            Action::Kill(who) => target(who).filter(|n| !self.dead.contains(n)).map(|n| {
                handle.kill(n);
                self.dead.push(n);
                killed = self.workers.iter().position(|w| *w == n);
                self.paused.retain(|p| *p != n);
                format!("kill {n}")
            }),
            Action::Restart(who) => target(who).filter(|n| self.dead.contains(n)).map(|n| {
                handle.restart(n);
                self.dead.retain(|d| *d != n);
                format!("restart {n}")
            }),
            Action::Pause(who) => target(who).filter(|n| !self.dead.contains(n)).map(|n| {
                handle.pause(n);
                self.paused.push(n);
                format!("pause {n}")
            }),
            Action::ResumeAll => {
                for n in self.paused.drain(..) {
                    handle.resume(n);
                }
                Some("resume".to_owned())
            }
        };
        done.map(|d| (d, killed))
    }

    /// Network back to normal, paused nodes resumed, a killed server
    /// restarted (killed workers stay dead).
    pub(super) fn heal(&mut self) {
        let net = &self.net;
        for &n in std::iter::once(&self.server).chain(&self.workers) {
            net.unclog_node(n);
            net.unclog_link(n, self.server);
            net.unclog_link(self.server, n);
        }
        net.update_config(|c| {
            c.packet_loss_rate = 0.0;
            c.send_latency = latency(Duration::from_millis(10));
        });
        for n in self.paused.drain(..) {
            self.handle.resume(n);
        }
        if self.dead.contains(&self.server) {
            self.handle.restart(self.server);
            self.dead.retain(|d| *d != self.server);
        }
    }
}

pub(super) fn latency(max: Duration) -> std::ops::Range<Duration> {
    Duration::from_millis(1)..max.max(Duration::from_millis(2))
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Server,
    Client(usize),
    /// Whoever holds the lock when the step runs.
    Holder,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Clog {
    Node,
    In,
    Out,
    ToServer,
    FromServer,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Action {
    Clog(Clog, Target),
    Unclog(Clog, Target),
    Loss(f64),
    Latency(Duration),
    Kill(Target),
    Restart(Target),
    Pause(Target),
    ResumeAll,
}

pub(super) struct Step {
    pub(super) at: Duration,
    pub(super) action: Action,
}

/// The scenario's fault plan, drawn from the seed.
pub(super) fn plan(s: &Scenario, rng: &mut madsim::rand::GlobalRng) -> Vec<Step> {
    match s.workload {
        Workload::LeaderCrash => crash_plan(s, rng),
        _ => draw_plan(s, rng),
    }
}

/// How long the server's answers are lost at the end of every drawn plan
/// (see [`draw_plan`]).
const LAST_DEAF: Duration = Duration::from_secs(1);

/// Draws the fault plan: a few episodes of each enabled kind inside the
/// fault window, each undone before the heal; and always, last, the
/// server's answers lost until the window closes.
fn draw_plan(s: &Scenario, rng: &mut madsim::rand::GlobalRng) -> Vec<Step> {
    let mut steps = Vec::new();
    let window = FAULTS_FROM.as_millis() as u64..(HEAL_AT.as_millis() as u64 - 500);
    let episode = |rng: &mut madsim::rand::GlobalRng, max_len_ms: u64| {
        let start = rng.gen_range(window.clone());
        let end = (start + rng.gen_range(100..max_len_ms)).min(window.end);
        (Duration::from_millis(start), Duration::from_millis(end))
    };
    let mut push = |at: Duration, action| steps.push(Step { at, action });
    if s.partitions {
        for _ in 0..rng.gen_range(2..6) {
            let (a, b) = episode(rng, 3_000);
            let how = [
                Clog::Node,
                Clog::In,
                Clog::Out,
                Clog::ToServer,
                Clog::FromServer,
            ][rng.gen_range(0..5)];
            let who = if rng.gen_bool(0.2) {
                Target::Server
            } else {
                Target::Client(rng.gen_range(0..s.clients))
            };
            let (how, who) = match (how, who) {
                // A link to the server from the server is no partition.
                (Clog::ToServer | Clog::FromServer, Target::Server) => (Clog::Node, who),
                hw => hw,
            };
            push(a, Action::Clog(how, who));
            push(b, Action::Unclog(how, who));
        }
    }
    if s.packet_loss {
        for _ in 0..rng.gen_range(1..3) {
            let (a, b) = episode(rng, 4_000);
            push(a, Action::Loss(rng.gen_range(0.05..0.4)));
            push(b, Action::Loss(0.0));
        }
    }
    if s.latency_spikes {
        for _ in 0..rng.gen_range(1..3) {
            let (a, b) = episode(rng, 3_000);
            push(
                a,
                Action::Latency(Duration::from_millis(rng.gen_range(50..300))),
            );
            push(b, Action::Latency(Duration::from_millis(10)));
        }
    }
    if s.holder_pauses {
        for _ in 0..rng.gen_range(1..4) {
            let (a, b) = episode(rng, 3_000);
            push(a, Action::Pause(Target::Holder));
            push(b, Action::ResumeAll);
        }
    }
    if s.holder_kills {
        for _ in 0..rng.gen_range(1..3) {
            let (a, b) = episode(rng, 3_000);
            // Restarted as a new process.
            push(a, Action::Kill(Target::Holder));
            for c in 0..s.clients {
                push(b, Action::Restart(Target::Client(c)));
            }
        }
    }
    if s.server_restarts {
        for _ in 0..rng.gen_range(1..3) {
            let (a, b) = episode(rng, 2_000);
            push(a, Action::Kill(Target::Server));
            push(b, Action::Restart(Target::Server));
        }
    }
    // Always: for the last second of the window the server applies what it
    // is asked but its answers are lost. Every call times out; the grants
    // made then, shortly before the heal, reach no client, and the
    // client's clean-up must release them (see `ORPHAN_BOUND`: left alone
    // they outlive the bound).
    let close = Duration::from_millis(window.end);
    push(close - LAST_DEAF, Action::Clog(Clog::Out, Target::Server));
    push(close, Action::Unclog(Clog::Out, Target::Server));
    // Always: the holder dies just before the heal and stays dead, so the
    // prober has to wait for an expiry.
    if s.holder_kills {
        push(
            HEAL_AT - Duration::from_millis(200),
            Action::Kill(Target::Holder),
        );
    }
    steps.sort_by_key(|s| s.at);
    steps
}

/// The leader-crash plan: four times, the leader's node is killed (at
/// least 4 s apart, so every failover completes first), and every dead
/// worker restarted 1.5–2.5 s later as a new process.
fn crash_plan(s: &Scenario, rng: &mut madsim::rand::GlobalRng) -> Vec<Step> {
    let mut steps = Vec::new();
    for k in 0..4u64 {
        let at = Duration::from_millis(2_000 + k * 4_500 + rng.gen_range(0..2_000));
        steps.push(Step {
            at,
            action: Action::Kill(Target::Holder),
        });
        let back = at + Duration::from_millis(rng.gen_range(1_500..2_500));
        for c in 0..s.clients {
            steps.push(Step {
                at: back,
                action: Action::Restart(Target::Client(c)),
            });
        }
    }
    steps.sort_by_key(|s| s.at);
    steps
}
