//! Traffic history, live stream and packet capture over HTTP: `/api/traffic...` and
//! `/api/capture...`. Query parsing is pure (`TimeRange::parse`) so it is tested without a
//! server; the handlers only lock, query and format.

use super::AppState;
use crate::config::parse_mac;
use crate::dhcp::lease_store::format_mac;
use crate::traffic::Traffic;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use packet_capture::Format;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use traffic_history::{Counts, GroupBy, Mac};

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub client: Option<String>,
    pub remote: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub res: Option<String>,
    pub by: Option<String>,
    pub n: Option<usize>,
    pub format: Option<String>,
}

fn bad(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg + "\n").into_response()
}

/// A duration like "100ms", "5s", "1m", "2h", "1d", or plain milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A time: Unix milliseconds, "now", or "-<duration>" before now.
pub fn parse_time_ms(s: &str, now: u64) -> Option<u64> {
    match s.trim() {
        "now" => Some(now),
        t if t.starts_with('-') => Some(now.saturating_sub(parse_duration_ms(&t[1..])?)),
        t => t.parse().ok(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: u64,
    pub to: u64,
    pub res: u64,
}

impl TimeRange {
    /// Defaults: the last hour, at a resolution giving at most ~3600 points.
    pub fn parse(p: &Params, now: u64) -> Result<Self, String> {
        let to = match &p.to {
            Some(t) => parse_time_ms(t, now).ok_or(format!("bad 'to': {t:?}"))?,
            None => now,
        };
        let from = match &p.from {
            Some(f) => parse_time_ms(f, now).ok_or(format!("bad 'from': {f:?}"))?,
            None => to.saturating_sub(3_600_000),
        };
        if from > to {
            return Err("'from' is after 'to'".into());
        }
        let res = match &p.res {
            Some(r) => parse_duration_ms(r).ok_or(format!(
                "bad 'res': {r:?} (use 100ms, 1s, 1m, 1h or milliseconds)"
            ))?,
            None => {
                const STEPS: [u64; 6] = [100, 1_000, 10_000, 60_000, 600_000, 3_600_000];
                let want = (to - from) / 3600;
                *STEPS.iter().find(|&&s| s >= want).unwrap_or(&3_600_000)
            }
        };
        Ok(Self { from, to, res })
    }
}

fn parse_client(p: &Params) -> Result<Option<Mac>, String> {
    p.client
        .as_deref()
        .map(|c| parse_mac(c).ok_or_else(|| format!("bad 'client': {c:?} (aa:bb:cc:dd:ee:ff)")))
        .transpose()
}

fn parse_remote(p: &Params) -> Result<Option<IpAddr>, String> {
    p.remote
        .as_deref()
        .map(|r| r.parse().map_err(|_| format!("bad 'remote': {r:?}")))
        .transpose()
}

fn wants_csv(p: &Params) -> Result<bool, String> {
    match p.format.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(f) => Err(format!("bad 'format': {f:?} (json or csv)")),
    }
}

/// Defaults `from` to a day back (top talkers and summaries are about the day).
fn day_range(p: &Params) -> Result<TimeRange, String> {
    let p = Params {
        from: p.from.clone().or(Some("-24h".into())),
        to: p.to.clone(),
        ..Default::default()
    };
    TimeRange::parse(&p, crate::clock::unix_ms())
}

fn csv(body: String, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// Device names by MAC, from the DHCP leases.
fn client_names(s: &AppState) -> HashMap<Mac, String> {
    let Ok(store) = s.shared.leases.lock() else {
        return HashMap::new();
    };
    store
        .leases()
        .filter_map(|l| Some((l.mac, l.hostname.clone()?)))
        .collect()
}

fn remote_name(s: &AppState, ip: &IpAddr) -> Option<String> {
    s.shared.dns.names.get(ip).map(|n| n.to_string())
}

#[derive(serde::Serialize)]
struct Point {
    t_ms: u64,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(serde::Serialize)]
struct SeriesJson {
    client: Option<String>,
    client_name: Option<String>,
    remote: Option<IpAddr>,
    remote_name: Option<String>,
    from_ms: u64,
    to_ms: u64,
    res_ms: u64,
    /// How far back the history reaches now.
    oldest_ms: Option<u64>,
    points: Vec<Point>,
}

/// GET /api/traffic: one series, summed over the matching (client, remote) pairs.
pub async fn series(State(s): State<AppState>, Query(p): Query<Params>) -> Response {
    series_of(&s, &p).unwrap_or_else(bad)
}

fn series_of(s: &AppState, p: &Params) -> Result<Response, String> {
    let (client, remote, csv_out) = (parse_client(p)?, parse_remote(p)?, wants_csv(p)?);
    let r = TimeRange::parse(p, crate::clock::unix_ms())?;
    let (points, oldest) = {
        let h = s.shared.traffic.history();
        let pts = h
            .series(client, remote, r.from, r.to, r.res)
            .map_err(|e| e.to_string())?;
        (pts, h.oldest_ms())
    };
    if csv_out {
        let mut body = String::from("t_ms,up_bytes,down_bytes,up_packets,down_packets\n");
        for pt in &points {
            let c = &pt.counts;
            let _ = writeln!(
                body,
                "{},{},{},{},{}",
                pt.t_ms, c.up_bytes, c.down_bytes, c.up_packets, c.down_packets
            );
        }
        return Ok(csv(body, &format!("traffic-{}-{}", r.from, r.to)));
    }
    let names = client_names(s);
    Ok(Json(SeriesJson {
        client: client.map(|c| format_mac(&c)),
        client_name: client.and_then(|c| names.get(&c).cloned()),
        remote,
        remote_name: remote.as_ref().and_then(|ip| remote_name(s, ip)),
        from_ms: r.from,
        to_ms: r.to,
        res_ms: r.res,
        oldest_ms: oldest,
        points: points
            .into_iter()
            .map(|pt| Point {
                t_ms: pt.t_ms,
                counts: pt.counts,
            })
            .collect(),
    })
    .into_response())
}

#[derive(serde::Serialize)]
struct TalkerJson {
    client: Option<String>,
    client_name: Option<String>,
    remote: Option<IpAddr>,
    remote_name: Option<String>,
    #[serde(flatten)]
    counts: Counts,
}

/// GET /api/traffic/top: top talkers, by client, remote or pair.
pub async fn top(State(s): State<AppState>, Query(p): Query<Params>) -> Response {
    top_of(&s, &p).unwrap_or_else(bad)
}

fn top_of(s: &AppState, p: &Params) -> Result<Response, String> {
    let (client, csv_out) = (parse_client(p)?, wants_csv(p)?);
    let by = match p.by.as_deref() {
        None | Some("remote") => GroupBy::Remote,
        Some("client") => GroupBy::Client,
        Some("pair") => GroupBy::Pair,
        Some(b) => return Err(format!("bad 'by': {b:?} (client, remote or pair)")),
    };
    let r = day_range(p)?;
    let n = p.n.unwrap_or(20).min(1000);
    let talkers = s.shared.traffic.history().top(client, by, r.from, r.to, n);
    let names = client_names(s);
    let rows: Vec<TalkerJson> = talkers
        .into_iter()
        .map(|t| TalkerJson {
            client: t.client.map(|c| format_mac(&c)),
            client_name: t.client.and_then(|c| names.get(&c).cloned()),
            remote: t.remote,
            remote_name: t.remote.as_ref().and_then(|ip| remote_name(s, ip)),
            counts: t.counts,
        })
        .collect();
    if csv_out {
        let mut body = String::from(
            "client,client_name,remote,remote_name,up_bytes,down_bytes,up_packets,down_packets\n",
        );
        for r in &rows {
            let c = &r.counts;
            let _ = writeln!(
                body,
                "{},{},{},{},{},{},{},{}",
                r.client.as_deref().unwrap_or(""),
                csv_field(r.client_name.as_deref().unwrap_or("")),
                r.remote.map(|i| i.to_string()).unwrap_or_default(),
                csv_field(r.remote_name.as_deref().unwrap_or("")),
                c.up_bytes,
                c.down_bytes,
                c.up_packets,
                c.down_packets
            );
        }
        return Ok(csv(body, "top-talkers"));
    }
    Ok(Json(rows).into_response())
}

/// Names come from DHCP clients and DNS: quote them, and keep a spreadsheet from reading
/// one as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// GET /api/traffic/summary: totals, peak rates, first and last seen.
pub async fn summary(State(s): State<AppState>, Query(p): Query<Params>) -> Response {
    let run = || -> Result<Response, String> {
        let (client, remote) = (parse_client(&p)?, parse_remote(&p)?);
        let r = day_range(&p)?;
        let sum = s
            .shared
            .traffic
            .history()
            .summary(client, remote, r.from, r.to);
        Ok(Json(sum).into_response())
    };
    run().unwrap_or_else(bad)
}

/// GET /api/traffic/stats: memory use, reach, and the recorder's counters.
pub async fn stats(State(s): State<AppState>) -> Response {
    let t = &s.shared.traffic;
    let history = t.history().stats();
    let capture_bytes = t.captures().memory_bytes();
    Json(serde_json::json!({
        "history": history,
        "capture_memory_bytes": capture_bytes,
        "recorder": &t.counters,
        "dropped_batches": t.tap.dropped_batches.load(Relaxed),
        "dropped_packets": t.tap.dropped_packets.load(Relaxed),
        "names": s.shared.dns.names.len(),
    }))
    .into_response()
}

#[derive(serde::Serialize)]
struct LiveFlowJson<'a> {
    client: String,
    client_name: Option<&'a str>,
    remote: IpAddr,
    remote_name: Option<String>,
    #[serde(flatten)]
    counts: Counts,
}

/// GET /api/traffic/live (WebSocket): one JSON message per 100 ms tick,
/// `{"t_ms":..,"flows":[..]}`, optionally for one client. A subscriber that falls behind
/// skips ticks (counted); one that stops reading is disconnected. Neither ever holds up
/// the collector, which only ever does a non-blocking broadcast.
pub async fn live(
    State(s): State<AppState>,
    Query(p): Query<Params>,
    ws: WebSocketUpgrade,
) -> Response {
    let client = match parse_client(&p) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    ws.on_upgrade(move |sock| stream_live(s, client, sock))
}

async fn stream_live(s: AppState, client: Option<Mac>, mut sock: WebSocket) {
    let t: std::sync::Arc<Traffic> = s.shared.traffic.clone();
    let mut rx = t.live.subscribe();
    t.counters.live_subscribers.fetch_add(1, Relaxed);
    let mut names = client_names(&s);
    let mut names_at = std::time::Instant::now();
    loop {
        let tick = tokio::select! {
            r = rx.recv() => r,
            // Notice a client that closed while nothing was sent.
            m = sock.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
        };
        let tick = match tick {
            Ok(t) => t,
            Err(RecvError::Lagged(n)) => {
                t.counters.live_lagged.fetch_add(n, Relaxed);
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        if names_at.elapsed() > Duration::from_secs(5) {
            names = client_names(&s);
            names_at = std::time::Instant::now();
        }
        let flows: Vec<LiveFlowJson> = tick
            .flows
            .iter()
            .filter(|(m, ..)| client.is_none_or(|c| c == *m))
            .map(|(m, r, c)| LiveFlowJson {
                client: format_mac(m),
                client_name: names.get(m).map(String::as_str),
                remote: *r,
                remote_name: remote_name(&s, r),
                counts: *c,
            })
            .collect();
        let text = serde_json::json!({ "t_ms": tick.t_ms, "flows": flows }).to_string();
        let limit = Duration::from_millis(u64::from(t.live_send_timeout_ms.load(Relaxed)));
        match tokio::time::timeout(limit, sock.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                t.counters.live_slow_dropped.fetch_add(1, Relaxed);
                break;
            }
        }
    }
    t.counters.live_subscribers.fetch_sub(1, Relaxed);
}

/// GET /api/capture: every device with a capture ring.
pub async fn capture_list(State(s): State<AppState>) -> Response {
    let list = s.shared.traffic.captures().clients();
    Json(list).into_response()
}

/// GET /api/capture/{mac}?format=pcapng|pcap&from=&to=: the device's packets as a file
/// named after the device and the time span.
pub async fn capture_download(
    State(s): State<AppState>,
    Path(mac): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let Some(m) = parse_mac(&mac) else {
        return bad(format!("bad client {mac:?} (aa:bb:cc:dd:ee:ff)"));
    };
    let format = match p.format.as_deref() {
        None | Some("pcapng") => Format::PcapNg,
        Some("pcap") => Format::Pcap,
        Some(f) => return bad(format!("bad 'format': {f:?} (pcapng or pcap)")),
    };
    let now = crate::clock::unix_ms();
    let ns = |v: &Option<String>| -> Result<Option<u64>, String> {
        v.as_deref()
            .map(|t| {
                parse_time_ms(t, now)
                    .map(|ms| ms.saturating_mul(1_000_000))
                    .ok_or_else(|| format!("bad time {t:?}"))
            })
            .transpose()
    };
    let (from, to) = match (ns(&p.from), ns(&p.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let name = client_names(&s)
        .remove(&m)
        .unwrap_or_else(|| format_mac(&m));
    // Copy under the lock, encode after releasing it: the collector keeps running.
    let snap = s.shared.traffic.captures().snapshot(&m, from, to);
    let Some(snap) = snap else {
        return (StatusCode::NOT_FOUND, "no packets held for this client\n").into_response();
    };
    let comment = format!(
        "Gatehouse capture of {name} ({}), LAN-side view",
        format_mac(&m)
    );
    let x = snap.encode(format, &name, Some(&comment));
    let file = packet_capture::file_name(&name, x.first_ns, x.last_ns, format);
    (
        [
            (header::CONTENT_TYPE, format.mime().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        x.bytes,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct Toggle {
    pub enabled: bool,
}

/// POST /api/capture/{mac}?enabled=true|false: switch one device's capture (until restart;
/// `capture.disabled_clients` in the config makes it permanent). Like every POST, it needs
/// the session's CSRF token (checked in `auth::require`).
pub async fn capture_toggle(
    State(s): State<AppState>,
    Path(mac): Path<String>,
    Query(q): Query<Toggle>,
) -> Response {
    let Some(m) = parse_mac(&mac) else {
        return bad(format!("bad client {mac:?} (aa:bb:cc:dd:ee:ff)"));
    };
    s.shared.traffic.captures().set_client_enabled(m, q.enabled);
    Json(serde_json::json!({ "client": format_mac(&m), "enabled": q.enabled })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration_ms("100ms"), Some(100));
        assert_eq!(parse_duration_ms("250"), Some(250));
        assert_eq!(parse_duration_ms("1m"), Some(60_000));
        assert_eq!(parse_duration_ms("24h"), Some(86_400_000));
        assert_eq!(parse_duration_ms("1w"), None);
        assert_eq!(parse_duration_ms("m"), None);
        assert_eq!(parse_time_ms("now", 5000), Some(5000));
        assert_eq!(parse_time_ms("-1s", 5000), Some(4000));
        assert_eq!(parse_time_ms("-1h", 5000), Some(0));
        assert_eq!(parse_time_ms("1234", 5000), Some(1234));
        assert_eq!(parse_time_ms("x", 5000), None);
    }

    #[test]
    fn ranges_default_and_validate() {
        let now = 100 * 3_600_000;
        let r = TimeRange::parse(&Params::default(), now).unwrap();
        assert_eq!((r.from, r.to, r.res), (now - 3_600_000, now, 1_000));
        let p = Params {
            from: Some("-24h".into()),
            ..Default::default()
        };
        assert_eq!(TimeRange::parse(&p, now).unwrap().res, 60_000);
        let p = Params {
            from: Some("-1m".into()),
            res: Some("100ms".into()),
            ..Default::default()
        };
        assert_eq!(TimeRange::parse(&p, now).unwrap().res, 100);
        let p = Params {
            from: Some("now".into()),
            to: Some("-1m".into()),
            ..Default::default()
        };
        assert!(TimeRange::parse(&p, now).is_err());
        let p = Params {
            res: Some("fast".into()),
            ..Default::default()
        };
        assert!(TimeRange::parse(&p, now).unwrap_err().contains("res"));
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("tv"), "\"tv\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=cmd()"), "\"'=cmd()\"");
    }
}
