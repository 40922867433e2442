//! `serve`: the operator's dashboard, a web page over what the other
//! commands read.
//!
//! | part | what it is |
//! |---|---|
//! | this file | the options, the checks before listening, the router, the token check |
//! | [`live`] | the refresher: the listing kept in memory, its changes pushed as server-sent events, leader changes from the elections' notifications |
//! | [`api`] | the JSON endpoints the page reads, and its two actions |
//! | `page.html` | the page itself: plain HTML and JavaScript, no build step |
//!
//! Live updates: the page holds one server-sent event stream. The server
//! walks the listing every `--refresh` (a lease that expires sends no
//! notification anywhere, so a walk is the only way to see it go) and at
//! once when an election it observes notifies a change; each walk's
//! changes go to every page as one event, a hint on which the page reads
//! its current view again. See decision 0029.
//!
//! Actions (force release, resign a leader) are off unless `--allow-actions`;
//! a dashboard listening on anything but loopback needs `--token`.

mod api;
mod live;

use std::{
    io::Write,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use coord::Client;

use crate::{
    exit::{BACKEND, Fail},
    render::rfc3339,
};

/// The page, served as it is.
const PAGE: &str = include_str!("page.html");

/// How `coordctl serve` was started.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Whether the page may force release and resign.
    pub allow_actions: bool,
    /// The token every request must carry (required off loopback).
    pub token: Option<String>,
    /// Who the audit trail names for the page's actions (the operator
    /// types their own name in; this prefixes it).
    pub operator: String,
    /// How often the listing is walked.
    pub refresh: Duration,
    /// The most leases kept in memory (beyond it the page says the view
    /// is truncated).
    pub max_leases: usize,
}

impl ServeArgs {
    /// Refuses what would be unsafe or useless before anything listens.
    pub fn check(&self) -> Result<(), Fail> {
        if let Some(t) = &self.token
            && t.trim().len() < 8
        {
            return Err(Fail::usage(
                "--token must be at least 8 characters (it is the dashboard's password)",
            ));
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(Fail::usage(format!(
                "--listen {} is not a loopback address: set --token (or COORD_DASHBOARD_TOKEN) so that only those who have it can use the dashboard",
                self.listen
            )));
        }
        if self.max_leases == 0 {
            return Err(Fail::usage("--max-leases must be at least 1"));
        }
        Ok(())
    }
}

/// What every handler shares.
pub(crate) struct App {
    pub(crate) client: Client,
    pub(crate) live: live::Live,
    pub(crate) allow_actions: bool,
    pub(crate) token: Option<String>,
    pub(crate) operator: String,
}

type Shared = Arc<App>;

/// Serves the dashboard until interrupted. Prints one line with the
/// address it listens on (with port 0, the one it got).
pub async fn serve(client: Client, args: ServeArgs, out: &mut dyn Write) -> Result<(), Fail> {
    args.check()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Fail::new(BACKEND, format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Fail::new(BACKEND, format!("cannot listen on {}: {e}", args.listen)))?;
    let app = Arc::new(App {
        live: live::Live::new(args.max_leases),
        client,
        allow_actions: args.allow_actions,
        token: args.token.clone(),
        operator: args.operator.clone(),
    });
    let refresher = tokio::spawn(live::refresh(app.clone(), args.refresh));
    writeln!(
        out,
        "coordctl: dashboard on http://{addr}/ (actions {}, token {})",
        if args.allow_actions { "on" } else { "off" },
        if args.token.is_some() {
            "required"
        } else {
            "not set"
        }
    )?;
    out.flush()?;
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    refresher.abort();
    served.map_err(|e| Fail::new(BACKEND, format!("the dashboard stopped: {e}")))
}

/// The routes: the page, the API under `/api` (behind the token check).
fn router(app: Shared) -> Router {
    let api = Router::new()
        .route("/overview", get(api::overview))
        .route("/leases", get(api::leases))
        .route("/timeline", get(api::timeline))
        .route("/instances", get(api::instances))
        .route("/audit", get(api::audit))
        .route("/health", get(api::health))
        .route("/queue", get(api::queue))
        .route("/breaker", get(api::breaker))
        .route("/graph-run", get(api::graph_run))
        .route("/events", get(live::events))
        .route("/force-release", post(api::force_release))
        .route("/resign", post(api::resign))
        .layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/", get(page))
        .nest("/api", api)
        .with_state(app)
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(PAGE),
    )
}

/// With a token set, every API request carries it: `Authorization: Bearer
/// T`, or `?token=T` (an `EventSource` cannot set headers).
async fn require_token(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let Some(expected) = &app.token else {
        return next.run(req).await;
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = req.uri().query().and_then(query_token);
    let given = bearer.map(str::to_owned).or(query);
    if given.is_some_and(|g| same(g.as_bytes(), expected.as_bytes())) {
        next.run(req).await
    } else {
        api::error(
            StatusCode::UNAUTHORIZED,
            "this dashboard needs its token: open it as http://HOST:PORT/#token=TOKEN",
        )
    }
}

/// The `token` parameter of a query, form-decoded (`%XX` and `+`: what
/// the page's `encodeURIComponent` writes).
fn query_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Equal, in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Now, as the page shows times.
pub(crate) fn now_text() -> String {
    rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str, token: Option<&str>) -> ServeArgs {
        ServeArgs {
            listen: listen.parse().unwrap(),
            allow_actions: false,
            token: token.map(str::to_owned),
            operator: "op".to_owned(),
            refresh: Duration::from_secs(1),
            max_leases: 10,
        }
    }

    #[test]
    fn off_loopback_needs_a_token() {
        assert!(args("127.0.0.1:0", None).check().is_ok());
        assert!(args("[::1]:0", None).check().is_ok());
        let fail = args("0.0.0.0:8080", None).check().unwrap_err();
        assert_eq!(fail.code, crate::exit::USAGE);
        assert!(fail.message.unwrap().contains("--token"));
        assert!(args("0.0.0.0:8080", Some("long-enough")).check().is_ok());
        assert!(args("127.0.0.1:0", Some("short")).check().is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret-token", b"secret-token"));
        assert!(!same(b"secret-token", b"secret-tokeN"));
        assert!(!same(b"secret", b"secret-token"));
    }

    #[test]
    fn query_tokens_are_form_decoded() {
        assert_eq!(
            query_token("token=a%2Fb+c%zz%4").as_deref(),
            Some("a/b c%zz%4")
        );
        assert_eq!(query_token("x=1&token=t%3D1").as_deref(), Some("t=1"));
        assert_eq!(query_token("x=1&tokens=t"), None);
    }
}
