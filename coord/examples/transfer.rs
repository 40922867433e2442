//! Moving money between two accounts under both accounts' locks, taken
//! together with a multi-lock: four tellers move money around a ring of
//! accounts, each transfer naming its two accounts in whatever order it
//! likes. No teller ever waits while holding one account (so they cannot
//! deadlock), each account's store checks the fencing token of every write
//! (so a holder that lost its lease cannot write), and the money adds up.
//!
//! ```text
//! cargo run -p coord --example transfer                      # in-process
//! cargo run -p coord --example transfer -- --url redis://127.0.0.1:6379
//! ```

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord::{FencingToken, connect};

const ACCOUNTS: usize = 5;
const TELLERS: usize = 4;
const TRANSFERS: usize = 25;
const OPENING: i64 = 1000;
const USAGE: &str = "usage: transfer [--url <url>]   (default memory://)";

/// An account as its store keeps it: the balance and the largest token a
/// write carried. A write with a smaller token is refused: it comes from a
/// holder whose lock has since been granted to someone else.
#[derive(Debug, Default)]
struct Account {
    balance: i64,
    fence: Option<FencingToken>,
}

#[derive(Debug, Default)]
struct Bank(Mutex<HashMap<String, Account>>);

impl Bank {
    fn balance(&self, account: &str) -> i64 {
        self.0.lock().unwrap()[account].balance
    }

    /// Writes `balance` to `account`, fenced by `token`.
    fn write(&self, account: &str, balance: i64, token: FencingToken) -> Result<(), String> {
        let mut accounts = self.0.lock().unwrap();
        let a = accounts.get_mut(account).expect("an open account");
        if a.fence.is_some_and(|f| token < f) {
            return Err(format!("{account}: stale token {token:?}"));
        }
        a.fence = Some(token);
        a.balance = balance;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut url = "memory://".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), arg.strip_prefix("--url=")) {
            ("--url", _) => match args.next() {
                Some(u) => url = u,
                None => return usage("--url needs a value"),
            },
            (_, Some(u)) => url = u.to_owned(),
            (other, None) => return usage(&format!("unknown argument {other:?}")),
        }
    }
    match run(&url).await {
        Ok(summary) if summary.total == summary.opened => ExitCode::SUCCESS,
        Ok(summary) => {
            eprintln!("the money does not add up: {summary:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("transfer failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("{msg}\n{USAGE}");
    ExitCode::from(2)
}

fn account(i: usize) -> String {
    format!("accounts/{}", i % ACCOUNTS)
}

/// What a run saw.
#[derive(Debug)]
pub struct Summary {
    /// Transfers made.
    pub transfers: usize,
    /// The money in every account at the end.
    pub total: i64,
    /// The money the accounts opened with.
    pub opened: i64,
}

pub async fn run(url: &str) -> Result<Summary, Box<dyn std::error::Error>> {
    let bank = Arc::new(Bank::default());
    for i in 0..ACCOUNTS {
        bank.0.lock().unwrap().insert(
            account(i),
            Account {
                balance: OPENING,
                ..Account::default()
            },
        );
    }
    let mut tellers = Vec::new();
    for t in 0..TELLERS {
        let client = connect(url).await?;
        let bank = bank.clone();
        tellers.push(tokio::spawn(async move {
            for n in 0..TRANSFERS {
                // Neighbours on the ring, named in either order.
                let (from, to) = match (t + n) % 2 {
                    0 => (account(t + n), account(t + n + 1)),
                    _ => (account(t + n + 1), account(t + n)),
                };
                let both = client
                    .multi_lock([&from, &to])
                    .ttl(Duration::from_secs(5))
                    .wait_timeout(Some(Duration::from_secs(10)));
                let guard = both.lock().await?;
                let amount = 10 + (n as i64 % 7);
                let (a, b) = (bank.balance(&from), bank.balance(&to));
                tokio::task::yield_now().await; // others run meanwhile
                bank.write(&from, a - amount, guard.token(&from).expect("a member"))?;
                bank.write(&to, b + amount, guard.token(&to).expect("a member"))?;
                guard.release().await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for t in tellers {
        t.await?.map_err(|e| e.to_string())?;
    }
    let total: i64 = (0..ACCOUNTS).map(|i| bank.balance(&account(i))).sum();
    for i in 0..ACCOUNTS {
        println!("{}: {}", account(i), bank.balance(&account(i)));
    }
    let summary = Summary {
        transfers: TELLERS * TRANSFERS,
        total,
        opened: OPENING * ACCOUNTS as i64,
    };
    println!(
        "{} transfers by {TELLERS} tellers; total {total} (opened with {})",
        summary.transfers, summary.opened
    );
    Ok(summary)
}
