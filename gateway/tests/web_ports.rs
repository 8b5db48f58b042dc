//! The ports page through the real axum router on loopback: the login and CSRF
//! guards, port forwards added, edited and deleted (the config file and the NAT's
//! forward set follow; bad input is refused with the reason, the owner's input
//! kept and the file untouched), and the JSON mirror.

mod common;

use gateway::web::Shared;
use reqwest::header;
use serde_json::Value;
use std::path::PathBuf;

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
    let (dir, shared, s) = common::logged_in(&format!("web-ports-{tag}"), PASSWORD).await;
    Lab { s, dir, shared }
}

impl Lab {
    fn file(&self) -> String {
        std::fs::read_to_string(self.dir.join("gatehouse.toml")).unwrap()
    }

    fn forwards(&self) -> usize {
        self.shared.nat.stats().forwards
    }
}

#[tokio::test]
async fn every_route_needs_a_session_and_posts_a_csrf_token() {
    let lab = lab("guards").await;
    let before = lab.file();
    for path in ["/ports"] {
        let r = lab
            .http
            .get(format!("{}{path}", lab.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()[header::LOCATION], "/login");
    }
    let r = lab
        .http
        .get(format!("{}/api/ports", lab.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let form = "protocol=tcp&external=8080&inside_ip=192.168.1.20&inside_port=80";
    for path in [
        "/ports/forwards",
        "/ports/forwards/0",
        "/ports/forwards/0/delete",
    ] {
        // No session at all.
        let r = lab
            .http
            .post(format!("{}{path}", lab.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={}&{form}", lab.csrf))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{path}");
        // A session, but no token (or a wrong one).
        for body in [form.to_string(), format!("csrf=nope&{form}")] {
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
    assert_eq!(lab.forwards(), 0);
}

#[tokio::test]
async fn forwards_are_added_edited_and_deleted_live() {
    let lab = lab("crud").await;
    let (status, html) = lab.get("/ports").await;
    assert_eq!(status, 200);
    assert!(html.contains("No port forwards."));
    assert!(html.contains("<label for=\"fwd-external\">"));

    let (status, loc, _) = lab
        .post(
            "/ports/forwards",
            &[
                ("protocol", "both"),
                ("external", "8000-8010"),
                ("inside_ip", "192.168.1.20"),
                ("inside_port", ""),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(loc.as_deref(), Some("/ports?done=added#forwards"));
    let text = lab.file();
    assert!(text.starts_with("# my router"), "{text}");
    assert!(text.contains("[[nat.forwards]]"), "{text}");
    assert!(text.contains("external = \"8000-8010\""), "{text}");
    assert!(text.contains("inside = \"192.168.1.20:8000\""), "{text}");
    assert_eq!(lab.forwards(), 1);
    let (_, html) = lab.get("/ports?done=added").await;
    assert!(html.contains("Port forward added."), "{html}");
    assert!(html.contains("192.168.1.20:8000-8010"));

    // A second one, then the first is edited into a single TCP port.
    let (status, _, _) = lab
        .post(
            "/ports/forwards",
            &[
                ("protocol", "udp"),
                ("external", "51820"),
                ("inside_ip", "192.168.1.30"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(lab.forwards(), 2);
    let (_, html) = lab.get("/ports?edit=0").await;
    assert!(html.contains("Edit port forward 1"), "{html}");
    assert!(html.contains("value=\"both 8000-8010 192.168.1.20:8000\""));
    let (status, loc, _) = lab
        .post(
            "/ports/forwards/0",
            &[
                ("protocol", "tcp"),
                ("external", "443"),
                ("inside_ip", "192.168.1.21"),
                ("inside_port", "8443"),
                ("was", "both 8000-8010 192.168.1.20:8000"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(loc.as_deref(), Some("/ports?done=saved#forwards"));
    let cfg = lab.shared.config.current();
    assert_eq!(cfg.nat.forwards.len(), 2);
    assert_eq!(
        cfg.nat.forwards[0].inside,
        "192.168.1.21:8443".parse().unwrap()
    );
    assert!(lab.file().contains("inside = \"192.168.1.21:8443\""));
    assert_eq!(lab.forwards(), 2);

    // A form drawn before that edit is refused rather than applied to the wrong forward.
    let before = lab.file();
    let (status, _, html) = lab
        .post(
            "/ports/forwards/0/delete",
            &[("was", "both 8000-8010 192.168.1.20:8000")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("changed meanwhile"), "{html}");
    assert_eq!(lab.file(), before);

    let (status, loc, _) = lab
        .post(
            "/ports/forwards/0/delete",
            &[("was", "tcp 443 192.168.1.21:8443")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(loc.as_deref(), Some("/ports?done=deleted#forwards"));
    assert_eq!(lab.forwards(), 1);
    let cfg = lab.shared.config.current();
    assert_eq!(cfg.nat.forwards[0].external.first, 51820);
    let (status, _, _) = lab.post("/ports/forwards/0/delete", &[]).await;
    assert_eq!(status, 303);
    assert_eq!(lab.forwards(), 0);
    assert!(lab.shared.config.current().nat.forwards.is_empty());
    let (status, _, html) = lab.post("/ports/forwards/5/delete", &[]).await;
    assert_eq!(status, 400);
    assert!(html.contains("no port forward #6"), "{html}");
}

#[tokio::test]
async fn bad_forwards_are_refused_with_the_reason_and_the_input_kept() {
    let lab = lab("bad").await;
    let (status, _, _) = lab
        .post(
            "/ports/forwards",
            &[
                ("protocol", "tcp"),
                ("external", "8080"),
                ("inside_ip", "192.168.1.20"),
                ("inside_port", "80"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let before = lab.file();
    for (fields, says) in [
        (
            [
                ("protocol", "tcp"),
                ("external", "90-80"),
                ("inside_ip", "192.168.1.20"),
            ],
            "ends before it starts",
        ),
        (
            [
                ("protocol", "tcp"),
                ("external", "22"),
                ("inside_ip", "10.9.8.7"),
            ],
            "is not a LAN host",
        ),
        (
            [
                ("protocol", "both"),
                ("external", "8000-8100"),
                ("inside_ip", "192.168.1.9"),
            ],
            "overlaps nat.forwards[0]",
        ),
        (
            [
                ("protocol", "tcp"),
                ("external", "80"),
                ("inside_ip", "nas.lan"),
            ],
            "not an IPv4 address",
        ),
    ] {
        let (status, _, html) = lab.post("/ports/forwards", &fields).await;
        assert_eq!(status, 400, "{fields:?}");
        assert!(html.contains(says), "{says}: {html}");
        assert!(html.contains("role=\"alert\""));
        let external = fields[1].1;
        assert!(
            html.contains(&format!("value=\"{external}\"")),
            "input kept: {html}"
        );
        assert_eq!(lab.file(), before);
        assert_eq!(lab.forwards(), 1);
    }
    // Editing into an invalid forward keeps the edit form open with what was typed.
    let (status, _, html) = lab
        .post(
            "/ports/forwards/0",
            &[
                ("protocol", "udp"),
                ("external", "68"),
                ("inside_ip", "192.168.1.20"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("UDP port 68"), "{html}");
    assert!(html.contains("action=\"/ports/forwards/0\""));
    assert!(html.contains("<option value=\"udp\" selected>"));
    assert_eq!(lab.file(), before);
}

#[tokio::test]
async fn json_mirror_and_listeners() {
    let lab = lab("json").await;
    lab.post(
        "/ports/forwards",
        &[
            ("protocol", "udp"),
            ("external", "51820"),
            ("inside_ip", "192.168.1.30"),
        ],
    )
    .await;
    let (status, text) = lab.get("/api/ports").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["forwards"][0]["index"], 0);
    assert_eq!(v["forwards"][0]["protocol"], "udp");
    assert_eq!(v["forwards"][0]["external"], 51820);
    assert_eq!(v["forwards"][0]["inside"], "192.168.1.30:51820");
    assert_eq!(v["forwards_in_force"], 1);
    assert_eq!(v["mappings"]["total"], 0);
    assert_eq!(v["mappings"]["rows"].as_array().unwrap().len(), 0);
    // This test's own server listens on loopback: found in /proc, with its process.
    let port: u64 = lab.base.rsplit(':').next().unwrap().parse().unwrap();
    let me = v["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == port && l["proto"] == "tcp" && l["address"] == "127.0.0.1")
        .unwrap_or_else(|| panic!("listener on {port} missing: {text}"));
    assert_eq!(me["reach"], "local");
    assert!(!me["processes"].as_array().unwrap().is_empty(), "{me}");
    let (_, html) = lab.get("/ports").await;
    assert!(
        html.contains(&format!("<td>127.0.0.1</td><td>{port}</td>")),
        "{html}"
    );
    assert!(html.contains("this router only"));
    assert!(html.contains("0 mappings."));
}
