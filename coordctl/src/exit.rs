//! Exit codes, and the one line on stderr that goes with a failure.

use std::{io, process::ExitCode};

use coord_api::Error;

/// Success.
pub const OK: u8 = 0;
/// The backend could not be reached, answered with an error, or lacks
/// the operations family; `health` when it is Unavailable.
pub const BACKEND: u8 = 1;
/// Bad usage or bad input: a malformed URL, an unknown resource kind, an
/// empty reason (clap's own usage errors exit 2 too).
pub const USAGE: u8 = 2;
/// Nothing to act on: no live lease with the token `force-release` was
/// given, no live lease of the resource `holders` or `members` asked for,
/// no record of a breaker `breaker` was given.
pub const NOT_FOUND: u8 = 3;
/// `health` only: the backend answers, but a check is Degraded.
pub const DEGRADED: u8 = 4;

/// What `--help` says about exit codes (the README says the same).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok (health: ready)
  1  the backend is unreachable, failed or lacks operations (health: unavailable)
  2  bad usage or bad input: malformed URL, unknown resource kind, missing argument
  3  not found: force-release's token matches no live lease; holders or members
     found no live lease; breaker found no record of a name
  4  health: degraded (the backend answers, a check is near its limit)";

/// A command's failure: an exit code and, unless the command already said
/// everything, one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// The exit code.
    pub code: u8,
    /// What to print after `coordctl: ` (none: print nothing).
    pub message: Option<String>,
}

impl Fail {
    /// Exit `code` with `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Fail {
        Fail {
            code,
            message: Some(message.into()),
        }
    }

    /// Exit `code`, the command having said what it had to.
    pub fn quiet(code: u8) -> Fail {
        Fail {
            code,
            message: None,
        }
    }

    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Fail {
        Fail::new(USAGE, message)
    }

    /// Prints the message (one line) and returns the exit code.
    pub fn report(self) -> ExitCode {
        if let Some(m) = &self.message {
            eprintln!("coordctl: {}", crate::render::one_line(m));
        }
        ExitCode::from(self.code)
    }
}

/// The exit code of a coord error: bad input and configuration are the
/// caller's (2); everything else came from (or could not reach) the
/// backend (1).
pub fn code_of(e: &Error) -> u8 {
    match e {
        Error::InvalidArgument { .. } | Error::Config { .. } => USAGE,
        _ => BACKEND,
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let message = match &e {
            // The backend's own words add the cause ("Connection refused").
            Error::Unavailable {
                source: Some(s), ..
            }
            | Error::Backend {
                source: Some(s), ..
            } if !e.to_string().contains(&s.to_string()) => format!("{e}: {s}"),
            Error::NotSupported { .. } => {
                format!("{e} (coordctl needs a backend with the operations family)")
            }
            _ => e.to_string(),
        };
        Fail::new(code_of(&e), message)
    }
}

impl From<io::Error> for Fail {
    /// A closed stdout (`coordctl locks | head`) ends the command quietly;
    /// any other write error is reported.
    fn from(e: io::Error) -> Fail {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Fail::quiet(OK)
        } else {
            Fail::new(BACKEND, format!("writing the output: {e}"))
        }
    }
}

impl From<serde_json::Error> for Fail {
    fn from(e: serde_json::Error) -> Fail {
        match e.io_error_kind() {
            Some(io::ErrorKind::BrokenPipe) => Fail::quiet(OK),
            _ => Fail::new(BACKEND, format!("writing JSON: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_codes() {
        assert_eq!(Fail::from(Error::invalid("bad kind")).code, USAGE);
        assert_eq!(Fail::from(Error::config("bad url")).code, USAGE);
        let down = Error::Unavailable {
            backend: "redis(127.0.0.1:1)".into(),
            message: "connect failed".into(),
            source: Some("Connection refused (os error 111)".into()),
        };
        let fail = Fail::from(down);
        assert_eq!(fail.code, BACKEND);
        assert_eq!(
            fail.message.as_deref(),
            Some(
                "redis(127.0.0.1:1) unavailable: connect failed: Connection refused (os error 111)"
            )
        );
        let unsupported = Error::NotSupported {
            operation: "operations",
            backend: "x".into(),
        };
        assert_eq!(Fail::from(unsupported).code, BACKEND);
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        let e = io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(Fail::from(e), Fail::quiet(OK));
        let e = io::Error::other("disk full");
        assert_eq!(Fail::from(e).code, BACKEND);
    }
}
