//! Login for the admin UI and API: the middleware in front of every route, the setup and
//! login pages, logout. Sessions ride in an HttpOnly, SameSite=Strict cookie; every
//! state-changing request must carry the session's CSRF token: header `X-CSRF-Token`, or
//! the form field `csrf` of a url-encoded form, or, for a multipart upload (whose body is
//! streamed to disk, never read ahead here), the query parameter `?csrf=`. The login and
//! setup forms use a short-lived pre-session token in a cookie of its own (double submit).
//!
//! A scraper has no session: `GET /metrics` also takes HTTP Basic credentials (user
//! `admin`, the admin password), checked like a login and counted against the same
//! per-address throttle.

use super::session::{same, LoginError, SESSION_MAX};
use super::AppState;
use askama::Template;
use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SESSION_COOKIE: &str = "gh_session";
const PRE_COOKIE: &str = "gh_pre";
/// Form posts are small; anything bigger must say its token in the header.
const MAX_FORM: usize = 64 << 10;
/// The one user name HTTP Basic credentials may carry.
const BASIC_USER: &str = "admin";
const BASIC_CHALLENGE: &str = "Basic realm=\"gatehouse\"";

/// What the middleware learned about the caller, for handlers that render forms.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub token: String,
    pub csrf: String,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

fn is_public(path: &str) -> bool {
    matches!(path, "/login" | "/setup")
}

/// Routes a machine reads without a session, with HTTP Basic credentials instead.
fn takes_basic(path: &str) -> bool {
    path == "/metrics"
}

/// 401 asking for Basic credentials.
fn basic_challenge(msg: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, BASIC_CHALLENGE)],
        msg,
    )
        .into_response()
}

fn unauthorized(path: &str, has_password: bool) -> Response {
    if takes_basic(path) {
        return basic_challenge("log in first, or send Basic credentials (user admin)\n");
    }
    if path.starts_with("/api/") {
        return (StatusCode::UNAUTHORIZED, "log in first (POST /login)\n").into_response();
    }
    Redirect::to(if has_password { "/login" } else { "/setup" }).into_response()
}

/// Seconds to announce in `Retry-After` for a throttled login.
pub(super) fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs().max(1)
}

/// What a page shows when its password check is throttled.
pub(super) fn throttled_message(secs: u64) -> String {
    format!("Too many attempts; try again in {secs} s.")
}

/// `r` with `Retry-After: secs`.
pub(super) fn with_retry_after(mut r: Response, secs: u64) -> Response {
    if let Ok(v) = secs.to_string().parse() {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The (user, password) of an `Authorization: Basic` header, if it is one and decodes.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pw) = text.split_once(':')?;
    Some((user.to_string(), pw.to_string()))
}

/// Checks Basic credentials from `peer` as a login would: the same argon2 check (off the
/// async workers) and the same per-address throttle. Err is the answer to send.
async fn basic_login(
    st: &AppState,
    peer: Option<SocketAddr>,
    user: &str,
    pw: String,
) -> Result<(), Response> {
    let Some(peer) = peer else {
        // Without the peer's address the throttle cannot hold: never check a password.
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "no peer address\n").into_response());
    };
    if user != BASIC_USER {
        return Err(basic_challenge("wrong user or password\n"));
    }
    let auth = st.shared.auth.clone();
    let checked =
        tokio::task::spawn_blocking(move || auth.verify(peer.ip(), &pw, Instant::now())).await;
    match checked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(LoginError::WrongPassword)) => Err(basic_challenge("wrong user or password\n")),
        Ok(Err(LoginError::NoPassword)) => Err(basic_challenge(
            "no admin password yet: set one at /setup\n",
        )),
        Ok(Err(LoginError::Throttled(wait))) => Err((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_secs(wait).to_string())],
            "too many attempts; try again later\n",
        )
            .into_response()),
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("login check: {e}\n"),
        )
            .into_response()),
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<HashMap<String, String>>(body)
        .ok()?
        .remove(name)
}

fn query_field(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Lets public pages through; everything else needs a live session (or, for a read of a
/// `takes_basic` route, Basic credentials), and a request that changes anything needs the
/// session's CSRF token too.
pub async fn require(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if is_public(&path) {
        return next.run(req).await;
    }
    let auth = &st.shared.auth;
    let now = Instant::now();
    let Some((token, csrf)) =
        cookie(req.headers(), SESSION_COOKIE).and_then(|t| auth.session(&t, now).map(|c| (t, c)))
    else {
        let read = matches!(*req.method(), Method::GET | Method::HEAD);
        if let Some((user, pw)) =
            basic_credentials(req.headers()).filter(|_| read && takes_basic(&path))
        {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            // No SessionInfo: these routes render no forms and change nothing.
            return match basic_login(&st, peer, &user, pw).await {
                Ok(()) => next.run(req).await,
                Err(r) => r,
            };
        }
        return unauthorized(&path, auth.has_password());
    };
    let mut req = req;
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let given = match header_token {
            Some(t) => Some(t),
            None if content_type.starts_with("multipart/form-data") => {
                query_field(req.uri().query().unwrap_or_default(), "csrf")
            }
            None => {
                let is_form = content_type.starts_with("application/x-www-form-urlencoded");
                if !is_form {
                    None
                } else {
                    let (parts, body) = req.into_parts();
                    let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
                        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response();
                    };
                    let t = form_field(&bytes, "csrf");
                    req = Request::from_parts(parts, Body::from(bytes));
                    t
                }
            }
        };
        if !given.is_some_and(|g| same(&g, &csrf)) {
            return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
        }
    }
    req.extensions_mut().insert(SessionInfo { token, csrf });
    next.run(req).await
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    hostname: String,
    version: String,
    setup: bool,
    csrf: String,
    error: Option<String>,
}

fn login_page(
    st: &AppState,
    headers: &HeaderMap,
    setup: bool,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    // The browser's pre-session token is kept while it lasts: a second tab, or a request the
    // browser makes by itself (an icon), must not void the form already on the screen.
    let csrf = cookie(headers, PRE_COOKIE)
        .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(super::session::random_token);
    let page = LoginPage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        setup,
        csrf: csrf.clone(),
        error,
    };
    match page.render() {
        Ok(html) => (
            status,
            [(header::SET_COOKIE, set_cookie(PRE_COOKIE, &csrf, 3600))],
            Html(html),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("render: {e}")).into_response(),
    }
}

/// GET /setup: the first visit chooses the password.
pub async fn setup_form(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if st.shared.auth.has_password() {
        return Redirect::to("/login").into_response();
    }
    login_page(&st, &headers, true, None, StatusCode::OK)
}

/// GET /login
pub async fn login_form(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !st.shared.auth.has_password() {
        return Redirect::to("/setup").into_response();
    }
    login_page(&st, &headers, false, None, StatusCode::OK)
}

fn pre_token_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    match (cookie(headers, PRE_COOKIE), form.get("csrf")) {
        (Some(c), Some(f)) => same(&c, f),
        _ => false,
    }
}

fn logged_in(st: &AppState) -> Response {
    let (token, _) = st.shared.auth.start_session(Instant::now());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, SESSION_MAX.as_secs()),
            ),
        ],
    )
        .into_response()
}

pub(super) fn parse_form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// POST /setup: password, again, csrf.
pub async fn setup_submit(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let auth = &st.shared.auth;
    if auth.has_password() {
        return (
            StatusCode::CONFLICT,
            "the password is already set; log in\n",
        )
            .into_response();
    }
    let form = parse_form(&body);
    if !pre_token_ok(&headers, &form) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    if let Err(msg) = super::session::Auth::check_new_password(field("password"), field("again")) {
        return login_page(&st, &headers, true, Some(msg), StatusCode::BAD_REQUEST);
    }
    // argon2 takes a while on purpose: off the workers that also serve DNS and DHCP.
    let (a, pw) = (auth.clone(), field("password").to_string());
    let saved = tokio::task::spawn_blocking(move || a.set_password(&pw))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    if let Err(e) = saved {
        return login_page(
            &st,
            &headers,
            true,
            Some(format!("Could not save the password: {e}")),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    }
    eprintln!("web: admin password set");
    logged_in(&st)
}

/// POST /login: password, csrf.
pub async fn login_submit(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = parse_form(&body);
    if !pre_token_ok(&headers, &form) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let pw = form.get("password").map_or("", String::as_str).to_string();
    // argon2 takes a while on purpose: off the workers that also serve DNS and DHCP.
    let auth = st.shared.auth.clone();
    let checked =
        tokio::task::spawn_blocking(move || auth.verify(peer.ip(), &pw, Instant::now())).await;
    let Ok(checked) = checked else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "login check failed\n").into_response();
    };
    match checked {
        Ok(()) => logged_in(&st),
        Err(LoginError::NoPassword) => Redirect::to("/setup").into_response(),
        Err(LoginError::WrongPassword) => login_page(
            &st,
            &headers,
            false,
            Some("Wrong password.".into()),
            StatusCode::UNAUTHORIZED,
        ),
        Err(LoginError::Throttled(wait)) => {
            let secs = retry_secs(wait);
            let r = login_page(
                &st,
                &headers,
                false,
                Some(throttled_message(secs)),
                StatusCode::TOO_MANY_REQUESTS,
            );
            with_retry_after(r, secs)
        }
    }
}

/// POST /logout (CSRF checked by the middleware).
pub async fn logout(
    State(st): State<AppState>,
    axum::Extension(s): axum::Extension<SessionInfo>,
) -> Response {
    st.shared.auth.end_session(&s.token);
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_string()),
            (header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0)),
        ],
    )
        .into_response()
}

/// GET /api/session: the CSRF token scripts send as `X-CSRF-Token`.
pub async fn session_json(axum::Extension(s): axum::Extension<SessionInfo>) -> Response {
    axum::Json(serde_json::json!({ "csrf": s.csrf })).into_response()
}
