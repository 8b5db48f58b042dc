//! The traffic page: all clients' throughput over a span as a server-drawn SVG chart, with
//! zoom and pan links, and the span's top talkers. Also the pieces the client page shares:
//! the view (span, resolution, zoom and pan), the chart and UTC time labels, all pure.

use super::auth::SessionInfo;
use super::status::format_bytes;
use super::traffic::parse_time_ms;
use super::AppState;
use crate::dhcp::lease_store::format_mac;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use std::fmt::Write as _;
use traffic_history::{GroupBy, Mac};

pub fn routes() -> Router<AppState> {
    Router::new().route("/traffic", get(page))
}

pub const DAY_MS: u64 = 86_400_000;
pub const HOUR_MS: u64 = 3_600_000;
/// The narrowest view: 100 points at the history's 100 ms.
pub const MIN_SPAN_MS: u64 = 10_000;
/// At most this many points per chart: about two pixels each at the chart's width.
const MAX_POINTS: u64 = 360;
/// Resolutions a chart may use: multiples of the history's 100 ms up to its coarsest hour.
const RES_STEPS: [u64; 16] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    900_000, 1_800_000, 3_600_000,
];
/// Parts of the chart a click zooms into.
const BANDS: u64 = 4;

/// Views of an hour or more are drawn at a minute or coarser: whole minutes are read from
/// their totals, while a finer point means decoding every 100 ms bucket of every device
/// (tens of milliseconds per view with a full house).
const WIDE_SPAN_MS: u64 = HOUR_MS;
const WIDE_MIN_RES_MS: u64 = 60_000;

/// The finest resolution that keeps a span within the chart's points.
pub fn resolution(span_ms: u64) -> u64 {
    let floor = if span_ms >= WIDE_SPAN_MS {
        WIDE_MIN_RES_MS
    } else {
        0
    };
    *RES_STEPS
        .iter()
        .find(|&&r| r >= floor && span_ms.div_ceil(r) <= MAX_POINTS)
        .unwrap_or(&3_600_000)
}

/// A time window inside [lo, now], at least `MIN_SPAN_MS` wide (when the bounds allow),
/// and the resolution drawn at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub from: u64,
    pub to: u64,
    pub res: u64,
    pub lo: u64,
    pub now: u64,
}

impl View {
    /// Clamps [from, to] into [lo, now]; a window too narrow is widened around its middle.
    pub fn new(from: u64, to: u64, lo: u64, now: u64) -> Self {
        let lo = lo.min(now);
        let mut to = to.clamp(lo, now);
        let mut from = from.clamp(lo, to);
        if to - from < MIN_SPAN_MS {
            let mid = from + (to - from) / 2;
            from = mid.saturating_sub(MIN_SPAN_MS / 2).max(lo);
            to = (from + MIN_SPAN_MS).min(now);
            from = to.saturating_sub(MIN_SPAN_MS).max(lo);
        }
        View {
            from,
            to,
            res: resolution(to - from),
            lo,
            now,
        }
    }

    pub fn span(&self) -> u64 {
        self.to - self.from
    }

    /// Half the span around the same middle; None when already the narrowest.
    pub fn zoom_in(&self) -> Option<(u64, u64)> {
        if self.span() <= MIN_SPAN_MS {
            return None;
        }
        let span = (self.span() / 2).max(MIN_SPAN_MS);
        let from = self.from + (self.span() - span) / 2;
        Some((from, from + span))
    }

    /// Twice the span around the same middle, shifted to stay inside the bounds; None
    /// when the view already shows everything.
    pub fn zoom_out(&self) -> Option<(u64, u64)> {
        let all = self.now - self.lo;
        if self.span() >= all {
            return None;
        }
        let span = (self.span() * 2).min(all);
        let from = (self.from.saturating_sub(self.span() / 2)).max(self.lo);
        let from = from.min(self.now - span);
        Some((from, from + span))
    }

    /// Half a span back in time; None at the start of the bounds.
    pub fn earlier(&self) -> Option<(u64, u64)> {
        (self.from > self.lo).then(|| {
            let from = self.from.saturating_sub(self.span() / 2).max(self.lo);
            (from, from + self.span())
        })
    }

    /// Half a span forward; None at now.
    pub fn later(&self) -> Option<(u64, u64)> {
        (self.to < self.now).then(|| {
            let to = (self.to + self.span() / 2).min(self.now);
            (to - self.span(), to)
        })
    }

    /// The i-th of n equal parts of the window.
    pub fn part(&self, i: u64, n: u64) -> (u64, u64) {
        let at = |k: u64| self.from + self.span() * k / n;
        (at(i), at(i + 1))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SpanParams {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The view a page's `from`/`to` ask for (Unix ms, "now" or "-1h"), within the last day;
/// `default_span` back from now when `from` is not given.
pub fn view_of(p: &SpanParams, now: u64, default_span: u64) -> Result<View, String> {
    let to = match &p.to {
        Some(t) => parse_time_ms(t, now).ok_or(format!("bad 'to': {t:?}"))?,
        None => now,
    };
    let from = match &p.from {
        Some(f) => parse_time_ms(f, now).ok_or(format!("bad 'from': {f:?}"))?,
        None => to.saturating_sub(default_span),
    };
    if from > to {
        return Err("'from' is after 'to'".into());
    }
    Ok(View::new(from, to, now.saturating_sub(DAY_MS), now))
}

/// `(t_ms, up_bytes, down_bytes)` of the non-empty points in the view, at its resolution.
pub(super) fn points(
    st: &AppState,
    client: Option<Mac>,
    v: &View,
) -> Result<Vec<(u64, u64, u64)>, String> {
    let pts = st
        .shared
        .traffic
        .history()
        .series(client, None, v.from, v.to, v.res)
        .map_err(|e| e.to_string())?;
    Ok(pts
        .iter()
        .map(|p| (p.t_ms, p.counts.up_bytes, p.counts.down_bytes))
        .collect())
}

/// (year, month, day, hour, minute, second) of Unix milliseconds, UTC.
pub fn utc(ms: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// "2026-11-23 05:12:03" (UTC).
pub fn format_utc(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = utc(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// "2m 5s ago", "just now".
pub fn format_ago(ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(ms) / 1000;
    if secs < 2 {
        "just now".into()
    } else {
        format!("{} ago", super::status::format_duration(secs))
    }
}

/// Bits per second in SI units: "1.5 Mbit/s".
pub fn format_rate(bps: f64) -> String {
    const UNITS: [&str; 5] = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
    let mut v = bps.max(0.0);
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 || v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (at least 1).
pub fn nice_ceiling(v: f64) -> f64 {
    let mut step = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * step >= v {
                return m * step;
            }
        }
        step *= 10.0;
    }
}

const WIDTH: f64 = 720.0;
const TOP: f64 = 16.0;
const MID: f64 = 120.0;
const BOTTOM: f64 = 224.0;
/// Tick spacings, smallest first; the chart takes the first giving at most six ticks.
const TICKS: [u64; 17] = [
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000,
];

#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub x: String,
    pub label: String,
    /// "start", "middle" or "end": labels at the edges stay inside the chart.
    pub anchor: &'static str,
}

/// A clickable part of the chart: zooms into its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub x: String,
    pub width: String,
    pub href: String,
    pub title: String,
}

/// A chart ready for the template: download drawn up from the middle line, upload down
/// from it, both as step paths (a point covers its whole interval).
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub down_path: String,
    pub up_path: String,
    pub ticks: Vec<Tick>,
    pub bands: Vec<Band>,
    /// The rate at the top (and bottom) edge.
    pub scale: String,
    pub peak_down: String,
    pub peak_up: String,
    pub total_down: String,
    pub total_up: String,
    pub empty: bool,
    /// "05:10:00 to 06:10:00 UTC", for the title and the caption.
    pub span_label: String,
    pub res_label: String,
}

fn x_of(t: u64, v: &View) -> f64 {
    let t = t.clamp(v.from, v.to);
    (t - v.from) as f64 * WIDTH / v.span().max(1) as f64
}

fn clock_label(t: u64, tick: u64) -> String {
    let (_, mo, d, h, mi, s) = utc(t);
    if t.is_multiple_of(DAY_MS) && tick >= HOUR_MS {
        format!("{mo:02}-{d:02}")
    } else if tick < 60_000 {
        format!("{h:02}:{mi:02}:{s:02}")
    } else {
        format!("{h:02}:{mi:02}")
    }
}

/// One direction's step path, from per-slot rates; `sign` -1 draws upwards from MID.
fn step_path(rates: &[f64], first: u64, v: &View, scale: f64, sign: f64) -> String {
    let reach = if sign < 0.0 { MID - TOP } else { BOTTOM - MID };
    let mut d = String::new();
    let _ = write!(d, "M{:.1},{MID:.1}", x_of(first, v));
    let mut last_y = MID;
    for (k, r) in rates.iter().enumerate() {
        let y = MID + sign * (r / scale).min(1.0) * reach;
        if (y - last_y).abs() > 0.05 {
            let _ = write!(d, "V{y:.1}");
            last_y = y;
        }
        let end = first + (k as u64 + 1) * v.res;
        let _ = write!(d, "H{:.1}", x_of(end, v));
    }
    let _ = write!(d, "V{MID:.1}Z");
    d
}

/// Builds the chart of `points` (`(t_ms, up_bytes, down_bytes)`, any order, aligned to
/// the view's resolution as the history returns them). `href` makes a link to a window.
pub fn chart(points: &[(u64, u64, u64)], v: &View, href: &dyn Fn(u64, u64) -> String) -> Chart {
    let first = v.from - v.from % v.res;
    let slots = (v.to.max(first + 1) - first).div_ceil(v.res) as usize;
    let mut up = vec![0.0; slots];
    let mut down = vec![0.0; slots];
    let per_sec = 8_000.0 / v.res as f64;
    let (mut total_up, mut total_down) = (0u64, 0u64);
    for &(t, u, d) in points {
        let Some(k) = t.checked_sub(first).map(|o| (o / v.res) as usize) else {
            continue;
        };
        if k < slots {
            up[k] += u as f64 * per_sec;
            down[k] += d as f64 * per_sec;
            total_up += u;
            total_down += d;
        }
    }
    let max = |r: &[f64]| r.iter().copied().fold(0.0, f64::max);
    let (peak_up, peak_down) = (max(&up), max(&down));
    let scale = nice_ceiling(peak_up.max(peak_down));
    let tick = *TICKS
        .iter()
        .find(|&&t| v.span() / t <= 6)
        .unwrap_or(&43_200_000);
    let ticks = (v.from.div_ceil(tick)..=v.to / tick)
        .map(|i| i * tick)
        .map(|t| {
            let x = x_of(t, v);
            Tick {
                x: format!("{x:.1}"),
                label: clock_label(t, tick),
                anchor: match x {
                    x if x < 24.0 => "start",
                    x if x > WIDTH - 24.0 => "end",
                    _ => "middle",
                },
            }
        })
        .collect();
    let bands = (0..BANDS)
        .map(|i| {
            let (a, b) = v.part(i, BANDS);
            let (x0, x1) = (x_of(a, v), x_of(b, v));
            Band {
                x: format!("{x0:.1}"),
                width: format!("{:.1}", x1 - x0),
                href: href(a, b),
                title: format!(
                    "Zoom into {} to {}",
                    clock_label(a, 1_000),
                    clock_label(b, 1_000)
                ),
            }
        })
        .collect();
    Chart {
        down_path: step_path(&down, first, v, scale, -1.0),
        up_path: step_path(&up, first, v, scale, 1.0),
        ticks,
        bands,
        scale: format_rate(scale),
        peak_down: format_rate(peak_down),
        peak_up: format_rate(peak_up),
        total_down: format_bytes(total_down),
        total_up: format_bytes(total_up),
        empty: total_up == 0 && total_down == 0,
        span_label: format!("{} to {} UTC", format_utc(v.from), &format_utc(v.to)[11..]),
        res_label: format_res(v.res),
    }
}

/// "100 ms", "5 s", "10 min", "1 h".
pub fn format_res(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{} s", ms / 1_000)
    } else if ms < HOUR_MS {
        format!("{} min", ms / 60_000)
    } else {
        format!("{} h", ms / HOUR_MS)
    }
}

/// The zoom and pan links of a view, as hrefs built by `href`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Nav {
    pub zoom_in: Option<String>,
    pub zoom_out: Option<String>,
    pub earlier: Option<String>,
    pub later: Option<String>,
}

pub fn nav(v: &View, href: &dyn Fn(u64, u64) -> String) -> Nav {
    let link = |w: Option<(u64, u64)>| w.map(|(a, b)| href(a, b));
    Nav {
        zoom_in: link(v.zoom_in()),
        zoom_out: link(v.zoom_out()),
        earlier: link(v.earlier()),
        later: link(v.later()),
    }
}

pub struct TalkerRow {
    pub name: String,
    pub mac: String,
    pub up: String,
    pub down: String,
    /// Share of the span's bytes, "12 %".
    pub share: String,
}

pub struct RemoteRow {
    pub ip: String,
    pub name: String,
    pub up: String,
    pub down: String,
}

#[derive(Template)]
#[template(path = "traffic.html")]
struct TrafficPage {
    hostname: String,
    version: String,
    chart: Chart,
    nav: Nav,
    talkers: Vec<TalkerRow>,
    remotes: Vec<RemoteRow>,
    /// The last 10 s, averaged (the script replaces it with live figures).
    now_down: String,
    now_up: String,
    csv_href: String,
}

const LAST_MS: u64 = 10_000;

/// GET /traffic?from=&to= (default: the last hour).
async fn page(
    State(st): State<AppState>,
    Extension(_s): Extension<SessionInfo>,
    Query(p): Query<SpanParams>,
) -> Response {
    let now = crate::clock::unix_ms();
    let v = match view_of(&p, now, HOUR_MS) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e + "\n").into_response(),
    };
    let pts = match points(&st, None, &v) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e + "\n").into_response(),
    };
    let href = |a: u64, b: u64| format!("/traffic?from={a}&to={b}");
    let (clients, remotes, last) = {
        let h = st.shared.traffic.history();
        (
            h.top(None, GroupBy::Client, v.from, v.to, 20),
            h.top(None, GroupBy::Remote, v.from, v.to, 10),
            h.summary(None, None, now.saturating_sub(LAST_MS), now)
                .counts,
        )
    };
    let names = super::clients::display_names(&st);
    let all: u64 = pts.iter().map(|p| p.1 + p.2).sum();
    let talkers = clients
        .into_iter()
        .filter_map(|t| {
            let mac = t.client?;
            Some(TalkerRow {
                name: names.get(&mac).cloned().unwrap_or_default(),
                mac: format_mac(&mac),
                up: format_bytes(t.counts.up_bytes),
                down: format_bytes(t.counts.down_bytes),
                share: format!("{} %", t.counts.total_bytes() * 100 / all.max(1)),
            })
        })
        .collect();
    let remotes = remotes
        .into_iter()
        .filter_map(|t| {
            let ip = t.remote?;
            Some(RemoteRow {
                name: st
                    .shared
                    .dns
                    .names
                    .get(&ip)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                ip: ip.to_string(),
                up: format_bytes(t.counts.up_bytes),
                down: format_bytes(t.counts.down_bytes),
            })
        })
        .collect();
    let per_sec = 8_000.0 / LAST_MS as f64;
    let page = TrafficPage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        chart: chart(&pts, &v, &href),
        nav: nav(&v, &href),
        talkers,
        remotes,
        now_down: format_rate(last.down_bytes as f64 * per_sec),
        now_up: format_rate(last.up_bytes as f64 * per_sec),
        csv_href: format!(
            "/api/traffic?from={}&to={}&res={}&format=csv",
            v.from, v.to, v.res
        ),
    };
    super::html(&page, axum::http::StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn resolution_follows_the_span_down_to_100ms() {
        assert_eq!(resolution(10_000), 100);
        assert_eq!(resolution(36_000), 100);
        assert_eq!(resolution(36_001), 200);
        assert_eq!(resolution(HOUR_MS - 1), 10_000);
        assert_eq!(resolution(HOUR_MS), 60_000);
        assert_eq!(resolution(DAY_MS), 300_000);
        assert_eq!(resolution(30 * DAY_MS), 3_600_000);
    }

    #[test]
    fn views_are_clamped_and_widened() {
        let lo = NOW - DAY_MS;
        let v = View::new(0, NOW + 5_000, lo, NOW);
        assert_eq!((v.from, v.to), (lo, NOW));
        let v = View::new(NOW - 1_000, NOW - 1_000, lo, NOW);
        assert_eq!((v.from, v.to, v.res), (NOW - MIN_SPAN_MS, NOW, 100));
        let v = View::new(lo, lo, lo, NOW);
        assert_eq!((v.from, v.to), (lo, lo + MIN_SPAN_MS));
    }

    #[test]
    fn zoom_and_pan_stay_inside_the_day() {
        let lo = NOW - DAY_MS;
        let v = View::new(NOW - HOUR_MS, NOW, lo, NOW);
        assert_eq!(
            v.zoom_in(),
            Some((NOW - HOUR_MS + HOUR_MS / 4, NOW - HOUR_MS / 4))
        );
        // Zooming out at the live edge keeps the window ending at now.
        assert_eq!(v.zoom_out(), Some((NOW - 2 * HOUR_MS, NOW)));
        assert_eq!(v.later(), None);
        assert_eq!(
            v.earlier(),
            Some((NOW - HOUR_MS - HOUR_MS / 2, NOW - HOUR_MS / 2))
        );
        let all = View::new(lo, NOW, lo, NOW);
        assert_eq!(
            (all.zoom_out(), all.earlier(), all.later()),
            (None, None, None)
        );
        let narrow = View::new(NOW - MIN_SPAN_MS, NOW, lo, NOW);
        assert_eq!(narrow.zoom_in(), None);
        let early = View::new(lo + 1_000, lo + 1_000 + HOUR_MS, lo, NOW);
        assert_eq!(early.earlier(), Some((lo, lo + HOUR_MS)));
        assert_eq!(early.zoom_out().unwrap().0, lo);
        assert_eq!(v.part(1, 4), (NOW - 3 * HOUR_MS / 4, NOW - HOUR_MS / 2));
    }

    #[test]
    fn view_params_parse_relative_and_absolute_times() {
        let p = SpanParams {
            from: Some("-24h".into()),
            to: None,
        };
        let v = view_of(&p, NOW, HOUR_MS).unwrap();
        assert_eq!((v.from, v.to, v.res), (NOW - DAY_MS, NOW, 300_000));
        let p = SpanParams {
            from: Some((NOW - 20_000).to_string()),
            to: Some((NOW - 10_000).to_string()),
        };
        assert_eq!(view_of(&p, NOW, HOUR_MS).unwrap().res, 100);
        let p = SpanParams {
            from: Some("yesterday".into()),
            to: None,
        };
        assert!(view_of(&p, NOW, HOUR_MS).unwrap_err().contains("from"));
        let p = SpanParams {
            from: Some("-1m".into()),
            to: Some("-1h".into()),
        };
        assert!(view_of(&p, NOW, HOUR_MS).is_err());
    }

    #[test]
    fn utc_labels() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_795_410_723_000), "2026-11-23 05:12:03");
    }

    #[test]
    fn rates_and_scales() {
        assert_eq!(format_rate(0.0), "0 bit/s");
        assert_eq!(format_rate(1_500_000.0), "1.5 Mbit/s");
        assert_eq!(format_rate(250_000_000.0), "250 Mbit/s");
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.5), 2.0);
        assert_eq!(nice_ceiling(3_000.0), 5_000.0);
        assert_eq!(nice_ceiling(10_000.0), 10_000.0);
        assert_eq!(format_res(100), "100 ms");
        assert_eq!(format_res(300_000), "5 min");
    }

    #[test]
    fn chart_paths_step_through_the_points() {
        // 10 s at 100 ms: 100 slots of 7.2 px.
        let v = View::new(NOW - MIN_SPAN_MS, NOW, NOW - DAY_MS, NOW);
        let href = |a: u64, b: u64| format!("/x?from={a}&to={b}");
        let c = chart(
            &[(NOW - 10_000, 1_250, 0), (NOW - 9_900, 0, 625)],
            &v,
            &href,
        );
        // 1250 B in 100 ms = 100 kbit/s; the scale is exactly that.
        assert_eq!(c.scale, "100 kbit/s");
        assert_eq!(c.peak_up, "100 kbit/s");
        assert_eq!(c.peak_down, "50.0 kbit/s");
        assert!(
            c.up_path
                .starts_with("M0.0,120.0V224.0H7.2V120.0H14.4H21.6H28.8"),
            "{}",
            c.up_path
        );
        assert!(c.up_path.ends_with("H720.0V120.0Z"), "{}", c.up_path);
        assert!(
            c.down_path
                .starts_with("M0.0,120.0H7.2V68.0H14.4V120.0H21.6"),
            "{}",
            c.down_path
        );
        assert!(!c.empty);
        assert_eq!(c.total_up, "1.2 KiB");
        assert_eq!(c.bands.len(), 4);
        assert_eq!(
            c.bands[0].href,
            format!("/x?from={}&to={}", NOW - 10_000, NOW - 7_500)
        );
        assert_eq!(
            (c.bands[1].x.as_str(), c.bands[1].width.as_str()),
            ("180.0", "180.0")
        );
        // Ticks every 2 s, on whole seconds.
        assert_eq!(c.ticks.len(), 6);
        assert_eq!((c.ticks[0].x.as_str(), c.ticks[0].anchor), ("0.0", "start"));
        assert_eq!((c.ticks[5].x.as_str(), c.ticks[5].anchor), ("720.0", "end"));
        assert_eq!(c.ticks[2].anchor, "middle");
        // Points outside the view are ignored.
        let e = chart(&[(NOW - DAY_MS, 5, 5)], &v, &href);
        assert!(e.empty);
        assert_eq!(e.up_path, {
            let mut s = String::from("M0.0,120.0");
            for k in 1..=100 {
                let _ = write!(s, "H{:.1}", k as f64 * 7.2);
            }
            s + "V120.0Z"
        });
    }

    #[test]
    fn day_ticks_are_dated_at_midnight() {
        let midnight = NOW - NOW % DAY_MS;
        let v = View::new(
            midnight - 6 * HOUR_MS,
            midnight + 6 * HOUR_MS,
            0,
            midnight + 6 * HOUR_MS,
        );
        let c = chart(&[], &v, &|_, _| String::new());
        let labels: Vec<&str> = c.ticks.iter().map(|t| t.label.as_str()).collect();
        assert!(labels.contains(&"01-15"), "{labels:?}");
        assert!(labels.contains(&"18:00"), "{labels:?}");
    }
}
