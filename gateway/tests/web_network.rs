//! The network settings and system pages through the real router on a loopback socket:
//! every form's effect on the config file, refusals, CSRF, and the JSON mirrors.

mod common;

use gateway::web::session::Auth;
use reqwest::header;
use std::path::PathBuf;
use std::sync::Arc;

const PW: &str = "network-test-pw";

struct Lab {
    base: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn lab(tag: &str, config: &str) -> Lab {
    let dir = std::env::temp_dir().join(format!("gh-webnet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gatehouse.toml"), config).unwrap();
    let auth = Arc::new(Auth::open(&dir));
    auth.set_password(PW).unwrap();
    let (app, _) = common::app(&dir, auth, common::idle_update(&dir));
    let (base, http) = common::serve(app).await;
    let (cookie, csrf) = common::log_in(&http, &base, PW).await;
    Lab {
        base,
        http,
        cookie,
        csrf,
        dir,
    }
}

impl Lab {
    async fn get(&self, path: &str) -> (u16, String) {
        common::get_page(&self.http, &self.base, &self.cookie, path).await
    }

    /// A form post as the browser sends it (the session's CSRF token added unless `csrf` is
    /// false); returns the status, the redirect target and the body.
    async fn post(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: bool,
    ) -> (u16, Option<String>, String) {
        let token = csrf.then_some(self.csrf.as_str());
        common::post_form(&self.http, &self.base, &self.cookie, path, token, fields).await
    }

    fn file(&self) -> String {
        std::fs::read_to_string(self.dir.join("gatehouse.toml")).unwrap()
    }
}

const OWNER: &str = "# set up by hand\nschema = 1\n\n[system]\nhostname = \"home\" # keep me\n";

fn lan_form<'a>(start: &'a str, minutes: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("lan_address", "192.168.1.1"),
        ("lan_prefix", "24"),
        ("dhcp_enabled", "on"),
        ("range_start", start),
        ("range_end", "192.168.1.200"),
        ("lease_minutes", minutes),
    ]
}

#[tokio::test]
async fn lan_form_saves_applies_dhcp_live_and_keeps_the_owners_text() {
    let l = lab("lan", OWNER).await;
    let (status, page) = l.get("/network").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"lan_address\""), "{page}");
    let (status, loc, _) = l
        .post("/network/lan", &lan_form("192.168.1.120", "90"), true)
        .await;
    assert_eq!(status, 303);
    let loc = loc.unwrap();
    let (_, page) = l.get(&loc).await;
    assert!(page.contains("Saved. Applied now: DHCP."), "{page}");
    let text = l.file();
    assert!(text.contains("hostname = \"home\" # keep me"), "{text}");
    assert!(text.contains("range_start = \"192.168.1.120\""), "{text}");
    assert!(text.contains("lease_secs = 5400"), "{text}");
    let (_, json) = l.get("/api/network").await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["dhcp"]["lease_secs"], 5400);
    assert_eq!(v["dhcp"]["range_start"], "192.168.1.120");
}

#[tokio::test]
async fn refused_input_keeps_the_file_and_the_owners_input() {
    let l = lab("refuse", OWNER).await;
    // Outside the subnet: the validator's own message, 400, the input shown again.
    let (status, _, page) = l
        .post("/network/lan", &lan_form("10.9.9.9", "60"), true)
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("outside the LAN subnet"), "{page}");
    assert!(page.contains("value=\"10.9.9.9\""), "{page}");
    let (status, _, page) = l
        .post("/network/lan", &lan_form("192.168.1.300", "60"), true)
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("is not an IPv4 address"), "{page}");
    assert_eq!(l.file(), OWNER);
    // No CSRF token: refused before anything is read.
    let (status, _, _) = l
        .post("/network/lan", &lan_form("192.168.1.120", "60"), false)
        .await;
    assert_eq!(status, 403);
    assert_eq!(l.file(), OWNER);
}

#[tokio::test]
async fn wan_changes_wait_for_a_reboot_wlan_changes_apply_now() {
    let l = lab("wanwlan", OWNER).await;
    let (status, loc, _) = l
        .post(
            "/network/wan",
            &[
                ("wan_mode", "static"),
                ("wan_address", "203.0.113.2"),
                ("wan_prefix", "24"),
                ("wan_gateway", "203.0.113.1"),
                ("wan_dns", "9.9.9.9"),
            ],
            true,
        )
        .await;
    assert_eq!(status, 303);
    let (_, page) = l.get(&loc.unwrap()).await;
    assert!(page.contains("after a reboot: WAN settings"), "{page}");
    assert!(l.file().contains("mode = \"static\""));
    let wlan = [
        ("wlan_enabled", "on"),
        ("ssid", "Home <b>net</b>"),
        ("passphrase", "correct horse"),
        ("channel", "6"),
        ("country", "DE"),
    ];
    let (status, loc, _) = l.post("/network/wlan", &wlan, true).await;
    assert_eq!(status, 303);
    let (_, page) = l.get(&loc.unwrap()).await;
    assert!(page.contains("Applied now: wireless network"), "{page}");
    assert!(!page.contains("after a reboot: wireless network"), "{page}");
    // The join code is there, and the SSID is escaped everywhere it is shown.
    assert!(page.contains("id=\"wlan-qr\""), "{page}");
    assert!(
        page.contains("Home &#60;b&#62;net&#60;/b&#62;")
            || page.contains("Home &lt;b&gt;net&lt;/b&gt;"),
        "{page}"
    );
    assert!(!page.contains("<b>net</b>"), "{page}");
    // init's rule: a short passphrase is refused, and says why.
    let mut bad = wlan.to_vec();
    bad[2] = ("passphrase", "short");
    let (status, _, page) = l.post("/network/wlan", &bad, true).await;
    assert_eq!(status, 400);
    assert!(page.contains("8-63"), "{page}");
}

#[tokio::test]
async fn static_leases_are_added_and_removed() {
    let l = lab("static", OWNER).await;
    let add = [
        ("static_mac", "02:00:00:00:00:aa"),
        ("static_ip", "192.168.1.50"),
        ("static_name", "printer"),
    ];
    let (status, _, _) = l.post("/network/static", &add, true).await;
    assert_eq!(status, 303);
    assert!(l.file().contains("[[dhcp.static_leases]]"), "{}", l.file());
    let (_, page) = l.get("/network").await;
    assert!(page.contains("printer"), "{page}");
    let (status, _, page) = l.post("/network/static", &add, true).await;
    assert_eq!(status, 400);
    assert!(page.contains("already has the static address"), "{page}");
    // A stale row (wrong MAC at that index) removes nothing.
    let (status, _, _) = l
        .post(
            "/network/static/0/delete",
            &[("mac", "02:00:00:00:00:bb")],
            true,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = l
        .post(
            "/network/static/0/delete",
            &[("mac", "02:00:00:00:00:aa")],
            true,
        )
        .await;
    assert_eq!(status, 303);
    let cfg = gateway::config::parse(&l.file()).unwrap();
    assert!(cfg.dhcp.static_leases.is_empty());
}

#[tokio::test]
async fn a_rejected_file_is_not_overwritten() {
    let l = lab("rejected", "[dhcp\n").await;
    // common::app starts from defaults with no error; the router refuses because the file
    // on disk does not parse, and says so.
    let (status, _, page) = l
        .post("/network/lan", &lan_form("192.168.1.120", "60"), true)
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("the config file is invalid"), "{page}");
    assert_eq!(l.file(), "[dhcp\n");
}

#[tokio::test]
async fn system_page_and_factory_reset_confirmation() {
    let l = lab("system", OWNER).await;
    let (status, page) = l.get("/system").await;
    assert_eq!(status, 200);
    assert!(page.contains("<h1>System</h1>"), "{page}");
    assert!(page.contains("id=\"factory-reset\""), "{page}");
    let (status, _, page) = l
        .post("/system/factory-reset", &[("confirm", "erase")], true)
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("Nothing was erased"), "{page}");
    assert!(!l.dir.join(".factory-reset").exists());
    let (status, _, _) = l
        .post("/system/factory-reset", &[("confirm", "ERASE")], false)
        .await;
    assert_eq!(status, 403);
    assert!(!l.dir.join(".factory-reset").exists());
    let (status, _, page) = l
        .post("/system/factory-reset", &[("confirm", "ERASE")], true)
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("restarts now"), "{page}");
    assert!(l.dir.join(".factory-reset").exists());
    let (_, json) = l.get("/api/system").await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["factory_reset_pending"], true);
    assert!(v["memory"]["total"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn every_network_and_system_route_needs_a_session() {
    let l = lab("guard", OWNER).await;
    let anon = |method: reqwest::Method, path: &str| {
        l.http
            .request(method, format!("{}{path}", l.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("confirm=ERASE&lan_address=10.0.0.1&static_mac=02:00:00:00:00:01")
            .send()
    };
    for path in ["/network", "/system"] {
        let r = anon(reqwest::Method::GET, path).await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()[header::LOCATION], "/login", "{path}");
    }
    for path in ["/api/network", "/api/system"] {
        let r = anon(reqwest::Method::GET, path).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    for path in [
        "/network/lan",
        "/network/wan",
        "/network/wlan",
        "/network/static",
        "/network/static/0/delete",
        "/system/factory-reset",
    ] {
        let r = anon(reqwest::Method::POST, path).await.unwrap();
        assert!(
            matches!(r.status().as_u16(), 303 | 401),
            "{path}: {}",
            r.status()
        );
    }
    assert_eq!(l.file(), OWNER);
    assert!(!l.dir.join(".factory-reset").exists());
}
