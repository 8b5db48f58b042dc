//! The DNS page: the forwarder's totals and cache, the upstreams in use, the
//! recent queries of every client (or of one), and the blocklists, which can be
//! added (a file on the data partition, or an http(s) URL gatewayd downloads
//! into `<data>/blocklists/`), enabled, disabled and removed.
//!
//! List changes are config edits (`ConfigFile::edit`); the forwarder follows the
//! published config and reloads its lists in the background, so the counts on
//! the page catch up a moment after a change.

use super::auth::{parse_form, SessionInfo};
use super::status::{format_bytes, format_duration};
use super::AppState;
use crate::config::{Blocklist, Config, TlsUpstream};
use crate::dns::{ClientSummary, ListStats};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Queries shown in the log, newest first.
pub const LOG_ROWS: usize = 200;
/// A downloaded list may be at most this big (the big public lists are ~10 MiB).
pub const MAX_DOWNLOAD: u64 = 32 << 20;
/// Where downloaded lists go, under the data directory.
const DOWNLOAD_DIR: &str = "blocklists";
const MAX_NAME: usize = 64;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dns", get(page))
        .route("/api/dns", get(json))
        .route("/dns/blocklists", post(add))
        .route("/dns/blocklists/{index}/enable", post(enable))
        .route("/dns/blocklists/{index}/disable", post(disable))
        .route("/dns/blocklists/{index}/delete", post(delete))
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub queries: u64,
    pub forwarded: u64,
    pub cache_hits: u64,
    pub negative_cache_hits: u64,
    pub local_answers: u64,
    pub blocked: u64,
    pub malformed: u64,
    pub upstream_failures: u64,
    pub spoofed_rejected: u64,
    pub dropped_busy: u64,
}

#[derive(Debug, Serialize)]
pub struct CacheView {
    pub entries: u64,
    pub bytes: u64,
    pub limit_bytes: usize,
    pub evictions: u64,
    /// Share of all queries answered from the cache, in percent.
    pub hit_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct Upstreams {
    /// "tls", "configured", "wan" (what the WAN lease handed out) or "none".
    pub source: &'static str,
    /// What queries go to now.
    pub in_use: Vec<String>,
    pub configured: Vec<Ipv4Addr>,
    pub tls: Vec<TlsUpstream>,
    pub wan: Vec<Ipv4Addr>,
}

#[derive(Debug, Serialize)]
pub struct LogRow {
    pub client: IpAddr,
    pub time_ms: u64,
    pub name: String,
    pub qtype: String,
    pub rcode: String,
    pub answer: Option<IpAddr>,
    pub blocked: bool,
    pub cached: bool,
}

#[derive(Debug, Serialize)]
pub struct ListView {
    pub index: usize,
    pub name: String,
    pub path: String,
    pub enabled: bool,
    /// Whether the forwarder has this list loaded (false while a change is
    /// being loaded, or when DNS is off).
    pub loaded: bool,
    pub entries: u64,
    pub bad_lines: u64,
    pub errors: Vec<String>,
    pub blocked: u64,
}

#[derive(Debug, Serialize)]
pub struct DnsJson {
    pub enabled: bool,
    pub totals: Totals,
    pub cache: CacheView,
    pub upstreams: Upstreams,
    pub block_mode: String,
    pub blocklists: Vec<ListView>,
    pub clients: Vec<ClientSummary>,
    /// The client the log is filtered to, if any.
    pub client: Option<IpAddr>,
    /// Newest first, at most `LOG_ROWS`.
    pub log: Vec<LogRow>,
}

/// The data directory: where the config file lives.
fn data_dir(st: &AppState) -> PathBuf {
    st.shared
        .config
        .path()
        .parent()
        .map_or_else(|| PathBuf::from("/data"), PathBuf::from)
}

/// What queries go to, as the resolver picks them: TLS resolvers when any are
/// set, else the configured ones, else the WAN's; never the router itself.
fn upstreams(cfg: &Config, wan: &[Ipv4Addr]) -> Upstreams {
    let lan = cfg.lan.address;
    let usable = |ip: &&Ipv4Addr| {
        **ip != lan && !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast()
    };
    let (source, in_use) = if !cfg.dns.tls_upstreams.is_empty() {
        let v = cfg
            .dns
            .tls_upstreams
            .iter()
            .filter(|t| t.address != lan)
            .map(|t| format!("{} ({}:{}, TLS)", t.name, t.address, t.port))
            .collect();
        ("tls", v)
    } else {
        let (source, list) = if cfg.dns.upstreams.is_empty() {
            ("wan", wan)
        } else {
            ("configured", cfg.dns.upstreams.as_slice())
        };
        let v: Vec<String> = list.iter().filter(usable).map(|i| i.to_string()).collect();
        (if v.is_empty() { "none" } else { source }, v)
    };
    Upstreams {
        source,
        in_use,
        configured: cfg.dns.upstreams.clone(),
        tls: cfg.dns.tls_upstreams.clone(),
        wan: wan.to_vec(),
    }
}

/// The configured lists with what the forwarder loaded from each.
fn lists(configured: &[Blocklist], loaded: &[Arc<ListStats>]) -> Vec<ListView> {
    configured
        .iter()
        .enumerate()
        .map(|(index, b)| {
            let stats = loaded
                .iter()
                .find(|s| b.enabled && s.name == b.name && s.path == b.path);
            ListView {
                index,
                name: b.name.clone(),
                path: b.path.clone(),
                enabled: b.enabled,
                loaded: stats.is_some(),
                entries: stats.map_or(0, |s| s.entries),
                bad_lines: stats.map_or(0, |s| s.bad_lines),
                errors: stats.map(|s| s.errors.clone()).unwrap_or_default(),
                blocked: stats.map_or(0, |s| s.blocked.load(Relaxed)),
            }
        })
        .collect()
}

/// The newest `LOG_ROWS` queries of `client`, or of every client.
fn log(c: &crate::dns::Counters, clients: &[ClientSummary], client: Option<IpAddr>) -> Vec<LogRow> {
    let ips: Vec<IpAddr> = match client {
        Some(ip) => vec![ip],
        None => clients.iter().map(|c| c.ip).collect(),
    };
    let mut rows: Vec<LogRow> = ips
        .into_iter()
        .flat_map(|ip| {
            c.query_log(ip).into_iter().map(move |e| LogRow {
                client: ip,
                time_ms: e.time_ms,
                name: e.name,
                qtype: e.qtype,
                rcode: e.rcode,
                answer: e.answer,
                blocked: e.blocked,
                cached: e.cached,
            })
        })
        .collect();
    rows.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then(a.client.cmp(&b.client)));
    rows.truncate(LOG_ROWS);
    rows
}

fn collect(st: &AppState, client: Option<IpAddr>) -> DnsJson {
    let cfg = st.shared.config.current();
    let c = &st.shared.dns;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
    let totals = Totals {
        queries: g(&c.queries),
        forwarded: g(&c.forwarded),
        cache_hits: g(&c.cache_hits),
        negative_cache_hits: g(&c.negative_cache_hits),
        local_answers: g(&c.local_answers),
        blocked: g(&c.blocked),
        malformed: g(&c.malformed),
        upstream_failures: g(&c.upstream_failures),
        spoofed_rejected: g(&c.spoofed_rejected),
        dropped_busy: g(&c.dropped_busy),
    };
    let cache = CacheView {
        entries: g(&c.cache.entries),
        bytes: g(&c.cache.bytes),
        limit_bytes: st.ctx.config.dns.cache_bytes,
        evictions: g(&c.cache.evictions),
        hit_rate: if totals.queries == 0 {
            0.0
        } else {
            totals.cache_hits as f64 * 100.0 / totals.queries as f64
        },
    };
    let wan_dns = st.ctx.wan.borrow().dns.clone();
    let clients = c.clients();
    DnsJson {
        // The forwarder runs only if it was on at start.
        enabled: st.ctx.config.dns.enabled,
        totals,
        cache,
        upstreams: upstreams(&cfg, &wan_dns),
        block_mode: cfg.dns.block_mode.clone(),
        blocklists: lists(&cfg.dns.blocklists, &c.blocklist_stats()),
        log: log(c, &clients, client),
        clients,
        client,
    }
}

#[derive(Deserialize)]
pub struct Shown {
    /// An address, or empty for every client.
    client: Option<String>,
    done: Option<String>,
}

fn client_filter(q: &Shown) -> Option<IpAddr> {
    q.client.as_deref().and_then(|c| c.trim().parse().ok())
}

/// GET /api/dns (`?client=` filters the log).
pub async fn json(State(st): State<AppState>, Query(q): Query<Shown>) -> Json<DnsJson> {
    Json(collect(&st, client_filter(&q)))
}

pub struct ClientOption {
    pub ip: String,
    pub label: String,
    pub selected: bool,
}

pub struct LogLine {
    pub client: String,
    pub when: String,
    pub name: String,
    pub qtype: String,
    pub result: String,
    pub blocked: bool,
}

pub struct ListLine {
    pub index: usize,
    pub name: String,
    pub path: String,
    pub enabled: bool,
    pub status: String,
    pub entries: u64,
    pub bad_lines: u64,
    pub blocked: u64,
    pub errors: String,
}

/// The add form, as the owner filled it in.
#[derive(Default)]
pub struct ListForm {
    pub name: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "dns.html")]
pub struct DnsPage {
    pub hostname: String,
    pub version: String,
    pub csrf: String,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
    pub enabled: bool,
    pub totals: Totals,
    pub hit_rate: String,
    pub cache_entries: u64,
    pub cache_memory: String,
    pub cache_limit: String,
    pub cache_evictions: u64,
    pub upstream_source: &'static str,
    pub upstreams_in_use: Vec<String>,
    pub upstreams_configured: String,
    pub upstreams_tls: String,
    pub upstreams_wan: String,
    pub block_mode: String,
    pub lists: Vec<ListLine>,
    pub download_dir: String,
    pub form: ListForm,
    pub clients: Vec<ClientOption>,
    pub filtered: bool,
    pub log: Vec<LogLine>,
    pub log_rows: usize,
}

fn joined<T: ToString>(v: &[T]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
    }
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "added" => "Blocklist added. Saved; the DNS forwarder is loading it now.",
        "enabled" => "Blocklist enabled. Saved; the DNS forwarder is loading it now.",
        "disabled" => "Blocklist disabled. Saved and in force now.",
        "removed" => "Blocklist removed. Saved and in force now.",
        _ => return None,
    })
}

fn render(
    st: &AppState,
    csrf: &str,
    client: Option<IpAddr>,
    notice: Option<&'static str>,
    error: Option<String>,
    form: ListForm,
    status: StatusCode,
) -> Response {
    let d = collect(st, client);
    let names: HashMap<IpAddr, String> = st
        .shared
        .leases
        .lock()
        .map(|s| s.snapshot())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| Some((IpAddr::V4(l.ip), l.hostname?)))
        .collect();
    let who = |ip: &IpAddr| match names.get(ip) {
        Some(n) => format!("{n} ({ip})"),
        None => ip.to_string(),
    };
    let now_ms = crate::clock::unix_ms();
    let log = d
        .log
        .iter()
        .map(|r| LogLine {
            client: who(&r.client),
            when: format!(
                "{} ago",
                format_duration(now_ms.saturating_sub(r.time_ms) / 1000)
            ),
            name: r.name.clone(),
            qtype: r.qtype.clone(),
            result: match (r.answer, r.cached) {
                (Some(a), true) => format!("{a} (cached)"),
                (Some(a), false) => a.to_string(),
                (None, true) => format!("{} (cached)", r.rcode),
                (None, false) => r.rcode.clone(),
            },
            blocked: r.blocked,
        })
        .collect();
    let lists = d
        .blocklists
        .iter()
        .map(|l| ListLine {
            index: l.index,
            name: l.name.clone(),
            path: l.path.clone(),
            enabled: l.enabled,
            status: match (l.enabled, l.loaded) {
                (false, _) => "disabled".into(),
                (true, true) if l.errors.is_empty() => "loaded".into(),
                (true, true) => "loaded with errors".into(),
                (true, false) if !d.enabled => "DNS is off".into(),
                (true, false) => "loading".into(),
            },
            entries: l.entries,
            bad_lines: l.bad_lines,
            blocked: l.blocked,
            errors: l.errors.join("; "),
        })
        .collect();
    let clients = d
        .clients
        .iter()
        .map(|c| ClientOption {
            ip: c.ip.to_string(),
            label: format!(
                "{}: {} queries, {} blocked",
                who(&c.ip),
                c.queries,
                c.blocked
            ),
            selected: client == Some(c.ip),
        })
        .collect();
    let page = DnsPage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        csrf: csrf.to_string(),
        notice,
        error,
        enabled: d.enabled,
        hit_rate: format!("{:.1} %", d.cache.hit_rate),
        cache_entries: d.cache.entries,
        cache_memory: format_bytes(d.cache.bytes),
        cache_limit: format_bytes(d.cache.limit_bytes as u64),
        cache_evictions: d.cache.evictions,
        totals: d.totals,
        upstream_source: match d.upstreams.source {
            "tls" => "DNS over TLS resolvers (never in clear text)",
            "configured" => "the configured resolvers",
            "wan" => "the resolvers the WAN handed out",
            _ => "none: no resolver is known yet, so names outside the LAN fail",
        },
        upstreams_in_use: d.upstreams.in_use,
        upstreams_configured: joined(&d.upstreams.configured),
        upstreams_tls: joined(
            &d.upstreams
                .tls
                .iter()
                .map(|t| format!("{} ({}:{})", t.name, t.address, t.port))
                .collect::<Vec<_>>(),
        ),
        upstreams_wan: joined(&d.upstreams.wan),
        block_mode: d.block_mode,
        lists,
        download_dir: data_dir(st).join(DOWNLOAD_DIR).display().to_string(),
        form,
        clients,
        filtered: client.is_some(),
        log,
        log_rows: LOG_ROWS,
    };
    super::html(&page, status)
}

/// GET /dns (`?client=` filters the query log; `?done=` says what was saved).
pub async fn page(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Query(q): Query<Shown>,
) -> Response {
    let n = notice(q.done.as_deref());
    render(
        &st,
        &s.csrf,
        client_filter(&q),
        n,
        None,
        ListForm::default(),
        StatusCode::OK,
    )
}

/// A file name for a downloaded list: the list's name, reduced to safe characters.
fn file_name_for(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches('-').to_string();
    if s.is_empty() {
        s = "list".into();
    }
    format!("{s}.txt")
}

fn check_name(name: &str, existing: &[Blocklist]) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "Give the list a name of 1 to {MAX_NAME} characters."
        ));
    }
    if existing.iter().any(|b| b.name.eq_ignore_ascii_case(name)) {
        return Err(format!("There is already a blocklist named {name:?}."));
    }
    Ok(())
}

/// A path the owner gave: it must exist on the data partition.
fn check_path(source: &str, data: &std::path::Path) -> Result<PathBuf, String> {
    let p = std::path::Path::new(source);
    if !p.is_absolute() {
        return Err(format!(
            "{source:?} is neither an http(s) URL nor an absolute path such as {}.",
            data.join("blocklists/ads.txt").display()
        ));
    }
    let real = p
        .canonicalize()
        .map_err(|e| format!("Cannot use {source}: {e}."))?;
    let data_real = data.canonicalize().unwrap_or_else(|_| data.to_path_buf());
    if !real.starts_with(&data_real) {
        return Err(format!(
            "{source} is not on the data partition (under {}).",
            data.display()
        ));
    }
    Ok(p.to_path_buf())
}

/// Fetches `url` (http or https), at most `MAX_DOWNLOAD` bytes of text.
async fn download(url: &str) -> Result<Vec<u8>, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("Bad URL {url:?}: {e}."))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "Bad URL {url:?}: only http:// and https:// are fetched."
        ));
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("Cannot make an HTTP client: {e}."))?;
    let resp = client
        .get(parsed.clone())
        .send()
        .await
        .map_err(|e| format!("Download of {parsed} failed: {e}."))?;
    if !resp.status().is_success() {
        return Err(format!(
            "Download of {parsed} failed: HTTP {}.",
            resp.status()
        ));
    }
    let too_big = || {
        format!(
            "The list at {parsed} is larger than {} MiB.",
            MAX_DOWNLOAD >> 20
        )
    };
    if resp.content_length().is_some_and(|n| n > MAX_DOWNLOAD) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("Download of {parsed} failed: {e}."))?;
        if body.len() as u64 + chunk.len() as u64 > MAX_DOWNLOAD {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    // Hosts files and domain lists are text; a NUL means an archive or a page of
    // something else.
    if body.contains(&0) {
        return Err(format!(
            "{parsed} does not look like a blocklist (binary data)."
        ));
    }
    Ok(body)
}

fn refused_status(st: &AppState) -> StatusCode {
    if st.shared.config.refused().is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// POST /dns/blocklists: name, source (a path on the data partition or an
/// http(s) URL), csrf.
pub async fn add(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    body: axum::body::Bytes,
) -> Response {
    let mut f = parse_form(&body);
    let form = ListForm {
        name: f.remove("name").unwrap_or_default().trim().to_string(),
        source: f.remove("source").unwrap_or_default().trim().to_string(),
    };
    match add_list(&st, &form).await {
        Ok(()) => Redirect::to("/dns?done=added#blocklists").into_response(),
        Err((status, e)) => render(
            &st,
            &s.csrf,
            None,
            None,
            Some(format!("Not saved: {e}")),
            form,
            status,
        ),
    }
}

async fn add_list(st: &AppState, form: &ListForm) -> Result<(), (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    if let Some(why) = st.shared.config.refused() {
        return Err((
            StatusCode::CONFLICT,
            format!("settings cannot be changed: {why}"),
        ));
    }
    let cfg = st.shared.config.current();
    check_name(&form.name, &cfg.dns.blocklists).map_err(bad)?;
    if form.source.is_empty() {
        return Err(bad("Give a file path or an http(s) URL.".into()));
    }
    let data = data_dir(st);
    let is_url = form.source.starts_with("http://") || form.source.starts_with("https://");
    let (path, downloaded) = if is_url {
        let dir = data.join(DOWNLOAD_DIR);
        let path = dir.join(file_name_for(&form.name));
        if cfg
            .dns
            .blocklists
            .iter()
            .any(|b| std::path::Path::new(&b.path) == path)
        {
            return Err(bad(format!(
                "{} is already in use by another list: choose another name.",
                path.display()
            )));
        }
        let body = download(&form.source).await.map_err(bad)?;
        let (d, p) = (dir.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&d)?;
            crate::atomic_file::write(&d, &p, &body)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Cannot write {}: {e}.", path.display()),
            )
        })?;
        eprintln!(
            "web: blocklist {:?} downloaded from {}",
            form.name, form.source
        );
        (path, true)
    } else {
        (check_path(&form.source, &data).map_err(bad)?, false)
    };
    let list = Blocklist {
        name: form.name.clone(),
        path: path.display().to_string(),
        enabled: true,
    };
    let edited = st.shared.config.edit(|c| {
        check_name(&list.name, &c.dns.blocklists)?;
        c.dns.blocklists.push(list);
        Ok(())
    });
    match edited {
        Ok((old, new)) => {
            let a = super::apply::after_edit(&st.shared, &old, &new);
            eprintln!("web: blocklist {:?} added: {}", form.name, a.message());
            Ok(())
        }
        Err(e) => {
            if downloaded {
                let _ = std::fs::remove_file(&path);
            }
            Err((refused_status(st), e))
        }
    }
}

enum ListChange {
    Enable(bool),
    Delete,
}

/// Applies `change` to list `index`, which must still be named `was` (when the
/// form says); the redirect, or the page with the reason.
async fn change_list(
    st: &AppState,
    csrf: &str,
    index: usize,
    body: &[u8],
    change: ListChange,
) -> Response {
    let was = parse_form(body).remove("was").unwrap_or_default();
    let mut removed: Option<Blocklist> = None;
    let edited = st.shared.config.edit(|c| {
        let lists = &mut c.dns.blocklists;
        let l = lists.get(index).ok_or_else(|| {
            format!(
                "There is no blocklist #{} (any more): reload the page.",
                index + 1
            )
        })?;
        if !was.is_empty() && l.name != was {
            return Err(format!(
                "Blocklist #{} is now {:?}, not {was:?}: reload the page.",
                index + 1,
                l.name
            ));
        }
        match change {
            ListChange::Enable(on) => lists[index].enabled = on,
            ListChange::Delete => removed = Some(lists.remove(index)),
        }
        Ok(())
    });
    let done = match change {
        ListChange::Enable(true) => "enabled",
        ListChange::Enable(false) => "disabled",
        ListChange::Delete => "removed",
    };
    match edited {
        Ok((old, new)) => {
            let a = super::apply::after_edit(&st.shared, &old, &new);
            eprintln!("web: blocklist #{} {done}: {}", index + 1, a.message());
            // A list gatewayd downloaded goes with its entry; the owner's own files stay.
            if let Some(r) = removed {
                let ours =
                    PathBuf::from(&r.path).parent() == Some(&data_dir(st).join(DOWNLOAD_DIR));
                if ours && !new.dns.blocklists.iter().any(|b| b.path == r.path) {
                    if let Err(e) = std::fs::remove_file(&r.path) {
                        eprintln!("web: cannot remove {}: {e}", r.path);
                    }
                }
            }
            Redirect::to(&format!("/dns?done={done}#blocklists")).into_response()
        }
        Err(e) => render(
            st,
            csrf,
            None,
            None,
            Some(format!("Not saved: {e}")),
            ListForm::default(),
            refused_status(st),
        ),
    }
}

/// POST /dns/blocklists/{index}/enable: csrf, was.
pub async fn enable(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(index): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    change_list(&st, &s.csrf, index, &body, ListChange::Enable(true)).await
}

/// POST /dns/blocklists/{index}/disable: csrf, was.
pub async fn disable(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(index): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    change_list(&st, &s.csrf, index, &body, ListChange::Enable(false)).await
}

/// POST /dns/blocklists/{index}/delete: csrf, was.
pub async fn delete(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(index): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    change_list(&st, &s.csrf, index, &body, ListChange::Delete).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_in_use_follow_the_resolver_rules() {
        let mut cfg = Config::default();
        let wan = [Ipv4Addr::new(10, 0, 0, 53), cfg.lan.address];
        let u = upstreams(&cfg, &wan);
        assert_eq!(
            (u.source, u.in_use.clone()),
            ("wan", vec!["10.0.0.53".into()])
        );
        assert_eq!(upstreams(&cfg, &[]).source, "none");
        cfg.dns.upstreams = vec![Ipv4Addr::new(9, 9, 9, 9)];
        assert_eq!(upstreams(&cfg, &wan).in_use, vec!["9.9.9.9".to_string()]);
        cfg.dns.tls_upstreams = vec![TlsUpstream {
            address: Ipv4Addr::new(1, 1, 1, 1),
            name: "one.one.one.one".into(),
            port: 853,
        }];
        let u = upstreams(&cfg, &wan);
        assert_eq!(u.source, "tls");
        assert_eq!(
            u.in_use,
            vec!["one.one.one.one (1.1.1.1:853, TLS)".to_string()]
        );
    }

    #[test]
    fn names_and_paths_are_checked() {
        let existing = [Blocklist {
            name: "Ads".into(),
            path: "/data/ads.txt".into(),
            enabled: true,
        }];
        assert!(check_name("ads", &existing)
            .unwrap_err()
            .contains("already"));
        assert!(check_name("", &existing).is_err());
        assert!(check_name("bad\nname", &existing).is_err());
        assert!(check_name("Trackers", &existing).is_ok());
        assert_eq!(
            file_name_for("Steven Black's hosts"),
            "steven-black-s-hosts.txt"
        );
        assert_eq!(file_name_for("../.."), "list.txt");
        let data = std::env::temp_dir();
        assert!(check_path("ads.txt", &data)
            .unwrap_err()
            .contains("absolute"));
        assert!(check_path("/", &data)
            .unwrap_err()
            .contains("not on the data partition"));
        assert!(check_path(&data.join("gh-no-such-list").display().to_string(), &data).is_err());
    }
}
