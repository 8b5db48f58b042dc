//! The log viewer against PID 1's real log-ring server (init::logring) on a
//! socket of the test's own: the page and the JSON read init's and a
//! service's lines, escape them, refuse bad source names, and say so when
//! init's socket is not there.

mod common;

use gateway::web::session::Auth;
use init::logring::{self, Rings};
use reqwest::header;
use serde_json::Value;
use std::sync::Arc;
use std::time::SystemTime;

const PASSWORD: &str = "longenough";

async fn get(http: &reqwest::Client, url: String, cookie: &str) -> (u16, String) {
    let r = http
        .get(url)
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn log_viewer_reads_init_rings_and_escapes_them() {
    let dir = std::env::temp_dir().join(format!("gh-logs-web-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let auth = Arc::new(Auth::open(&dir));
    auth.set_password(PASSWORD).unwrap();
    let (app, _) = common::app(&dir, auth, common::idle_update(&dir));
    let (base, http) = common::serve(app).await;
    let (cookie, _) = common::log_in(&http, &base, PASSWORD).await;

    // No init socket yet: a clear error, not a crash.
    let (code, body) = get(&http, format!("{base}/api/logs"), &cookie).await;
    assert_eq!(code, 502);
    assert!(body.contains("init's log socket"), "{body}");
    let (code, page) = get(&http, format!("{base}/logs"), &cookie).await;
    assert_eq!(code, 200);
    assert!(page.contains("id=\"logs-error\""));

    let rings = Arc::new(Rings::new(logring::RING_BYTES));
    let sock = dir.join("log.sock");
    logring::serve(rings.clone(), sock.to_str().unwrap()).unwrap();
    let now = SystemTime::now();
    rings.push("init", "gatewayd started (pid 42)", now, 1.0);
    rings.push("gatewayd", "lease for <script>alert(1)</script>", now, 2.0);
    rings.push("gatewayd", "second line", now, 3.0);

    let (code, body) = get(
        &http,
        format!("{base}/api/logs?source=gatewayd&lines=1"),
        &cookie,
    )
    .await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let lines = v["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert!(lines[0]
        .as_str()
        .unwrap()
        .ends_with("gatewayd: second line"));

    let (_, body) = get(&http, format!("{base}/api/logs"), &cookie).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["lines"].as_array().unwrap().len(),
        3,
        "every source, merged"
    );

    let (code, page) = get(&http, format!("{base}/logs?source=gatewayd"), &cookie).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("gatewayd: lease for &#60;script&#62;alert(1)"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"));
    assert!(
        !page.contains("gatewayd started (pid 42)"),
        "only the chosen source"
    );

    let (code, body) = get(&http, format!("{base}/api/logs?source=../etc"), &cookie).await;
    assert_eq!(code, 502);
    assert!(body.contains("no log source"), "{body}");

    // Without a session: the login page, never the logs.
    let r = http.get(format!("{base}/api/logs")).send().await.unwrap();
    assert_ne!(r.status().as_u16(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}
