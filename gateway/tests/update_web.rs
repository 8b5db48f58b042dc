//! The update page's actions through the real axum router on loopback, with the fake
//! installer in RAUC's place: a multi-MB upload streamed to disk, the refusals, a download
//! from a URL, a full disk, and a configuration backup restored.

mod common;

use futures_util::StreamExt;
use gateway::update::fake::{bundle_header, FakeInstaller};
use gateway::update::{Paths, Update};
use gateway::web::session::Auth;
use reqwest::header;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNNING: &str = "0.2.0+g1a2b3c4.20261122T0512";
const COMPATIBLE: &str = "gatehouse-x86_64";
const PASSWORD: &str = "longenough";

struct Server {
    base: String,
    dir: PathBuf,
    fake: Arc<FakeInstaller>,
    update: Arc<Update>,
    reboots: Arc<AtomicUsize>,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A logged-in admin server on loopback. `reserve`: bytes the bundle store keeps free.
async fn start(tag: &str, reserve: Option<u64>) -> Server {
    let dir = std::env::temp_dir().join(format!("gh-update-web-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("version"), format!("{RUNNING}\n")).unwrap();
    let mut paths = Paths::new(dir.join("gatehouse.toml"), &dir);
    paths.version_file = dir.join("version");
    let fake = Arc::new(FakeInstaller::new(COMPATIBLE, "0.1.0"));
    let reboots = Arc::new(AtomicUsize::new(0));
    let r = reboots.clone();
    let mut update = Update::new(
        fake.clone(),
        paths,
        Arc::new(move || {
            r.fetch_add(1, Relaxed);
            Ok(())
        }),
    );
    if let Some(n) = reserve {
        update.store.reserve = n;
    }
    let update = Arc::new(update);
    let auth = Arc::new(Auth::open(&dir));
    auth.set_password(PASSWORD).unwrap();
    let (app, _) = common::app(&dir, auth, update.clone());
    let (base, http) = common::serve(app).await;
    let (cookie, csrf) = common::log_in(&http, &base, PASSWORD).await;
    Server {
        base,
        dir,
        fake,
        update,
        reboots,
        http,
        cookie,
        csrf,
    }
}

/// A deterministic byte stream standing in for a bundle's payload.
fn payload_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

const BOUNDARY: &str = "gatehouse-test-boundary-7d1f";

/// A multipart form whose file part is produced 64 KiB at a time: the client never holds
/// the bundle either.
fn multipart(
    file_field: &str,
    head: Vec<u8>,
    payload_len: u64,
    fields: &[(&str, &str)],
) -> reqwest::Body {
    let mut pre = String::new();
    for (k, v) in fields {
        pre +=
            &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n");
    }
    pre += &format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{file_field}\"; \
         filename=\"x.raucb\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let mut first = pre.into_bytes();
    first.extend(head);
    let body = futures_util::stream::unfold(0u64, move |at| async move {
        if at >= payload_len {
            return None;
        }
        let n = (payload_len - at).min(64 << 10);
        let chunk: Vec<u8> = (at..at + n).map(payload_byte).collect();
        Some((chunk, at + n))
    });
    let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    let all = futures_util::stream::iter([first])
        .chain(body)
        .chain(futures_util::stream::iter([tail]))
        .map(Ok::<_, std::io::Error>);
    reqwest::Body::wrap_stream(all)
}

struct Reply {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Server {
    async fn upload(&self, head: Vec<u8>, payload_len: u64, fields: &[(&str, &str)]) -> Reply {
        self.post_multipart("/update/upload", "bundle", head, payload_len, fields)
            .await
    }

    async fn post_multipart(
        &self,
        path: &str,
        file_field: &str,
        head: Vec<u8>,
        payload_len: u64,
        fields: &[(&str, &str)],
    ) -> Reply {
        let r = self
            .http
            .post(format!("{}{path}?csrf={}", self.base, self.csrf))
            .header(header::COOKIE, &self.cookie)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(multipart(file_field, head, payload_len, fields))
            .send()
            .await
            .unwrap();
        reply(r).await
    }

    async fn post_form(&self, path: &str, form: &str, accept_json: bool) -> Reply {
        let mut b = self
            .http
            .post(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={}&{form}", self.csrf));
        if accept_json {
            b = b.header(header::ACCEPT, "application/json");
        }
        reply(b.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap()
    }

    async fn api(&self) -> Value {
        serde_json::from_str(&self.get("/api/update").await.text().await.unwrap()).unwrap()
    }

    /// Waits until no update is under way.
    async fn wait_idle(&self) -> Value {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.api().await;
            if v["activity"]["phase"] == "idle" {
                return v;
            }
            assert!(Instant::now() < until, "still busy: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn reply(r: reqwest::Response) -> Reply {
    Reply {
        status: r.status().as_u16(),
        location: r
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string()),
        body: r.text().await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_megabyte_upload_is_streamed_to_disk_and_installed() {
    let s = start("upload", None).await;
    let v = s.api().await;
    for key in [
        "version",
        "boot_slot",
        "compatible",
        "operation",
        "progress",
        "last_error",
        "slots",
        "last",
        "pending",
        "counters",
    ] {
        assert!(v.get(key).is_some(), "/api/update lacks {key}: {v}");
    }
    assert_eq!(v["version"], RUNNING);
    assert_eq!(v["boot_slot"], "A");
    assert_eq!(v["compatible"], COMPATIBLE);
    assert_eq!(v["operation"], "idle");
    assert!(v["progress"]["percent"].is_i64() && v["progress"]["message"].is_string());
    assert_eq!(v["slots"][1]["bootname"], "B");
    assert_eq!(v["slots"][1]["boot_status"], "good");
    assert!(v["last"].is_null() && v["pending"].is_null());
    for key in [
        "uploads",
        "downloads",
        "rejected",
        "installs_ok",
        "installs_failed",
    ] {
        assert_eq!(v["counters"][key], 0, "{key}");
    }
    for key in ["compatible", "downgrade", "signature", "space", "other"] {
        assert_eq!(v["counters"]["rejected_by"][key], 0, "{key}");
    }
    assert_eq!(v["last_error"], "");

    s.fake.pause(true);
    let head = bundle_header(COMPATIBLE, "0.3.0+gabcdef0.20270101T0000");
    let len: u64 = 12 << 20;
    let r = s.upload(head.clone(), len, &[("csrf", &s.csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/update"));
    // RAUC (the fake) is installing it now: the file on disk is exactly what was sent.
    let on_disk = std::fs::read(s.update.paths.incoming()).unwrap();
    assert_eq!(on_disk.len() as u64, head.len() as u64 + len);
    assert_eq!(&on_disk[..head.len()], &head[..]);
    let mismatch = on_disk[head.len()..]
        .iter()
        .enumerate()
        .find(|(i, b)| **b != payload_byte(*i as u64));
    assert!(mismatch.is_none(), "byte {mismatch:?} differs");
    let v = s.api().await;
    assert_eq!(v["activity"]["phase"], "installing");
    assert_eq!(v["operation"], "installing");
    let page = s.get("/update").await.text().await.unwrap();
    assert!(
        page.contains("installing 0.3.0+gabcdef0.20270101T0000"),
        "{page}"
    );
    assert!(
        page.contains(&format!("Gatehouse {RUNNING}")),
        "no version in the footer"
    );
    // One at a time.
    let r = s.upload(head.clone(), 1000, &[]).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = s.post_form("/update/reboot", "", true).await;
    assert_eq!(r.status, 409, "reboot during an install: {}", r.body);

    s.fake.pause(false);
    let v = s.wait_idle().await;
    assert!(!s.update.paths.incoming().exists(), "bundle left behind");
    assert_eq!(v["counters"]["uploads"], 1);
    assert_eq!(v["counters"]["installs_ok"], 1);
    assert_eq!(v["last_attempt"]["ok"], true);
    let installed = s.fake.installed.lock().unwrap().clone();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].len, head.len() as u64 + len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_reported_and_counted() {
    let s = start("refuse", None).await;
    let r = s
        .upload(bundle_header("gatehouse-aarch64", "0.3.0"), 4096, &[])
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("bundle is for &#34;gatehouse-aarch64&#34;")
            || r.body
                .contains("bundle is for &quot;gatehouse-aarch64&quot;"),
        "{}",
        r.body
    );
    let older = "0.1.0+g0000001.20260101T0000";
    let r = s.upload(bundle_header(COMPATIBLE, older), 4096, &[]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains(&format!("bundle {older} is older than running {RUNNING}")),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("tick &#39;allow downgrade&#39;")
            || r.body.contains("tick 'allow downgrade'")
    );
    let r = s.upload(b"garbage\n".to_vec(), 4096, &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("signature"), "{}", r.body);
    assert!(!s.update.paths.incoming().exists());
    let v = s.api().await;
    assert_eq!(v["counters"]["rejected"], 3);
    let rej = &v["counters"]["rejected_by"];
    assert_eq!(
        [&rej["compatible"], &rej["downgrade"], &rej["signature"]],
        [1, 1, 1]
    );
    // RAUC never saw these; the API's last_error still says why the last one failed.
    assert!(
        v["last_error"].as_str().unwrap().contains("signature"),
        "{v}"
    );
    assert_eq!(v["rauc_last_error"], "");
    assert_eq!(v["counters"]["installs_ok"], 0);
    assert!(s.fake.installed.lock().unwrap().is_empty());
    // Ticking the box lets the older one through (the field may follow the file).
    let r = s.upload(bundle_header(COMPATIBLE, older), 4096, &[]).await;
    assert_eq!(r.status, 400);
    let r = s
        .post_multipart(
            "/update/upload",
            "bundle",
            bundle_header(COMPATIBLE, older),
            4096,
            &[("allow_downgrade", "1")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let v = s.wait_idle().await;
    assert_eq!(v["counters"]["installs_ok"], 1);
    // RAUC gone: said so, nothing installed.
    s.fake.down.store(true, Relaxed);
    let page = s.get("/update").await.text().await.unwrap();
    assert!(page.contains("RAUC not running"), "{page}");
    let r = s.upload(bundle_header(COMPATIBLE, "0.3.0"), 10, &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("RAUC not running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_refusal() {
    // A reserve larger than any disk: the data partition is "full".
    let s = start("full", Some(u64::MAX / 4)).await;
    let r = s
        .upload(bundle_header(COMPATIBLE, "0.3.0"), 2 << 20, &[])
        .await;
    assert_eq!(r.status, 507, "{}", r.body);
    assert!(
        r.body.contains("not enough space on the data partition"),
        "{}",
        r.body
    );
    let v = s.api().await;
    assert_eq!(v["counters"]["rejected_by"]["space"], 1);
    assert_eq!(v["counters"]["rejected"], 1);
    assert!(
        v["last_error"]
            .as_str()
            .unwrap()
            .contains("not enough space"),
        "{v}"
    );
    assert_eq!(v["activity"]["phase"], "idle");
    assert!(std::fs::read_dir(&s.update.paths.update_dir)
        .unwrap()
        .next()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_fetched_from_a_url() {
    let s = start("url", None).await;
    let mut bundle = bundle_header(COMPATIBLE, "0.3.0+g1.20270101T0000");
    bundle.extend((0..(3u64 << 20)).map(payload_byte));
    let served = bundle.clone();
    let files = axum::Router::new().route(
        "/b.raucb",
        axum::routing::get(move || {
            let b = served.clone();
            async move { b }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, files).await });

    let r = s
        .post_form(
            "/update/url",
            &format!("url=http://{addr}/nope.raucb"),
            false,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("HTTP 404"), "{}", r.body);
    let r = s
        .post_form("/update/url", "url=file:///etc/passwd", true)
        .await;
    assert_eq!(r.status, 400);
    let j: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(j["ok"], false);
    assert!(j["error"].as_str().unwrap().contains("only http"), "{j}");

    s.fake.pause(true);
    let r = s
        .post_form("/update/url", &format!("url=http://{addr}/b.raucb"), true)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(std::fs::read(s.update.paths.incoming()).unwrap(), bundle);
    s.fake.pause(false);
    let v = s.wait_idle().await;
    assert_eq!(v["counters"]["downloads"], 1);
    assert_eq!(v["counters"]["installs_ok"], 1);
    assert_eq!(v["counters"]["rejected_by"]["other"], 2);
    assert_eq!(v["last_error"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_and_reboot() {
    let s = start("switch", None).await;
    s.fake.set_other_status("bad");
    let r = s.post_form("/update/switch", "", false).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("slot B is not marked good"), "{}", r.body);
    assert!(s.fake.marks.lock().unwrap().is_empty());
    s.fake.set_other_status("good");
    let page = s.get("/update").await.text().await.unwrap();
    assert!(page.contains("Switch to slot B"), "{page}");
    let r = s.post_form("/update/switch", "", true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.fake.marks.lock().unwrap()[..],
        [("active".to_string(), "other".to_string())]
    );
    let until = Instant::now() + Duration::from_secs(5);
    while s.reboots.load(Relaxed) == 0 {
        assert!(Instant::now() < until, "no reboot was asked for");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_round_trip() {
    let s = start("backup", None).await;
    let cfg_path = s.update.paths.config.clone();
    let original = "schema = 1\n# ours\n[system]\nhostname = \"box\"\n\n[[nat.forwards]]\nprotocol = \"tcp\"\nexternal = 8080\ninside = \"192.168.1.20:80\"\n";
    std::fs::write(&cfg_path, original).unwrap();
    std::fs::create_dir_all(s.dir.join("ui")).unwrap();
    let r = s.get("/config/backup").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/gzip");
    let tarball = r.bytes().await.unwrap().to_vec();
    // Only the config: the password hash stays on the router.
    let mut names = Vec::new();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&tarball[..]));
    for e in a.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert_eq!(names, ["gatehouse.toml"]);

    let changed = "schema = 1\n[system]\nhostname = \"other\"\n";
    std::fs::write(&cfg_path, changed).unwrap();
    let r = s
        .post_multipart("/config/restore", "backup", tarball.clone(), 0, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Configuration restored"), "{}", r.body);
    assert!(r.body.contains("1 port forwards applied"), "{}", r.body);
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original);
    let bak = s.dir.join("gatehouse.toml.bak");
    assert_eq!(std::fs::read_to_string(&bak).unwrap(), changed);

    // A backup whose config does not validate changes nothing.
    let bad = gateway::update::backup::create("[lan]\nprefix_len = 99\n", 0).unwrap();
    let r = s
        .post_multipart("/config/restore", "backup", bad, 0, &[])
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not valid"), "{}", r.body);
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original);
    // Nor does one that is not a backup at all.
    let r = s
        .post_multipart("/config/restore", "backup", b"hello".to_vec(), 0, &[])
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not a .tar.gz"), "{}", r.body);
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original);
}
