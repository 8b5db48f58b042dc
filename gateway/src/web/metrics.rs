//! `GET /metrics`: the router's counters in the Prometheus text format (version 0.0.4), for a
//! scraper (which sends HTTP Basic credentials, see `auth`) or a logged-in browser.
//!
//! Nothing here counts anything: the values are read through the same views as the status
//! page and `/api/status` (`status::collect`, `status::history_day`). Counters are named
//! `gatehouse_*_total`; gauges carry no suffix. The per-device traffic series are bounded:
//! at most `MAX_DEVICE_SERIES` devices, the busiest of the history's last day.

use super::status;
use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Most devices given per-device traffic series (the busiest ones).
const MAX_DEVICE_SERIES: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// An exposition being written, one metric family at a time: HELP and TYPE, then samples.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(name.starts_with("gatehouse_"), "{name}");
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Counter, help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text: backslash and newline escaped (quotes stay).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The whole exposition.
fn render(state: &AppState) -> String {
    let s = status::collect(state);
    let mut m = Exposition::default();

    m.family(
        "gatehouse_info",
        Kind::Gauge,
        "The router's hostname and running build; always 1.",
    );
    m.sample(
        "gatehouse_info",
        &[
            ("hostname", &s.hostname),
            ("version", state.shared.update.version()),
        ],
        1,
    );
    m.gauge(
        "gatehouse_uptime_seconds",
        "Seconds since the router booted.",
        s.uptime_secs,
    );
    m.gauge(
        "gatehouse_config_error",
        "1 when the config file was rejected and the defaults are in force.",
        u64::from(s.config_error.is_some()),
    );
    m.gauge(
        "gatehouse_wan_address_assigned",
        "1 when the WAN port has an IPv4 address.",
        u64::from(s.wan.address.is_some()),
    );
    m.family(
        "gatehouse_wan_carrier",
        Kind::Gauge,
        "1 when the WAN port has a carrier (a cable to a live device), 0 when not; absent while unknown.",
    );
    if let Some(c) = s.wan.carrier {
        m.sample("gatehouse_wan_carrier", &[], u64::from(c));
    }

    // DHCP
    m.gauge(
        "gatehouse_dhcp_active_leases",
        "DHCP leases held now (LAN clients with an address).",
        s.leases.len() as u64,
    );
    let d = &s.dhcp;
    for (name, help, v) in [
        ("received", "DHCP messages received.", d.received),
        (
            "malformed",
            "DHCP messages undecodable, not a BOOTREQUEST, or without a message type.",
            d.malformed,
        ),
        ("offers", "DHCPOFFERs sent.", d.offers),
        (
            "acks",
            "DHCPACKs sent (each once its lease is on disk; ACKs to INFORM included).",
            d.acks,
        ),
        ("naks", "DHCPNAKs sent.", d.naks),
        ("declines", "DHCPDECLINEs received.", d.declines),
        ("releases", "DHCPRELEASEs received.", d.releases),
        (
            "dropped",
            "Well-formed DHCP messages left unanswered (for another server, no address left, ...).",
            d.dropped,
        ),
        (
            "persist_errors",
            "DHCPACKs not sent because their lease could not be written to disk.",
            d.persist_errors,
        ),
        (
            "probes",
            "Addresses ping-checked before being offered.",
            d.probes,
        ),
        (
            "conflicts",
            "Ping-checked addresses that answered (in use) and were skipped.",
            d.conflicts,
        ),
    ] {
        m.counter(&format!("gatehouse_dhcp_{name}_total"), help, v);
    }

    // DNS
    let dns = &s.dns;
    for (name, help, v) in [
        (
            "queries",
            "DNS messages received from clients, well-formed or not.",
            &dns.queries,
        ),
        (
            "forwarded",
            "DNS queries answered by an upstream resolver.",
            &dns.forwarded,
        ),
        (
            "cache_hits",
            "DNS queries answered from the cache (negative answers included).",
            &dns.cache_hits,
        ),
        (
            "negative_cache_hits",
            "DNS cache hits that were NXDOMAIN/NODATA answers.",
            &dns.negative_cache_hits,
        ),
        (
            "local_answers",
            "DNS queries for local names answered by the router.",
            &dns.local_answers,
        ),
        ("blocked", "DNS queries for blocked names.", &dns.blocked),
        (
            "malformed",
            "DNS client messages dropped or answered FORMERR.",
            &dns.malformed,
        ),
        (
            "upstream_failures",
            "Failed exchanges with one upstream resolver (a query that fails over counts once per upstream tried).",
            &dns.upstream_failures,
        ),
        (
            "spoofed_rejected",
            "Upstream-side DNS replies ignored for a wrong source, ID or question.",
            &dns.spoofed_rejected,
        ),
        (
            "dropped_busy",
            "UDP DNS queries dropped because too many were waiting for upstreams.",
            &dns.dropped_busy,
        ),
    ] {
        m.counter(&format!("gatehouse_dns_{name}_total"), help, v.load(Relaxed));
    }
    m.gauge(
        "gatehouse_dns_cache_entries",
        "Answers in the DNS cache.",
        dns.cache.entries.load(Relaxed),
    );
    m.gauge(
        "gatehouse_dns_cache_bytes",
        "Bytes the DNS cache's answers take.",
        dns.cache.bytes.load(Relaxed),
    );
    m.counter(
        "gatehouse_dns_cache_evictions_total",
        "DNS cache entries evicted to make room.",
        dns.cache.evictions.load(Relaxed),
    );
    // Lists are named in the config, which does not insist on distinct names: merge them
    // so that no series appears twice.
    let mut lists: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for l in dns.blocklist_stats() {
        let e = lists.entry(l.name.clone()).or_default();
        e.0 += l.entries;
        e.1 += l.blocked.load(Relaxed);
    }
    m.family(
        "gatehouse_dns_blocklist_entries",
        Kind::Gauge,
        "Names loaded from each DNS blocklist.",
    );
    for (name, (entries, _)) in &lists {
        m.sample(
            "gatehouse_dns_blocklist_entries",
            &[("list", name)],
            *entries,
        );
    }
    m.family(
        "gatehouse_dns_blocklist_blocked_total",
        Kind::Counter,
        "DNS queries answered as blocked because of each blocklist.",
    );
    for (name, (_, blocked)) in &lists {
        m.sample(
            "gatehouse_dns_blocklist_blocked_total",
            &[("list", name)],
            *blocked,
        );
    }

    // NAT
    let n = &s.nat;
    m.gauge(
        "gatehouse_nat_mappings",
        "NAT mappings held now.",
        n.mappings as u64,
    );
    m.gauge(
        "gatehouse_nat_forwards",
        "Port forwards in force.",
        n.forwards as u64,
    );
    m.gauge(
        "gatehouse_nat_persistent",
        "1 while the NAT mapping table is kept in the run dir (a restart then keeps every flow).",
        u64::from(n.persistent),
    );
    m.gauge(
        "gatehouse_nat_unsaved_mappings",
        "NAT mappings the kept copy of the table has no room for.",
        n.unsaved as u64,
    );
    for (name, help, v) in [
        (
            "translated_out_packets",
            "Packets translated from the LAN to the WAN.",
            n.translated_out,
        ),
        (
            "translated_in_packets",
            "Packets translated from the WAN to the LAN.",
            n.translated_in,
        ),
        (
            "hairpinned_packets",
            "LAN packets to a mapped or forwarded port of the WAN address, sent back into the LAN.",
            n.hairpinned,
        ),
        (
            "to_router_packets",
            "LAN packets to the WAN address that no mapping claims, left to the router's own stack.",
            n.to_router,
        ),
        (
            "recv_errors",
            "Errors receiving from the NAT packet queue.",
            n.recv_errors,
        ),
        (
            "verdict_errors",
            "Errors returning a verdict to the NAT packet queue.",
            n.verdict_errors,
        ),
        ("expired_mappings", "NAT mappings expired.", n.expired),
        (
            "forward_reloads",
            "Reloads of the port forwards (SIGHUP) that were applied.",
            n.forward_reloads,
        ),
        (
            "forward_reload_errors",
            "Reloads of the port forwards (SIGHUP) that were refused.",
            n.forward_reload_errors,
        ),
        (
            "restored_mappings",
            "NAT mappings put back at startup from the copy an earlier run kept.",
            n.restored,
        ),
        (
            "restore_skipped_records",
            "Saved NAT entries not put back at startup: damaged or contradicting another.",
            n.restore_skipped,
        ),
        (
            "restore_rejected_files",
            "Saved NAT tables not read at startup: another format or version.",
            n.restore_rejected,
        ),
        (
            "persist_errors",
            "Failures to create or write the kept copy of the NAT table.",
            n.persist_errors,
        ),
    ] {
        m.counter(&format!("gatehouse_nat_{name}_total"), help, v);
    }
    m.family(
        "gatehouse_nat_dropped_packets_total",
        Kind::Counter,
        "Packets the NAT dropped, by reason.",
    );
    for (reason, v) in n.drops() {
        m.sample(
            "gatehouse_nat_dropped_packets_total",
            &[("reason", reason)],
            v,
        );
    }

    // Traffic history and capture
    let t = &state.shared.traffic;
    let (hist, devices) = status::history_day(t, crate::clock::unix_ms(), MAX_DEVICE_SERIES);
    m.gauge(
        "gatehouse_traffic_history_memory_bytes",
        "Memory the traffic history holds.",
        hist.memory_bytes as u64,
    );
    m.gauge(
        "gatehouse_traffic_history_memory_limit_bytes",
        "Memory bound of the traffic history; the oldest data goes when it is hit.",
        hist.memory_limit as u64,
    );
    m.gauge(
        "gatehouse_traffic_history_clients",
        "Devices the traffic history knows.",
        hist.clients as u64,
    );
    m.counter(
        "gatehouse_traffic_history_records_total",
        "Packets recorded in the traffic history.",
        hist.records,
    );
    m.gauge(
        "gatehouse_traffic_capture_memory_bytes",
        "Memory the per-device packet capture rings hold.",
        t.captures().memory_bytes() as u64,
    );
    m.counter(
        "gatehouse_traffic_unknown_client_packets_total",
        "Forwarded packets whose LAN address matched no lease or neighbour entry.",
        t.counters.unknown_client_packets.load(Relaxed),
    );
    m.counter(
        "gatehouse_traffic_tap_dropped_packets_total",
        "Forwarded packets not recorded because the traffic collector was behind.",
        t.tap.dropped_packets.load(Relaxed),
    );
    m.family(
        "gatehouse_traffic_device_bytes",
        Kind::Gauge,
        "Bytes each LAN device sent (direction=up) and received (direction=down) over the last 24 hours \
         of traffic history, busiest devices only; a gauge, as old traffic ages out.",
    );
    for d in &devices {
        let Some(mac) = d.client else { continue };
        let mac = status::format_mac(&mac);
        for (dir, v) in [("up", d.counts.up_bytes), ("down", d.counts.down_bytes)] {
            m.sample(
                "gatehouse_traffic_device_bytes",
                &[("mac", &mac), ("direction", dir)],
                v,
            );
        }
    }
    m.out
}

/// GET /metrics
pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::context::Context;
    use crate::dhcp::lease_store::{Lease, LeaseStore};
    use crate::traffic::Traffic;
    use crate::update::fake::FakeInstaller;
    use crate::update::{Paths, Update};
    use crate::web::session::Auth;
    use crate::web::{router, Shared};
    use axum::body::{to_bytes, Body};
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use base64::Engine as _;
    use std::collections::{HashMap, HashSet};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    const PASSWORD: &str = "correct horse";
    const PEER: [u8; 4] = [192, 168, 1, 10];

    struct Lab {
        state: AppState,
        dir: PathBuf,
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The app over a data directory of its own, with the admin password set.
    fn lab(tag: &str, hostname: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("gh-metrics-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = Config::default();
        cfg.system.hostname = hostname.into();
        let (_tx, wan) = tokio::sync::watch::channel(crate::wan::WanStatus::default());
        let ctx = Context {
            config: Arc::new(cfg.clone()),
            config_error: None,
            run_dir: dir.clone(),
            wan,
        };
        let auth = Arc::new(Auth::open(&dir));
        auth.set_password(PASSWORD).unwrap();
        let shared = Shared {
            leases: Arc::new(Mutex::new(
                LeaseStore::open(&dir.join("leases.json"), 16).unwrap(),
            )),
            dhcp: Default::default(),
            dns: Default::default(),
            nat: Default::default(),
            traffic: Arc::new(Traffic::new(&cfg, &dir)),
            auth,
            update: Arc::new(Update::new(
                Arc::new(FakeInstaller::new("gatehouse-x86_64", "0.1.0")),
                Paths::new(dir.join("gatehouse.toml"), &dir),
                Arc::new(|| Err("no reboots in tests".into())),
            )),
            log_socket: Arc::from(dir.join("log.sock").to_str().unwrap()),
            config: Arc::new(crate::config::edit::ConfigFile::new(
                dir.join("gatehouse.toml"),
                Arc::new(cfg.clone()),
                None,
            )),
            host: Default::default(),
            listeners: Default::default(),
        };
        Lab {
            state: AppState { ctx, shared },
            dir,
        }
    }

    struct Reply {
        status: StatusCode,
        headers: axum::http::HeaderMap,
        body: String,
    }

    /// GET /metrics through the real router (auth middleware included) from `PEER`.
    async fn scrape(l: &Lab, headers: &[(header::HeaderName, String)]) -> Reply {
        let mut b = Request::builder().method("GET").uri("/metrics");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let mut req = b.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((PEER, 50000))));
        let resp = router(l.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    fn basic(user: &str, pw: &str) -> (header::HeaderName, String) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        (header::AUTHORIZATION, format!("Basic {b64}"))
    }

    fn assert_challenge(r: &Reply) {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert_eq!(
            r.headers
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Basic realm=\"gatehouse\"")
        );
        assert!(r.headers.get(header::LOCATION).is_none(), "redirected");
        assert!(!r.body.contains("# TYPE"), "metrics leaked: {}", r.body);
    }

    async fn scrape_ok(l: &Lab) -> String {
        let r = scrape(l, &[basic("admin", PASSWORD)]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    /// One sample line: name, labels (unescaped), value.
    type Sample = (String, Vec<(String, String)>, f64);

    fn is_name(s: &str, colon: bool) -> bool {
        let mut cs = s.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }

    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let (k, r) = rest.split_once("=\"").ok_or("label without =\"")?;
                if !is_name(k, false) {
                    return Err(format!("bad label name {k:?}"));
                }
                let mut v = String::new();
                let mut cs = r.char_indices();
                let end = loop {
                    match cs.next().ok_or("unterminated label value")? {
                        (i, '"') => break i,
                        (_, '\\') => match cs.next().ok_or("dangling backslash")?.1 {
                            '\\' => v.push('\\'),
                            '"' => v.push('"'),
                            'n' => v.push('\n'),
                            c => return Err(format!("bad escape \\{c}")),
                        },
                        (_, '\n') => return Err("raw newline".into()),
                        (_, c) => v.push(c),
                    }
                };
                labels.push((k.to_string(), v));
                rest = &r[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let value: f64 = value.parse().map_err(|e| format!("value {value:?}: {e}"))?;
        if !value.is_finite() {
            return Err(format!("value {value}"));
        }
        Ok((name.to_string(), labels, value))
    }

    /// Checks the text format strictly enough for Prometheus: each family's HELP and TYPE
    /// once and before its samples, samples grouped under their family, no series twice.
    fn parse(text: &str) -> Vec<Sample> {
        assert!(text.ends_with('\n'), "no final newline");
        let mut helps = HashSet::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut family: Option<String> = None;
        let mut series = HashSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(r) = line.strip_prefix("# HELP ") {
                let (name, help) = r.split_once(' ').expect(line);
                assert!(is_name(name, true) && !help.is_empty(), "{line}");
                assert!(helps.insert(name.to_string()), "HELP twice: {line}");
                assert!(!types.contains_key(name), "HELP after TYPE: {line}");
            } else if let Some(r) = line.strip_prefix("# TYPE ") {
                let (name, kind) = r.split_once(' ').expect(line);
                assert!(helps.contains(name), "TYPE without HELP: {line}");
                assert!(matches!(kind, "counter" | "gauge"), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                assert!(name.starts_with("gatehouse_"), "{line}");
                assert!(
                    types.insert(name.into(), kind.into()).is_none(),
                    "TYPE twice: {line}"
                );
                family = Some(name.to_string());
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
                let s = parse_sample(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
                assert_eq!(family.as_deref(), Some(s.0.as_str()), "stray sample {line}");
                if types[&s.0] == "counter" {
                    assert!(s.2 >= 0.0, "{line}");
                }
                assert!(series.insert((s.0.clone(), s.1.clone())), "twice: {line}");
                samples.push(s);
            }
        }
        assert_eq!(helps.len(), types.len());
        samples
    }

    #[tokio::test]
    async fn no_credentials_get_a_basic_challenge() {
        let l = lab("none", "gw");
        assert_challenge(&scrape(&l, &[]).await);
        // Not Basic, or not decodable: the same.
        assert_challenge(&scrape(&l, &[(header::AUTHORIZATION, "Bearer x".into())]).await);
        assert_challenge(&scrape(&l, &[(header::AUTHORIZATION, "Basic %%%".into())]).await);
        // A stale session cookie is no credential either.
        assert_challenge(&scrape(&l, &[(header::COOKIE, "gh_session=nope".into())]).await);
    }

    #[tokio::test]
    async fn wrong_credentials_are_refused_and_throttled_like_logins() {
        let l = lab("wrong", "gw");
        assert_challenge(&scrape(&l, &[basic("admin", "guess")]).await);
        assert_challenge(&scrape(&l, &[basic("root", PASSWORD)]).await);
        // The login throttle counts Basic failures: a few more and the address is locked
        // out, for Basic and for the login form alike, even with the right password.
        for _ in 0..3 {
            assert_challenge(&scrape(&l, &[basic("admin", "guess")]).await);
        }
        let r = scrape(&l, &[basic("admin", PASSWORD)]).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
        assert!(r.headers.get(header::RETRY_AFTER).is_some());
        let peer = IpAddr::V4(Ipv4Addr::from(PEER));
        assert!(matches!(
            l.state
                .shared
                .auth
                .verify(peer, PASSWORD, std::time::Instant::now()),
            Err(crate::web::session::LoginError::Throttled(_))
        ));
    }

    #[tokio::test]
    async fn a_session_cookie_is_enough() {
        let l = lab("session", "gw");
        let (token, _) = l.state.shared.auth.start_session(std::time::Instant::now());
        let r = scrape(&l, &[(header::COOKIE, format!("gh_session={token}"))]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body.contains("# TYPE gatehouse_uptime_seconds gauge\n"));
    }

    #[tokio::test]
    async fn basic_credentials_are_enough() {
        let l = lab("basic", "gw");
        let r = scrape(&l, &[basic("admin", PASSWORD)]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(r
            .body
            .contains("# TYPE gatehouse_dns_queries_total counter\n"));
    }

    #[tokio::test]
    async fn basic_credentials_open_nothing_else() {
        let l = lab("elsewhere", "gw");
        let mut req = Request::builder()
            .uri("/api/status")
            .header(header::AUTHORIZATION, basic("admin", PASSWORD).1)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((PEER, 50000))));
        let resp = router(l.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[tokio::test]
    async fn the_body_is_prometheus_text() {
        let l = lab("parse", "gw");
        let now = crate::clock::unix_now();
        let mut lease = Lease {
            mac: [2, 0, 0, 0, 0, 1],
            ip: Ipv4Addr::new(192, 168, 1, 100),
            hostname: Some("laptop".into()),
            expires: now + 3600,
            client_id: None,
        };
        {
            let mut store = l.state.shared.leases.lock().unwrap();
            store.bind(lease.clone(), now).unwrap();
            lease.mac = [2, 0, 0, 0, 0, 2];
            lease.ip = Ipv4Addr::new(192, 168, 1, 101);
            lease.expires = now - 1;
            store.bind(lease, now).unwrap();
        }
        let samples = parse(&scrape_ok(&l).await);
        let value = |name: &str| {
            samples
                .iter()
                .find(|s| s.0 == name && s.1.is_empty())
                .unwrap_or_else(|| panic!("no {name}"))
                .2
        };
        assert_eq!(
            value("gatehouse_dhcp_active_leases"),
            1.0,
            "expired lease counted"
        );
        assert_eq!(value("gatehouse_dhcp_malformed_total"), 0.0);
        assert_eq!(value("gatehouse_nat_mappings"), 0.0);
        assert!(value("gatehouse_traffic_history_memory_limit_bytes") > 0.0);
        let drops: Vec<_> = samples
            .iter()
            .filter(|s| s.0 == "gatehouse_nat_dropped_packets_total")
            .collect();
        assert_eq!(drops.len(), 9);
        assert!(drops.iter().all(|s| s.1[0].0 == "reason"));
    }

    #[tokio::test]
    async fn bumped_counters_show() {
        let l = lab("bump", "gw");
        let sh = &l.state.shared;
        sh.dhcp.malformed.fetch_add(3, Relaxed);
        sh.dhcp.acks.fetch_add(2, Relaxed);
        sh.dns.queries.fetch_add(7, Relaxed);
        sh.dns.upstream_failures.fetch_add(1, Relaxed);
        let now = crate::clock::unix_ms();
        sh.traffic.history().ingest(&[
            traffic_history::Record {
                t_ms: now - 1000,
                client: [2, 0, 0, 0, 0, 1],
                remote: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
                dir: traffic_history::Dir::Up,
                bytes: 1500,
            },
            traffic_history::Record {
                t_ms: now - 900,
                client: [2, 0, 0, 0, 0, 1],
                remote: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
                dir: traffic_history::Dir::Down,
                bytes: 400,
            },
        ]);
        let body = scrape_ok(&l).await;
        parse(&body);
        for line in [
            "gatehouse_dhcp_malformed_total 3",
            "gatehouse_dhcp_acks_total 2",
            "gatehouse_dns_queries_total 7",
            "gatehouse_dns_upstream_failures_total 1",
            "gatehouse_traffic_history_records_total 2",
            "gatehouse_traffic_device_bytes{mac=\"02:00:00:00:00:01\",direction=\"up\"} 1500",
            "gatehouse_traffic_device_bytes{mac=\"02:00:00:00:00:01\",direction=\"down\"} 400",
        ] {
            assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
        }
    }

    #[tokio::test]
    async fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("a \"q\" b\\c\nd"), "a \"q\" b\\\\c\\nd");
        let hostile = "gw\"} 1\n# x\\";
        let l = lab("escape", hostile);
        let body = scrape_ok(&l).await;
        assert!(
            body.contains("gatehouse_info{hostname=\"gw\\\"} 1\\n# x\\\\\",version="),
            "{body}"
        );
        let samples = parse(&body);
        let info = samples
            .iter()
            .find(|s| s.0 == "gatehouse_info")
            .expect("gatehouse_info");
        assert_eq!(info.1[0], ("hostname".to_string(), hostile.to_string()));
        assert_eq!(info.2, 1.0);
    }
}
