//! The command line (clap derive).
//!
//! Resources and kinds are taken as text and parsed by the command
//! (`Resource::from_str`), so that a bad one is one line on stderr naming
//! what is accepted, like every other bad input.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::exit::EXIT_CODES_HELP;

/// coordctl: who holds what in a coord namespace, whether its holder is
/// alive, and a fenced, audited force release.
#[derive(Debug, Parser)]
#[command(
    name = "coordctl",
    version,
    about = "The operator's command line for coord: who holds what, stale leases, \
             fenced and audited force release, health",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// The backend URL, as the application connects with it:
    /// redis://HOST:PORT/DB?namespace=NS, with :PASSWORD@ before the host if
    /// the server wants one. The namespace comes from the URL (default
    /// coord). coordctl never prints the URL.
    #[arg(
        long,
        global = true,
        env = "COORD_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub url: Option<String>,

    /// Print JSON: one document (an array for listings), or one JSON
    /// object per line for `watch`.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List live leases of every family (locks, read-write locks, permits,
    /// leader terms, members, job runs, queue and topic deliveries),
    /// printed page by page as they are read.
    Locks {
        /// Only stale leases: their holder's instance presence is gone (the
        /// process died or is cut off) while the lease remains.
        #[arg(long)]
        stale: bool,
        /// Only resources of this kind: lock, rwlock, semaphore, election,
        /// group, job, queue, topic.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Only resources whose name starts with this (jobs/), or, without
        /// --kind, whose resource starts with this as listings print it
        /// (lock:jobs/, queue:orders@).
        #[arg(long, value_name = "PREFIX", default_value = "")]
        prefix: String,
    },
    /// The live leases of one resource (its holders, a read-write lock's
    /// waiting writers). Exit 3 when it has none.
    Holders {
        /// KIND:NAME (lock:jobs/backup, election:scheduler,
        /// queue:orders), job:NAME@OCCURRENCE, queue:NAME@ITEM (one
        /// item's delivery), topic:NAME@SUBSCRIPTION, or
        /// topic:NAME@SUBSCRIPTION@OFFSET (one event's delivery).
        #[arg(value_name = "RESOURCE")]
        resource: String,
    },
    /// Remove the lease of RESOURCE whose fencing token is TOKEN, and only
    /// it (a newer holder's lease is left alone); the old holder's next
    /// renewal fails and its lost signal fires. Recorded in the audit
    /// trail either way. Exit 3 when no live lease has that token.
    ForceRelease {
        /// KIND:NAME, job:NAME@OCCURRENCE, queue:NAME@ITEM or
        /// topic:NAME@SUBSCRIPTION@OFFSET (the item or event is handed
        /// back as if its delivery had expired).
        #[arg(value_name = "RESOURCE")]
        resource: String,
        /// The token of the lease to remove (the TOKEN column of `locks`
        /// or `holders`).
        #[arg(long, value_name = "TOKEN")]
        token: u64,
        /// Why, for the audit trail.
        #[arg(long, value_name = "REASON")]
        reason: String,
        /// Who, for the audit trail (default: $USER@$HOSTNAME).
        #[arg(long, value_name = "WHO")]
        operator: Option<String>,
    },
    /// The current leaders (the leases of kind election).
    Leaders,
    /// The live members of a group. Exit 3 when it has none.
    Members {
        /// The group's name.
        #[arg(value_name = "GROUP")]
        group: String,
    },
    /// Live instances: every client keeps a presence while it lives.
    Instances,
    /// Work queues by name (queues have no registry: name them): items
    /// ready, delayed, in flight and dead, live consumers, and the
    /// deliveries, redeliveries, steals and dead letters so far, one line
    /// per queue. A queue nobody has used shows zeros. Its deliveries in
    /// flight: `holders queue:NAME`.
    Queue {
        /// The queues' names.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Circuit breakers by name: phase, generation, time until trials,
    /// the window's calls, failures and slow calls, live trials, opens,
    /// the rate that opens it, a manual action (`--json`: the policy
    /// too). Looking creates nothing: exit 3 when a name has no record
    /// (no instance has used it yet).
    Breaker {
        /// The breakers' names.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Barriers by name: the generation, the parties it waits for, how
    /// many are missing, and who arrived with the time left on each
    /// arrival (`--double`: double barriers, where those arrived after
    /// everyone entered are the members still inside). Looking creates
    /// nothing: exit 3 when a name has no record (nobody has used it).
    Barrier {
        /// The barriers' names.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        /// Double barriers (enter together, leave together), not cyclic
        /// ones: a name's cyclic and double barriers are apart.
        #[arg(long)]
        double: bool,
    },
    /// Countdown latches by name: the generation, what is left of the
    /// count it was set to, and when it goes. Exit 3 when a name has no
    /// latch (never set, or expired).
    Latch {
        /// The latches' names.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// The audit trail, newest first.
    Audit {
        /// How many records.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: u32,
    },
    /// Probe the backend: round trip, scripts, clock offset. Exit 0 when
    /// ready, 4 when degraded, 1 when unavailable.
    Health,
    /// A live view of changes: polls the listing every INTERVAL and prints
    /// a line per lease that appeared (+), is gone (-) or changed (~: token,
    /// holds, liveness, waiters). The first poll prints every lease as
    /// appeared. Runs until interrupted (or for --polls polls).
    Watch {
        /// How often to poll: 500ms, 2s, 1m.
        #[arg(long, value_name = "INTERVAL", default_value = "2s", value_parser = parse_interval)]
        interval: Duration,
        /// Only resources of this kind (as for `locks`).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Only resources whose name starts with this (as for `locks`).
        #[arg(long, value_name = "PREFIX", default_value = "")]
        prefix: String,
        /// Stop after this many polls (1 or more; without it, run until
        /// interrupted).
        #[arg(long, value_name = "N", value_parser = parse_polls)]
        polls: Option<u64>,
    },
    /// Serve the dashboard: locks and holders, leaders and their timeline,
    /// groups, runs, instances, the audit trail, queues, breakers and
    /// graph runs by name, health; live through server-sent events. Runs
    /// until interrupted.
    Serve {
        /// Where to listen (port 0: any free port; the address is printed).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
        listen: std::net::SocketAddr,
        /// Let the page force release leases and resign leaders (each
        /// behind a confirmation, fenced by token, in the audit trail).
        #[arg(long)]
        allow_actions: bool,
        /// The dashboard's password: every request must carry it (open the
        /// page as http://HOST:PORT/#token=TOKEN). Required when --listen
        /// is not a loopback address.
        #[arg(
            long,
            env = "COORD_DASHBOARD_TOKEN",
            hide_env_values = true,
            value_name = "TOKEN"
        )]
        token: Option<String>,
        /// A host name the page may be reached by besides the listening
        /// address and `localhost` (a reverse proxy's or a DNS name);
        /// repeatable. Requests naming any other Host are refused (403),
        /// so that a web page cannot reach the dashboard by DNS rebinding.
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_host: Vec<String>,
        /// Who the audit trail names beside the operator the page is given
        /// (default: $USER@$HOSTNAME).
        #[arg(long, value_name = "WHO")]
        operator: Option<String>,
        /// How often the listing is walked (leader changes arrive at once).
        #[arg(long, value_name = "INTERVAL", default_value = "1s", value_parser = parse_interval)]
        refresh: Duration,
        /// The most leases kept in memory for the page.
        #[arg(long, value_name = "N", default_value_t = 100_000)]
        max_leases: usize,
    },
}

/// `watch --polls N`: 1 or more (0 polled once, not the none it says).
pub fn parse_polls(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err(
            "watch polls at least once: give 1 or more (leave --polls out to \
                      watch until interrupted)"
                .to_owned(),
        ),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number of polls (1 or more)")),
    }
}

/// The shortest polling interval `watch` takes.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// `500ms`, `2s`, `1m` (and `1.5s`); at least [`MIN_INTERVAL`].
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'));
    let (number, unit) = s.split_at(split.unwrap_or(s.len()));
    let scale = match unit {
        "ms" => 0.001,
        "s" | "" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("unknown unit {unit:?} (write 500ms, 2s or 1m)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (write 500ms, 2s or 1m)"))?;
    let d =
        Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{s:?} is out of range"))?;
    if d < MIN_INTERVAL {
        return Err(format!("{s:?} is below the {MIN_INTERVAL:?} minimum"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_interval("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "s", "2h", "10ms", "-1s", "1e3s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_parse() {
        let cli = Cli::try_parse_from([
            "coordctl",
            "force-release",
            "lock:a",
            "--token",
            "42",
            "--reason",
            "wedged",
            "--url",
            "memory://",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.url.as_deref(), Some("memory://"));
        assert!(matches!(
            cli.command,
            Command::ForceRelease { token: 42, ref reason, operator: None, .. } if reason == "wedged"
        ));
        let cli = Cli::try_parse_from(["coordctl", "locks", "--stale", "--kind", "lock"]).unwrap();
        assert!(
            matches!(cli.command, Command::Locks { stale: true, kind: Some(ref k), .. } if k == "lock")
        );
        // Missing and malformed arguments are clap's usage errors (exit 2).
        for args in [
            &["coordctl", "force-release", "lock:a", "--reason", "r"][..],
            &[
                "coordctl",
                "force-release",
                "lock:a",
                "--token",
                "x",
                "--reason",
                "r",
            ],
            &["coordctl", "holders"],
            &["coordctl", "frobnicate"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    /// `watch --polls 0` polled once and stopped (exit 0), though it
    /// says "stop after this many polls": it is refused, naming the flag
    /// and its limit (exit 2).
    #[test]
    fn watch_refuses_zero_polls() {
        let e = Cli::try_parse_from(["coordctl", "watch", "--polls", "0"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let message = e.to_string();
        assert!(
            message.contains("--polls") && message.contains("1 or more"),
            "{message}"
        );
        let e = Cli::try_parse_from(["coordctl", "watch", "--polls", "x"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let cli = Cli::try_parse_from(["coordctl", "watch", "--polls", "1"]).unwrap();
        assert!(matches!(cli.command, Command::Watch { polls: Some(1), .. }));
    }

    #[test]
    fn help_names_the_exit_codes_and_hides_the_url() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("COORD_URL"), "{help}");
    }
}
