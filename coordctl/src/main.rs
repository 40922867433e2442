//! `coordctl`: the operator's command line for coord. Who holds what in a
//! namespace and whether its holder is alive, the leases of one resource,
//! fenced and audited force release, the audit trail, live instances,
//! health, and a live view of changes. A thin shell over
//! `Client::operations()`; see README.md for commands and exit codes.
#![deny(missing_docs)]

mod barrier;
mod cli;
mod commands;
mod exit;
mod render;
mod selection;
mod serve;
mod watch;

use std::{
    io::{self, BufWriter, Write},
    process::ExitCode,
};

use clap::Parser;

use crate::exit::{BACKEND, Fail};

fn main() -> ExitCode {
    // Usage errors: clap's own message, exit 2; --help and --version exit 0.
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Fail::new(BACKEND, format!("cannot start the runtime: {e}")).report(),
    };
    let mut out = BufWriter::new(io::stdout());
    let result = runtime
        .block_on(commands::run(cli, &mut out))
        .and_then(|()| out.flush().map_err(Fail::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => {
            // What was printed comes before the reason it stopped.
            let _ = out.flush();
            fail.report()
        }
    }
}
