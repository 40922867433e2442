//! The JSON the page reads, and its two actions. Listings of leases are
//! served from the refresher's snapshot (paged, filtered by kind, resource
//! prefix and staleness); everything else is read from the backend per
//! request. Errors are `{"error": "..."}` with a status that says whose
//! fault: 400 bad input, 401 no token, 403 actions off, 404 nothing live
//! to act on or to show, 501 the backend cannot answer without changing
//! something, 503 backend unreachable.
//!
//! Every fencing token the page is given (a `token` field, anywhere in a
//! document, and a `generation`, which barriers draw by the token rule) is
//! a decimal string, and the page never turns one into a number: a JavaScript number is exact only up to 2^53 and tokens are
//! `u64` (the backend's clock in µs, or a counter run ahead of it). An
//! action takes its token as a string (or a number, for scripts).
//! `coordctl --json` keeps numbers.

use std::time::SystemTime;

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use coord_api::{
    Error, FencingToken, Forced, Key,
    spi::{Resource, ResourceKind},
};
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::{Value, json};

use super::Shared;
use crate::{
    barrier::{BarrierRow, LatchRow},
    exit::{Fail, NOT_FOUND, USAGE},
    render::{AuditRow, BreakerRow, HealthRow, InstanceRow, LeaseRow, QueueRow, rfc3339},
};

/// The page size when the page asks for none, and the largest it may.
const PAGE: usize = 50;
const MAX_PAGE: usize = 500;

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A command's failure as an HTTP answer.
fn failed(fail: Fail) -> Response {
    let status = match fail.code {
        USAGE => StatusCode::BAD_REQUEST,
        NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, fail.message.unwrap_or_else(|| "failed".to_owned()))
}

fn ok<T: Serialize>(value: T) -> Response {
    match serde_json::to_value(value) {
        Ok(mut v) => {
            tokens_as_text(&mut v);
            Json(v).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Every `token` and `generation` of `v` (at any depth) that is a number,
/// as its decimal string (see the module's docs): a barrier's generations
/// follow the fencing-token rule, and a breaker's are shown alike.
pub(crate) fn tokens_as_text(v: &mut Value) {
    match v {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                match field {
                    Value::Number(n) if name == "token" || name == "generation" => {
                        *field = Value::String(n.to_string())
                    }
                    _ => tokens_as_text(field),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tokens_as_text),
        _ => {}
    }
}

/// A token as the page sends it: a decimal string (or a number).
fn token_text<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Token {
        Number(u64),
        Text(String),
    }
    match Token::deserialize(d)? {
        Token::Number(n) => Ok(n),
        Token::Text(t) => t.trim().parse().map_err(|_| {
            de::Error::custom(format!(
                "token {t:?} is not a token (a whole number, the Token column)"
            ))
        }),
    }
}

/// `GET /api/overview`: the backend's state, counts per kind, stale
/// leases, whether actions are on.
pub(crate) async fn overview(State(app): State<Shared>) -> Response {
    let snap = app.live.snapshot();
    let mut kinds = serde_json::Map::new();
    for row in snap.leases.values() {
        let n = kinds.entry(row.kind.clone()).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    ok(json!({
        "backend": snap.backend,
        "version": snap.version,
        "read_at": snap.read_at,
        "truncated": snap.truncated,
        "total": snap.leases.len(),
        "stale": snap.leases.values().filter(|r| !r.alive).count(),
        "kinds": kinds,
        "actions": app.allow_actions,
    }))
}

/// The query of `GET /api/leases`.
#[derive(Debug, Deserialize)]
pub(crate) struct LeaseQuery {
    kind: Option<String>,
    prefix: Option<String>,
    stale: Option<bool>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /api/leases?kind=&prefix=&stale=&offset=&limit=`: one page of the
/// snapshot's leases, in resource order; `kind` is one kind or several,
/// comma-separated (none: every kind). `prefix` matches the resource's
/// name (`jobs/`) or the whole resource (`lock:jobs/`).
pub(crate) async fn leases(State(app): State<Shared>, Query(q): Query<LeaseQuery>) -> Response {
    let mut kinds = Vec::new();
    for k in q
        .kind
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|k| !k.is_empty())
    {
        match k.trim().parse::<ResourceKind>() {
            Ok(k) => kinds.push(k.as_str()),
            Err(e) => return failed(e.into()),
        }
    }
    let limit = q.limit.unwrap_or(PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit {limit}: a page holds 1 to {MAX_PAGE} leases"),
        );
    }
    let prefix = q.prefix.unwrap_or_default();
    let stale = q.stale.unwrap_or(false);
    let offset = q.offset.unwrap_or(0);
    let snap = app.live.snapshot();
    let matching = snap.leases.values().filter(|r| {
        (kinds.is_empty() || kinds.contains(&r.kind.as_str()))
            && (!stale || !r.alive)
            && (r.resource.starts_with(&prefix)
                || r.resource[r.kind.len() + 1..].starts_with(&prefix))
    });
    let mut total = 0;
    let mut items: Vec<&LeaseRow> = Vec::new();
    for row in matching {
        if total >= offset && items.len() < limit {
            items.push(row);
        }
        total += 1;
    }
    ok(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "items": items,
        "read_at": snap.read_at,
        "truncated": snap.truncated,
        "backend": snap.backend,
    }))
}

/// `GET /api/timeline`: leader changes, newest first.
pub(crate) async fn timeline(State(app): State<Shared>) -> Response {
    ok(&app.live.snapshot().timeline)
}

/// `GET /api/instances`: live instances (read from the backend).
pub(crate) async fn instances(State(app): State<Shared>) -> Response {
    match app.client.operations().instances().await {
        Ok(list) => ok(list.iter().map(InstanceRow::of).collect::<Vec<_>>()),
        Err(e) => failed(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<u32>,
}

/// `GET /api/audit?limit=`: the audit trail, newest first.
pub(crate) async fn audit(State(app): State<Shared>, Query(q): Query<AuditQuery>) -> Response {
    match app.client.operations().audit(q.limit.unwrap_or(50)).await {
        Ok(list) => ok(list.iter().map(AuditRow::of).collect::<Vec<_>>()),
        Err(e) => failed(e.into()),
    }
}

/// `GET /api/health`: the backend's health and its checks.
pub(crate) async fn health(State(app): State<Shared>) -> Response {
    ok(HealthRow::of(&app.client.operations().health().await))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NameQuery {
    name: String,
}

/// `GET /api/queue?name=`: a queue's depth, in flight, dead letters,
/// consumers and delivery counts (what `coordctl queue` prints).
pub(crate) async fn queue(State(app): State<Shared>, Query(q): Query<NameQuery>) -> Response {
    let queue = app.client.queue::<Value>(&q.name);
    match queue.stats().await {
        Ok(s) => ok(QueueRow::of(&q.name, &s)),
        Err(e) => failed(e.into()),
    }
}

/// `GET /api/breaker?name=`: a breaker's phase, counts and policy, read
/// with `Breaker::peek`, which never makes a breaker: one with no record
/// answers 404 and stays unmade. (A read through `state()` would birth it
/// with the default policy, and the family's rule 1 would then keep that
/// policy over the application's: an operator's look must not choose it.)
pub(crate) async fn breaker(State(app): State<Shared>, Query(q): Query<NameQuery>) -> Response {
    let breaker = match app.client.breaker(&q.name).build() {
        Ok(b) => b,
        Err(e) => return failed(e.into()),
    };
    match breaker.peek().await {
        Ok(Some(s)) => ok(BreakerRow::of(&q.name, &s)),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!(
                "breaker {:?} has no record: no instance has used it yet (or the backend forgot it after a day unused); looking does not create it",
                q.name
            ),
        ),
        Err(e @ Error::NotSupported { .. }) => error(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "{e}: this backend cannot show a breaker without creating it, so the dashboard does not look"
            ),
        ),
        Err(e) => failed(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct BarrierQuery {
    name: String,
    /// A double barrier's (a name's cyclic and double barriers are apart).
    #[serde(default)]
    double: bool,
}

/// `GET /api/barrier?name=[&double=true]`: a barrier's generation, parties,
/// how many are missing and who arrived (what `coordctl barrier` prints),
/// read with `peek`, which makes no barrier: one with no record answers
/// 404 and stays unmade (decision 0075).
pub(crate) async fn barrier(State(app): State<Shared>, Query(q): Query<BarrierQuery>) -> Response {
    // The parties play no part in a look.
    let peek = match q.double {
        true => app.client.double_barrier(&q.name, 1).peek().await,
        false => app.client.barrier(&q.name, 1).peek().await,
    };
    match peek {
        Ok(Some(s)) => ok(BarrierRow::of(&q.name, q.double, &s)),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!(
                "barrier {:?} has no record: nobody has used it (or the backend forgot it a day after its last use); looking does not create it",
                q.name
            ),
        ),
        Err(e @ Error::NotSupported { .. }) => error(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "{e}: this backend cannot show a barrier without creating it, so the dashboard does not look"
            ),
        ),
        Err(e) => failed(e.into()),
    }
}

/// `GET /api/latch?name=`: a latch's generation, count and what is left
/// (what `coordctl latch` prints); 404 for a latch never set or expired (a
/// latch's read makes nothing).
pub(crate) async fn latch(State(app): State<Shared>, Query(q): Query<NameQuery>) -> Response {
    match app.client.latch(&q.name).state().await {
        Ok(Some(s)) => ok(LatchRow::of(&q.name, &s)),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no latch {:?}: never set, or expired", q.name),
        ),
        Err(e) => failed(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunQuery {
    graph: String,
    run: String,
}

/// `GET /api/graph-run?graph=&run=`: a job graph run's state and its
/// nodes' (read through the backend's graphs family: the client's
/// `GraphRun` needs the graph's definition, which an operator lacks).
pub(crate) async fn graph_run(State(app): State<Shared>, Query(q): Query<RunQuery>) -> Response {
    let (graph, run) = match (Key::new(&q.graph), Key::new(&q.run)) {
        (Ok(g), Ok(r)) => (g, r),
        (Err(e), _) | (_, Err(e)) => return failed(e.into()),
    };
    let graphs = match app.client.backend().graphs() {
        Some(g) => g,
        None => return error(StatusCode::NOT_FOUND, "this backend has no job graphs"),
    };
    let span = tracing::info_span!("coordctl.serve", op = "graph-run", graph = %graph, run = %run);
    let status = tracing::Instrument::instrument(graphs.status(&graph, &run, false), span).await;
    match status {
        Ok(Some(s)) => ok(json!({
            "graph": q.graph,
            "run": q.run,
            "state": format!("{:?}", s.state),
            "submitted_at": rfc3339(s.submitted_at),
            "ended_at": s.ended_at.map(rfc3339),
            "cancelled": s.cancelled,
            "nodes": s.nodes.iter().map(|n| json!({
                "name": n.name.as_str(),
                "state": format!("{:?}", n.state),
                "attempts": n.attempts,
                "token": n.token.map(|t| t.get()),
                "worker": n.worker.as_ref().map(|w| w.to_string()),
            })).collect::<Vec<_>>(),
        })),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!(
                "graph {:?} has no run {:?} (never submitted, or ended longer ago than its retention)",
                q.graph, q.run
            ),
        ),
        Err(e) => failed(e.into()),
    }
}

/// The body of an action.
#[derive(Debug, Deserialize)]
pub(crate) struct Action {
    /// `KIND:NAME` for a force release; the election's name for a resign.
    #[serde(default)]
    resource: String,
    #[serde(default)]
    election: String,
    #[serde(deserialize_with = "token_text")]
    token: u64,
    reason: String,
    operator: String,
}

/// `POST /api/force-release` `{resource, token, reason, operator}` (the
/// token a string).
pub(crate) async fn force_release(State(app): State<Shared>, Json(a): Json<Action>) -> Response {
    let resource = match a.resource.trim().parse::<Resource>() {
        Ok(r) => r,
        Err(e) => return failed(e.into()),
    };
    act(&app, resource, &a, "force released").await
}

/// `POST /api/resign` `{election, token, reason, operator}` (the token a
/// string): ends the leader's term with that token (a fenced force
/// release of the term).
pub(crate) async fn resign(State(app): State<Shared>, Json(a): Json<Action>) -> Response {
    let resource = match Key::new(a.election.trim()) {
        Ok(k) => Resource::new(ResourceKind::Election, k),
        Err(e) => return failed(e.into()),
    };
    act(&app, resource, &a, "resigned").await
}

/// A fenced, audited force release from the page.
async fn act(app: &Shared, resource: Resource, a: &Action, done: &str) -> Response {
    if !app.allow_actions {
        return error(
            StatusCode::FORBIDDEN,
            "actions are off: start coordctl serve with --allow-actions to force release or resign from the page",
        );
    }
    let who = a.operator.trim();
    if who.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "say who you are: the audit trail records the operator",
        );
    }
    let operator = format!("{who} (dashboard of {})", app.operator);
    let ops = app.client.operations().operator(operator);
    let token = FencingToken(a.token);
    let res = ops.force_release(&resource, token, &a.reason).await;
    app.live.poke();
    match res {
        Ok(Forced::Released { holder }) => ok(json!({
            "outcome": "released",
            "message": format!("{resource}: {done} the lease of {holder} (token {token}); recorded in the audit trail"),
            "at": rfc3339(SystemTime::now()),
        })),
        Ok(Forced::NotFound { current }) => {
            let live = if current.is_empty() {
                "it has no live lease".to_owned()
            } else {
                let tokens: Vec<String> = current.iter().map(|t| t.to_string()).collect();
                format!("its live tokens are {}", tokens.join(", "))
            };
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "{resource}: no live lease has token {token} ({live}); nothing changed, the refusal is in the audit trail"
                ),
            )
        }
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{resource}: unexpected outcome {other:?}"),
        ),
        Err(e) => failed(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::serve::{App, live::Live};

    /// 2^53 + 1: the first whole number a JavaScript number cannot hold
    /// (`JSON.parse` reads it as 9007199254740992).
    const BEYOND: u64 = 9_007_199_254_740_993;

    async fn body(r: Response) -> Value {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await;
        serde_json::from_slice(&bytes.unwrap()).unwrap()
    }

    fn row(resource: &str, token: u64) -> LeaseRow {
        LeaseRow {
            resource: resource.to_owned(),
            kind: "lock".to_owned(),
            role: "exclusive".to_owned(),
            holds: 1,
            holder: "web-1#00000000000000000000000000000001".to_owned(),
            instance: "web-1".to_owned(),
            token: Some(token),
            acquired_at: None,
            age_ms: None,
            ttl_left_ms: 5_000,
            alive: true,
            waiters: None,
        }
    }

    /// The page read tokens as JavaScript numbers, exact only up to 2^53:
    /// a token beyond it showed other digits, and a force release sent
    /// back a token no lease carries. Every token the page reads is a
    /// string with every digit, and an action takes one back.
    #[tokio::test]
    async fn tokens_reach_the_page_as_strings_with_every_digit() {
        let client = coord::connect("memory://?namespace=api-tokens")
            .await
            .unwrap();
        let app = Arc::new(App {
            client,
            live: Live::new(10),
            allow_actions: false,
            token: None,
            operator: "test".to_owned(),
            addr: "127.0.0.1:7070".parse().unwrap(),
            allow_hosts: Vec::new(),
        });
        let big = row("lock:big", BEYOND);
        let (r, role, h) = big.identity();
        let id = (r.to_owned(), role.to_owned(), h.to_owned());
        app.live.snapshot().leases.insert(id, big);
        let q = LeaseQuery {
            kind: None,
            prefix: None,
            stale: None,
            offset: None,
            limit: None,
        };
        let listed = body(leases(State(app.clone()), Query(q)).await).await;
        assert_eq!(listed["items"][0]["token"], json!("9007199254740993"));

        // Wherever a token sits (a watch event's lease and its before).
        let mut event =
            json!({"events": [{"lease": row("lock:a", BEYOND), "before": row("lock:a", 7)}]});
        tokens_as_text(&mut event);
        assert_eq!(event["events"][0]["lease"]["token"], "9007199254740993");
        assert_eq!(event["events"][0]["before"]["token"], "7");
        assert_eq!(event["events"][0]["lease"]["holds"], 1, "{event}");

        // The page sends it back as a string; a number still does.
        let action = |token: &str| {
            serde_json::from_str::<Action>(&format!(
                r#"{{"resource":"lock:big","token":{token},"reason":"r","operator":"o"}}"#
            ))
        };
        assert_eq!(action("\"9007199254740993\"").unwrap().token, BEYOND);
        assert_eq!(action("42").unwrap().token, 42);
        let bad = action("\"12x\"").unwrap_err().to_string();
        assert!(bad.contains("\"12x\" is not a token"), "{bad}");
    }
}
