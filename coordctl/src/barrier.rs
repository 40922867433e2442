//! `coordctl barrier NAME…`: "which barrier is stuck, and who has
//! arrived?" Each named barrier's generation, the parties it waits for, who
//! arrived (with the time left on each arrival) and how many are missing,
//! read with `peek`, which makes no barrier: a look at a mistyped name says
//! there is nothing there rather than making one. `coordctl latch NAME…`:
//! each named latch's generation, count and what is left (a latch's read
//! makes nothing either).

use std::{io::Write, time::Duration};

use coord_api::{BarrierState, Client, Error, LatchState};
use serde::Serialize;

use crate::{
    exit::{BACKEND, Fail, NOT_FOUND},
    render::{Listing, human, one_line},
};

/// A barrier's record, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BarrierRow {
    /// The barrier's name.
    pub name: String,
    /// `cyclic` or `double`.
    pub kind: &'static str,
    /// The current generation.
    pub generation: u64,
    /// The parties the generation waits for, once its first arrival set
    /// them.
    pub parties: Option<u32>,
    /// A double barrier's generation: whether everyone entered (those
    /// arrived are then the members still inside).
    pub entered: bool,
    /// The live arrivals, in arrival order.
    pub arrived: Vec<ArrivedRow>,
    /// How many more arrivals trip the generation (none once entered).
    pub missing: Option<u32>,
}

/// One live arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArrivedRow {
    /// The participant's id.
    pub participant: String,
    /// The time left on its arrival, in milliseconds.
    pub ttl_left_ms: u64,
}

impl BarrierRow {
    /// The row of barrier `name` (a double one when `double`) in state `s`.
    pub fn of(name: &str, double: bool, s: &BarrierState) -> BarrierRow {
        let arrived: Vec<ArrivedRow> = (s.arrivals.iter())
            .map(|a| ArrivedRow {
                participant: a.participant.as_str().to_owned(),
                ttl_left_ms: u64::try_from(a.expires_in.as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        let entered = s.entered.is_some();
        let count = u32::try_from(arrived.len()).unwrap_or(u32::MAX);
        BarrierRow {
            name: name.to_owned(),
            kind: if double { "double" } else { "cyclic" },
            generation: s.generation,
            parties: s.parties,
            entered,
            missing: s
                .parties
                .filter(|_| !entered)
                .map(|p| p.saturating_sub(count)),
            arrived,
        }
    }

    /// The table's cells.
    pub fn cells(&self) -> [String; 7] {
        let arrivals: Vec<String> = (self.arrived.iter())
            .map(|a| {
                let left = human(Duration::from_millis(a.ttl_left_ms));
                format!("{} ({left})", one_line(&a.participant))
            })
            .collect();
        let phase = if self.entered { "entered" } else { "arriving" };
        [
            self.name.clone(),
            format!("{} {phase}", self.kind),
            self.generation.to_string(),
            self.parties
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            self.missing
                .map_or_else(|| "-".to_owned(), |m| m.to_string()),
            self.arrived.len().to_string(),
            if arrivals.is_empty() {
                "-".to_owned()
            } else {
                arrivals.join(", ")
            },
        ]
    }
}

/// The barrier table's header.
pub const BARRIER_HEADER: [&str; 7] = [
    "BARRIER",
    "KIND",
    "GENERATION",
    "PARTIES",
    "MISSING",
    "ARRIVED",
    "ARRIVALS (TTL-LEFT)",
];

/// A countdown latch, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatchRow {
    /// The latch's name.
    pub name: String,
    /// The current generation (drawn at each setting).
    pub generation: u64,
    /// The count it was set to.
    pub initial: u32,
    /// What is left to count down (0: open).
    pub remaining: u32,
    /// Time left before the latch is gone, in milliseconds.
    pub expires_in_ms: u64,
}

impl LatchRow {
    /// The row of latch `name` in state `s`.
    pub fn of(name: &str, s: &LatchState) -> LatchRow {
        LatchRow {
            name: name.to_owned(),
            generation: s.generation,
            initial: s.initial,
            remaining: s.remaining,
            expires_in_ms: u64::try_from(s.expires_in.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The table's cells.
    pub fn cells(&self) -> [String; 5] {
        [
            self.name.clone(),
            self.generation.to_string(),
            format!("{}/{}", self.remaining, self.initial),
            if self.remaining == 0 {
                "open"
            } else {
                "closed"
            }
            .to_owned(),
            human(Duration::from_millis(self.expires_in_ms)),
        ]
    }
}

/// The latch table's header.
pub const LATCH_HEADER: [&str; 5] = ["LATCH", "GENERATION", "LEFT/SET", "STATE", "EXPIRES-IN"];

/// The latches `names`; exit 3 naming those with no latch (never set, or
/// expired).
pub async fn latches(
    client: &Client,
    names: &[String],
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let mut listing = Listing::new(json, LATCH_HEADER);
    let mut unset = Vec::new();
    for name in names {
        match client.latch(name).state().await? {
            Some(s) => listing.page(out, &[LatchRow::of(name, &s)], LatchRow::cells)?,
            None => unset.push(format!("{name:?}")),
        }
    }
    listing.finish(out)?;
    if unset.is_empty() {
        return Ok(());
    }
    Err(Fail::new(
        NOT_FOUND,
        format!("no latch {}: never set, or expired", unset.join(", ")),
    ))
}

/// The records of the barriers `names` (double ones when `double`), read
/// with `peek`; exit 3 naming those with no record.
pub async fn barriers(
    client: &Client,
    names: &[String],
    double: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let mut listing = Listing::new(json, BARRIER_HEADER);
    let mut unmade = Vec::new();
    for name in names {
        // The parties play no part in a look.
        let peek = match double {
            true => client.double_barrier(name, 1).peek().await,
            false => client.barrier(name, 1).peek().await,
        };
        let state = match peek {
            Ok(state) => state,
            Err(e @ Error::NotSupported { .. }) => {
                return Err(Fail::new(
                    BACKEND,
                    format!("{e}: this backend cannot show a barrier without creating it"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        match state {
            Some(s) => listing.page(out, &[BarrierRow::of(name, double, &s)], BarrierRow::cells)?,
            None => unmade.push(format!("{name:?}")),
        }
    }
    listing.finish(out)?;
    if unmade.is_empty() {
        return Ok(());
    }
    let kind = if double { "double barrier" } else { "barrier" };
    Err(Fail::new(
        NOT_FOUND,
        format!(
            "no record of {kind} {}: nobody has used it (or the backend forgot it a day \
             after its last use); looking does not create it",
            unmade.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::{commands::tests::ctl, exit::NOT_FOUND};

    /// "Which barrier is stuck, and who has arrived?": `barrier NAME…`
    /// prints the generation, the parties, who arrived and how many are
    /// missing, and makes no barrier (exit 3 naming those with no record,
    /// again at the next look).
    #[tokio::test(flavor = "current_thread")]
    async fn barriers_are_shown_by_name_and_never_made() {
        let url = "memory://?namespace=ctl-barriers";
        let client = coord::connect(url).await.unwrap();
        let deploy = client.barrier("deploy", 3);
        let waiting = tokio::spawn(async move { deploy.wait().await });
        // Until the waiter's arrival (its record) is there.
        let arrived = async {
            loop {
                if let Ok(json) = ctl(&["barrier", "deploy", "--json", "--url", url]).await {
                    let listed: Value = serde_json::from_str(&json).unwrap();
                    if listed[0]["arrived"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
                    {
                        return listed;
                    }
                }
                tokio::task::yield_now().await;
            }
        };
        let listed = tokio::time::timeout(std::time::Duration::from_secs(5), arrived)
            .await
            .expect("the waiter arrives");
        let b = &listed[0];
        assert_eq!(
            (b["name"].as_str(), b["kind"].as_str()),
            (Some("deploy"), Some("cyclic"))
        );
        assert_eq!(
            (b["parties"].as_u64(), b["missing"].as_u64()),
            (Some(3), Some(2)),
            "{listed}"
        );
        let instance = client.instance_id().to_string();
        assert_eq!(b["arrived"][0]["participant"], instance, "{listed}");
        let table = ctl(&["barrier", "deploy", "--url", url]).await.unwrap();
        assert!(
            table.starts_with("BARRIER") && table.contains("\ndeploy   cyclic arriving "),
            "{table}"
        );
        for _ in 0..2 {
            let fail = ctl(&["barrier", "deploy", "nobody", "--url", url]).await;
            let message = fail.unwrap_err();
            assert_eq!(message.code, NOT_FOUND);
            let message = message.message.unwrap();
            assert!(
                message.contains("\"nobody\"") && !message.contains("deploy"),
                "{message}"
            );
            let double = ctl(&["barrier", "deploy", "--double", "--url", url]).await;
            assert_eq!(double.unwrap_err().code, NOT_FOUND, "kinds apart");
        }
        waiting.abort();
    }

    /// `latch NAME…` prints each latch's generation, what is left of its
    /// count and when it goes; exit 3 naming those never set.
    #[tokio::test(flavor = "current_thread")]
    async fn latches_are_shown_by_name() {
        let url = "memory://?namespace=ctl-latches";
        let client = coord::connect(url).await.unwrap();
        let latch = client.latch("warmup");
        assert!(latch.try_set_count(3).await.unwrap());
        latch.count_down().await.unwrap();
        let json = ctl(&["latch", "warmup", "--json", "--url", url]).await;
        let listed: Value = serde_json::from_str(&json.unwrap()).unwrap();
        let l = &listed[0];
        assert_eq!(
            (l["initial"].as_u64(), l["remaining"].as_u64()),
            (Some(3), Some(2)),
            "{listed}"
        );
        let table = ctl(&["latch", "warmup", "--url", url]).await.unwrap();
        assert!(
            table.contains(" 2/3 ") && table.contains(" closed "),
            "{table}"
        );
        let fail = ctl(&["latch", "warmup", "cold", "--url", url]).await;
        let fail = fail.unwrap_err();
        assert_eq!(fail.code, NOT_FOUND);
        let message = fail.message.unwrap();
        assert!(
            message.contains("\"cold\"") && !message.contains("warmup"),
            "{message}"
        );
    }
}
