//! The network settings page: LAN subnet and DHCP range, static leases, WAN mode, WLAN.
//!
//! Each form posts one section. Its fields are parsed here into the typed config (pure
//! functions, with messages that name the field), the config file is edited through
//! `ConfigFile::edit` (which validates the whole result and writes it atomically), and the
//! owner is told what applies now and what at the next boot. A refused change re-renders
//! the page with the owner's input kept and the reason, with 400.

use super::auth::{parse_form, SessionInfo};
use super::AppState;
use crate::config::{Config, StaticLease, WlanChannel};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::collections::HashMap;
use std::net::Ipv4Addr;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/network", get(page))
        .route("/api/network", get(json))
        .route("/network/lan", post(save_lan))
        .route("/network/wan", post(save_wan))
        .route("/network/wlan", post(save_wlan))
        .route("/network/static", post(add_static))
        .route("/network/static/{index}/delete", post(delete_static))
}

/// The values shown in the forms: from the config, or the owner's rejected input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    pub lan_address: String,
    pub lan_prefix: String,
    pub dhcp_enabled: bool,
    pub range_start: String,
    pub range_end: String,
    pub lease_minutes: String,
    pub wan_mode: String,
    pub wan_address: String,
    pub wan_prefix: String,
    pub wan_gateway: String,
    pub wan_dns: String,
    pub wlan_enabled: bool,
    pub ssid: String,
    pub passphrase: String,
    pub channel: String,
    pub country: String,
    pub static_mac: String,
    pub static_ip: String,
    pub static_name: String,
}

impl Fields {
    pub fn from_config(c: &Config) -> Self {
        let opt = |v: Option<Ipv4Addr>| v.map(|a| a.to_string()).unwrap_or_default();
        Fields {
            lan_address: c.lan.address.to_string(),
            lan_prefix: c.lan.prefix_len.to_string(),
            dhcp_enabled: c.dhcp.enabled,
            range_start: c.dhcp.range_start.to_string(),
            range_end: c.dhcp.range_end.to_string(),
            lease_minutes: (c.dhcp.lease_secs / 60).to_string(),
            wan_mode: c.wan.mode.clone(),
            wan_address: opt(c.wan.address),
            wan_prefix: c.wan.prefix_len.map(|p| p.to_string()).unwrap_or_default(),
            wan_gateway: opt(c.wan.gateway),
            wan_dns: join(&c.wan.dns),
            wlan_enabled: c.wlan.enabled,
            ssid: c.wlan.ssid.clone().unwrap_or_default(),
            passphrase: c.wlan.passphrase.clone().unwrap_or_default(),
            channel: match &c.wlan.channel {
                None => "auto".into(),
                Some(WlanChannel::Number(n)) => n.to_string(),
                Some(WlanChannel::Name(s)) => s.clone(),
            },
            country: c.wlan.country.clone().unwrap_or_default(),
            ..Fields::default()
        }
    }
}

fn join(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

type Form = HashMap<String, String>;

fn text(f: &Form, k: &str) -> String {
    f.get(k).map(|v| v.trim().to_string()).unwrap_or_default()
}

/// An HTML checkbox: present when ticked.
fn ticked(f: &Form, k: &str) -> bool {
    f.contains_key(k)
}

fn ip(label: &str, v: &str) -> Result<Ipv4Addr, String> {
    v.parse()
        .map_err(|_| format!("{label}: {v:?} is not an IPv4 address such as 192.168.1.1"))
}

fn number<T: std::str::FromStr>(label: &str, v: &str, range: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{label}: {v:?} is not a number ({range})"))
}

/// `[lan]` address and prefix, and `[dhcp]` on/off, range and lease time.
pub fn apply_lan(c: &mut Config, f: &Form) -> Result<(), String> {
    c.lan.address = ip("LAN address", &text(f, "lan_address"))?;
    c.lan.prefix_len = number("LAN prefix length", &text(f, "lan_prefix"), "8 to 30")?;
    c.dhcp.enabled = ticked(f, "dhcp_enabled");
    c.dhcp.range_start = ip("DHCP range start", &text(f, "range_start"))?;
    c.dhcp.range_end = ip("DHCP range end", &text(f, "range_end"))?;
    let minutes: u32 = number(
        "Lease time",
        &text(f, "lease_minutes"),
        "minutes, 2 to 10080",
    )?;
    if !(2..=7 * 24 * 60).contains(&minutes) {
        return Err(format!(
            "Lease time: {minutes} minutes is outside 2 minutes to 7 days"
        ));
    }
    c.dhcp.lease_secs = minutes * 60;
    // A router address inside the old subnet's statics would now be refused by the
    // validator with a message naming the lease: that is the right outcome.
    Ok(())
}

/// `[wan]` mode and, for a static WAN, its addressing.
pub fn apply_wan(c: &mut Config, f: &Form) -> Result<(), String> {
    match text(f, "wan_mode").as_str() {
        "dhcp" => {
            c.wan.mode = "dhcp".into();
            // Kept out of the file: they would only mislead the next reader.
            c.wan.address = None;
            c.wan.prefix_len = None;
            c.wan.gateway = None;
            c.wan.dns.clear();
        }
        "static" => {
            c.wan.mode = "static".into();
            c.wan.address = Some(ip("WAN address", &text(f, "wan_address"))?);
            let prefix = text(f, "wan_prefix");
            c.wan.prefix_len = if prefix.is_empty() {
                None
            } else {
                Some(number("WAN prefix length", &prefix, "1 to 32")?)
            };
            c.wan.gateway = Some(ip("WAN gateway", &text(f, "wan_gateway"))?);
            c.wan.dns = text(f, "wan_dns")
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(|s| ip("WAN DNS servers", s))
                .collect::<Result<_, _>>()?;
        }
        other => return Err(format!("WAN mode: {other:?} is neither dhcp nor static")),
    }
    Ok(())
}

/// `[wlan]`; checked with init's own validator, which is what turns it into hostapd's
/// configuration at boot, so the page never accepts what init would refuse.
pub fn apply_wlan(c: &mut Config, f: &Form) -> Result<(), String> {
    let (ssid, pass, channel, country) = (
        text(f, "ssid"),
        f.get("passphrase").cloned().unwrap_or_default(),
        text(f, "channel").to_lowercase(),
        text(f, "country").to_uppercase(),
    );
    c.wlan.enabled = ticked(f, "wlan_enabled");
    c.wlan.ssid = (!ssid.is_empty()).then_some(ssid);
    c.wlan.passphrase = (!pass.is_empty()).then_some(pass);
    c.wlan.channel = match channel.as_str() {
        "" | "auto" => None,
        n => Some(WlanChannel::Number(number(
            "Channel",
            n,
            "auto, or a channel such as 1, 6, 11 or 36",
        )?)),
    };
    c.wlan.country = (!country.is_empty()).then_some(country);
    let section = toml::to_string(&HashMap::from([("wlan", &c.wlan)]))
        .map_err(|e| format!("wireless settings: {e}"))?;
    match init::wlan::from_text(&section) {
        init::wlan::WlanSettings::Invalid(why) => Err(why),
        _ => Ok(()),
    }
}

/// A new `[[dhcp.static_leases]]` entry; one per MAC and per address.
pub fn add_static_lease(c: &mut Config, f: &Form) -> Result<(), String> {
    let mac = text(f, "static_mac").to_lowercase();
    if crate::config::parse_mac(&mac).is_none() {
        return Err(format!("MAC: {mac:?} is not aa:bb:cc:dd:ee:ff"));
    }
    let addr = ip("Static address", &text(f, "static_ip"))?;
    let name = text(f, "static_name");
    let same_mac =
        |s: &StaticLease| crate::config::parse_mac(&s.mac) == crate::config::parse_mac(&mac);
    if let Some(s) = c.dhcp.static_leases.iter().find(|s| same_mac(s)) {
        return Err(format!("{mac} already has the static address {}", s.ip));
    }
    if let Some(s) = c.dhcp.static_leases.iter().find(|s| s.ip == addr) {
        return Err(format!("{addr} is already the static address of {}", s.mac));
    }
    c.dhcp.static_leases.push(StaticLease {
        mac,
        ip: addr,
        hostname: (!name.is_empty()).then_some(name),
    });
    Ok(())
}

struct StaticRow {
    index: usize,
    mac: String,
    ip: String,
    name: String,
}

#[derive(Template)]
#[template(path = "network.html")]
struct NetworkPage {
    hostname: String,
    version: String,
    csrf: String,
    notice: Option<String>,
    error: Option<String>,
    /// Why nothing can be saved (failsafe, rejected file), shown instead of the forms' effect.
    refused: Option<String>,
    f: Fields,
    statics: Vec<StaticRow>,
    /// The join-this-network QR code (SVG), when an SSID and passphrase are set.
    wlan_qr: Option<String>,
    wlan_status: String,
}

/// `WIFI:` payload most phone cameras understand; `\`, `;`, `,`, `:` and `"` are escaped.
pub fn wifi_join_uri(ssid: &str, passphrase: &str) -> String {
    let esc = |s: &str| {
        s.chars().fold(String::new(), |mut o, ch| {
            if matches!(ch, '\\' | ';' | ',' | ':' | '"') {
                o.push('\\');
            }
            o.push(ch);
            o
        })
    };
    format!("WIFI:T:WPA;S:{};P:{};;", esc(ssid), esc(passphrase))
}

fn qr_svg(payload: &str) -> Option<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::new(payload.as_bytes()).ok()?;
    Some(
        code.render::<svg::Color>()
            .min_dimensions(180, 180)
            .build()
            // Drop the XML prolog: the SVG is inlined into HTML.
            .split_once("?>")
            .map(|(_, svg)| svg.to_string())
            .unwrap_or_default(),
    )
}

fn render(
    st: &AppState,
    csrf: &str,
    f: Fields,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let cfg = st.shared.config.current();
    let wlan_qr = match (&cfg.wlan.ssid, &cfg.wlan.passphrase) {
        (Some(s), Some(p)) if cfg.wlan.enabled => qr_svg(&wifi_join_uri(s, p)),
        _ => None,
    };
    let page = NetworkPage {
        hostname: cfg.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        csrf: csrf.to_string(),
        notice,
        error,
        refused: st.shared.config.refused().map(str::to_string),
        f,
        statics: cfg
            .dhcp
            .static_leases
            .iter()
            .enumerate()
            .map(|(index, s)| StaticRow {
                index,
                mac: s.mac.clone(),
                ip: s.ip.to_string(),
                name: s.hostname.clone().unwrap_or_default(),
            })
            .collect(),
        wlan_qr,
        wlan_status: std::fs::read_to_string(st.ctx.run_dir.join("wlan"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "no status from init".into()),
    };
    super::html(&page, status)
}

#[derive(serde::Deserialize)]
pub struct Shown {
    saved: Option<String>,
}

/// GET /network (`?saved=...`: the outcome of the last save, after its redirect).
async fn page(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Query(q): Query<Shown>,
) -> Response {
    let f = Fields::from_config(&st.shared.config.current());
    // Only our own fixed phrases come back through the URL.
    let notice = q.saved.as_deref().and_then(saved_message);
    render(&st, &s.csrf, f, notice, None, StatusCode::OK)
}

/// The redirect after a save carries which message to show, not the text itself, so a
/// link cannot put words on the page.
fn saved_code(msg: &str) -> String {
    SAVED
        .iter()
        .position(|m| *m == msg)
        .map_or_else(String::new, |i| i.to_string())
}

fn saved_message(code: &str) -> Option<String> {
    code.parse::<usize>()
        .ok()
        .and_then(|i| SAVED.get(i))
        .map(|m| m.to_string())
}

/// Every message `Applied::message` can produce for this page's sections.
const SAVED: &[&str] = &[
    "Saved. Nothing changed.",
    "Saved. Applied now: DHCP.",
    "Saved. Takes effect after a reboot: LAN address and ports, DHCP.",
    "Saved. Takes effect after a reboot: LAN address and ports.",
    "Saved. Takes effect after a reboot: WAN settings.",
    "Saved. Applied now: wireless network.",
    "Saved. Takes effect after a reboot: DHCP.",
];

async fn json(State(st): State<AppState>) -> Json<serde_json::Value> {
    let c = st.shared.config.current();
    Json(serde_json::json!({
        "lan": { "address": c.lan.address, "prefix_len": c.lan.prefix_len },
        "dhcp": {
            "enabled": c.dhcp.enabled,
            "range_start": c.dhcp.range_start,
            "range_end": c.dhcp.range_end,
            "lease_secs": c.dhcp.lease_secs,
            "static_leases": c.dhcp.static_leases,
        },
        "wan": c.wan,
        "wlan": c.wlan,
        "editable": st.shared.config.refused().is_none(),
    }))
}

/// Runs one form's edit and answers: a redirect to the page with the outcome, or the page
/// again with the owner's input and the reason.
async fn save(
    st: AppState,
    s: SessionInfo,
    body: &[u8],
    change: impl FnOnce(&mut Config, &Form) -> Result<(), String> + Send + 'static,
) -> Response {
    let form = parse_form(body);
    let file = st.shared.config.clone();
    let f2 = form.clone();
    let outcome = tokio::task::spawn_blocking(move || file.edit(|c| change(c, &f2)))
        .await
        .unwrap_or_else(|e| Err(format!("save failed: {e}")));
    match outcome {
        Ok((old, new)) => {
            let msg = super::apply::after_edit(&st.shared, &old, &new).message();
            eprintln!("web: network settings: {msg}");
            let code = saved_code(&msg);
            if code.is_empty() {
                // A combination without a fixed phrase: show it directly.
                let f = Fields::from_config(&new);
                return render(&st, &s.csrf, f, Some(msg), None, StatusCode::OK);
            }
            Redirect::to(&format!("/network?saved={code}")).into_response()
        }
        Err(why) => {
            let mut f = Fields::from_config(&st.shared.config.current());
            keep_input(&mut f, &form);
            render(&st, &s.csrf, f, None, Some(why), StatusCode::BAD_REQUEST)
        }
    }
}

/// Puts the owner's submitted values back into the form after a refusal.
fn keep_input(f: &mut Fields, form: &Form) {
    let put = |k: &str, slot: &mut String| {
        if let Some(v) = form.get(k) {
            *slot = v.clone();
        }
    };
    put("lan_address", &mut f.lan_address);
    put("lan_prefix", &mut f.lan_prefix);
    put("range_start", &mut f.range_start);
    put("range_end", &mut f.range_end);
    put("lease_minutes", &mut f.lease_minutes);
    put("wan_mode", &mut f.wan_mode);
    put("wan_address", &mut f.wan_address);
    put("wan_prefix", &mut f.wan_prefix);
    put("wan_gateway", &mut f.wan_gateway);
    put("wan_dns", &mut f.wan_dns);
    put("ssid", &mut f.ssid);
    put("passphrase", &mut f.passphrase);
    put("channel", &mut f.channel);
    put("country", &mut f.country);
    put("static_mac", &mut f.static_mac);
    put("static_ip", &mut f.static_ip);
    put("static_name", &mut f.static_name);
    if form.contains_key("lan_address") {
        f.dhcp_enabled = form.contains_key("dhcp_enabled");
    }
    if form.contains_key("ssid") {
        f.wlan_enabled = form.contains_key("wlan_enabled");
    }
}

async fn save_lan(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    body: axum::body::Bytes,
) -> Response {
    save(st, s, &body, apply_lan).await
}

async fn save_wan(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    body: axum::body::Bytes,
) -> Response {
    save(st, s, &body, apply_wan).await
}

async fn save_wlan(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    body: axum::body::Bytes,
) -> Response {
    save(st, s, &body, apply_wlan).await
}

async fn add_static(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    body: axum::body::Bytes,
) -> Response {
    save(st, s, &body, add_static_lease).await
}

/// POST /network/static/{index}/delete (field `mac`); the MAC must still be at that index,
/// so a stale page cannot remove another entry.
async fn delete_static(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(index): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    save(st, s, &body, move |c, f| {
        remove_static_lease(c, index, &text(f, "mac"))
    })
    .await
}

pub fn remove_static_lease(c: &mut Config, index: usize, mac: &str) -> Result<(), String> {
    match c.dhcp.static_leases.get(index) {
        Some(s) if s.mac.eq_ignore_ascii_case(mac) => {
            c.dhcp.static_leases.remove(index);
            Ok(())
        }
        _ => Err(
            "That static lease changed meanwhile; nothing was removed. Check the list and try \
             again."
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kv: &[(&str, &str)]) -> Form {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lan_form_sets_subnet_range_and_lease_time() {
        let mut c = Config::default();
        let f = form(&[
            ("lan_address", "10.0.0.1"),
            ("lan_prefix", "24"),
            ("dhcp_enabled", "on"),
            ("range_start", "10.0.0.100"),
            ("range_end", "10.0.0.200"),
            ("lease_minutes", "90"),
        ]);
        apply_lan(&mut c, &f).unwrap();
        assert_eq!(c.lan.address, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(c.dhcp.lease_secs, 5400);
        assert!(c.dhcp.enabled);
        crate::config::validate(&c).unwrap();
        let mut bad = f.clone();
        bad.insert("range_end".into(), "10.0.0.300".into());
        let e = apply_lan(&mut c, &bad).unwrap_err();
        assert!(e.starts_with("DHCP range end: \"10.0.0.300\""), "{e}");
        bad.insert("range_end".into(), "10.0.0.200".into());
        bad.insert("lease_minutes".into(), "1".into());
        assert!(apply_lan(&mut c, &bad)
            .unwrap_err()
            .contains("outside 2 minutes"));
        bad.remove("dhcp_enabled");
        bad.insert("lease_minutes".into(), "60".into());
        apply_lan(&mut c, &bad).unwrap();
        assert!(!c.dhcp.enabled);
    }

    #[test]
    fn wan_form_switches_modes_and_clears_static_keys() {
        let mut c = Config::default();
        apply_wan(
            &mut c,
            &form(&[
                ("wan_mode", "static"),
                ("wan_address", "203.0.113.2"),
                ("wan_prefix", ""),
                ("wan_gateway", "203.0.113.1"),
                ("wan_dns", "9.9.9.9, 1.1.1.1"),
            ]),
        )
        .unwrap();
        assert!(c.wan.is_static());
        assert_eq!(c.wan.dns.len(), 2);
        assert_eq!(c.wan.prefix_len, None);
        apply_wan(&mut c, &form(&[("wan_mode", "dhcp")])).unwrap();
        assert_eq!((c.wan.address, c.wan.gateway), (None, None));
        assert!(apply_wan(&mut c, &form(&[("wan_mode", "pppoe")])).is_err());
        let e = apply_wan(
            &mut c,
            &form(&[("wan_mode", "static"), ("wan_address", "x")]),
        )
        .unwrap_err();
        assert!(e.starts_with("WAN address"), "{e}");
    }

    #[test]
    fn wlan_form_uses_inits_rules() {
        let mut c = Config::default();
        let ok = [
            ("wlan_enabled", "on"),
            ("ssid", "Home"),
            ("passphrase", "correct horse"),
            ("channel", "auto"),
            ("country", "de"),
        ];
        apply_wlan(&mut c, &form(&ok)).unwrap();
        assert_eq!(c.wlan.country.as_deref(), Some("DE"));
        assert_eq!(c.wlan.channel, None);
        let mut short = form(&ok);
        short.insert("passphrase".into(), "short".into());
        assert!(apply_wlan(&mut c, &short).unwrap_err().contains("8-63"));
        let mut ch = form(&ok);
        ch.insert("channel".into(), "36".into());
        ch.insert("country".into(), "".into());
        assert!(apply_wlan(&mut c, &ch)
            .unwrap_err()
            .contains("needs wlan.country"));
        ch.insert("channel".into(), "seven".into());
        assert!(apply_wlan(&mut c, &ch).unwrap_err().starts_with("Channel"));
    }

    #[test]
    fn static_leases_are_added_once_and_removed_by_index_and_mac() {
        let mut c = Config::default();
        let f = form(&[
            ("static_mac", "02:00:00:00:00:0A"),
            ("static_ip", "192.168.1.50"),
            ("static_name", "printer"),
        ]);
        add_static_lease(&mut c, &f).unwrap();
        assert_eq!(c.dhcp.static_leases[0].mac, "02:00:00:00:00:0a");
        assert!(add_static_lease(&mut c, &f)
            .unwrap_err()
            .contains("already has"));
        let e = remove_static_lease(&mut c, 0, "02:00:00:00:00:0b").unwrap_err();
        assert!(e.contains("changed meanwhile"));
        remove_static_lease(&mut c, 0, "02:00:00:00:00:0A").unwrap();
        assert!(c.dhcp.static_leases.is_empty());
    }

    #[test]
    fn wifi_uri_escapes_its_separators() {
        assert_eq!(
            wifi_join_uri("my;net", "pa:ss\\word"),
            "WIFI:T:WPA;S:my\\;net;P:pa\\:ss\\\\word;;"
        );
        assert!(qr_svg("WIFI:T:WPA;S:a;P:b;;").unwrap().starts_with("<svg"));
    }

    #[test]
    fn only_fixed_phrases_travel_in_the_redirect() {
        assert_eq!(
            saved_message(&saved_code("Saved. Applied now: DHCP.")).as_deref(),
            Some("Saved. Applied now: DHCP.")
        );
        assert_eq!(saved_code("<script>"), "");
        assert_eq!(saved_message("99"), None);
    }
}
