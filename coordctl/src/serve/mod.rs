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
//! a dashboard listening on anything but loopback needs `--token`. Every
//! request must name the dashboard in its `Host` header (the listening
//! address, `localhost`, or a name given by `--allow-host`): others are
//! refused with 403, so that a web page whose own name resolves to the
//! loopback address (DNS rebinding) cannot read or drive it.

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
    /// Host names the page may be reached by besides the listening address
    /// and `localhost` (`--allow-host`).
    pub allow_hosts: Vec<String>,
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
    /// The address listened on (with the port it got).
    pub(crate) addr: SocketAddr,
    /// `--allow-host` names, lowercase.
    pub(crate) allow_hosts: Vec<String>,
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
        addr,
        allow_hosts: args.allow_hosts.iter().map(|h| h.to_lowercase()).collect(),
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
        .route("/barrier", get(api::barrier))
        .route("/latch", get(api::latch))
        .route("/graph-run", get(api::graph_run))
        .route("/events", get(live::events))
        .route("/force-release", post(api::force_release))
        .route("/resign", post(api::resign))
        .layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/", get(page))
        .nest("/api", api)
        .layer(middleware::from_fn_with_state(app.clone(), require_host))
        .with_state(app)
}

/// Refuses (403) a request whose `Host` does not name this dashboard: its
/// listening address and port, `localhost` at that port, or an
/// `--allow-host` name (at any port: a proxy's). A page reaching the
/// dashboard by DNS rebinding carries its own name, so it is refused
/// whether or not a token is set.
async fn require_host(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if host.is_some_and(|h| host_allowed(h, app.addr, &app.allow_hosts)) {
        return next.run(req).await;
    }
    api::error(
        StatusCode::FORBIDDEN,
        format!(
            "this dashboard answers only requests for {}, localhost:{} or a name given by --allow-host, not Host {:?}",
            app.addr,
            app.addr.port(),
            host.unwrap_or("")
        ),
    )
}

/// Whether `host` (a `Host` header: `name[:port]`, `[v6][:port]`) names
/// the dashboard listening on `addr`.
fn host_allowed(host: &str, addr: SocketAddr, allowed: &[String]) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !p.contains(']') => match p.parse::<u16>() {
            Ok(p) => (n, p),
            Err(_) => return false,
        },
        _ => (host, 80),
    };
    let name = name.to_ascii_lowercase();
    if allowed.contains(&name) {
        return true;
    }
    if port != addr.port() {
        return false;
    }
    if name == "localhost" {
        return true;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(&name);
    match bare.parse::<std::net::IpAddr>() {
        // Listening on every address: any of the machine's addresses.
        Ok(_) if addr.ip().is_unspecified() => true,
        Ok(ip) => ip == addr.ip(),
        Err(_) => false,
    }
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
        .and_then(bearer_token);
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

/// The token of an `Authorization` value: the scheme `Bearer` in any case
/// (RFC 7235: schemes are case-insensitive), then the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
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

    /// The scheme is case-insensitive (RFC 7235): `bearer T` was refused.
    #[test]
    fn a_bearer_token_in_any_case() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER  t0k"] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        for value in ["Basic t0k", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }

    fn args(listen: &str, token: Option<&str>) -> ServeArgs {
        ServeArgs {
            listen: listen.parse().unwrap(),
            allow_actions: false,
            token: token.map(str::to_owned),
            allow_hosts: Vec::new(),
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
    fn only_hosts_naming_the_dashboard_are_allowed() {
        let at: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let allowed = ["dash.internal".to_owned()];
        for ok in [
            "127.0.0.1:7070",
            "localhost:7070",
            "LocalHost:7070",
            "dash.internal",
            "DASH.internal:443",
        ] {
            assert!(host_allowed(ok, at, &allowed), "{ok}");
        }
        for refused in [
            "rebind.attacker.example:7070",
            "127.0.0.1:7071",
            "127.0.0.2:7070",
            "localhost",
            "127.0.0.1",
            "localhost:x",
            "dash.internal.attacker.example",
            "",
        ] {
            assert!(!host_allowed(refused, at, &allowed), "{refused}");
        }
        let v6: SocketAddr = "[::1]:7070".parse().unwrap();
        assert!(host_allowed("[::1]:7070", v6, &[]));
        assert!(!host_allowed("[::1]", v6, &[]));
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(host_allowed("10.0.0.7:8080", any, &[]));
        assert!(!host_allowed("dash.example:8080", any, &[]));
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
