//! The admin server's login, sessions and CSRF checks, through the real axum router
//! (tower `oneshot`, no sockets).

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use gateway::web::session::Auth;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

struct Lab {
    app: Router,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lab(tag: &str) -> Lab {
    let dir = std::env::temp_dir().join(format!("gh-webauth-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let auth = Arc::new(Auth::open(&dir));
    let (app, _) = common::app(&dir, auth, common::idle_update(&dir));
    Lab { app, dir }
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    retry_after: Option<String>,
    cookies: Vec<String>,
    body: String,
}

impl Reply {
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find_map(|c| {
            let (kv, _) = c.split_once(';')?;
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    cookie: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    if !cookie.is_empty() {
        b = b.header(header::COOKIE, cookie);
    }
    if method == "POST"
        && !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 168, 1, 10], 50000))));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        location,
        retry_after,
        cookies,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The pre-session token the login or setup form at `path` hands out.
async fn pre_token(app: &Router, path: &str) -> String {
    call(app, "GET", path, "", "", &[])
        .await
        .cookie("gh_pre")
        .expect("pre-session cookie")
}

/// The CSRF token of a logged-in session.
async fn csrf_of(app: &Router, session: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(
        &call(app, "GET", "/api/session", session, "", &[])
            .await
            .body,
    )
    .unwrap();
    v["csrf"].as_str().unwrap().to_string()
}

/// First visit: sets the password; returns the session cookie.
async fn set_up(app: &Router, pw: &str) -> String {
    let form = call(app, "GET", "/setup", "", "", &[]).await;
    assert_eq!(form.status, StatusCode::OK);
    let pre = form.cookie("gh_pre").expect("pre-session cookie");
    let r = call(
        app,
        "POST",
        "/setup",
        &format!("gh_pre={pre}"),
        &format!("csrf={pre}&password={pw}&again={pw}"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let s = r.cookie("gh_session").expect("session cookie");
    let attrs = r
        .cookies
        .iter()
        .find(|c| c.starts_with("gh_session="))
        .unwrap();
    assert!(
        attrs.contains("HttpOnly")
            && attrs.contains("SameSite=Strict")
            && attrs.contains("Max-Age="),
        "{attrs}"
    );
    format!("gh_session={s}")
}

#[tokio::test]
async fn nothing_is_open_before_the_password_is_set() {
    let l = lab("first");
    for path in [
        "/",
        "/api/status",
        "/api/traffic/stats",
        "/api/capture",
        "/api/nat",
    ] {
        let r = call(&l.app, "GET", path, "", "", &[]).await;
        if path.starts_with("/api/") {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        } else {
            assert_eq!(r.location.as_deref(), Some("/setup"), "{path}");
        }
    }
    assert_eq!(
        call(&l.app, "GET", "/login", "", "", &[])
            .await
            .location
            .as_deref(),
        Some("/setup")
    );
    // Too short, and mismatched, are refused with a message.
    let pre = pre_token(&l.app, "/setup").await;
    let c = format!("gh_pre={pre}");
    let r = call(
        &l.app,
        "POST",
        "/setup",
        &c,
        &format!("csrf={pre}&password=short&again=short"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at least 8"));
    // Without the pre-session token: refused.
    let r = call(
        &l.app,
        "POST",
        "/setup",
        "",
        "password=longenough&again=longenough",
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let session = set_up(&l.app, "longenough").await;
    let page = call(&l.app, "GET", "/", &session, "", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Log out"));
    // Setup is closed once a password exists.
    let pre = pre_token(&l.app, "/login").await;
    let r = call(
        &l.app,
        "POST",
        "/setup",
        &format!("gh_pre={pre}"),
        &format!("csrf={pre}&password=takeover1&again=takeover1"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn login_logout_and_throttling() {
    let l = lab("login");
    set_up(&l.app, "longenough").await;
    let pre = pre_token(&l.app, "/login").await;
    let c = format!("gh_pre={pre}");
    let ok = call(
        &l.app,
        "POST",
        "/login",
        &c,
        &format!("csrf={pre}&password=longenough"),
        &[],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let session = format!("gh_session={}", ok.cookie("gh_session").unwrap());
    assert_eq!(
        call(&l.app, "GET", "/api/status", &session, "", &[])
            .await
            .status,
        StatusCode::OK
    );
    let csrf = csrf_of(&l.app, &session).await;
    let out = call(
        &l.app,
        "POST",
        "/logout",
        &session,
        &format!("csrf={csrf}"),
        &[],
    )
    .await;
    assert_eq!(out.location.as_deref(), Some("/login"));
    assert_eq!(
        call(&l.app, "GET", "/api/status", &session, "", &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            call(
                &l.app,
                "POST",
                "/login",
                &c,
                &format!("csrf={pre}&password=guess"),
                &[],
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(
        *statuses.last().unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "{statuses:?}"
    );
    let locked = call(
        &l.app,
        "POST",
        "/login",
        &c,
        &format!("csrf={pre}&password=longenough"),
        &[],
    )
    .await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right password got through a lockout"
    );
}

#[tokio::test]
async fn every_post_needs_the_csrf_token() {
    let l = lab("csrf");
    let session = set_up(&l.app, "longenough").await;
    let csrf = csrf_of(&l.app, &session).await;
    let toggle = "/api/capture/02:00:00:00:00:01?enabled=false";
    for (body, hdr) in [("", None), ("csrf=wrong", None), ("", Some("wrong"))] {
        let extra: Vec<(&str, &str)> = hdr.map(|h| vec![("x-csrf-token", h)]).unwrap_or_default();
        let r = call(&l.app, "POST", toggle, &session, body, &extra).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body:?} {hdr:?}");
    }
    let r = call(
        &l.app,
        "POST",
        toggle,
        &session,
        "",
        &[("x-csrf-token", &csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Multipart uploads (streamed, never read ahead) carry the token in the query or the
    // header; a url-encoded form may not use the query instead of its field.
    let multipart = [("content-type", "multipart/form-data; boundary=XyZ")];
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nwrong\r\n--XyZ--\r\n";
    for uri in [
        "/update/upload".to_string(),
        "/update/upload?csrf=wrong".to_string(),
        "/config/restore".to_string(),
    ] {
        let r = call(&l.app, "POST", &uri, &session, body, &multipart).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
    }
    let r = call(
        &l.app,
        "POST",
        &format!("/update/url?csrf={csrf}"),
        &session,
        "url=http://127.0.0.1:9/x",
        &[],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "query token on a url-encoded form"
    );
    // The right token in the query gets past the check (and the form is then found to
    // hold no bundle).
    let r = call(
        &l.app,
        "POST",
        &format!("/update/upload?csrf={csrf}"),
        &session,
        body,
        &multipart,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("no bundle"), "{}", r.body);
    let r = call(
        &l.app,
        "POST",
        "/logout",
        &session,
        &format!("csrf={csrf}"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // Login itself needs its pre-session token.
    let r = call(&l.app, "POST", "/login", "", "password=longenough", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// Logs in with `pw` through the login form; the session cookie, or the refusal's status.
async fn log_in(app: &Router, pw: &str) -> Result<String, StatusCode> {
    let pre = pre_token(app, "/login").await;
    let r = call(
        app,
        "POST",
        "/login",
        &format!("gh_pre={pre}"),
        &format!("csrf={pre}&password={pw}"),
        &[],
    )
    .await;
    match r.status {
        StatusCode::SEE_OTHER => Ok(format!("gh_session={}", r.cookie("gh_session").unwrap())),
        s => Err(s),
    }
}

/// POST /password from `session` with its CSRF token.
async fn change_password(
    app: &Router,
    session: &str,
    current: &str,
    new: &str,
    again: &str,
) -> Reply {
    let csrf = csrf_of(app, session).await;
    call(
        app,
        "POST",
        "/password",
        session,
        &format!("csrf={csrf}&current={current}&password={new}&again={again}"),
        &[],
    )
    .await
}

async fn status_of(app: &Router, session: &str) -> StatusCode {
    call(app, "GET", "/api/status", session, "", &[])
        .await
        .status
}

#[tokio::test]
async fn password_page_needs_a_session_and_the_csrf_token() {
    let l = lab("pw-gate");
    let session = set_up(&l.app, "longenough").await;
    let r = call(&l.app, "GET", "/password", "", "", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/login"));
    let r = call(
        &l.app,
        "POST",
        "/password",
        "",
        "current=longenough&password=newsecret1&again=newsecret1",
        &[],
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/login"), "{}", r.body);
    // With a session but without (or with a wrong) CSRF token: refused, nothing changed.
    for body in [
        "current=longenough&password=newsecret1&again=newsecret1",
        "csrf=wrong&current=longenough&password=newsecret1&again=newsecret1",
    ] {
        let r = call(&l.app, "POST", "/password", &session, body, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}");
    }
    assert_eq!(
        log_in(&l.app, "newsecret1").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    assert!(log_in(&l.app, "longenough").await.is_ok());
    // The form: labelled fields, the autocomplete hints, the session's token; and the
    // status page links to it.
    let csrf = csrf_of(&l.app, &session).await;
    let page = call(&l.app, "GET", "/password", &session, "", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    for needle in [
        r#"<label for="current">"#,
        r#"<label for="password">"#,
        r#"<label for="again">"#,
        r#"id="current" name="current" type="password" autocomplete="current-password""#,
        r#"id="password" name="password" type="password" autocomplete="new-password""#,
        r#"id="again" name="again" type="password" autocomplete="new-password""#,
        &format!(r#"name="csrf" value="{csrf}""#),
        r#"method="post" action="/password""#,
    ] {
        assert!(page.body.contains(needle), "{needle} not in {}", page.body);
    }
    assert!(!page.body.contains("Password changed"));
    let index = call(&l.app, "GET", "/", &session, "", &[]).await;
    assert!(index.body.contains(r#"href="/password""#), "{}", index.body);
}

#[tokio::test]
async fn password_change_refusals_change_nothing() {
    let l = lab("pw-refuse");
    let session = set_up(&l.app, "longenough").await;
    let r = change_password(&l.app, &session, "notmypass", "newsecret1", "newsecret1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("current password is wrong"), "{}", r.body);
    let r = change_password(&l.app, &session, "longenough", "newsecret1", "newsecret2").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("differ"), "{}", r.body);
    let r = change_password(&l.app, &session, "longenough", "short", "short").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at least 8"), "{}", r.body);
    // The form is back, with a fresh token field but none of the passwords.
    assert!(r.body.contains(r#"action="/password""#), "{}", r.body);
    for pw in [
        "notmypass",
        "longenough",
        "newsecret1",
        "newsecret2",
        "value=\"short\"",
    ] {
        assert!(!r.body.contains(pw), "{pw} echoed");
    }
    assert_eq!(
        log_in(&l.app, "newsecret1").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    assert!(log_in(&l.app, "longenough").await.is_ok());
    assert_eq!(status_of(&l.app, &session).await, StatusCode::OK);
}

#[tokio::test]
async fn password_change_keeps_this_session_and_ends_the_others() {
    let l = lab("pw-ok");
    let mine = set_up(&l.app, "longenough").await;
    let other = log_in(&l.app, "longenough").await.unwrap();
    assert_eq!(status_of(&l.app, &other).await, StatusCode::OK);
    let r = change_password(&l.app, &mine, "longenough", "newsecret1", "newsecret1").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/password?changed=1"));
    let page = call(&l.app, "GET", "/password?changed=1", &mine, "", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Password changed"), "{}", page.body);
    assert!(!page.body.contains("newsecret1"));
    assert_eq!(status_of(&l.app, &mine).await, StatusCode::OK);
    assert_eq!(status_of(&l.app, &other).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        log_in(&l.app, "longenough").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    let fresh = log_in(&l.app, "newsecret1").await.unwrap();
    assert_eq!(status_of(&l.app, &fresh).await, StatusCode::OK);
    // Stored as a hash, atomically replaced (no temp file left), and kept over a restart.
    let stored = std::fs::read_to_string(l.dir.join("ui/admin-password")).unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains("newsecret1"));
    assert!(!l.dir.join("ui/.admin-password.tmp").exists());
    let ip = "192.168.1.10".parse().unwrap();
    let reopened = Auth::open(&l.dir);
    assert_eq!(
        reopened.verify(ip, "newsecret1", std::time::Instant::now()),
        Ok(())
    );
}

#[tokio::test]
async fn wrong_current_passwords_meet_the_login_throttle() {
    let l = lab("pw-throttle");
    let session = set_up(&l.app, "longenough").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = change_password(&l.app, &session, "guessing", "newsecret1", "newsecret1").await;
        statuses.push(r.status);
    }
    assert_eq!(statuses[0], StatusCode::BAD_REQUEST);
    assert_eq!(
        *statuses.last().unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "{statuses:?}"
    );
    // Locked out: even the right current password is not checked, and the login from the
    // same address is locked too (one throttle). The answer is the login's.
    let r = change_password(&l.app, &session, "longenough", "newsecret1", "newsecret1").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("Too many attempts"), "{}", r.body);
    assert!(r.retry_after.is_some());
    let pre = pre_token(&l.app, "/login").await;
    let login = call(
        &l.app,
        "POST",
        "/login",
        &format!("gh_pre={pre}"),
        &format!("csrf={pre}&password=longenough"),
        &[],
    )
    .await;
    assert_eq!(login.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(login.retry_after.is_some());
    // The session itself was not touched, and the password did not change.
    assert_eq!(status_of(&l.app, &session).await, StatusCode::OK);
    let ip = "192.168.1.10".parse().unwrap();
    let reopened = Auth::open(&l.dir);
    assert_eq!(
        reopened.verify(ip, "longenough", std::time::Instant::now()),
        Ok(())
    );
}

#[tokio::test]
async fn a_second_form_view_keeps_the_first_forms_token() {
    let l = lab("pretoken");
    let first = pre_token(&l.app, "/setup").await;
    // The browser asks again (another tab, or for an icon that lands on /setup): the token
    // on the first form must still be the one in the cookie.
    let again = call(&l.app, "GET", "/setup", &format!("gh_pre={first}"), "", &[]).await;
    assert_eq!(again.cookie("gh_pre").as_deref(), Some(first.as_str()));
    assert!(again.body.contains(&first));
    // A cookie that is not one of ours is replaced.
    let odd = call(&l.app, "GET", "/setup", "gh_pre=<x>", "", &[]).await;
    let fresh = odd.cookie("gh_pre").unwrap();
    assert_ne!(fresh, "<x>");
    assert_eq!(fresh.len(), 64);
}
