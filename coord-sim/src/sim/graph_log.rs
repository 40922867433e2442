//! The sim server's log of graph calls: a decorator around the backend a
//! call runs on that tells the [`GraphLog`] what it answered to `submit`,
//! `take`, `complete` and `cancel`, with the (global) instant it answered
//! (a `complete` that took the next node logs its completion, then that
//! take, as the step made them).
//! The store's steps are atomic and the server answers each in turn, so the
//! log is in the backend's order. It sits outside a broken server's
//! decorator: it logs what clients were told.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    FencingToken, HolderId, Instant, Key, Namespace, Result,
    spi::{
        Call, Cancel, Complete, Dispatch, Dispatched, DynBackend, Families, GraphSpec, NodeResult,
        Reply, Submit, Take, Taken,
    },
};

use crate::history::{GraphEvent, GraphLog};

/// `inner` with its graph calls logged to `log`.
pub(crate) fn logged(inner: DynBackend, log: GraphLog) -> DynBackend {
    Arc::new(Dispatched::new(Logged { inner, log }))
}

#[derive(Debug)]
struct Logged {
    inner: DynBackend,
    log: GraphLog,
}

impl fmt::Display for Logged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

type SubmitArgs = (Key, Key, GraphSpec, Duration);
type TakeArgs = (Key, HolderId, Duration);
type CompleteArgs = (
    Key,
    Key,
    Key,
    FencingToken,
    NodeResult,
    Option<(HolderId, Duration)>,
);
type CancelArgs = (Key, Key, String);

#[async_trait]
impl Dispatch for Logged {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        let op = call.op();
        if op.family != "graphs" {
            return call.run(self.inner.clone()).await;
        }
        let s = |k: &Key| k.as_str().to_owned();
        match op.name {
            "submit" => {
                let (graph, run) = {
                    let a = call.args::<SubmitArgs>().expect("submit's args");
                    (s(&a.0), s(&a.1))
                };
                let reply = call.run(self.inner.clone()).await?;
                if let Some(r) = reply.downcast_ref::<Submit>() {
                    self.log.push(GraphEvent::Submitted {
                        graph,
                        run,
                        created: matches!(r, Submit::Created),
                        at: Instant::now(),
                    });
                }
                Ok(reply)
            }
            "take" => {
                let (graph, holder) = {
                    let a = call.args::<TakeArgs>().expect("take's args");
                    (s(&a.0), a.1.to_string())
                };
                let reply = call.run(self.inner.clone()).await?;
                if let Some(Take::Taken(t)) = reply.downcast_ref::<Take>() {
                    self.log.push(taken(graph, t, holder, Instant::now()));
                }
                Ok(reply)
            }
            "complete" => {
                let (graph, run, node, token, result, taker) = {
                    let a = call.args::<CompleteArgs>().expect("complete's args");
                    let taker = a.5.as_ref().map(|(h, _)| h.to_string());
                    (s(&a.0), s(&a.1), s(&a.2), a.3.get(), a.4.clone(), taker)
                };
                let reply = call.run(self.inner.clone()).await?;
                if let Some(r) = reply.downcast_ref::<Complete>() {
                    let at = Instant::now();
                    self.log.push(GraphEvent::Completed {
                        graph: graph.clone(),
                        run,
                        node,
                        token,
                        result,
                        reply: r.clone(),
                        at,
                    });
                    if let Complete::Recorded {
                        next: Some(Take::Taken(t)),
                        ..
                    } = r
                    {
                        self.log
                            .push(taken(graph, t, taker.unwrap_or_default(), at));
                    }
                }
                Ok(reply)
            }
            "give_back" => {
                let (graph, holder) = {
                    let a = call.args::<(Key, HolderId)>().expect("give_back's args");
                    (s(&a.0), a.1.to_string())
                };
                let reply = call.run(self.inner.clone()).await?;
                if let Some(&returned) = reply.downcast_ref::<u32>() {
                    self.log.push(GraphEvent::GaveBack {
                        graph,
                        holder,
                        returned,
                        at: Instant::now(),
                    });
                }
                Ok(reply)
            }
            "cancel" => {
                let (graph, run) = {
                    let a = call.args::<CancelArgs>().expect("cancel's args");
                    (s(&a.0), s(&a.1))
                };
                let reply = call.run(self.inner.clone()).await?;
                if let Some(Cancel::Cancelled { .. }) = reply.downcast_ref::<Cancel>() {
                    self.log.push(GraphEvent::Cancelled {
                        graph,
                        run,
                        at: Instant::now(),
                    });
                }
                Ok(reply)
            }
            _ => call.run(self.inner.clone()).await,
        }
    }
}

/// The event of attempt `t` handed to `holder` at `at`.
fn taken(graph: String, t: &Taken, holder: String, at: Instant) -> GraphEvent {
    GraphEvent::Taken {
        graph,
        run: t.run.as_str().to_owned(),
        node: t.node.as_str().to_owned(),
        attempt: t.attempt,
        token: t.token.get(),
        holder,
        at,
    }
}
