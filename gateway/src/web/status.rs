//! The status page: hostname, uptime, WAN, LAN and DHCP leases.

use super::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::{Json, Response};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub struct LeaseRow {
    pub hostname: String,
    pub ip: String,
    pub mac: String,
    pub expires_in: String,
}

pub struct TalkerRow {
    pub name: String,
    pub mac: String,
    pub up: String,
    pub down: String,
}

#[derive(Template)]
#[template(path = "index.html")]
pub struct StatusPage {
    pub hostname: String,
    /// The running build, in the footer.
    pub version: String,
    pub uptime: String,
    pub config_error: Option<String>,
    pub wan_interface: String,
    pub wan_address: String,
    pub lan_interface: String,
    pub lan_address: String,
    pub nat_mappings: usize,
    pub nat_dropped: u64,
    pub dns_queries: u64,
    pub dns_cache_hits: u64,
    pub leases: Vec<LeaseRow>,
    /// For the logout form.
    pub csrf: String,
    /// "12.3 MiB of 64.0 MiB"
    pub traffic_memory: String,
    /// "2h 5m" (or "no traffic yet")
    pub traffic_reach: String,
    pub capture_memory: String,
    pub talkers: Vec<TalkerRow>,
    /// "A" or "B" (empty when not booted from a slot).
    pub slot: String,
    pub cpu: String,
    pub memory: String,
    pub load: String,
    pub clients_online: usize,
    /// Throughput over the last 10 s, "1.2 MiB/s".
    pub rate_up: String,
    pub rate_down: String,
    pub timeline: Vec<super::host::BootStep>,
    pub warnings: Vec<String>,
}

pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[derive(serde::Serialize)]
pub struct StatusJson {
    pub hostname: String,
    pub uptime_secs: u64,
    pub config_error: Option<String>,
    pub wan: crate::wan::WanStatus,
    pub lan_address: String,
    pub leases: Vec<crate::dhcp::lease_store::Lease>,
    pub dhcp: crate::dhcp::CountersSnapshot,
    pub dns: Arc<crate::dns::Counters>,
    pub nat: crate::nat::StatsView,
}

#[derive(serde::Serialize)]
pub struct NatJson {
    pub stats: crate::nat::StatsView,
    pub mappings: Vec<crate::nat::MappingView>,
}

pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {s}s")
    }
}

pub use crate::dhcp::lease_store::format_mac;

/// The span of the status page's busiest devices (and of `/metrics`' per-device bytes).
const DAY_MS: u64 = 86_400_000;

/// Everything the status page and `/api/status` show (and `/metrics` counts), read once.
pub(super) fn collect(state: &AppState) -> StatusJson {
    let cfg = &state.ctx.config;
    let leases = state
        .shared
        .leases
        .lock()
        .map(|s| s.snapshot())
        .unwrap_or_default()
        .into_iter()
        // The store keeps expired leases so returning clients get their old
        // address back; the owner wants to see who holds one now.
        .filter(|l| l.expires > crate::clock::unix_now())
        .collect();
    StatusJson {
        hostname: cfg.system.hostname.clone(),
        uptime_secs: sysinfo::System::uptime(),
        config_error: state.ctx.config_error.clone(),
        wan: state.ctx.wan.borrow().clone(),
        lan_address: format!("{}/{}", cfg.lan.address, cfg.lan.prefix_len),
        leases,
        dhcp: state.shared.dhcp.snapshot(),
        dns: state.shared.dns.clone(),
        nat: state.shared.nat.stats(),
    }
}

pub async fn page(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<super::auth::SessionInfo>,
) -> Response {
    let s = collect(&state);
    let now = crate::clock::unix_now();
    let leases: Vec<LeaseRow> = s
        .leases
        .iter()
        .map(|l| LeaseRow {
            hostname: l.hostname.clone().unwrap_or_default(),
            ip: l.ip.to_string(),
            mac: format_mac(&l.mac),
            expires_in: format_duration(l.expires.saturating_sub(now)),
        })
        .collect();
    let (traffic_memory, traffic_reach, capture_memory, talkers) = traffic_view(&state, &leases);
    let host = state.shared.host.sample();
    let (slot, banners) = state.shared.update.quick_banners();
    let mut warnings: Vec<String> = banners.into_iter().map(|b| b.text).collect();
    warnings.extend(disk_warning(&state));
    let (rate_up, rate_down) = rates(&state.shared.traffic, crate::clock::unix_ms());
    let page = StatusPage {
        slot,
        cpu: format!("{:.0} % of {} cores", host.cpu_percent, host.cpus),
        memory: format!(
            "{} used of {}",
            format_bytes(host.memory_used),
            format_bytes(host.memory_total)
        ),
        load: format!(
            "{:.2} {:.2} {:.2}",
            host.load[0], host.load[1], host.load[2]
        ),
        clients_online: leases.len(),
        rate_up,
        rate_down,
        timeline: super::host::boot_timeline(&state.ctx.run_dir),
        warnings,
        hostname: s.hostname,
        version: state.shared.update.version().to_string(),
        uptime: format_duration(s.uptime_secs),
        config_error: s.config_error,
        wan_interface: s.wan.interface.clone(),
        wan_address: s.wan.describe(),
        lan_interface: state.ctx.config.lan.interface.clone(),
        lan_address: s.lan_address,
        nat_mappings: s.nat.mappings,
        nat_dropped: s.nat.dropped(),
        dns_queries: s.dns.queries.load(Relaxed),
        dns_cache_hits: s.dns.cache_hits.load(Relaxed),
        leases,
        csrf: session.csrf,
        traffic_memory,
        traffic_reach,
        capture_memory,
        talkers,
    };
    super::html(&page, axum::http::StatusCode::OK)
}

/// Span of the dashboard's throughput figures.
const RATE_WINDOW_MS: u64 = 10_000;

/// Up and down throughput over the last `RATE_WINDOW_MS`, as text.
fn rates(t: &crate::traffic::Traffic, now_ms: u64) -> (String, String) {
    let s = t
        .history()
        .summary(None, None, now_ms.saturating_sub(RATE_WINDOW_MS), now_ms);
    let per_sec = |b: u64| format!("{}/s", format_bytes(b * 1000 / RATE_WINDOW_MS));
    (per_sec(s.counts.up_bytes), per_sec(s.counts.down_bytes))
}

/// History memory and reach, and the day's busiest devices.
fn traffic_view(state: &AppState, leases: &[LeaseRow]) -> (String, String, String, Vec<TalkerRow>) {
    let t = &state.shared.traffic;
    let now = crate::clock::unix_ms();
    let (stats, top) = history_day(t, now, 10);
    let memory = format!(
        "{} of {}",
        format_bytes(stats.memory_bytes as u64),
        format_bytes(stats.memory_limit as u64)
    );
    let reach = match stats.oldest_ms {
        Some(o) => format_duration(now.saturating_sub(o) / 1000),
        None => "no traffic yet".into(),
    };
    let capture = format_bytes(t.captures().memory_bytes() as u64);
    let talkers = top
        .into_iter()
        .filter_map(|r| {
            let mac = format_mac(&r.client?);
            let name = leases
                .iter()
                .find(|l| l.mac == mac)
                .map(|l| l.hostname.clone())
                .unwrap_or_default();
            Some(TalkerRow {
                name,
                mac,
                up: format_bytes(r.counts.up_bytes),
                down: format_bytes(r.counts.down_bytes),
            })
        })
        .collect();
    (memory, reach, capture, talkers)
}

/// The history's stats and the (at most `n`) devices that moved the most bytes over the
/// day before `now_ms`, busiest first, read under one lock.
pub(super) fn history_day(
    t: &crate::traffic::Traffic,
    now_ms: u64,
    n: usize,
) -> (traffic_history::Stats, Vec<traffic_history::Talker>) {
    let h = t.history();
    let top = h.top(
        None,
        traffic_history::GroupBy::Client,
        now_ms.saturating_sub(DAY_MS),
        now_ms,
        n,
    );
    (h.stats(), top)
}

/// `/api/status`: what the dashboard shows.
#[derive(serde::Serialize)]
pub struct DashboardJson {
    #[serde(flatten)]
    pub status: StatusJson,
    pub version: String,
    pub slot: String,
    pub host: super::host::HostSample,
    pub warnings: Vec<String>,
    pub boot_timeline: Vec<super::host::BootStep>,
}

pub async fn json(State(state): State<AppState>) -> Json<DashboardJson> {
    let (slot, banners) = state.shared.update.quick_banners();
    let mut warnings: Vec<String> = banners.into_iter().map(|b| b.text).collect();
    warnings.extend(disk_warning(&state));
    Json(DashboardJson {
        status: collect(&state),
        version: state.shared.update.version().to_string(),
        slot,
        host: state.shared.host.sample(),
        warnings,
        boot_timeline: super::host::boot_timeline(&state.ctx.run_dir),
    })
}

fn disk_warning(state: &AppState) -> Option<String> {
    let data_dir = state.shared.update.paths.update_dir.parent()?;
    let (free, total) = super::host::disk_space(data_dir)?;
    super::host::disk_warning(free, total)
}

pub async fn nat_json(State(state): State<AppState>) -> Json<NatJson> {
    Json(NatJson {
        stats: state.shared.nat.stats(),
        mappings: state.shared.nat.snapshot(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(64 << 20), "64.0 MiB");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(59), "0m 59s");
        assert_eq!(format_duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(format_duration(2 * 86400 + 3600), "2d 1h 0m");
    }

    #[test]
    fn hostile_hostname_is_escaped() {
        let page = StatusPage {
            hostname: "gw".into(),
            version: "0.1.0+g1a2b3c4.20261122T0512".into(),
            uptime: "1m".into(),
            config_error: None,
            wan_interface: "wan".into(),
            wan_address: "no address".into(),
            lan_interface: "br-lan".into(),
            lan_address: "192.168.1.1/24".into(),
            nat_mappings: 0,
            nat_dropped: 0,
            dns_queries: 0,
            dns_cache_hits: 0,
            leases: vec![LeaseRow {
                hostname: "<script>alert(1)</script>".into(),
                ip: "192.168.1.100".into(),
                mac: format_mac(&[0x52, 0x54, 0, 0, 0, 1]),
                expires_in: "1h".into(),
            }],
            csrf: "t0ken".into(),
            traffic_memory: "1.0 MiB of 64.0 MiB".into(),
            traffic_reach: "1h 0m".into(),
            capture_memory: "0 B".into(),
            talkers: vec![TalkerRow {
                name: "<img src=x onerror=alert(2)>".into(),
                mac: format_mac(&[0x52, 0x54, 0, 0, 0, 1]),
                up: "1 B".into(),
                down: "2 B".into(),
            }],
            slot: "A".into(),
            cpu: "3 % of 2 cores".into(),
            memory: "100 MiB used of 1 GiB".into(),
            load: "0.10 0.20 0.30".into(),
            clients_online: 1,
            rate_up: "0 B/s".into(),
            rate_down: "0 B/s".into(),
            timeline: vec![super::super::host::BootStep {
                step: "<b>mounts</b>".into(),
                t: 0.5,
            }],
            warnings: vec!["<i>rolled back</i>".into()],
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<b>mounts") && html.contains("0.50 s"));
        assert!(!html.contains("<i>rolled"));
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("1.0 MiB of 64.0 MiB"));
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
        assert!(html.contains("52:54:00:00:00:01"));
        assert!(html.contains("Gatehouse 0.1.0+g1a2b3c4.20261122T0512"));
    }
}
