//! The update page and its actions: upload or fetch a bundle, switch slots, reboot, back
//! up and restore the config. The work is in `crate::update`; this maps it onto HTTP.
//!
//! Browsers get the page back (a redirect to it on success, the page with the reason and
//! an error status on refusal); a client sending `Accept: application/json` gets
//! `{"ok":true,...}` or `{"ok":false,"error":"..."}` with the same status instead.

use super::auth::SessionInfo;
use super::format_bytes;
use super::AppState;
use crate::update::{self, records::Tone, Attempt, Phase, Refusal, Source};
use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::Extension;
use futures_util::StreamExt;
use serde::Deserialize;

pub struct Notice {
    pub class: &'static str,
    pub text: String,
}

pub struct BannerRow {
    pub class: &'static str,
    pub text: String,
    pub reboot: bool,
}

#[derive(Template)]
#[template(path = "update.html")]
pub struct UpdatePage {
    pub hostname: String,
    pub version: String,
    pub csrf: String,
    pub notice: Option<Notice>,
    pub banners: Vec<BannerRow>,
    pub rauc_error: Option<String>,
    pub boot_slot: String,
    pub compatible: String,
    /// An update is under way: the page refreshes itself and the buttons rest.
    pub busy: bool,
    pub status_line: String,
    pub percent: Option<i32>,
    pub last_error: String,
    pub last_attempt: Option<String>,
    pub counters: String,
    pub slots: Vec<update::SlotStatus>,
    pub switch_to: Option<String>,
    pub switch_refused: String,
}

fn tone_class(t: Tone) -> &'static str {
    match t {
        Tone::Good => "good",
        Tone::Bad => "bad",
        Tone::Info => "info",
    }
}

fn counters_line(c: &update::CountersView) -> String {
    let r = &c.rejected_by;
    format!(
        "{} uploaded, {} downloaded, {} refused (compatible {}, downgrade {}, signature {}, \
         space {}, other {}), {} installed, {} failed",
        c.uploads,
        c.downloads,
        c.rejected,
        r.compatible,
        r.downgrade,
        r.signature,
        r.space,
        r.other,
        c.installs_ok,
        c.installs_failed,
    )
}

fn attempt_line(a: &Attempt) -> String {
    let ago = crate::clock::unix_now().saturating_sub(a.at);
    format!(
        "{} ({} ago)",
        a.message,
        super::status::format_duration(ago)
    )
}

async fn page_of(st: &AppState, csrf: &str, notice: Option<Notice>) -> UpdatePage {
    let up = &st.shared.update;
    let s = up.snapshot().await;
    let a = &s.activity;
    let installing = s.operation == "installing";
    let (status_line, percent) = match a.phase {
        Phase::Receiving => (
            match a.expected {
                Some(n) => format!(
                    "receiving the bundle: {} of {}",
                    format_bytes(a.received),
                    format_bytes(n)
                ),
                None => format!("receiving the bundle: {}", format_bytes(a.received)),
            },
            None,
        ),
        Phase::Inspecting => ("RAUC is checking the bundle".into(), None),
        Phase::Installing | Phase::Idle if installing || a.phase == Phase::Installing => (
            format!(
                "installing {}: {}",
                if a.version.is_empty() {
                    "a bundle"
                } else {
                    &a.version
                },
                s.progress.message
            ),
            Some(s.progress.percent.clamp(0, 100)),
        ),
        _ => ("idle".into(), None),
    };
    UpdatePage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: s.version.clone(),
        csrf: csrf.to_string(),
        notice,
        banners: s
            .banners
            .iter()
            .map(|b| BannerRow {
                class: tone_class(b.tone),
                text: b.text.clone(),
                reboot: b.reboot,
            })
            .collect(),
        rauc_error: s.rauc_error.clone(),
        boot_slot: s.boot_slot.clone(),
        compatible: s.compatible.clone(),
        busy: a.phase != Phase::Idle || installing,
        status_line,
        percent,
        last_error: s.last_error.clone(),
        last_attempt: s.last_attempt.as_ref().map(attempt_line),
        counters: counters_line(&s.counters),
        slots: s.slots.clone(),
        switch_to: s.switch_to.clone(),
        switch_refused: s.switch_refused.clone().unwrap_or_default(),
    }
}

fn render(page: UpdatePage, status: StatusCode) -> Response {
    super::html(&page, status)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn refusal_status(r: &Refusal) -> StatusCode {
    match r {
        Refusal::Busy => StatusCode::CONFLICT,
        Refusal::Space(_) => StatusCode::INSUFFICIENT_STORAGE,
        Refusal::NotRunning(_) => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::Compatible { .. }
        | Refusal::Downgrade { .. }
        | Refusal::Signature(_)
        | Refusal::Other(_) => StatusCode::BAD_REQUEST,
    }
}

/// The outcome of an action: the page with a notice, or JSON.
pub(super) async fn answer(
    st: &AppState,
    s: &SessionInfo,
    headers: &HeaderMap,
    result: Result<String, (StatusCode, String)>,
) -> Response {
    let (status, ok, text) = match result {
        Ok(t) => (StatusCode::OK, true, t),
        Err((code, t)) => (code, false, t),
    };
    if wants_json(headers) {
        let body = if ok {
            serde_json::json!({ "ok": true, "message": text })
        } else {
            serde_json::json!({ "ok": false, "error": text })
        };
        return (status, Json(body)).into_response();
    }
    let notice = Notice {
        class: if ok { "good" } else { "bad" },
        text,
    };
    render(page_of(st, &s.csrf, Some(notice)).await, status)
}

fn refused(r: Refusal) -> Result<String, (StatusCode, String)> {
    Err((refusal_status(&r), r.message()))
}

/// After a bundle was accepted: browsers go (back) to the page, which shows the progress.
async fn accepted(
    st: &AppState,
    s: &SessionInfo,
    headers: &HeaderMap,
    info: update::BundleInfo,
) -> Response {
    if wants_json(headers) {
        return answer(st, s, headers, Ok(format!("installing {}", info.version))).await;
    }
    Redirect::to("/update").into_response()
}

/// GET /update
pub async fn page(State(st): State<AppState>, Extension(s): Extension<SessionInfo>) -> Response {
    render(page_of(&st, &s.csrf, None).await, StatusCode::OK)
}

/// GET /api/update
pub async fn json(State(st): State<AppState>) -> Response {
    Json(st.shared.update.snapshot().await).into_response()
}

fn truthy(v: &str) -> bool {
    matches!(v.trim(), "1" | "on" | "true" | "yes")
}

/// POST /update/upload (multipart: `bundle` file, `allow_downgrade`; CSRF token in the
/// header or `?csrf=`). The bundle goes to disk as it arrives.
pub async fn upload(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let result = receive_and_install(&st, &headers, &mut form).await;
    match result {
        Ok(info) => accepted(&st, &s, &headers, info).await,
        Err(r) => {
            // The client is likely still sending: read the rest, or it never sees why.
            drain(&mut form, st.shared.update.idle_timeout).await;
            answer(&st, &s, &headers, refused(r)).await
        }
    }
}

async fn receive_and_install(
    st: &AppState,
    headers: &HeaderMap,
    form: &mut Multipart,
) -> Result<update::BundleInfo, Refusal> {
    let up = &st.shared.update;
    let busy = up.begin()?;
    // The whole body's length: a little more than the bundle, so a bundle that cannot fit
    // is refused before it is sent.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut bundle = None;
    let mut allow_downgrade = false;
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| up.reject(Refusal::Other(format!("upload interrupted: {e}"))))?;
        let Some(field) = field else { break };
        match field.name() {
            Some("bundle") => {
                bundle = Some(up.receive(&busy, Source::Upload, announced, field).await?);
            }
            Some("allow_downgrade") => {
                allow_downgrade = field.text().await.is_ok_and(|v| truthy(&v));
            }
            // The csrf copy and anything else: read past.
            _ => {}
        }
    }
    let path = bundle.ok_or_else(|| {
        up.reject(Refusal::Other(
            "the form held no bundle (file field \"bundle\")".into(),
        ))
    })?;
    up.install(busy, path, allow_downgrade).await
}

/// Reads and discards what is left of a refused upload (up to a bundle's worth, while it
/// keeps coming), so the answer reaches the client.
async fn drain(form: &mut Multipart, idle: std::time::Duration) {
    let mut left = update::store::MAX_BUNDLE;
    let read = async {
        while let Ok(Some(mut field)) = form.next_field().await {
            while let Ok(Ok(Some(chunk))) = tokio::time::timeout(idle, field.chunk()).await {
                left = left.saturating_sub(chunk.len() as u64);
                if left == 0 {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(idle * 10, read).await;
}

#[derive(Deserialize)]
pub struct UrlForm {
    url: String,
    #[serde(default)]
    allow_downgrade: String,
}

/// POST /update/url (`url`, `allow_downgrade`).
pub async fn url(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<UrlForm>,
) -> Response {
    let up = &st.shared.update;
    let busy = match up.begin() {
        Ok(b) => b,
        Err(r) => return answer(&st, &s, &headers, refused(r)).await,
    };
    let path = match up.download(&busy, &f.url).await {
        Ok(p) => p,
        Err(r) => return answer(&st, &s, &headers, refused(r)).await,
    };
    match up.install(busy, path, truthy(&f.allow_downgrade)).await {
        Ok(info) => accepted(&st, &s, &headers, info).await,
        Err(r) => answer(&st, &s, &headers, refused(r)).await,
    }
}

/// POST /update/switch: the other slot becomes the one to boot, then a reboot.
pub async fn switch(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
) -> Response {
    let up = &st.shared.update;
    let result = match up.switch().await {
        Ok(slot) => {
            up.reboot_soon();
            Ok(format!(
                "Slot {slot} will boot next; rebooting now. This page is back in about a minute."
            ))
        }
        Err(r) => refused(r),
    };
    answer(&st, &s, &headers, result).await
}

/// POST /update/reboot
pub async fn reboot(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
) -> Response {
    let up = &st.shared.update;
    let result = if up.is_busy() {
        refused(Refusal::Busy)
    } else {
        up.reboot_soon();
        Ok("Rebooting now. This page is back in about a minute.".into())
    };
    answer(&st, &s, &headers, result).await
}

/// GET /config/backup: the config file as a .tar.gz.
pub async fn backup(State(st): State<AppState>) -> Response {
    let path = &st.shared.update.paths.config;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // No file: defaults are in force, and an empty config restores exactly that.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("schema = {}\n", crate::config::SCHEMA)
        }
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}\n", path.display()),
            )
                .into_response()
        }
    };
    match update::backup::create(&text, crate::clock::unix_now()) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/gzip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"gatehouse-config-{}.tar.gz\"",
                        st.ctx.config.system.hostname
                    ),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("backup: {e}\n")).into_response(),
    }
}

/// Validates the config in `tarball` and puts it in place, keeping the old one as
/// `<config>.bak`; applies what can be applied without a restart.
fn restore_config(st: &AppState, tarball: &[u8]) -> Result<String, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let text = update::backup::extract(tarball).map_err(bad)?;
    crate::config::parse(&text)
        .map_err(|e| bad(format!("the backup's gatehouse.toml is not valid: {e}")))?;
    let path = &st.shared.update.paths.config;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let failed = |e: std::io::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("restore: {e}"));
    let mut kept = String::new();
    match std::fs::read(path) {
        Ok(old) => {
            let mut bak = path.as_os_str().to_owned();
            bak.push(".bak");
            let bak = std::path::PathBuf::from(bak);
            crate::atomic_file::write(dir, &bak, &old).map_err(failed)?;
            kept = format!(" (the old one is kept as {})", bak.display());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    crate::atomic_file::write(dir, path, text.as_bytes()).map_err(failed)?;
    eprintln!("web: configuration restored from a backup{kept}");
    // What SIGHUP applies (the port forwards) is applied now; the rest needs a restart.
    let applied = match st.shared.nat.reload_forwards(path) {
        Ok((cfg, _)) => {
            let n = cfg.nat.forwards.len();
            st.shared.config.publish(cfg);
            format!("{n} port forwards applied now")
        }
        Err(e) => format!("port forwards not applied: {e}"),
    };
    Ok(format!(
        "Configuration restored{kept}; {applied}. The other settings take effect after a reboot."
    ))
}

/// POST /config/restore (multipart: `backup` file; CSRF token in the header or `?csrf=`).
pub async fn restore(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let mut tarball: Option<Vec<u8>> = None;
    let too_big = || {
        Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a configuration backup is smaller than {}",
                format_bytes(update::backup::MAX_TARBALL as u64)
            ),
        ))
    };
    let result = loop {
        let mut field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err((StatusCode::BAD_REQUEST, format!("upload interrupted: {e}"))),
        };
        if field.name() != Some("backup") {
            continue;
        }
        let mut buf = Vec::new();
        let mut failed = None;
        while let Some(chunk) = field.next().await {
            match chunk {
                Ok(c) if buf.len() + c.len() <= update::backup::MAX_TARBALL => {
                    buf.extend_from_slice(&c)
                }
                Ok(_) => {
                    failed = Some(too_big());
                    break;
                }
                Err(e) => {
                    failed = Some(Err((
                        StatusCode::BAD_REQUEST,
                        format!("upload interrupted: {e}"),
                    )));
                    break;
                }
            }
        }
        if let Some(f) = failed {
            break f;
        }
        tarball = Some(buf);
    };
    let result = result.and_then(|()| {
        let t = tarball.ok_or((
            StatusCode::BAD_REQUEST,
            "the form held no backup (file field \"backup\")".to_string(),
        ))?;
        restore_config(&st, &t)
    });
    answer(&st, &s, &headers, result).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> UpdatePage {
        UpdatePage {
            hostname: "gw".into(),
            version: "0.2.0+g1.20261122T0512".into(),
            csrf: "t0ken".into(),
            notice: None,
            banners: vec![BannerRow {
                class: "bad",
                text: "Update to <b>x</b> failed".into(),
                reboot: false,
            }],
            rauc_error: None,
            boot_slot: "A".into(),
            compatible: "gatehouse-x86_64".into(),
            busy: false,
            status_line: "idle".into(),
            percent: None,
            last_error: String::new(),
            last_attempt: None,
            counters: String::new(),
            slots: vec![],
            switch_to: None,
            switch_refused: "slot B is not marked good".into(),
        }
    }

    #[test]
    fn page_shows_version_forms_and_escapes() {
        let html = page().render().unwrap();
        assert!(html.contains("Gatehouse 0.2.0+g1.20261122T0512"), "footer");
        assert!(html.contains("action=\"/update/upload?csrf=t0ken\""));
        assert!(html.contains("enctype=\"multipart/form-data\""));
        assert!(html.contains("name=\"allow_downgrade\""));
        assert!(!html.contains("<b>x</b>"));
        // No good slot to go to: the button is there but off, with the reason.
        assert!(html.contains("id=\"switch\" disabled"), "{html}");
        assert!(html.contains("slot B is not marked good"));
        assert!(!html.contains("http-equiv=\"refresh\""));
        let mut p = page();
        p.busy = true;
        p.switch_to = Some("B".into());
        let html = p.render().unwrap();
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("Switch to slot B"));
    }
}
