//! The DNS page through the real axum router on loopback: the login and CSRF
//! guards, the query log (a hostile name renders inert; the client filter),
//! blocklists added from a file or a URL, disabled, enabled and removed, and the
//! JSON mirror.

mod common;

use gateway::dns::querylog::{Name, QueryLog, Record};
use gateway::web::Shared;
use reqwest::header;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

const PASSWORD: &str = "longenough";

struct Lab {
    s: common::Session,
    dir: PathBuf,
    shared: Shared,
}

/// `lab.get`, `lab.post`, `lab.base`...: the logged-in session's.
impl std::ops::Deref for Lab {
    type Target = common::Session;
    fn deref(&self) -> &common::Session {
        &self.s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// As `common::app`, keeping the shared state to look at, and logged in.
async fn lab(tag: &str) -> Lab {
    let (dir, shared, s) = common::logged_in(&format!("web-dns-{tag}"), PASSWORD).await;
    Lab { s, dir, shared }
}

impl Lab {
    fn file(&self) -> String {
        std::fs::read_to_string(self.dir.join("gatehouse.toml")).unwrap()
    }
}

const ALICE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
const BOB: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 11));

fn log_query(lab: &Lab, ip: IpAddr, name: &str, blocked: bool) {
    QueryLog::record(
        lab.shared.dns.log.slow_shard(),
        ip,
        &Record {
            time_ms: gateway::clock::unix_ms(),
            name: Name::Text(name),
            qtype: 1,
            rcode: 0,
            answer: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            blocked,
            cached: false,
        },
    );
}

/// A one-route HTTP server answering every GET with `body`.
async fn list_server(body: Vec<u8>) -> String {
    let app = axum::Router::new().route(
        "/list.txt",
        axum::routing::get(move || {
            let b = body.clone();
            async move { b }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/list.txt", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

#[tokio::test]
async fn every_route_needs_a_session_and_posts_a_csrf_token() {
    let lab = lab("guards").await;
    let before = lab.file();
    let r = lab
        .http
        .get(format!("{}/dns", lab.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/login");
    let r = lab
        .http
        .get(format!("{}/api/dns", lab.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    std::fs::write(lab.dir.join("ads.txt"), "ads.example.test\n").unwrap();
    let form = format!("name=ads&source={}", lab.dir.join("ads.txt").display());
    for path in [
        "/dns/blocklists",
        "/dns/blocklists/0/enable",
        "/dns/blocklists/0/disable",
        "/dns/blocklists/0/delete",
    ] {
        let r = lab
            .http
            .post(format!("{}{path}", lab.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={}&{form}", lab.csrf))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{path}");
        for body in [form.clone(), format!("csrf=nope&{form}")] {
            let r = lab
                .http
                .post(format!("{}{path}", lab.base))
                .header(header::COOKIE, &lab.cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path}");
        }
    }
    assert_eq!(lab.file(), before);
}

#[tokio::test]
async fn query_log_is_escaped_and_filtered_by_client() {
    let lab = lab("log").await;
    log_query(&lab, ALICE, "<script>alert(1)</script>", false);
    log_query(&lab, BOB, "ads.example.test", true);
    lab.shared.dns.queries.store(4, Relaxed);
    lab.shared.dns.cache_hits.store(1, Relaxed);
    lab.shared.dns.blocked.store(1, Relaxed);
    let (status, html) = lab.get("/dns").await;
    assert_eq!(status, 200);
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "{html}"
    );
    assert!(html.contains("ads.example.test"));
    assert!(html.contains("25.0 % hit rate"), "{html}");
    assert!(html.contains("<label for=\"client\">"));
    assert!(html.contains("<div class=\"scroll\">"));
    let (_, html) = lab.get("/dns?client=192.168.1.11").await;
    assert!(html.contains("ads.example.test"));
    assert!(
        !html.contains("script&#62;") && !html.contains("script&gt;"),
        "{html}"
    );
    assert!(html.contains("<option value=\"192.168.1.11\" selected>"));
    let (status, text) = lab.get("/api/dns?client=192.168.1.10").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["client"], "192.168.1.10");
    assert_eq!(v["log"].as_array().unwrap().len(), 1);
    assert_eq!(v["log"][0]["name"], "<script>alert(1)</script>");
    assert_eq!(v["clients"].as_array().unwrap().len(), 2);
    assert_eq!(v["totals"]["queries"], 4);
    assert_eq!(v["cache"]["hit_rate"], 25.0);
    assert_eq!(v["upstreams"]["source"], "none");
    let (_, text) = lab.get("/api/dns").await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["log"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn blocklists_from_files_are_added_disabled_enabled_and_removed() {
    let lab = lab("lists").await;
    let list = lab.dir.join("ads.txt");
    std::fs::write(&list, "0.0.0.0 ads.example.test\n").unwrap();
    let source = list.display().to_string();
    let (status, loc, _) = lab
        .post("/dns/blocklists", &[("name", "Ads"), ("source", &source)])
        .await;
    assert_eq!(status, 303);
    assert_eq!(loc.as_deref(), Some("/dns?done=added#blocklists"));
    let text = lab.file();
    assert!(text.starts_with("# my router"), "{text}");
    assert!(text.contains("[[dns.blocklists]]"), "{text}");
    let cfg = lab.shared.config.current();
    assert_eq!(cfg.dns.blocklists.len(), 1);
    assert_eq!(cfg.dns.blocklists[0].path, source);
    assert!(cfg.dns.blocklists[0].enabled);
    let (_, html) = lab.get("/dns?done=added").await;
    assert!(html.contains("Blocklist added."), "{html}");
    assert!(html.contains("Disable Ads"));

    // Refusals leave the file as it was and say why, keeping the input.
    let before = lab.file();
    for (name, src, says) in [
        ("ads", source.as_str(), "already a blocklist named"),
        ("Root", "/", "not on the data partition"),
        ("Rel", "ads.txt", "absolute path"),
        (
            "Gone",
            &*lab.dir.join("gone.txt").display().to_string(),
            "Cannot use",
        ),
        ("", source.as_str(), "name of 1 to 64"),
        ("Url", "ftp://example.test/x", "absolute path"),
    ] {
        let (status, _, html) = lab
            .post("/dns/blocklists", &[("name", name), ("source", src)])
            .await;
        assert_eq!(status, 400, "{name}");
        assert!(html.contains(says), "{says}: {html}");
        assert!(html.contains(&format!("id=\"list-name\" name=\"name\" value=\"{name}\"")));
        assert_eq!(lab.file(), before);
    }

    let (status, loc, _) = lab
        .post("/dns/blocklists/0/disable", &[("was", "Ads")])
        .await;
    assert_eq!(status, 303);
    assert_eq!(loc.as_deref(), Some("/dns?done=disabled#blocklists"));
    assert!(lab.file().contains("enabled = false"));
    assert!(!lab.shared.config.current().dns.blocklists[0].enabled);
    let (_, html) = lab.get("/dns").await;
    assert!(html.contains("Enable Ads"));
    assert!(html.contains("<td>disabled</td>"), "{html}");
    let (status, _, html) = lab
        .post("/dns/blocklists/0/enable", &[("was", "Trackers")])
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("reload the page"), "{html}");
    let (status, _, _) = lab
        .post("/dns/blocklists/0/enable", &[("was", "Ads")])
        .await;
    assert_eq!(status, 303);
    assert!(lab.shared.config.current().dns.blocklists[0].enabled);
    let (status, loc, _) = lab
        .post("/dns/blocklists/0/delete", &[("was", "Ads")])
        .await;
    assert_eq!(status, 303);
    assert_eq!(loc.as_deref(), Some("/dns?done=removed#blocklists"));
    assert!(lab.shared.config.current().dns.blocklists.is_empty());
    assert!(list.exists(), "the owner's own file stays");
    let (status, _, _) = lab.post("/dns/blocklists/0/delete", &[]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn blocklists_from_urls_are_downloaded_bounded_and_deleted_with_their_entry() {
    let lab = lab("urls").await;
    let url = list_server(b"# a list\nads.example.test\n0.0.0.0 t.example.test\n".to_vec()).await;
    let (status, _, html) = lab
        .post(
            "/dns/blocklists",
            &[("name", "Steven's list"), ("source", &url)],
        )
        .await;
    assert_eq!(status, 303, "{html}");
    let file = lab.dir.join("blocklists/steven-s-list.txt");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("t.example.test"));
    let cfg = lab.shared.config.current();
    assert_eq!(cfg.dns.blocklists[0].path, file.display().to_string());
    let (_, text) = lab.get("/api/dns").await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["blocklists"][0]["name"], "Steven's list");
    assert_eq!(v["blocklists"][0]["enabled"], true);

    let big = list_server(vec![b'a'; (32 << 20) + 1]).await;
    let before = lab.file();
    let (status, _, html) = lab
        .post("/dns/blocklists", &[("name", "Huge"), ("source", &big)])
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("larger than 32 MiB"), "{html}");
    assert!(!lab.dir.join("blocklists/huge.txt").exists());
    assert_eq!(lab.file(), before);

    let (status, _, _) = lab
        .post("/dns/blocklists/0/delete", &[("was", "Steven's list")])
        .await;
    assert_eq!(status, 303);
    assert!(!file.exists(), "a downloaded list goes with its entry");
}
