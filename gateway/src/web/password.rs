//! Changing the admin password. `GET /password` shows the form; `POST /password` (session
//! and CSRF token checked by `auth::require`) takes the current password, checked as a
//! login checks it (argon2 off the async workers, counted against the same per-address
//! throttle), and the new one twice. On success the stored hash is replaced atomically,
//! every other session ends (this one stays logged in) and the browser is sent to
//! `/password?changed=1`; on failure the form comes back with the reason and 400 (429 when
//! throttled, as the login answers). No password is ever written back into the page.

use super::auth::{parse_form, retry_secs, throttled_message, with_retry_after, SessionInfo};
use super::session::{Auth, LoginError, MIN_PASSWORD_LEN};
use super::AppState;
use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    hostname: String,
    version: String,
    csrf: String,
    min_len: usize,
    error: Option<String>,
    changed: bool,
}

fn render(
    st: &AppState,
    csrf: &str,
    error: Option<String>,
    changed: bool,
    status: StatusCode,
) -> Response {
    let page = PasswordPage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        csrf: csrf.to_string(),
        min_len: MIN_PASSWORD_LEN,
        error,
        changed,
    };
    super::html(&page, status)
}

#[derive(Deserialize)]
pub struct Shown {
    changed: Option<String>,
}

/// GET /password (`?changed=1` after a change: says so).
pub async fn form(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Query(q): Query<Shown>,
) -> Response {
    let changed = q.changed.as_deref() == Some("1");
    render(&st, &s.csrf, None, changed, StatusCode::OK)
}

enum Outcome {
    /// Changed; this many other sessions were ended.
    Changed(usize),
    /// The current password did not check out (or the address is locked out).
    Refused(LoginError),
    /// The new password was refused: the message for the owner.
    Invalid(String),
    /// Could not be stored.
    Failed(std::io::Error),
}

/// POST /password: current, password, again (url-encoded form), csrf.
pub async fn change(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(s): Extension<SessionInfo>,
    body: axum::body::Bytes,
) -> Response {
    let mut form = parse_form(&body);
    let mut take = |k: &str| form.remove(k).unwrap_or_default();
    let (current, new, again) = (take("current"), take("password"), take("again"));
    let auth = st.shared.auth.clone();
    let keep = s.token.clone();
    // Both argon2 runs (checking the current password, hashing the new one) and the fsyncs
    // block: off the async workers. The current password is checked first, so every
    // attempt, whatever else is wrong with it, meets the throttle.
    let outcome = tokio::task::spawn_blocking(move || {
        if let Err(e) = auth.verify(peer.ip(), &current, Instant::now()) {
            return Outcome::Refused(e);
        }
        if let Err(msg) = Auth::check_new_password(&new, &again) {
            return Outcome::Invalid(msg);
        }
        match auth.change_password(&new, &keep) {
            Ok(n) => Outcome::Changed(n),
            Err(e) => Outcome::Failed(e),
        }
    })
    .await;
    let refuse = |msg: String, status| render(&st, &s.csrf, Some(msg), false, status);
    match outcome {
        Ok(Outcome::Changed(ended)) => {
            eprintln!("web: admin password changed; {ended} other session(s) ended");
            Redirect::to("/password?changed=1").into_response()
        }
        Ok(Outcome::Refused(LoginError::WrongPassword)) => refuse(
            "The current password is wrong.".into(),
            StatusCode::BAD_REQUEST,
        ),
        Ok(Outcome::Refused(LoginError::Throttled(wait))) => {
            let secs = retry_secs(wait);
            let r = refuse(throttled_message(secs), StatusCode::TOO_MANY_REQUESTS);
            with_retry_after(r, secs)
        }
        // The hash is gone from memory (cannot happen with a live session): as the login.
        Ok(Outcome::Refused(LoginError::NoPassword)) => Redirect::to("/setup").into_response(),
        Ok(Outcome::Invalid(msg)) => refuse(msg, StatusCode::BAD_REQUEST),
        Ok(Outcome::Failed(e)) => refuse(
            format!("Could not save the password: {e}"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        Err(e) => refuse(
            format!("Password check failed: {e}"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}
