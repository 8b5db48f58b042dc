//! The ports page: what listens on the router, the static port forwards (added,
//! edited and deleted with plain forms), and the NAT's live mappings.
//!
//! Forward changes go through `ConfigFile::edit` (validated by the config parser,
//! written atomically, published) and are put in force by `apply::after_edit`.
//! A change that is refused comes back as the page with 400, the reason and the
//! owner's input; one that is saved redirects (303) to the page with a notice.
//! Edits and deletes name a forward by its index and, in the hidden field `was`,
//! by what it was when the page was drawn, so a list changed meanwhile (another
//! tab, SIGHUP) is never edited at the wrong row.

use super::auth::{parse_form, SessionInfo};
use super::listeners::{self, Listener};
use super::status::{format_bytes, format_duration};
use super::AppState;
use crate::config::{Forward, ForwardProtocol, PortRange};
use crate::nat::MappingView;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The procfs the listener table is read from.
const PROC: &str = "/proc";
/// Mappings shown (the busiest); a busy LAN has tens of thousands.
pub const MAX_MAPPINGS: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ports", get(page))
        .route("/api/ports", get(json))
        .route("/ports/forwards", post(add))
        .route("/ports/forwards/{index}", post(edit))
        .route("/ports/forwards/{index}/delete", post(delete))
}

/// A forward as the page and its forms show it.
pub struct ForwardRow {
    pub index: usize,
    pub protocol: &'static str,
    pub external: String,
    pub inside: String,
    /// `key` of the forward, for the forms' `was` field.
    pub key: String,
}

/// The add/edit form's fields, as the owner typed them.
#[derive(Default)]
pub struct ForwardForm {
    /// None: adding.
    pub index: Option<usize>,
    pub protocol: String,
    pub external: String,
    pub inside_ip: String,
    pub inside_port: String,
    pub was: String,
}

pub struct ListenerRow {
    pub proto: &'static str,
    pub address: String,
    pub port: u16,
    pub processes: String,
    pub reach: &'static str,
    pub wan: bool,
}

pub struct MappingRow {
    pub proto: String,
    pub inside: String,
    pub outside: String,
    pub remote: String,
    pub state: &'static str,
    pub idle: String,
    pub left: String,
    pub packets_out: u64,
    pub packets_in: u64,
    pub bytes_out: String,
    pub bytes_in: String,
}

#[derive(Template)]
#[template(path = "ports.html")]
pub struct PortsPage {
    pub hostname: String,
    pub version: String,
    pub csrf: String,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
    pub wan_address: String,
    pub listeners: Vec<ListenerRow>,
    pub forwards: Vec<ForwardRow>,
    pub forwards_in_force: usize,
    pub form: ForwardForm,
    pub mappings: Vec<MappingRow>,
    pub mappings_total: usize,
    pub max_mappings: usize,
}

fn protocol_name(p: ForwardProtocol) -> &'static str {
    match p {
        ForwardProtocol::Tcp => "tcp",
        ForwardProtocol::Udp => "udp",
        ForwardProtocol::Both => "both",
    }
}

fn range_text(r: PortRange) -> String {
    if r.first == r.last {
        r.first.to_string()
    } else {
        format!("{}-{}", r.first, r.last)
    }
}

/// What identifies a forward in a form: "tcp 8000-8010 192.168.1.20:8000".
pub fn key(f: &Forward) -> String {
    format!(
        "{} {} {}",
        protocol_name(f.protocol),
        range_text(f.external),
        f.inside
    )
}

fn forward_row(index: usize, f: &Forward) -> ForwardRow {
    let inside = if f.external.first == f.external.last {
        f.inside.to_string()
    } else {
        let last = u32::from(f.inside.port()) + f.external.len() - 1;
        format!("{}-{last}", f.inside)
    };
    ForwardRow {
        index,
        protocol: protocol_name(f.protocol),
        external: range_text(f.external),
        inside,
        key: key(f),
    }
}

fn form_of(index: usize, f: &Forward) -> ForwardForm {
    ForwardForm {
        index: Some(index),
        protocol: protocol_name(f.protocol).into(),
        external: range_text(f.external),
        inside_ip: f.inside.ip().to_string(),
        inside_port: f.inside.port().to_string(),
        was: key(f),
    }
}

fn form_from(index: Option<usize>, form: &HashMap<String, String>) -> ForwardForm {
    let field = |k: &str| {
        form.get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    ForwardForm {
        index,
        protocol: field("protocol"),
        external: field("external"),
        inside_ip: field("inside_ip"),
        inside_port: field("inside_port"),
        was: field("was"),
    }
}

/// The forward a form describes, or what is wrong with it. Whether the inside
/// host is on the LAN and the ports overlap nothing is the config validator's
/// to say.
pub fn parse_forward(f: &ForwardForm) -> Result<Forward, String> {
    let protocol = match f.protocol.to_ascii_lowercase().as_str() {
        "tcp" => ForwardProtocol::Tcp,
        "udp" => ForwardProtocol::Udp,
        "both" => ForwardProtocol::Both,
        _ => return Err("Choose the protocol: TCP, UDP or both.".into()),
    };
    if f.external.is_empty() {
        return Err("Give the external port (8080) or range (8000-8010).".into());
    }
    let external: PortRange = f
        .external
        .parse()
        .map_err(|e| format!("External port: {e}."))?;
    let ip: Ipv4Addr = f.inside_ip.parse().map_err(|_| {
        format!(
            "Inside address {:?} is not an IPv4 address such as 192.168.1.20.",
            f.inside_ip
        )
    })?;
    let port = if f.inside_port.is_empty() {
        external.first
    } else {
        f.inside_port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("Inside port {:?} is not a port (1-65535).", f.inside_port))?
    };
    Ok(Forward {
        protocol,
        external,
        inside: SocketAddrV4::new(ip, port),
    })
}

fn ago(now: u64, t: u64) -> String {
    format!("{} ago", format_duration(now.saturating_sub(t)))
}

/// The busiest `n` mappings (bytes both ways), and how many there are.
pub fn busiest(mut all: Vec<MappingView>, n: usize) -> (Vec<MappingView>, usize) {
    let total = all.len();
    all.sort_by_key(|m| std::cmp::Reverse(m.bytes_in + m.bytes_out));
    all.truncate(n);
    (all, total)
}

async fn read_listeners(st: &AppState) -> Vec<Listener> {
    let wan = st.ctx.wan.borrow().address;
    let cache = st.shared.listeners.clone();
    tokio::task::spawn_blocking(move || cache.get(std::path::Path::new(PROC), wan))
        .await
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub struct Shown {
    edit: Option<usize>,
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "added" => "Port forward added. Saved and in force now.",
        "saved" => "Port forward changed. Saved and in force now.",
        "deleted" => "Port forward deleted. Saved and in force now.",
        "unchanged" => "Nothing changed.",
        _ => return None,
    })
}

async fn render(
    st: &AppState,
    csrf: &str,
    notice: Option<&'static str>,
    error: Option<String>,
    form: Option<ForwardForm>,
    edit: Option<usize>,
    status: StatusCode,
) -> Response {
    let cfg = st.shared.config.current();
    let wan = st.ctx.wan.borrow().address;
    let listeners = read_listeners(st)
        .await
        .into_iter()
        .map(|l| ListenerRow {
            proto: l.proto.as_str(),
            address: l.address.to_string(),
            port: l.port,
            processes: if l.processes.is_empty() {
                "?".into()
            } else {
                l.processes.join(", ")
            },
            reach: l.reach.describe(),
            wan: l.reach == listeners::Reach::Wan,
        })
        .collect();
    let forwards: Vec<ForwardRow> = cfg
        .nat
        .forwards
        .iter()
        .enumerate()
        .map(|(i, f)| forward_row(i, f))
        .collect();
    let form = form
        .or_else(|| {
            let i = edit?;
            cfg.nat.forwards.get(i).map(|f| form_of(i, f))
        })
        .unwrap_or_else(|| ForwardForm {
            protocol: "tcp".into(),
            ..Default::default()
        });
    let now = crate::clock::unix_now();
    let outside = |port: u16| match wan {
        Some(a) => SocketAddrV4::new(a, port).to_string(),
        None => format!("WAN:{port}"),
    };
    let (top, total) = busiest(st.shared.nat.snapshot(), MAX_MAPPINGS);
    let mappings = top
        .into_iter()
        .map(|m| MappingRow {
            proto: format!("{:?}", m.proto).to_lowercase(),
            inside: m.inside.to_string(),
            outside: outside(m.outside_port),
            remote: m.remote.to_string(),
            state: m.state.unwrap_or(""),
            idle: ago(now, m.last_seen),
            left: format_duration(m.expires_in_secs),
            packets_out: m.packets_out,
            packets_in: m.packets_in,
            bytes_out: format_bytes(m.bytes_out),
            bytes_in: format_bytes(m.bytes_in),
        })
        .collect();
    let page = PortsPage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        csrf: csrf.to_string(),
        notice,
        error,
        wan_address: wan.map_or_else(|| "no address".into(), |a| a.to_string()),
        listeners,
        forwards,
        forwards_in_force: st.shared.nat.stats().forwards,
        form,
        mappings,
        mappings_total: total,
        max_mappings: MAX_MAPPINGS,
    };
    super::html(&page, status)
}

/// GET /ports (`?edit=N` opens forward N in the form; `?done=` says what was saved).
pub async fn page(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Query(q): Query<Shown>,
) -> Response {
    let n = notice(q.done.as_deref());
    render(&st, &s.csrf, n, None, None, q.edit, StatusCode::OK).await
}

#[derive(Serialize)]
pub struct ForwardJson {
    pub index: usize,
    #[serde(flatten)]
    pub forward: Forward,
}

#[derive(Serialize)]
pub struct MappingsJson {
    pub total: usize,
    pub shown: usize,
    pub rows: Vec<MappingView>,
}

#[derive(Serialize)]
pub struct PortsJson {
    pub wan_address: Option<Ipv4Addr>,
    pub listeners: Vec<Listener>,
    pub forwards: Vec<ForwardJson>,
    /// Forwards the NAT has in force ("both" counts once).
    pub forwards_in_force: usize,
    /// The busiest `MAX_MAPPINGS` (all of them: `/api/nat`).
    pub mappings: MappingsJson,
}

/// GET /api/ports: the page's three tables.
pub async fn json(State(st): State<AppState>) -> Json<PortsJson> {
    let cfg = st.shared.config.current();
    let (rows, total) = busiest(st.shared.nat.snapshot(), MAX_MAPPINGS);
    let wan_address = st.ctx.wan.borrow().address;
    let listeners = read_listeners(&st).await;
    Json(PortsJson {
        wan_address,
        listeners,
        forwards: cfg
            .nat
            .forwards
            .iter()
            .enumerate()
            .map(|(index, f)| ForwardJson {
                index,
                forward: f.clone(),
            })
            .collect(),
        forwards_in_force: st.shared.nat.stats().forwards,
        mappings: MappingsJson {
            total,
            shown: rows.len(),
            rows,
        },
    })
}

enum Change {
    Add(Forward),
    Replace(usize, Forward),
    Delete(usize),
}

/// The forward at `index` must still be the one the form was drawn from (when the
/// form says which that was).
fn check_was(fwds: &[Forward], index: usize, was: &str) -> Result<(), String> {
    let f = fwds.get(index).ok_or_else(|| {
        format!(
            "There is no port forward #{} (any more): reload the page.",
            index + 1
        )
    })?;
    if !was.is_empty() && key(f) != was {
        return Err(format!(
            "Port forward #{} changed meanwhile (it is now {}): reload the page.",
            index + 1,
            key(f)
        ));
    }
    Ok(())
}

/// Saves `change`, puts it in force; the redirect, or the page with the reason.
async fn save(
    st: &AppState,
    csrf: &str,
    change: Change,
    was: String,
    form: Option<ForwardForm>,
    done: &'static str,
) -> Response {
    let edited = st.shared.config.edit(|c| {
        let fwds = &mut c.nat.forwards;
        match change {
            Change::Add(f) => fwds.push(f),
            Change::Replace(i, f) => {
                check_was(fwds, i, &was)?;
                fwds[i] = f;
            }
            Change::Delete(i) => {
                check_was(fwds, i, &was)?;
                fwds.remove(i);
            }
        }
        Ok(())
    });
    match edited {
        Ok((old, new)) => {
            let applied = super::apply::after_edit(&st.shared, &old, &new);
            eprintln!("web: port forwards edited: {}", applied.message());
            let done = if applied.live.is_empty() && applied.at_reboot.is_empty() {
                "unchanged"
            } else {
                done
            };
            Redirect::to(&format!("/ports?done={done}#forwards")).into_response()
        }
        Err(e) => {
            let status = if st.shared.config.refused().is_some() {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            let msg = format!("Not saved: {e}");
            render(st, csrf, None, Some(msg), form, None, status).await
        }
    }
}

async fn refuse(st: &AppState, csrf: &str, msg: String, form: ForwardForm) -> Response {
    let msg = format!("Not saved: {msg}");
    render(
        st,
        csrf,
        None,
        Some(msg),
        Some(form),
        None,
        StatusCode::BAD_REQUEST,
    )
    .await
}

/// POST /ports/forwards: protocol, external, inside_ip, inside_port (empty: the
/// external port), csrf.
pub async fn add(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    body: axum::body::Bytes,
) -> Response {
    let form = form_from(None, &parse_form(&body));
    match parse_forward(&form) {
        Ok(f) => {
            save(
                &st,
                &s.csrf,
                Change::Add(f),
                String::new(),
                Some(form),
                "added",
            )
            .await
        }
        Err(e) => refuse(&st, &s.csrf, e, form).await,
    }
}

/// POST /ports/forwards/{index}: the add form's fields, and `was`.
pub async fn edit(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(index): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    let form = form_from(Some(index), &parse_form(&body));
    match parse_forward(&form) {
        Ok(f) => {
            let was = form.was.clone();
            let change = Change::Replace(index, f);
            save(&st, &s.csrf, change, was, Some(form), "saved").await
        }
        Err(e) => refuse(&st, &s.csrf, e, form).await,
    }
}

/// POST /ports/forwards/{index}/delete: csrf, and `was`.
pub async fn delete(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    Path(index): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    let was = parse_form(&body).remove("was").unwrap_or_default();
    save(&st, &s.csrf, Change::Delete(index), was, None, "deleted").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(p: &str, ext: &str, ip: &str, port: &str) -> ForwardForm {
        ForwardForm {
            protocol: p.into(),
            external: ext.into(),
            inside_ip: ip.into(),
            inside_port: port.into(),
            ..Default::default()
        }
    }

    #[test]
    fn forms_become_forwards_or_say_what_is_wrong() {
        let f = parse_forward(&form("both", "8000-8010", "192.168.1.20", "")).unwrap();
        assert_eq!(f.protocol, ForwardProtocol::Both);
        assert_eq!((f.external.first, f.external.last), (8000, 8010));
        assert_eq!(f.inside, "192.168.1.20:8000".parse().unwrap());
        assert_eq!(key(&f), "both 8000-8010 192.168.1.20:8000");
        assert_eq!(forward_row(0, &f).inside, "192.168.1.20:8000-8010");
        let f = parse_forward(&form("TCP", "443", "192.168.1.5", "8443")).unwrap();
        assert_eq!(f.inside.port(), 8443);
        for (bad, says) in [
            (form("icmp", "1", "192.168.1.5", ""), "protocol"),
            (form("tcp", "", "192.168.1.5", ""), "external port"),
            (
                form("tcp", "90-80", "192.168.1.5", ""),
                "ends before it starts",
            ),
            (form("tcp", "70000", "192.168.1.5", ""), "not a port"),
            (form("tcp", "80", "nas", ""), "not an IPv4 address"),
            (form("tcp", "80", "192.168.1.5", "0"), "Inside port"),
        ] {
            let e = parse_forward(&bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_stale_form_is_refused() {
        let f = parse_forward(&form("tcp", "80", "192.168.1.5", "")).unwrap();
        let fwds = vec![f.clone()];
        assert!(check_was(&fwds, 0, &key(&f)).is_ok());
        assert!(check_was(&fwds, 0, "").is_ok());
        assert!(check_was(&fwds, 0, "udp 80 192.168.1.5:80")
            .unwrap_err()
            .contains("changed meanwhile"));
        assert!(check_was(&fwds, 1, "")
            .unwrap_err()
            .contains("no port forward #2"));
    }
}
