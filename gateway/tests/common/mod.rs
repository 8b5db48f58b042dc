//! The admin web app as the integration tests build it: the default config, a data
//! directory of the test's own, real lease and traffic stores, and the login and update
//! state the test chooses. (A module, not a test target: `tests/common/mod.rs`.)

#![allow(dead_code)] // each test target uses its own subset

use axum::Router;
use gateway::config::edit::ConfigFile;
use gateway::config::Config;
use gateway::context::Context;
use gateway::dhcp::lease_store::LeaseStore;
use gateway::traffic::Traffic;
use gateway::update::fake::FakeInstaller;
use gateway::update::{Paths, Update};
use gateway::web::session::Auth;
use gateway::web::{router, AppState, Shared};
use reqwest::header;
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The router over `dir`, with `auth` and `update`; also the traffic state it serves.
pub fn app(dir: &Path, auth: Arc<Auth>, update: Arc<Update>) -> (Router, Arc<Traffic>) {
    let st = state(dir, auth, update);
    let traffic = st.shared.traffic.clone();
    (router(st), traffic)
}

/// The app's state over `dir` (default config, fresh stores), for tests that also look
/// at the shared views (the NAT's forward set, the DNS counters) the router works on.
pub fn state(dir: &Path, auth: Arc<Auth>, update: Arc<Update>) -> AppState {
    let cfg = Config::default();
    let (_tx, rx) = tokio::sync::watch::channel(gateway::wan::WanStatus::default());
    let ctx = Context {
        config: Arc::new(cfg.clone()),
        config_error: None,
        run_dir: dir.to_path_buf(),
        wan: rx,
    };
    let shared = Shared {
        leases: Arc::new(Mutex::new(
            LeaseStore::open(&dir.join("leases.json"), 16).unwrap(),
        )),
        dhcp: Default::default(),
        dns: Default::default(),
        nat: Default::default(),
        traffic: Arc::new(Traffic::new(&cfg, dir)),
        auth,
        update,
        log_socket: Arc::from(dir.join("log.sock").to_str().unwrap()),
        config: Arc::new(ConfigFile::new(
            dir.join("gatehouse.toml"),
            Arc::new(cfg.clone()),
            None,
        )),
        host: Default::default(),
        listeners: Default::default(),
    };
    AppState { ctx, shared }
}

/// Update state for tests that do not exercise updates: a fake RAUC, no reboots.
pub fn idle_update(dir: &Path) -> Arc<Update> {
    Arc::new(Update::new(
        Arc::new(FakeInstaller::new("gatehouse-x86_64", "0.1.0")),
        Paths::new(dir.join("gatehouse.toml"), dir),
        Arc::new(|| Err("no reboots in tests".into())),
    ))
}

pub fn cookie_of(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let (kv, _) = c.split_once(';')?;
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// The login form, as a browser fills it in; returns the session cookie and CSRF token.
pub async fn log_in(http: &reqwest::Client, base: &str, password: &str) -> (String, String) {
    let form = http.get(format!("{base}/login")).send().await.unwrap();
    let pre = cookie_of(&form, "gh_pre").expect("pre-session cookie");
    let r = http
        .post(format!("{base}/login"))
        .header(header::COOKIE, format!("gh_pre={pre}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={pre}&password={password}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = format!("gh_session={}", cookie_of(&r, "gh_session").unwrap());
    let text = http
        .get(format!("{base}/api/session"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let s: Value = serde_json::from_str(&text).unwrap();
    (cookie, s["csrf"].as_str().unwrap().to_string())
}

/// Serves `app` on a loopback port; returns its base URL and a client that,
/// like the tests want, does not follow redirects.
pub async fn serve(app: Router) -> (String, reqwest::Client) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            l,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (base, http)
}

/// GET `path` with the session `cookie` ("gh_session=..."): status and body.
pub async fn get_page(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    path: &str,
) -> (u16, String) {
    let r = http
        .get(format!("{base}{path}"))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A form post as a browser sends it, with `csrf` added when given: status, Location, body.
pub async fn post_form(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    path: &str,
    csrf: Option<&str>,
    fields: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let mut all: Vec<(&str, &str)> = csrf.map(|c| ("csrf", c)).into_iter().collect();
    all.extend_from_slice(fields);
    let r = http
        .post(format!("{base}{path}"))
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&all).unwrap())
        .send()
        .await
        .unwrap();
    let loc = r
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), loc, r.text().await.unwrap())
}

/// An owner's logged-in browser: the server, a client, the session cookie and its CSRF token.
pub struct Session {
    pub base: String,
    pub http: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    pub async fn get(&self, path: &str) -> (u16, String) {
        get_page(&self.http, &self.base, &self.cookie, path).await
    }

    /// A form post with the session's CSRF token; status, Location, body.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, Option<String>, String) {
        let (http, base, cookie) = (&self.http, &self.base, &self.cookie);
        post_form(http, base, cookie, path, Some(&self.csrf), fields).await
    }
}

/// The full router over a fresh data dir named for `tag` (a config file with the owner's
/// comment in it), `password` set and the owner logged in. Returns the dir, the shared
/// state to look at, and the session.
pub async fn logged_in(tag: &str, password: &str) -> (std::path::PathBuf, Shared, Session) {
    let dir = std::env::temp_dir().join(format!("gh-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gatehouse.toml"), "# my router\nschema = 1\n").unwrap();
    let auth = Arc::new(Auth::open(&dir));
    auth.set_password(password).unwrap();
    let st = state(&dir, auth, idle_update(&dir));
    let shared = st.shared.clone();
    let (base, http) = serve(router(st)).await;
    let (cookie, csrf) = log_in(&http, &base, password).await;
    let s = Session {
        base,
        http,
        cookie,
        csrf,
    };
    (dir, shared, s)
}
