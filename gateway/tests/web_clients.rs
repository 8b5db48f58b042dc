//! The clients and traffic pages through the real router on a loopback socket: the list
//! and detail pages and their JSON twins over real lease and traffic stores, every form's
//! effect on the config file (and on capture, across a restart), refusals, login and CSRF,
//! and hostile host names rendered inert.

mod common;

use gateway::traffic::Traffic;
use gateway::web::session::Auth;
use reqwest::header;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Instant;
use traffic_history::{Dir, Record};

/// A hostile DHCP host name, an owner-less device with a known vendor, and a device seen
/// only in the traffic history.
const EVIL: &str = "52:54:00:12:34:56";
const TV: &str = "00:00:0c:00:00:01";
const GHOST: &str = "02:00:00:00:00:99";
const SCRIPT: &str = "<script>alert(1)</script>";
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

struct Lab {
    base: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
    dir: PathBuf,
    traffic: Arc<Traffic>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now_s() -> u64 {
    gateway::clock::unix_now()
}

/// Every test binary reads one OUI table, once: point it at a small registry of our own.
fn oui_fixture() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let p = std::env::temp_dir().join(format!("gh-webclients-oui-{}.csv", std::process::id()));
        std::fs::write(
            &p,
            "Registry,Assignment,Organization Name,Organization Address\n\
             MA-L,00000C,\"Cisco Systems, Inc\",\"170 West Tasman\nSan Jose\"\n",
        )
        .unwrap();
        assert!(gateway::oui::use_file(p.clone()));
        // Read now, so the file can go.
        gateway::oui::table();
        let _ = std::fs::remove_file(p);
    });
}

fn mac(s: &str) -> [u8; 6] {
    gateway::config::parse_mac(s).unwrap()
}

async fn lab(tag: &str) -> Lab {
    oui_fixture();
    let dir = std::env::temp_dir().join(format!("gh-webclients-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let now = now_s();
    let leases = serde_json::json!({
        "journal_gen": 0,
        "leases": [
            {"mac": EVIL, "ip": "192.168.1.100", "hostname": SCRIPT, "expires": now + 3600},
            {"mac": TV, "ip": "192.168.1.101", "hostname": "tv", "expires": now - 3600},
        ]
    });
    std::fs::write(dir.join("leases.json"), leases.to_string()).unwrap();
    let auth = Arc::new(Auth::open(&dir));
    let (cookie, csrf) = auth.start_session(Instant::now());
    let (app, traffic) = common::app(&dir, auth, common::idle_update(&dir));
    let t = gateway::clock::unix_ms();
    let rec = |t_ms, client: &str, dir, bytes| Record {
        t_ms,
        client: mac(client),
        remote: IpAddr::V4(REMOTE),
        dir,
        bytes,
    };
    traffic.history().ingest(&[
        rec(t - 60_000, EVIL, Dir::Up, 1000),
        rec(t - 60_000, EVIL, Dir::Down, 5000),
        rec(t - 120_000, GHOST, Dir::Down, 700),
    ]);
    let (base, http) = common::serve(app).await;
    Lab {
        base,
        http,
        cookie: format!("gh_session={cookie}"),
        csrf,
        dir,
        traffic,
    }
}

impl Lab {
    async fn get(&self, path: &str) -> (u16, String) {
        common::get_page(&self.http, &self.base, &self.cookie, path).await
    }

    async fn json(&self, path: &str) -> Value {
        let (code, body) = self.get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A form post as the browser sends it (csrf added); status, Location and body.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let (code, loc, body) = common::post_form(
            &self.http,
            &self.base,
            &self.cookie,
            path,
            Some(&self.csrf),
            form,
        )
        .await;
        (code, loc.unwrap_or_default(), body)
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("gatehouse.toml")).unwrap_or_default()
    }
}

#[tokio::test]
async fn every_route_needs_a_session_and_posts_need_the_csrf_token() {
    let l = lab("auth").await;
    for path in [
        "/clients",
        &format!("/clients/{EVIL}"),
        "/traffic",
        "/api/clients",
        &format!("/api/clients/{EVIL}"),
    ] {
        let r = l
            .http
            .get(format!("{}{path}", l.base))
            .send()
            .await
            .unwrap();
        if path.starts_with("/api/") {
            assert_eq!(r.status(), 401, "{path}");
        } else {
            assert_eq!(r.status(), 303, "{path}");
            let to = r.headers()[header::LOCATION].to_str().unwrap();
            assert!(to == "/setup" || to == "/login", "{path} -> {to}");
        }
    }
    for action in ["name", "static", "dynamic", "capture"] {
        let url = format!("{}/clients/{EVIL}/{action}", l.base);
        let form = [("name", "x"), ("capture", "off")];
        // No session at all.
        let r = l.http.post(&url).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 303, "{action}");
        // A session, but no token, or a wrong one.
        let r = l
            .http
            .post(&url)
            .header(header::COOKIE, &l.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{action}");
        let r = l
            .http
            .post(&url)
            .header(header::COOKIE, &l.cookie)
            .form(&[("csrf", "forged"), ("name", "x"), ("capture", "off")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{action}");
    }
    assert_eq!(l.config_text(), "", "nothing was written");
    assert!(l.traffic.captures().client_enabled(&mac(EVIL)));
}

#[tokio::test]
async fn list_shows_every_device_with_vendor_state_and_traffic() {
    let l = lab("list").await;
    let (code, page) = l.get("/clients").await;
    assert_eq!(code, 200);
    for m in [EVIL, TV, GHOST] {
        assert!(
            page.contains(&format!("href=\"/clients/{m}\"")),
            "{m}: {page}"
        );
    }
    assert!(page.contains("Cisco Systems, Inc"), "{page}");
    assert!(page.contains(">tv<"), "{page}");
    assert!(page.contains("class=\"offline\""), "{page}");
    assert!(page.contains("<div class=\"scroll\">"));
    // The hostile name is text, not markup.
    assert!(!page.contains(SCRIPT), "{page}");
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{page}"
    );

    let v = l.json("/api/clients").await;
    let rows = v["clients"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
    let row = |m: &str| rows.iter().find(|r| r["mac"] == m).unwrap().clone();
    let evil = row(EVIL);
    assert_eq!(evil["name"], SCRIPT, "JSON carries the name as data");
    assert_eq!(evil["state"], "online");
    assert_eq!(evil["ip"], "192.168.1.100");
    assert_eq!(
        (
            evil["up_bytes_24h"].as_u64(),
            evil["down_bytes_24h"].as_u64()
        ),
        (Some(1000), Some(5000))
    );
    assert_eq!(evil["static_lease"], false);
    assert_eq!(evil["capture"], true);
    assert!(evil["last_seen_ms"].as_u64().unwrap() > 0);
    let tv = row(TV);
    assert_eq!(tv["state"], "offline");
    assert_eq!(tv["vendor"], "Cisco Systems, Inc");
    assert!(tv["lease_expires"].as_u64().unwrap() < now_s());
    let ghost = row(GHOST);
    assert_eq!(ghost["ip"], Value::Null);
    assert_eq!(ghost["down_bytes_24h"], 700);
    assert_eq!(ghost["vendor"], Value::Null, "locally administered");
}

#[tokio::test]
async fn detail_page_and_json_show_chart_remotes_and_downloads() {
    let l = lab("detail").await;
    let (code, page) = l.get(&format!("/clients/{EVIL}")).await;
    assert_eq!(code, 200, "{page}");
    assert!(!page.contains(SCRIPT), "{page}");
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(page.contains("role=\"img\""));
    assert!(page.contains("<title id=\"chart-title\">"));
    assert!(page.contains("fill=\"currentColor\""));
    assert!(page.contains("198.51.100.7"), "top remote: {page}");
    assert!(
        page.contains(&format!("/api/capture/{EVIL}?format=pcap&#38;from=")),
        "{page}"
    );
    assert!(page.contains(&format!("/api/capture/{EVIL}?format=pcapng\"")));
    assert!(page.contains(&format!("/api/traffic?client={EVIL}&#38;from=")));
    assert!(page.contains("format=csv"));
    assert!(page.contains("id=\"zoom-in\""));
    assert!(page.contains("<label for=\"name\">"));
    assert!(page.contains(&format!("name=\"csrf\" value=\"{}\"", l.csrf)));
    // Default view is the day; the last day cannot be zoomed out of or moved later.
    assert!(!page.contains("id=\"zoom-out\""));
    assert!(!page.contains("id=\"later\""));

    // A narrow window around the traffic: the history's 100 ms points.
    let t = gateway::clock::unix_ms();
    let (from, to) = (t - 65_000, t - 55_000);
    let v = l
        .json(&format!("/api/clients/{EVIL}?from={from}&to={to}"))
        .await;
    assert_eq!(v["res_ms"], 100);
    assert_eq!(v["client"]["mac"], EVIL);
    let pts = v["points"].as_array().unwrap();
    assert_eq!(pts.len(), 1, "{v}");
    assert_eq!(
        (pts[0]["up_bytes"].as_u64(), pts[0]["down_bytes"].as_u64()),
        (Some(1000), Some(5000))
    );
    assert_eq!(v["top_remotes"][0]["remote"], "198.51.100.7");
    assert_eq!(v["top_remotes"][0]["down_bytes"], 5000);
    assert!(v["dns_queries"].as_array().unwrap().is_empty());
    let (code, page) = l.get(&format!("/clients/{EVIL}?from={from}&to={to}")).await;
    assert_eq!(code, 200);
    assert!(page.contains("a point every 100 ms"), "{page}");
    assert!(!page.contains("id=\"zoom-in\""), "10 s is the narrowest");
    assert!(page.contains("id=\"zoom-out\""));

    // A device never seen still has a page (it can be named ahead of time).
    let (code, _) = l.get("/clients/02:00:00:00:00:42").await;
    assert_eq!(code, 200);
    for bad in [
        format!("/clients/{EVIL}?from=yesterday"),
        "/clients/not-a-mac".to_string(),
        "/api/clients/zz:00:00:00:00:00".to_string(),
        format!("/api/clients/{EVIL}?from=-1m&to=-1h"),
    ] {
        let (code, body) = l.get(&bad).await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(!body.is_empty());
    }
}

#[tokio::test]
async fn rename_writes_the_config_and_shows_the_name() {
    let l = lab("rename").await;
    let (code, loc, _) = l
        .post(
            &format!("/clients/{TV}/name"),
            &[("name", "  Living room TV ")],
        )
        .await;
    assert_eq!(
        (code, loc.as_str()),
        (303, &*format!("/clients/{TV}?done=named"))
    );
    let text = l.config_text();
    assert!(text.contains("[[devices]]"), "{text}");
    assert!(text.contains(&format!("mac = \"{TV}\"")), "{text}");
    assert!(text.contains("name = \"Living room TV\""), "{text}");
    let (_, page) = l.get(&loc).await;
    assert!(page.contains("<h1>Living room TV</h1>"), "{page}");
    assert!(page.contains("Name saved"), "{page}");
    let (_, list) = l.get("/clients").await;
    assert!(list.contains("Living room TV"));

    // Hostile owner input is stored as text and shown as text.
    let (code, _, _) = l
        .post(&format!("/clients/{TV}/name"), &[("name", "<b>tv</b>")])
        .await;
    assert_eq!(code, 303);
    let (_, list) = l.get("/clients").await;
    assert!(
        !list.contains("<b>tv</b>") && list.contains("&#60;b&#62;tv"),
        "{list}"
    );

    // Refused: a control character; too long. The file keeps the last good name.
    for bad in ["a\u{7}b", &"x".repeat(64)] {
        let (code, _, body) = l
            .post(&format!("/clients/{TV}/name"), &[("name", bad)])
            .await;
        assert_eq!(code, 400);
        assert!(body.contains("at most 63 characters"), "{body}");
        assert!(body.contains("role=\"alert\""));
    }
    assert!(l.config_text().contains("name = \"<b>tv</b>\""));

    // Empty: back to the name the device sends.
    let (code, loc, _) = l
        .post(&format!("/clients/{TV}/name"), &[("name", "")])
        .await;
    assert_eq!(
        (code, loc.as_str()),
        (303, &*format!("/clients/{TV}?done=unnamed"))
    );
    assert!(!l.config_text().contains("name = "), "{}", l.config_text());
    let v = l.json(&format!("/api/clients/{TV}")).await;
    assert_eq!(v["client"]["name"], "tv");
    assert_eq!(v["client"]["owner_name"], Value::Null);
    // The same again changes nothing, and says so.
    let (_, loc, _) = l
        .post(&format!("/clients/{TV}/name"), &[("name", "")])
        .await;
    assert!(loc.ends_with("done=unchanged"), "{loc}");
}

#[tokio::test]
async fn static_lease_is_added_from_the_current_address_and_removed() {
    let l = lab("static").await;
    let (code, loc, _) = l.post(&format!("/clients/{EVIL}/static"), &[]).await;
    assert_eq!(
        (code, loc.as_str()),
        (303, &*format!("/clients/{EVIL}?done=static"))
    );
    let text = l.config_text();
    assert!(text.contains("[[dhcp.static_leases]]"), "{text}");
    assert!(text.contains(&format!("mac = \"{EVIL}\"")), "{text}");
    assert!(text.contains("ip = \"192.168.1.100\""), "{text}");
    let cfg = gateway::config::parse(&text).unwrap();
    assert_eq!(cfg.dhcp.static_leases.len(), 1);
    // The static entry carries the device's name as a DNS label.
    assert!(
        text.contains("hostname = \"script-alert-1-script\""),
        "{text}"
    );
    let v = l.json(&format!("/api/clients/{EVIL}")).await;
    assert_eq!(v["client"]["static_lease"], true);
    assert_eq!(v["client"]["static_ip"], "192.168.1.100");
    let (_, page) = l.get(&loc).await;
    assert!(page.contains("Make dynamic"), "{page}");
    assert!(page.contains("(static)"));

    // No lease, no address to keep.
    let (code, _, body) = l.post(&format!("/clients/{GHOST}/static"), &[]).await;
    assert_eq!(code, 400);
    assert!(body.contains("no DHCP lease"), "{body}");

    let (code, loc, _) = l.post(&format!("/clients/{EVIL}/dynamic"), &[]).await;
    assert_eq!(
        (code, loc.as_str()),
        (303, &*format!("/clients/{EVIL}?done=dynamic"))
    );
    let cfg = gateway::config::parse(&l.config_text()).unwrap();
    assert!(cfg.dhcp.static_leases.is_empty());
    let (_, page) = l.get(&format!("/clients/{EVIL}")).await;
    assert!(page.contains("Make static"));
}

#[tokio::test]
async fn capture_switch_is_live_and_survives_a_restart() {
    let l = lab("capture").await;
    let (code, loc, _) = l
        .post(&format!("/clients/{EVIL}/capture"), &[("capture", "off")])
        .await;
    assert_eq!(
        (code, loc.as_str()),
        (303, &*format!("/clients/{EVIL}?done=capture-off"))
    );
    let text = l.config_text();
    assert!(
        text.contains(&format!("disabled_clients = [\"{EVIL}\"]")),
        "{text}"
    );
    assert!(!l.traffic.captures().client_enabled(&mac(EVIL)));
    // A restart builds the capture state from the file.
    let cfg = gateway::config::parse(&text).unwrap();
    let restarted = Traffic::new(&cfg, &l.dir.join("restart"));
    assert!(!restarted.captures().client_enabled(&mac(EVIL)));
    let v = l.json("/api/clients").await;
    let row = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["mac"] == EVIL)
        .unwrap()
        .clone();
    assert_eq!(
        (row["capture"].as_bool(), row["capture_saved"].as_bool()),
        (Some(false), Some(false))
    );
    let (_, page) = l.get(&loc).await;
    assert!(page.contains("Turn capture on"), "{page}");

    let (code, _, body) = l
        .post(&format!("/clients/{EVIL}/capture"), &[("capture", "maybe")])
        .await;
    assert_eq!(code, 400);
    assert!(body.contains("capture on or off"), "{body}");

    let (code, loc, _) = l
        .post(&format!("/clients/{EVIL}/capture"), &[("capture", "on")])
        .await;
    assert_eq!(
        (code, loc.as_str()),
        (303, &*format!("/clients/{EVIL}?done=capture-on"))
    );
    assert!(l.traffic.captures().client_enabled(&mac(EVIL)));
    let cfg = gateway::config::parse(&l.config_text()).unwrap();
    assert!(cfg.capture.disabled_clients.is_empty());
}

#[tokio::test]
async fn traffic_page_charts_all_clients_and_links_top_talkers() {
    let l = lab("traffic").await;
    let (code, page) = l.get("/traffic").await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("role=\"img\""));
    assert!(page.contains("id=\"span-24h\""));
    assert!(
        page.contains(&format!("href=\"/clients/{EVIL}\"")),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"/clients/{GHOST}\"")));
    assert!(!page.contains(SCRIPT), "{page}");
    assert!(page.contains("198.51.100.7"));
    assert!(page.contains("<div class=\"scroll\">"));
    assert!(
        page.contains("/api/traffic/live"),
        "the optional live script"
    );
    let (code, page) = l.get("/traffic?from=-24h").await;
    assert_eq!(code, 200);
    assert!(page.contains("a point every 5 min"), "{page}");
    let (code, _) = l.get("/traffic?from=soon").await;
    assert_eq!(code, 400);
}
