//! The clients pages: every device the router knows (leases, recently expired ones
//! included, devices seen in the traffic history, devices the config names), a device's
//! detail with its traffic chart, remote hosts and DNS queries, and the owner's actions:
//! rename, static or dynamic lease, capture on or off (saved in the config, so it holds
//! after a restart). `/api/clients` and `/api/clients/{mac}` carry the same data as JSON.
//!
//! Gathering reads the stores once per request; turning that into rows (`build_rows`) is
//! pure and tested without a server.

use super::auth::{parse_form, SessionInfo};
use super::status::{format_bytes, format_duration};
use super::traffic_page::{
    chart, format_ago, format_utc, nav, points, view_of, Chart, Nav, SpanParams, View, DAY_MS,
};
use super::AppState;
use crate::config::{parse_mac, Config, Device, StaticLease};
use crate::dhcp::lease_store::{format_mac, Lease};
use crate::dns::LogEntry;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use traffic_history::{Counts, GroupBy, Mac};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/clients", get(list_page))
        .route("/api/clients", get(list_json))
        .route("/clients/{mac}", get(detail_page))
        .route("/api/clients/{mac}", get(detail_json))
        .route("/clients/{mac}/name", post(rename))
        .route("/clients/{mac}/static", post(make_static))
        .route("/clients/{mac}/dynamic", post(make_dynamic))
        .route("/clients/{mac}/capture", post(capture))
}

/// Expired leases younger than this still list their device (as offline).
pub const OFFLINE_KEEP_SECS: u64 = 7 * 86_400;
/// Seen (traffic, a DNS query, a DHCP renewal) this recently: online.
pub const ONLINE_MS: u64 = 5 * 60_000;
/// Longest owner name (as the config's validator has it).
const MAX_NAME: usize = 63;

/// What the stores say, read once; the input of the pure row builder.
pub struct Inputs<'a> {
    pub cfg: &'a Config,
    pub leases: &'a [Lease],
    /// Bytes over the last day, by device.
    pub day: &'a HashMap<Mac, Counts>,
    /// Start of the last 100 ms with traffic, by device (over all the history holds).
    pub last_traffic: &'a HashMap<Mac, u64>,
    /// Last DNS query, by client address.
    pub last_dns: &'a HashMap<IpAddr, u64>,
    /// Devices whose capture is switched off now.
    pub capture_off: &'a HashSet<Mac>,
    /// Capture as a whole (`[capture] enabled`).
    pub capture_enabled: bool,
    pub vendor: &'a dyn Fn(&Mac) -> Option<String>,
    pub now_ms: u64,
}

/// One device, as the list, the detail page and the JSON show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientRow {
    pub mac: String,
    /// The name shown: the owner's, else the one the device sent over DHCP.
    pub name: String,
    pub owner_name: Option<String>,
    pub hostname: Option<String>,
    pub vendor: Option<String>,
    pub ip: Option<Ipv4Addr>,
    /// Unix seconds.
    pub lease_expires: Option<u64>,
    /// "online" (seen within 5 min), "idle" (lease held, not seen lately) or "offline".
    pub state: &'static str,
    /// Unix milliseconds.
    pub last_seen_ms: Option<u64>,
    pub up_bytes_24h: u64,
    pub down_bytes_24h: u64,
    /// The config reserves an address for the device.
    pub static_lease: bool,
    pub static_ip: Option<Ipv4Addr>,
    /// Packets are being captured now.
    pub capture: bool,
    /// Capture is on in the config (not in `capture.disabled_clients`).
    pub capture_saved: bool,
    #[serde(skip)]
    pub text: RowText,
}

/// The row's figures as the pages print them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowText {
    pub ip: String,
    pub lease: String,
    pub last_seen: String,
    pub up: String,
    pub down: String,
}

fn latest_lease<'a>(leases: &'a [Lease], mac: &Mac) -> Option<&'a Lease> {
    leases
        .iter()
        .filter(|l| &l.mac == mac)
        .max_by_key(|l| l.expires)
}

fn static_of<'a>(cfg: &'a Config, mac: &Mac) -> Option<&'a StaticLease> {
    cfg.dhcp
        .static_leases
        .iter()
        .find(|s| parse_mac(&s.mac).as_ref() == Some(mac))
}

/// Everything known about one device (which need not be known at all).
pub fn build_row(mac: &Mac, inp: &Inputs) -> ClientRow {
    let now_s = inp.now_ms / 1000;
    let lease = latest_lease(inp.leases, mac);
    let fixed = static_of(inp.cfg, mac);
    let owner_name = inp.cfg.device_name(mac).map(str::to_string);
    let hostname = lease
        .and_then(|l| l.hostname.clone())
        .or_else(|| fixed.and_then(|s| s.hostname.clone()));
    let ip = lease.map(|l| l.ip).or(fixed.map(|s| s.ip));
    // The lease was (re)bound a lease time before it expires: the device spoke DHCP then.
    let renewed_ms = lease
        .map(|l| {
            l.expires
                .saturating_sub(u64::from(inp.cfg.dhcp.lease_secs))
                .saturating_mul(1000)
        })
        .filter(|&t| t <= inp.now_ms);
    let last_seen_ms = [
        inp.last_traffic.get(mac).copied(),
        ip.and_then(|ip| inp.last_dns.get(&IpAddr::V4(ip)).copied()),
        renewed_ms,
    ]
    .into_iter()
    .flatten()
    .max();
    let active = lease.is_some_and(|l| l.is_active(now_s));
    let state = if last_seen_ms.is_some_and(|t| inp.now_ms.saturating_sub(t) <= ONLINE_MS) {
        "online"
    } else if active {
        "idle"
    } else {
        "offline"
    };
    let day = inp.day.get(mac).copied().unwrap_or_default();
    let lease_text = match lease {
        Some(l) if l.expires > now_s => {
            format!("expires in {}", format_duration(l.expires - now_s))
        }
        Some(l) => format!("expired {}", format_ago(l.expires * 1000, inp.now_ms)),
        None if fixed.is_some() => "static, not seen yet".into(),
        None => "no lease".into(),
    };
    let capture_saved = !inp
        .cfg
        .capture
        .disabled_clients
        .iter()
        .any(|m| parse_mac(m).as_ref() == Some(mac));
    ClientRow {
        mac: format_mac(mac),
        name: owner_name.clone().or(hostname.clone()).unwrap_or_default(),
        owner_name,
        hostname,
        vendor: (inp.vendor)(mac),
        ip,
        lease_expires: lease.map(|l| l.expires),
        state,
        last_seen_ms,
        up_bytes_24h: day.up_bytes,
        down_bytes_24h: day.down_bytes,
        static_lease: fixed.is_some(),
        static_ip: fixed.map(|s| s.ip),
        capture: inp.capture_enabled && !inp.capture_off.contains(mac),
        capture_saved,
        text: RowText {
            ip: ip.map(|i| i.to_string()).unwrap_or_default(),
            lease: lease_text,
            last_seen: last_seen_ms
                .map(|t| format_ago(t, inp.now_ms))
                .unwrap_or_else(|| "never".into()),
            up: format_bytes(day.up_bytes),
            down: format_bytes(day.down_bytes),
        },
    }
}

/// Every device worth listing: leases live or expired within a week, devices in the
/// traffic history, and devices the config names, reserves an address for or excludes
/// from capture. Online first, then idle, then offline; by address, then MAC.
pub fn build_rows(inp: &Inputs) -> Vec<ClientRow> {
    let now_s = inp.now_ms / 1000;
    let mut macs: BTreeSet<Mac> = inp
        .leases
        .iter()
        .filter(|l| l.expires.saturating_add(OFFLINE_KEEP_SECS) > now_s)
        .map(|l| l.mac)
        .collect();
    macs.extend(inp.day.keys());
    macs.extend(inp.last_traffic.keys());
    let cfg = inp.cfg;
    macs.extend(cfg.devices.iter().filter_map(|d| parse_mac(&d.mac)));
    macs.extend(
        cfg.dhcp
            .static_leases
            .iter()
            .filter_map(|s| parse_mac(&s.mac)),
    );
    macs.extend(
        cfg.capture
            .disabled_clients
            .iter()
            .filter_map(|m| parse_mac(m)),
    );
    let mut rows: Vec<ClientRow> = macs.iter().map(|m| build_row(m, inp)).collect();
    let rank = |s: &str| match s {
        "online" => 0,
        "idle" => 1,
        _ => 2,
    };
    rows.sort_by(|a, b| {
        rank(a.state)
            .cmp(&rank(b.state))
            .then(a.ip.is_none().cmp(&b.ip.is_none()))
            .then(a.ip.cmp(&b.ip))
            .then(a.mac.cmp(&b.mac))
    });
    rows
}

/// Device names by MAC: the owner's, else the DHCP host name (for the traffic page).
pub(super) fn display_names(st: &AppState) -> HashMap<Mac, String> {
    let mut names: HashMap<Mac, String> = st
        .shared
        .leases
        .lock()
        .map(|s| {
            s.leases()
                .filter_map(|l| Some((l.mac, l.hostname.clone()?)))
                .collect()
        })
        .unwrap_or_default();
    for d in &st.shared.config.current().devices {
        if let Some(m) = parse_mac(&d.mac) {
            names.insert(m, d.name.clone());
        }
    }
    names
}

/// The stores' view, read once per request.
struct Gathered {
    cfg: std::sync::Arc<Config>,
    leases: Vec<Lease>,
    day: HashMap<Mac, Counts>,
    last_traffic: HashMap<Mac, u64>,
    last_dns: HashMap<IpAddr, u64>,
    capture_off: HashSet<Mac>,
    capture_enabled: bool,
    now_ms: u64,
}

impl Gathered {
    fn inputs<'a>(&'a self, vendor: &'a dyn Fn(&Mac) -> Option<String>) -> Inputs<'a> {
        Inputs {
            cfg: &self.cfg,
            leases: &self.leases,
            day: &self.day,
            last_traffic: &self.last_traffic,
            last_dns: &self.last_dns,
            capture_off: &self.capture_off,
            capture_enabled: self.capture_enabled,
            vendor,
            now_ms: self.now_ms,
        }
    }
}

/// Reads the stores. `only`: a single device's traffic facts (the detail page), else all.
fn gather(st: &AppState, only: Option<Mac>) -> Gathered {
    let now_ms = crate::clock::unix_ms();
    let leases = st
        .shared
        .leases
        .lock()
        .map(|s| s.snapshot())
        .unwrap_or_default();
    let (day, last_traffic) = {
        let h = st.shared.traffic.history();
        let oldest = h.oldest_ms().unwrap_or(now_ms);
        const ALL: usize = 100_000;
        let per_client = |from: u64| -> HashMap<Mac, Counts> {
            h.top(only, GroupBy::Client, from, now_ms + 1, ALL)
                .into_iter()
                .filter_map(|t| Some((t.client?, t.counts)))
                .collect()
        };
        let day = per_client(now_ms.saturating_sub(DAY_MS));
        // To the 100 ms in the last two minutes, to the minute in the hour before, to the
        // hour before that: one pass for all devices.
        let last: HashMap<Mac, u64> = h
            .last_seen(oldest, now_ms + 1, now_ms.saturating_sub(2 * 60_000))
            .into_iter()
            .filter(|(m, _)| only.is_none_or(|o| o == *m))
            .collect();
        (day, last)
    };
    let last_dns = st
        .shared
        .dns
        .clients()
        .into_iter()
        .map(|c| (c.ip, c.last_seen_ms))
        .collect();
    let (capture_off, capture_enabled) = {
        let c = st.shared.traffic.captures();
        let off = c
            .clients()
            .into_iter()
            .filter(|i| !i.enabled)
            .filter_map(|i| parse_mac(&i.mac))
            .collect();
        (off, c.config().enabled)
    };
    Gathered {
        cfg: st.shared.config.current(),
        leases,
        day,
        last_traffic,
        last_dns,
        capture_off,
        capture_enabled,
        now_ms,
    }
}

/// Vendor names need the OUI table, read from disk on first use: off the async workers.
async fn oui_ready() {
    let _ = tokio::task::spawn_blocking(|| {
        crate::oui::table();
    })
    .await;
}

fn vendor_of(m: &Mac) -> Option<String> {
    crate::oui::vendor(m).map(str::to_string)
}

fn bad(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, msg.into() + "\n").into_response()
}

fn mac_of(s: &str) -> Result<Mac, String> {
    parse_mac(s).ok_or_else(|| format!("bad device address {s:?} (aa:bb:cc:dd:ee:ff)"))
}

#[derive(Template)]
#[template(path = "clients.html")]
struct ClientsPage {
    hostname: String,
    version: String,
    rows: Vec<ClientRow>,
    online: usize,
}

/// GET /clients
async fn list_page(State(st): State<AppState>) -> Response {
    oui_ready().await;
    let g = gather(&st, None);
    let rows = build_rows(&g.inputs(&vendor_of));
    let page = ClientsPage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        online: rows.iter().filter(|r| r.state == "online").count(),
        rows,
    };
    super::html(&page, StatusCode::OK)
}

/// GET /api/clients
async fn list_json(State(st): State<AppState>) -> Response {
    oui_ready().await;
    let g = gather(&st, None);
    let rows = build_rows(&g.inputs(&vendor_of));
    Json(serde_json::json!({ "now_ms": g.now_ms, "clients": rows })).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailParams {
    pub from: Option<String>,
    pub to: Option<String>,
    /// What was just done (a redirect after a form): see `notice_text`.
    pub done: Option<String>,
}

/// The notice after a successful form: fixed texts, so a link cannot put words of its
/// own on the page.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "named" => "Name saved. Applied now: device names.",
        "unnamed" => "Name removed: the name the device sends is shown again.",
        "static" => "Saved. Applied now: DHCP. This address is reserved for the device.",
        "dynamic" => "Saved. Applied now: DHCP. The device gets its address from the pool.",
        "capture-on" => "Saved. Applied now: capture is on for this device, also after a restart.",
        "capture-off" => {
            "Saved. Applied now: capture is off for this device, also after a restart; \
             packets already held are kept."
        }
        "unchanged" => "Saved. Nothing changed.",
        _ => return None,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoteRow {
    pub remote: IpAddr,
    pub remote_name: Option<String>,
    pub up_bytes: u64,
    pub down_bytes: u64,
    #[serde(skip)]
    pub up: String,
    #[serde(skip)]
    pub down: String,
    #[serde(skip)]
    pub csv: String,
}

pub struct DnsRow {
    pub time: String,
    pub name: String,
    pub qtype: String,
    pub rcode: String,
    pub answer: String,
    pub flags: String,
}

/// What the detail page and its JSON show beyond the row.
struct Detail {
    row: ClientRow,
    view: View,
    points: Vec<(u64, u64, u64)>,
    remotes: Vec<RemoteRow>,
    dns: Vec<LogEntry>,
    capture: Option<packet_capture::ClientInfo>,
}

async fn detail(st: &AppState, mac: Mac, p: &DetailParams) -> Result<Detail, String> {
    oui_ready().await;
    let g = gather(st, Some(mac));
    let row = build_row(&mac, &g.inputs(&vendor_of));
    let span = SpanParams {
        from: p.from.clone(),
        to: p.to.clone(),
    };
    let view = view_of(&span, g.now_ms, DAY_MS)?;
    let pts = points(st, Some(mac), &view)?;
    let top = st
        .shared
        .traffic
        .history()
        .top(Some(mac), GroupBy::Remote, view.from, view.to, 15);
    let m = format_mac(&mac);
    let remotes = top
        .into_iter()
        .filter_map(|t| {
            let ip = t.remote?;
            Some(RemoteRow {
                remote: ip,
                remote_name: st.shared.dns.names.get(&ip).map(|n| n.to_string()),
                up_bytes: t.counts.up_bytes,
                down_bytes: t.counts.down_bytes,
                up: format_bytes(t.counts.up_bytes),
                down: format_bytes(t.counts.down_bytes),
                csv: format!(
                    "/api/traffic?client={m}&remote={ip}&from={}&to={}&res={}&format=csv",
                    view.from, view.to, view.res
                ),
            })
        })
        .collect();
    let mut dns = row
        .ip
        .map(|ip| st.shared.dns.query_log(IpAddr::V4(ip)))
        .unwrap_or_default();
    dns.reverse();
    let capture = st
        .shared
        .traffic
        .captures()
        .clients()
        .into_iter()
        .find(|c| parse_mac(&c.mac) == Some(mac));
    Ok(Detail {
        row,
        view,
        points: pts,
        remotes,
        dns,
        capture,
    })
}

#[derive(Template)]
#[template(path = "client.html")]
struct ClientPage {
    hostname: String,
    version: String,
    csrf: String,
    row: ClientRow,
    notice: Option<&'static str>,
    error: Option<String>,
    chart: Chart,
    nav: Nav,
    /// (label, href) of the fixed spans.
    presets: Vec<(&'static str, String)>,
    remotes: Vec<RemoteRow>,
    dns: Vec<DnsRow>,
    capture_held: String,
    capture_global: bool,
    /// Download links for the viewed span.
    span_csv: String,
    span_json: String,
    span_pcapng: String,
    span_pcap: String,
    day_csv: String,
}

/// GET /clients/{mac}?from=&to= (default: the last day)
async fn detail_page(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(mac): Path<String>,
    Query(p): Query<DetailParams>,
) -> Response {
    let mac = match mac_of(&mac) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    render_detail(&st, &s.csrf, mac, &p, None, StatusCode::OK).await
}

async fn render_detail(
    st: &AppState,
    csrf: &str,
    mac: Mac,
    p: &DetailParams,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let d = match detail(st, mac, p).await {
        Ok(d) => d,
        Err(e) => return bad(e),
    };
    let m = format_mac(&mac);
    let v = d.view;
    let href = |a: u64, b: u64| format!("/clients/{m}?from={a}&to={b}");
    let name = if d.row.name.is_empty() {
        m.clone()
    } else {
        d.row.name.clone()
    };
    let q = format!("from={}&to={}", v.from, v.to);
    let page = ClientPage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        csrf: csrf.to_string(),
        notice: p.done.as_deref().and_then(notice_text),
        error,
        chart: chart(&d.points, &v, &href),
        nav: nav(&v, &href),
        presets: [
            ("1 min", "-1m"),
            ("10 min", "-10m"),
            ("1 h", "-1h"),
            ("24 h", "-24h"),
        ]
        .into_iter()
        .map(|(label, from)| (label, format!("/clients/{m}?from={from}")))
        .collect(),
        remotes: d.remotes,
        dns: d
            .dns
            .iter()
            .take(50)
            .map(|e| DnsRow {
                time: format_utc(e.time_ms)[11..].to_string(),
                name: e.name.clone(),
                qtype: e.qtype.clone(),
                rcode: e.rcode.clone(),
                answer: e.answer.map(|a| a.to_string()).unwrap_or_default(),
                flags: match (e.blocked, e.cached) {
                    (true, _) => "blocked",
                    (false, true) => "cached",
                    _ => "",
                }
                .into(),
            })
            .collect(),
        capture_held: match &d.capture {
            Some(c) if c.packets > 0 => format!(
                "{} packets, {} held",
                c.packets,
                format_bytes(c.bytes as u64)
            ),
            _ => "nothing held".into(),
        },
        capture_global: st.shared.traffic.captures().config().enabled,
        span_csv: format!("/api/traffic?client={m}&{q}&res={}&format=csv", v.res),
        span_json: format!("/api/traffic?client={m}&{q}&res={}", v.res),
        span_pcapng: format!("/api/capture/{m}?format=pcapng&{q}"),
        span_pcap: format!("/api/capture/{m}?format=pcap&{q}"),
        day_csv: format!("/api/traffic?client={m}&from=-24h&res=1m&format=csv"),
        row: ClientRow { name, ..d.row },
    };
    super::html(&page, status)
}

#[derive(Serialize)]
struct PointJson {
    t_ms: u64,
    up_bytes: u64,
    down_bytes: u64,
}

/// GET /api/clients/{mac}?from=&to=
async fn detail_json(
    State(st): State<AppState>,
    Path(mac): Path<String>,
    Query(p): Query<DetailParams>,
) -> Response {
    let mac = match mac_of(&mac) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let d = match detail(&st, mac, &p).await {
        Ok(d) => d,
        Err(e) => return bad(e),
    };
    let points: Vec<PointJson> = d
        .points
        .iter()
        .map(|&(t_ms, up_bytes, down_bytes)| PointJson {
            t_ms,
            up_bytes,
            down_bytes,
        })
        .collect();
    Json(serde_json::json!({
        "client": d.row,
        "from_ms": d.view.from,
        "to_ms": d.view.to,
        "res_ms": d.view.res,
        "points": points,
        "top_remotes": d.remotes,
        "dns_queries": d.dns,
        "capture": d.capture,
    }))
    .into_response()
}

/// A refused edit: the owner's mistake (400), edits refused for now (409) or the file
/// (500).
fn edit_status(msg: &str) -> StatusCode {
    if msg.starts_with("settings cannot be changed") {
        StatusCode::CONFLICT
    } else if msg.starts_with("cannot read") || msg.starts_with("cannot write") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// Makes a config edit; on success redirects to the device's page with `done` (or
/// "unchanged" when the edit changed nothing), else shows the page with the reason.
async fn edit_then_redirect(
    st: &AppState,
    csrf: &str,
    mac: Mac,
    done: &str,
    change: impl FnOnce(&mut Config) -> Result<(), String>,
    after: impl FnOnce(),
) -> Response {
    match st.shared.config.edit(change) {
        Ok((old, new)) => {
            let applied = super::apply::after_edit(&st.shared, &old, &new);
            after();
            eprintln!("web: client {}: {}", format_mac(&mac), applied.message());
            let code = if applied.live.is_empty() && applied.at_reboot.is_empty() {
                "unchanged"
            } else {
                done
            };
            Redirect::to(&format!("/clients/{}?done={code}", format_mac(&mac))).into_response()
        }
        Err(e) => {
            let status = edit_status(&e);
            render_detail(
                st,
                csrf,
                mac,
                &DetailParams::default(),
                Some(format!("Not saved: {e}")),
                status,
            )
            .await
        }
    }
}

/// A name the owner may give: trimmed; empty means none.
pub fn check_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "A name has at most {MAX_NAME} characters and no control characters."
        ));
    }
    Ok(name.to_string())
}

/// Sets (or with an empty name, removes) the owner's name for `mac`, keeping the
/// other entries where they are in the file.
pub fn set_name(devices: &mut Vec<Device>, mac: &Mac, name: &str) {
    let at = devices
        .iter()
        .position(|d| parse_mac(&d.mac).as_ref() == Some(mac));
    match (at, name.is_empty()) {
        (Some(i), true) => {
            devices.remove(i);
        }
        (Some(i), false) => devices[i].name = name.to_string(),
        (None, true) => {}
        (None, false) => devices.push(Device {
            mac: format_mac(mac),
            name: name.to_string(),
        }),
    }
}

/// POST /clients/{mac}/name: name (empty: remove the owner's name), csrf.
async fn rename(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(mac): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mac = match mac_of(&mac) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let form = parse_form(&body);
    let name = match check_name(form.get("name").map_or("", String::as_str)) {
        Ok(n) => n,
        Err(e) => {
            let p = DetailParams::default();
            return render_detail(&st, &s.csrf, mac, &p, Some(e), StatusCode::BAD_REQUEST).await;
        }
    };
    let done = if name.is_empty() { "unnamed" } else { "named" };
    let change = |c: &mut Config| {
        set_name(&mut c.devices, &mac, &name);
        Ok(())
    };
    edit_then_redirect(&st, &s.csrf, mac, done, change, || {}).await
}

/// Adds a static lease for `mac` at `ip` unless it has one; refuses an address another
/// device has reserved, or the router's own.
pub fn add_static(
    c: &mut Config,
    mac: &Mac,
    ip: Ipv4Addr,
    hostname: Option<String>,
) -> Result<(), String> {
    if static_of(c, mac).is_some() {
        return Ok(());
    }
    if ip == c.lan.address {
        return Err(format!("{ip} is the router's own address"));
    }
    if let Some(other) = c.dhcp.static_leases.iter().find(|s| s.ip == ip) {
        return Err(format!("{ip} is already reserved for {}", other.mac));
    }
    c.dhcp.static_leases.push(StaticLease {
        mac: format_mac(mac),
        ip,
        hostname,
    });
    Ok(())
}

/// POST /clients/{mac}/static: reserves the device's current address for it.
async fn make_static(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(mac): Path<String>,
) -> Response {
    let mac = match mac_of(&mac) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let lease = st
        .shared
        .leases
        .lock()
        .ok()
        .and_then(|store| latest_lease(&store.snapshot(), &mac).cloned());
    let Some(lease) = lease else {
        let msg = "This device has no DHCP lease, so there is no address to make static.";
        let p = DetailParams::default();
        return render_detail(
            &st,
            &s.csrf,
            mac,
            &p,
            Some(msg.into()),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    // The static entry's name is a DNS label: the device's own, else the owner's, made one.
    use crate::dhcp::server_logic::sanitize_hostname;
    let cfg = st.shared.config.current();
    let hostname = lease
        .hostname
        .as_deref()
        .and_then(sanitize_hostname)
        .or_else(|| cfg.device_name(&mac).and_then(sanitize_hostname));
    let change = |c: &mut Config| add_static(c, &mac, lease.ip, hostname);
    edit_then_redirect(&st, &s.csrf, mac, "static", change, || {}).await
}

/// POST /clients/{mac}/dynamic: drops the device's static lease.
async fn make_dynamic(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(mac): Path<String>,
) -> Response {
    let mac = match mac_of(&mac) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let change = |c: &mut Config| {
        c.dhcp
            .static_leases
            .retain(|s| parse_mac(&s.mac).as_ref() != Some(&mac));
        Ok(())
    };
    edit_then_redirect(&st, &s.csrf, mac, "dynamic", change, || {}).await
}

/// Puts `mac` in or out of `capture.disabled_clients` (any spelling of it counts).
pub fn set_capture(disabled: &mut Vec<String>, mac: &Mac, on: bool) {
    disabled.retain(|m| parse_mac(m).as_ref() != Some(mac));
    if !on {
        disabled.push(format_mac(mac));
    }
}

/// POST /clients/{mac}/capture: capture=on|off; switched now and saved in the config.
async fn capture(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(mac): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mac = match mac_of(&mac) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let on = match parse_form(&body).get("capture").map(String::as_str) {
        Some("on") => true,
        Some("off") => false,
        _ => {
            let p = DetailParams::default();
            let msg = "Choose capture on or off.".to_string();
            return render_detail(&st, &s.csrf, mac, &p, Some(msg), StatusCode::BAD_REQUEST).await;
        }
    };
    let change = |c: &mut Config| {
        set_capture(&mut c.capture.disabled_clients, &mac, on);
        Ok(())
    };
    let done = if on { "capture-on" } else { "capture-off" };
    // The running switch follows only once the file holds the choice.
    let traffic = st.shared.traffic.clone();
    let after = move || traffic.captures().set_client_enabled(mac, on);
    edit_then_redirect(&st, &s.csrf, mac, done, change, after).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const NOW_MS: u64 = 1_800_000_000_000;
    const NOW: u64 = NOW_MS / 1000;
    const A: Mac = [0x52, 0x54, 0, 0, 0, 1];
    const B: Mac = [0x52, 0x54, 0, 0, 0, 2];
    const C: Mac = [0x52, 0x54, 0, 0, 0, 3];
    const D: Mac = [0x52, 0x54, 0, 0, 0, 4];

    fn lease(mac: Mac, last: u8, host: Option<&str>, expires: u64) -> Lease {
        Lease {
            mac,
            ip: Ipv4Addr::new(192, 168, 1, last),
            hostname: host.map(str::to_string),
            expires,
            client_id: None,
        }
    }

    struct Fixture {
        cfg: Config,
        leases: Vec<Lease>,
        day: HashMap<Mac, Counts>,
        last_traffic: HashMap<Mac, u64>,
        last_dns: HashMap<IpAddr, u64>,
        capture_off: HashSet<Mac>,
    }

    fn vendor(m: &Mac) -> Option<String> {
        (m[5] == 1).then(|| "Acme".to_string())
    }

    impl Fixture {
        fn new() -> Self {
            let mut cfg = Config::default();
            cfg.dhcp.lease_secs = 3600;
            Fixture {
                cfg,
                leases: Vec::new(),
                day: HashMap::new(),
                last_traffic: HashMap::new(),
                last_dns: HashMap::new(),
                capture_off: HashSet::new(),
            }
        }

        fn rows(&self) -> Vec<ClientRow> {
            build_rows(&self.inputs())
        }

        fn inputs(&self) -> Inputs<'_> {
            Inputs {
                cfg: &self.cfg,
                leases: &self.leases,
                day: &self.day,
                last_traffic: &self.last_traffic,
                last_dns: &self.last_dns,
                capture_off: &self.capture_off,
                capture_enabled: true,
                vendor: &vendor,
                now_ms: NOW_MS,
            }
        }
    }

    #[test]
    fn rows_merge_leases_names_traffic_and_config() {
        let mut f = Fixture::new();
        // A: active lease renewed 10 min ago, owner-named, traffic a minute ago.
        f.leases.push(lease(A, 100, Some("laptop"), NOW + 3000));
        f.cfg.devices.push(Device {
            mac: "52:54:00:00:00:01".into(),
            name: "Anna's laptop".into(),
        });
        f.day.insert(
            A,
            Counts {
                up_bytes: 2048,
                down_bytes: 4096,
                ..Default::default()
            },
        );
        f.last_traffic.insert(A, NOW_MS - 60_000);
        // B: an expired lease from yesterday, an older one too; offline.
        f.leases.push(lease(B, 101, Some("tv"), NOW - 86_400));
        f.leases
            .push(lease(B, 150, Some("tv-old"), NOW - 2 * 86_400));
        // C: expired long ago: not listed.
        f.leases.push(lease(C, 102, None, NOW - 30 * 86_400));
        // D: only in the traffic history, and its capture is off.
        f.last_traffic.insert(D, NOW_MS - 3_600_000);
        f.capture_off.insert(D);
        f.cfg
            .capture
            .disabled_clients
            .push("52-54-00-00-00-04".into());
        let rows = f.rows();
        let macs: Vec<&str> = rows.iter().map(|r| r.mac.as_str()).collect();
        assert_eq!(
            macs,
            [
                "52:54:00:00:00:01",
                "52:54:00:00:00:02",
                "52:54:00:00:00:04"
            ]
        );
        let a = &rows[0];
        assert_eq!(a.name, "Anna's laptop");
        assert_eq!(a.hostname.as_deref(), Some("laptop"));
        assert_eq!(a.vendor.as_deref(), Some("Acme"));
        assert_eq!(a.state, "online");
        assert_eq!(a.last_seen_ms, Some(NOW_MS - 60_000));
        assert_eq!(a.text.last_seen, "1m 0s ago");
        assert_eq!(a.text.lease, "expires in 50m 0s");
        assert_eq!(
            (a.text.up.as_str(), a.text.down.as_str()),
            ("2.0 KiB", "4.0 KiB")
        );
        assert!(a.capture && a.capture_saved && !a.static_lease);
        let b = &rows[1];
        assert_eq!((b.name.as_str(), b.state), ("tv", "offline"));
        assert_eq!(b.ip, Some(Ipv4Addr::new(192, 168, 1, 101)));
        assert_eq!(b.text.lease, "expired 1d 0h 0m ago");
        // Renewed an hour (the lease time) before it expired.
        assert_eq!(b.last_seen_ms, Some((NOW - 86_400 - 3600) * 1000));
        let d = &rows[2];
        assert_eq!((d.name.as_str(), d.ip, d.state), ("", None, "offline"));
        assert_eq!(d.text.lease, "no lease");
        assert!(!d.capture && !d.capture_saved);
        assert_eq!(d.vendor, None);
    }

    #[test]
    fn dns_and_dhcp_count_as_seen_and_static_leases_are_listed() {
        let mut f = Fixture::new();
        // Lease renewed 50 min ago, no traffic, a DNS query 2 min ago: online.
        f.leases.push(lease(A, 100, None, NOW + 600));
        f.last_dns.insert(
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100)),
            NOW_MS - 120_000,
        );
        // B: lease held, silent for 50 min: idle.
        f.leases.push(lease(B, 101, None, NOW + 600));
        // C: a static lease for a device never seen.
        f.cfg.dhcp.static_leases.push(StaticLease {
            mac: "52:54:00:00:00:03".into(),
            ip: Ipv4Addr::new(192, 168, 1, 20),
            hostname: Some("printer".into()),
        });
        let rows = f.rows();
        let states: Vec<(&str, &str)> = rows.iter().map(|r| (r.mac.as_str(), r.state)).collect();
        assert_eq!(
            states,
            [
                ("52:54:00:00:00:01", "online"),
                ("52:54:00:00:00:02", "idle"),
                ("52:54:00:00:00:03", "offline")
            ]
        );
        assert_eq!(rows[0].last_seen_ms, Some(NOW_MS - 120_000));
        let c = &rows[2];
        assert!(c.static_lease);
        assert_eq!(
            (c.name.as_str(), c.text.ip.as_str()),
            ("printer", "192.168.1.20")
        );
        assert_eq!(c.text.lease, "static, not seen yet");
        assert_eq!(c.text.last_seen, "never");
    }

    #[test]
    fn names_are_checked_set_and_removed_in_place() {
        assert_eq!(check_name("  Kitchen tablet "), Ok("Kitchen tablet".into()));
        assert_eq!(check_name(""), Ok(String::new()));
        assert!(check_name("a\u{7}b").is_err());
        assert!(check_name(&"x".repeat(64)).is_err());
        assert!(check_name(&"é".repeat(63)).is_ok());
        let mut d = vec![
            Device {
                mac: "52-54-00-00-00-01".into(),
                name: "one".into(),
            },
            Device {
                mac: "52:54:00:00:00:02".into(),
                name: "two".into(),
            },
        ];
        set_name(&mut d, &A, "uno");
        assert_eq!((d[0].name.as_str(), d.len()), ("uno", 2));
        set_name(&mut d, &C, "three");
        assert_eq!(d[2].mac, "52:54:00:00:00:03");
        set_name(&mut d, &A, "");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "two");
        set_name(&mut d, &D, "");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn static_leases_refuse_taken_addresses() {
        let mut c = Config::default();
        let ip = Ipv4Addr::new(192, 168, 1, 100);
        add_static(&mut c, &A, ip, Some("laptop".into())).unwrap();
        assert_eq!(c.dhcp.static_leases.len(), 1);
        assert_eq!(c.dhcp.static_leases[0].mac, "52:54:00:00:00:01");
        // Again: nothing to do.
        add_static(&mut c, &A, Ipv4Addr::new(192, 168, 1, 7), None).unwrap();
        assert_eq!(c.dhcp.static_leases.len(), 1);
        let e = add_static(&mut c, &B, ip, None).unwrap_err();
        assert!(e.contains("already reserved for 52:54:00:00:00:01"), "{e}");
        let own = c.lan.address;
        let e = add_static(&mut c, &B, own, None).unwrap_err();
        assert!(e.contains("router's own"), "{e}");
    }

    #[test]
    fn capture_switches_are_saved_once_whatever_the_spelling() {
        let mut v = vec!["52-54-00-00-00-01".to_string(), "02:00:00:00:00:09".into()];
        set_capture(&mut v, &A, false);
        assert_eq!(v, ["02:00:00:00:00:09", "52:54:00:00:00:01"]);
        set_capture(&mut v, &A, true);
        assert_eq!(v, ["02:00:00:00:00:09"]);
    }

    #[test]
    fn notices_are_fixed_texts() {
        assert!(notice_text("named").unwrap().contains("Name saved"));
        assert_eq!(notice_text("<b>owned</b>"), None);
    }

    #[test]
    fn hostile_names_render_inert() {
        let mut f = Fixture::new();
        f.leases
            .push(lease(A, 100, Some("<script>alert(1)</script>"), NOW + 60));
        let page = ClientsPage {
            hostname: "gw".into(),
            version: "1".into(),
            rows: f.rows(),
            online: 0,
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(html.contains("&#60;script&#62;alert(1)"), "{html}");
        assert!(
            html.contains("href=\"/clients/52:54:00:00:00:01\""),
            "{html}"
        );
    }
}
