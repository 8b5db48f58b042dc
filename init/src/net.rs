//! Network bring-up: picks the WAN port, bridges the others into `br-lan`,
//! all over netlink (rtnetlink).
//!
//! The rule (also printed on the console at boot, see `RULE`):
//!
//! 1. `[wan] port` and `[lan] ports` in /data/gatehouse.toml, by kernel name
//!    ("eth0") or MAC, win when set. Ports listed in `[lan] ports` are never
//!    WAN candidates; with the list set, only those ports join br-lan.
//! 2. Else the WAN port remembered by MAC in /data/gatehouse/wan-port, if that
//!    port is still there: no probe, so later boots are instant and stable.
//! 3. Else a probe: every candidate port goes up; each waits for a carrier
//!    (at most 3 s, in parallel), then broadcasts a DHCPDISCOVER and waits for
//!    any DHCPOFFER (at most 4 s; nothing is accepted). The first port in bus
//!    order (kernel ifindex) with a carrier and an offer is the WAN, and is
//!    remembered; else the first with a carrier; else the first port. Only a
//!    choice backed by an offer is remembered, so a boot without an upstream
//!    tries again next time.
//!
//! The WAN port is renamed `wan`; every other port joins `br-lan`, which gets
//! the LAN address. The choice (`choose`, `pick`, `lan_members`) is pure and
//! unit-tested apart from the I/O.

use crate::dhcp_probe;
use crate::log;
use crate::settings::Settings;
use futures::TryStreamExt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub const WAN: &str = "wan";
pub const BRIDGE: &str = "br-lan";
/// The remembered WAN port: its MAC, then its kernel name for the reader.
pub const MEMORY: &str = "/data/gatehouse/wan-port";
/// Each port's wait for a carrier, from the probe's start.
const CARRIER_WAIT: Duration = Duration::from_secs(3);
/// Each port's wait for a DHCP offer, from its carrier.
const OFFER_WAIT: Duration = Duration::from_secs(4);

pub const RULE: &str = "[wan] port / [lan] ports in /data/gatehouse.toml if set; \
else the WAN remembered by MAC in /data/gatehouse/wan-port; else the first port (bus order) \
with a carrier and a DHCP offer, else the first with a carrier, else the first; \
the other ports join br-lan";

#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub name: String,
    pub ifindex: u32,
    /// "52:54:00:6a:01:01"
    pub mac: String,
}

impl Port {
    /// Named by `spec`: its kernel name or its MAC (any case).
    pub fn is(&self, spec: &str) -> bool {
        let spec = spec.trim();
        spec == self.name || (!self.mac.is_empty() && spec.eq_ignore_ascii_case(&self.mac))
    }
}

/// What the probe saw on one port.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Seen {
    pub carrier: bool,
    /// The server that offered a lease.
    pub offer: Option<Ipv4Addr>,
    /// When the probe of this port ended, from the probe's start.
    pub after: Duration,
}

/// Why a port is the WAN.
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    Configured,
    Remembered,
    /// The only candidate: nothing to probe.
    Only,
    Offer(Ipv4Addr),
    CarrierOnly,
    NoCarrier,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Configured => write!(f, "[wan] port in the config"),
            Why::Remembered => write!(f, "remembered in {MEMORY}"),
            Why::Only => write!(f, "the only WAN candidate"),
            Why::Offer(s) => write!(f, "carrier, DHCP offer from {s}"),
            Why::CarrierOnly => write!(f, "carrier, but no port got a DHCP offer"),
            Why::NoCarrier => write!(f, "no port has a carrier"),
        }
    }
}

/// What the config and the memory decide before any probe.
#[derive(Debug, PartialEq)]
pub enum Pre {
    /// WAN port (index into the ports), or none at all.
    Decided(Option<usize>, Why),
    /// Probe these ports (indices, in bus order).
    Probe(Vec<usize>),
}

/// Applies steps 1 and 2 of the rule to `ports` (sorted by ifindex). Also
/// returns notes on config entries that match nothing, for the console.
pub fn choose(
    ports: &[Port],
    wan_port: Option<&str>,
    lan_ports: &[String],
    remembered: Option<&str>,
) -> (Pre, Vec<String>) {
    let mut notes = Vec::new();
    for spec in lan_ports {
        if !ports.iter().any(|p| p.is(spec)) {
            notes.push(format!("[lan] ports: no port {spec:?}"));
        }
    }
    if let Some(spec) = wan_port {
        if let Some(i) = ports.iter().position(|p| p.is(spec)) {
            return (Pre::Decided(Some(i), Why::Configured), notes);
        }
        notes.push(format!(
            "[wan] port: no port {spec:?}, using the automatic rule"
        ));
    }
    let candidates: Vec<usize> = (0..ports.len())
        .filter(|&i| !lan_ports.iter().any(|s| ports[i].is(s)))
        .collect();
    let pre = match candidates.as_slice() {
        [] => Pre::Decided(None, Why::NoCarrier),
        [only] => Pre::Decided(Some(*only), Why::Only),
        _ => match remembered.and_then(|m| candidates.iter().find(|&&i| ports[i].is(m))) {
            Some(&i) => Pre::Decided(Some(i), Why::Remembered),
            None => Pre::Probe(candidates),
        },
    };
    (pre, notes)
}

/// Step 3 over the probe's results so far (in the candidates' order; `None`:
/// still probing). Decides as soon as no later result can change the answer:
/// the first port with a carrier and an offer wins once every port before it
/// has finished without one. Returns (position in `results`, why).
pub fn pick(results: &[Option<Seen>]) -> Option<(usize, Why)> {
    for (i, r) in results.iter().enumerate() {
        match r {
            None => return None,
            Some(Seen {
                carrier: true,
                offer: Some(server),
                ..
            }) => return Some((i, Why::Offer(*server))),
            Some(_) => {}
        }
    }
    if results.is_empty() {
        return None;
    }
    Some(
        match results.iter().position(|r| r.is_some_and(|s| s.carrier)) {
            Some(i) => (i, Why::CarrierOnly),
            None => (0, Why::NoCarrier),
        },
    )
}

/// The ports that join br-lan: the listed ones if `[lan] ports` is set, else
/// all; never the WAN.
pub fn lan_members(ports: &[Port], wan: Option<usize>, lan_ports: &[String]) -> Vec<usize> {
    (0..ports.len())
        .filter(|&i| Some(i) != wan)
        .filter(|&i| lan_ports.is_empty() || lan_ports.iter().any(|s| ports[i].is(s)))
        .collect()
}

/// What a port that appears after boot becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateRole {
    Wan,
    Lan,
    /// Left down.
    None,
}

/// The boot's rule for a port that appears later (a USB adapter plugged in,
/// or one that was slow to enumerate). It is the WAN if `[wan] port` or the
/// remembered WAN names it and there is no WAN yet. A port named as the WAN
/// while another one is the WAN stays down: bridging the upstream network into
/// the LAN would put the LAN's DHCP server on it. Otherwise it joins br-lan if
/// `[lan] ports` lists it or is empty. There is no DHCP probe after boot.
pub fn late_role(
    port: &Port,
    wan_port: Option<&str>,
    lan_ports: &[String],
    remembered: Option<&str>,
    have_wan: bool,
) -> LateRole {
    let named_wan = match wan_port {
        Some(spec) => port.is(spec),
        None => remembered.is_some_and(|mac| port.is(mac)),
    };
    if named_wan {
        return if have_wan {
            LateRole::None
        } else {
            LateRole::Wan
        };
    }
    if lan_ports.is_empty() || lan_ports.iter().any(|s| port.is(s)) {
        LateRole::Lan
    } else {
        LateRole::None
    }
}

/// The memory file's text for `port`.
pub fn memory_text(port: &Port) -> String {
    format!("{} {}\n", port.mac, port.name)
}

/// The MAC in a memory file's text.
pub fn remembered_mac(text: &str) -> Option<&str> {
    text.split_whitespace()
        .next()
        .filter(|m| dhcp_probe::parse_mac(m).is_some())
}

/// The console line: "wan = eth0 (52:54:..; why), lan = eth1, eth2 -> br-lan".
pub fn summary(ports: &[Port], wan: Option<usize>, why: &Why, lan: &[usize]) -> String {
    let wan = match wan {
        Some(i) => format!("{} ({}; {why})", ports[i].name, ports[i].mac),
        None => "none".to_string(),
    };
    let lan = if lan.is_empty() {
        "no port".to_string()
    } else {
        lan.iter()
            .map(|&i| ports[i].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{WAN} = {wan}, lan = {lan} -> {BRIDGE}")
}

/// One port's probe result, for the console.
pub fn describe(port: &Port, s: Option<&Seen>) -> String {
    match s {
        None => format!("{}: not needed", port.name),
        Some(s) if !s.carrier => format!("{}: no carrier", port.name),
        Some(Seen {
            offer: Some(srv),
            after,
            ..
        }) => format!(
            "{}: carrier, offer from {srv} at {:.2} s",
            port.name,
            after.as_secs_f64()
        ),
        Some(s) => format!(
            "{}: carrier, no offer by {:.2} s",
            port.name,
            s.after.as_secs_f64()
        ),
    }
}

// --- I/O ----------------------------------------------------------------------

/// Physical ethernet ports, in bus order: type 1 (ARPHRD_ETHER) with a backing
/// device, not a WLAN radio.
pub fn ethernet_ports() -> Vec<Port> {
    let mut ports = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return ports;
    };
    for e in dir.flatten() {
        let p = e.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        if read("type").trim() != "1" || !p.join("device").exists() || p.join("phy80211").exists() {
            continue;
        }
        if let Ok(ifindex) = read("ifindex").trim().parse() {
            ports.push(Port {
                name: e.file_name().to_string_lossy().into_owned(),
                ifindex,
                mac: read("address").trim().to_string(),
            });
        }
    }
    ports.sort_by_key(|p| p.ifindex);
    ports
}

fn carrier(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/carrier")).is_ok_and(|c| c.trim() == "1")
}

/// Links over netlink from sync code: a current-thread runtime driven per call.
struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
}

impl Netlink {
    fn new() -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let (conn, handle, _) = {
            let _in = rt.enter();
            rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?
        };
        rt.spawn(conn);
        Ok(Self { rt, handle })
    }

    fn index(&self, name: &str) -> Result<u32, String> {
        self.rt.block_on(async {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            match links.try_next().await {
                Ok(Some(l)) => Ok(l.header.index),
                Ok(None) => Err(format!("no link {name}")),
                Err(e) => Err(format!("{name}: {e}")),
            }
        })
    }

    fn set(
        &self,
        what: &str,
        index: u32,
        f: impl FnOnce(rtnetlink::LinkSetRequest) -> rtnetlink::LinkSetRequest,
    ) -> bool {
        let req = f(self.handle.link().set(index));
        match self.rt.block_on(req.execute()) {
            Ok(()) => true,
            Err(e) => {
                log!("net: {what}: {e}");
                false
            }
        }
    }

    /// The bridge's index, made if it does not exist yet.
    fn bridge(&self, name: &str) -> Result<u32, String> {
        if let Ok(i) = self.index(name) {
            return Ok(i);
        }
        self.rt
            .block_on(self.handle.link().add().bridge(name.into()).execute())
            .map_err(|e| format!("add bridge {name}: {e}"))?;
        self.index(name)
    }

    fn add_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), String> {
        let req = self
            .handle
            .address()
            .add(index, IpAddr::V4(addr), prefix)
            .replace();
        self.rt.block_on(req.execute()).map_err(|e| e.to_string())
    }
}

fn read_memory() -> Option<String> {
    let text = std::fs::read_to_string(MEMORY).ok()?;
    remembered_mac(&text).map(str::to_string)
}

fn remember(port: &Port) {
    let path = Path::new(MEMORY);
    let r = std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))
        .and_then(|_| crate::atomic_file::write(path, memory_text(port).as_bytes()));
    if let Err(e) = r {
        log!("net: cannot remember the WAN port in {MEMORY}: {e}");
    }
}

/// A transaction id: no entropy is needed, only a value unlikely to repeat.
fn xid(port: &Port) -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(0);
    t ^ port.ifindex.rotate_left(24) ^ (crate::log::since_boot() * 1e6) as u32
}

/// One port's probe: carrier, then a DHCP offer; bounded by the two waits.
fn probe_port(port: &Port, start: Instant, stop: &AtomicBool) -> Seen {
    let seen = |carrier, offer| Seen {
        carrier,
        offer,
        after: start.elapsed(),
    };
    while !carrier(&port.name) {
        if start.elapsed() >= CARRIER_WAIT || stop.load(Ordering::Relaxed) {
            return seen(false, None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(mac) = dhcp_probe::parse_mac(&port.mac) else {
        return seen(true, None);
    };
    let deadline = Instant::now() + OFFER_WAIT;
    match dhcp_probe::probe(port.ifindex, mac, xid(port), deadline, stop) {
        Ok(offer) => seen(true, offer),
        Err(e) => {
            log!("net: DHCP probe on {}: {e}", port.name);
            seen(true, None)
        }
    }
}

/// Probes `candidates` (indices into `ports`, all up) in parallel; returns the
/// chosen index into `ports`, why, and what was seen on each candidate.
fn probe(ports: &[Port], candidates: &[usize]) -> (usize, Why, Vec<Option<Seen>>) {
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = candidates
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let (port, stop, tx) = (ports[i].clone(), stop.clone(), tx.clone());
            std::thread::spawn(move || {
                let _ = tx.send((k, probe_port(&port, start, &stop)));
            })
        })
        .collect();
    drop(tx);
    let mut results: Vec<Option<Seen>> = vec![None; candidates.len()];
    // Every thread ends by then; the margin covers a slow machine.
    let hard = start + CARRIER_WAIT + OFFER_WAIT + Duration::from_secs(1);
    let (k, why) = loop {
        if let Some(d) = pick(&results) {
            break d;
        }
        match rx.recv_timeout(hard.saturating_duration_since(Instant::now())) {
            Ok((k, s)) => results[k] = Some(s),
            Err(_) => {
                let done: Vec<_> = results
                    .iter()
                    .map(|r| Some(r.unwrap_or_default()))
                    .collect();
                break pick(&done).unwrap_or((0, Why::NoCarrier));
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    (candidates[k], why, results)
}

pub fn bring_up(s: &Settings) {
    let nl = match Netlink::new() {
        Ok(n) => n,
        Err(e) => {
            log!("net: {e}; the network stays down");
            return;
        }
    };
    if let Ok(lo) = nl.index("lo") {
        nl.set("lo up", lo, |r| r.up());
    }
    let ports = ethernet_ports();
    log!("net: rule: {RULE}");
    let remembered = read_memory();
    let (pre, notes) = choose(
        &ports,
        s.wan_port.as_deref(),
        &s.lan_ports,
        remembered.as_deref(),
    );
    for n in notes {
        log!("net: {n}");
    }
    let mut probed = Vec::new();
    let (wan, why) = match pre {
        Pre::Decided(wan, why) => (wan, why),
        Pre::Probe(candidates) => {
            for &i in &candidates {
                nl.set(&format!("{} up", ports[i].name), ports[i].ifindex, |r| {
                    r.up()
                });
            }
            let t = Instant::now();
            let (wan, why, seen) = probe(&ports, &candidates);
            let each: Vec<String> = candidates
                .iter()
                .zip(&seen)
                .map(|(&i, s)| describe(&ports[i], s.as_ref()))
                .collect();
            log!(
                "net: probe took {:.2} s: {}",
                t.elapsed().as_secs_f64(),
                each.join("; ")
            );
            if matches!(why, Why::Offer(_)) {
                remember(&ports[wan]);
            }
            probed = candidates;
            (Some(wan), why)
        }
    };
    let lan = lan_members(&ports, wan, &s.lan_ports);
    log!("net: {}", summary(&ports, wan, &why, &lan));

    match wan {
        Some(i) => {
            let p = &ports[i];
            if p.name != WAN {
                if probed.contains(&i) {
                    // Up for the probe; a link is renamed only while down.
                    nl.set(&format!("{} down", p.name), p.ifindex, |r| r.down());
                }
                nl.set(&format!("rename {} to {WAN}", p.name), p.ifindex, |r| {
                    r.name(WAN.into())
                });
            }
            nl.set(&format!("{WAN} up"), p.ifindex, |r| r.up());
        }
        None => log!("net: no ethernet port for the WAN"),
    }
    // Probed ports that are in no role go down again.
    for &i in &probed {
        if Some(i) != wan && !lan.contains(&i) {
            nl.set(&format!("{} down", ports[i].name), ports[i].ifindex, |r| {
                r.down()
            });
        }
    }
    let cidr = format!("{}/{}", s.lan_address, s.lan_prefix);
    let br = match nl.bridge(BRIDGE) {
        Ok(b) => b,
        Err(e) => {
            log!("net: {e}; no LAN");
            return;
        }
    };
    for &i in &lan {
        let p = &ports[i];
        nl.set(&format!("{} into {BRIDGE}", p.name), p.ifindex, |r| {
            r.controller(br).up()
        });
    }
    if let Err(e) = nl.add_address(br, s.lan_address, s.lan_prefix) {
        log!("net: {BRIDGE} address {cidr}: {e}");
    }
    nl.set(&format!("{BRIDGE} up"), br, |r| r.up());
    log!("net: {BRIDGE} {cidr} up with {} port(s)", lan.len());
}

/// Gives link `name`, which appeared after boot, its role (see `late_role`).
/// Links that are not ethernet ports, or are already the WAN or a bridge
/// port, are left alone.
pub fn adopt(name: &str, s: &Settings) {
    let Some(port) = ethernet_ports().into_iter().find(|p| p.name == name) else {
        return;
    };
    let sys = |f: &str| Path::new("/sys/class/net").join(f);
    if name == WAN || sys(&format!("{name}/master")).exists() {
        return;
    }
    let remembered = read_memory();
    let role = late_role(
        &port,
        s.wan_port.as_deref(),
        &s.lan_ports,
        remembered.as_deref().and_then(remembered_mac),
        sys(WAN).exists(),
    );
    let nl = match Netlink::new() {
        Ok(n) => n,
        Err(e) => {
            log!("net: {name} appeared; {e}");
            return;
        }
    };
    let who = format!("{name} ({})", port.mac);
    match role {
        LateRole::Lan => {
            let Ok(br) = nl.index(BRIDGE) else {
                log!("net: {who} appeared; there is no {BRIDGE} to join");
                return;
            };
            if nl.set(&format!("{name} into {BRIDGE}"), port.ifindex, |r| {
                r.controller(br).up()
            }) {
                log!("net: {who} appeared: joins {BRIDGE}");
            }
        }
        LateRole::Wan => {
            if nl.set(&format!("rename {name} to {WAN}"), port.ifindex, |r| {
                r.name(WAN.into())
            }) && nl.set(&format!("{WAN} up"), port.ifindex, |r| r.up())
            {
                log!("net: {who} appeared: it is the WAN ({WAN})");
            }
        }
        LateRole::None => log!(
            "net: {who} appeared: left down (named as the WAN while another port is, \
             or not in [lan] ports)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(n: usize) -> Vec<Port> {
        (0..n)
            .map(|i| Port {
                name: format!("eth{i}"),
                ifindex: i as u32 + 2,
                mac: format!("52:54:00:00:00:{i:02x}"),
            })
            .collect()
    }

    fn seen(carrier: bool, offer: bool) -> Option<Seen> {
        Some(Seen {
            carrier,
            offer: offer.then_some(Ipv4Addr::new(10, 99, 0, 1)),
            after: Duration::from_millis(100),
        })
    }

    const SRV: Why = Why::Offer(Ipv4Addr::new(10, 99, 0, 1));

    #[test]
    fn a_late_port_joins_the_lan_unless_it_is_the_wan() {
        let p = &ports(3)[2];
        let mac = "52:54:00:00:00:02";
        assert_eq!(late_role(p, None, &[], None, true), LateRole::Lan);
        assert_eq!(
            late_role(p, None, &["eth0".into()], None, true),
            LateRole::None,
            "[lan] ports does not list it"
        );
        assert_eq!(
            late_role(p, None, &[mac.to_uppercase()], None, true),
            LateRole::Lan
        );
        // The configured WAN, late: the WAN if there is none yet, else left down.
        assert_eq!(late_role(p, Some("eth2"), &[], None, false), LateRole::Wan);
        assert_eq!(late_role(p, Some(mac), &[], None, true), LateRole::None);
        // The remembered WAN counts only without a configured one.
        assert_eq!(late_role(p, None, &[], Some(mac), false), LateRole::Wan);
        assert_eq!(late_role(p, None, &[], Some(mac), true), LateRole::None);
        assert_eq!(
            late_role(p, Some("eth0"), &[], Some(mac), false),
            LateRole::Lan
        );
    }

    #[test]
    fn ports_by_name_or_mac() {
        let p = &ports(1)[0];
        assert!(p.is("eth0") && p.is("52:54:00:00:00:00") && p.is(" 52:54:00:00:00:00 "));
        assert!(p.is("52:54:00:00:00:00".to_uppercase().as_str()));
        assert!(!p.is("eth1") && !p.is(""));
    }

    #[test]
    fn the_config_wins() {
        let p = ports(3);
        let lan = vec!["eth0".to_string()];
        assert_eq!(
            choose(&p, Some("eth2"), &[], Some("52:54:00:00:00:01")).0,
            Pre::Decided(Some(2), Why::Configured)
        );
        assert_eq!(
            choose(&p, Some("52:54:00:00:00:01"), &[], None).0,
            Pre::Decided(Some(1), Why::Configured)
        );
        // LAN ports are never candidates; the rest is probed.
        assert_eq!(choose(&p, None, &lan, None).0, Pre::Probe(vec![1, 2]));
        assert_eq!(
            choose(&p, None, &["eth0".into(), "eth1".into()], None).0,
            Pre::Decided(Some(2), Why::Only)
        );
        // A port that is not there: a note, and the automatic rule.
        let (pre, notes) = choose(&p, Some("eth9"), &["eth7".into()], None);
        assert_eq!(pre, Pre::Probe(vec![0, 1, 2]));
        assert_eq!(notes.len(), 2);
    }

    #[test]
    fn memory_skips_the_probe_while_its_port_is_there() {
        let p = ports(2);
        assert_eq!(
            choose(&p, None, &[], Some("52:54:00:00:00:01")).0,
            Pre::Decided(Some(1), Why::Remembered)
        );
        // Gone (another NIC): probe again.
        assert_eq!(
            choose(&p, None, &[], Some("52:54:00:00:00:09")).0,
            Pre::Probe(vec![0, 1])
        );
        // Remembered, but now configured as a LAN port: the config wins.
        assert_eq!(
            choose(&p, None, &["eth1".into()], Some("52:54:00:00:00:01")).0,
            Pre::Decided(Some(0), Why::Only)
        );
        // One port: nothing to choose.
        assert_eq!(
            choose(&ports(1), None, &[], None).0,
            Pre::Decided(Some(0), Why::Only)
        );
        assert_eq!(
            choose(&[], None, &[], None).0,
            Pre::Decided(None, Why::NoCarrier)
        );
    }

    #[test]
    fn the_first_port_with_an_offer_is_wan() {
        assert_eq!(pick(&[seen(true, true), seen(true, false)]), Some((0, SRV)));
        // Swapped cabling: the LAN segment (carrier, no server) comes first.
        assert_eq!(pick(&[seen(true, false), seen(true, true)]), Some((1, SRV)));
        assert_eq!(
            pick(&[seen(false, false), seen(true, true)]),
            Some((1, SRV))
        );
        // Both segments have a server: bus order decides.
        assert_eq!(pick(&[seen(true, true), seen(true, true)]), Some((0, SRV)));
    }

    #[test]
    fn decides_early_but_never_before_an_earlier_port_is_done() {
        // The first port answered: no need to wait for the others.
        assert_eq!(pick(&[seen(true, true), None]), Some((0, SRV)));
        // A later port answered, an earlier one may still: wait.
        assert_eq!(pick(&[None, seen(true, true)]), None);
        assert_eq!(pick(&[seen(true, false), None]), None);
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn fallbacks_without_any_offer() {
        assert_eq!(
            pick(&[seen(false, false), seen(true, false), seen(true, false)]),
            Some((1, Why::CarrierOnly))
        );
        assert_eq!(
            pick(&[seen(false, false), seen(false, false)]),
            Some((0, Why::NoCarrier))
        );
    }

    #[test]
    fn lan_is_everything_but_the_wan_unless_listed() {
        let p = ports(4);
        assert_eq!(lan_members(&p, Some(1), &[]), vec![0, 2, 3]);
        assert_eq!(lan_members(&p, None, &[]), vec![0, 1, 2, 3]);
        let listed = vec!["eth3".to_string(), "eth1".to_string()];
        assert_eq!(lan_members(&p, Some(0), &listed), vec![1, 3]);
        // The WAN never joins the bridge, even when listed.
        assert_eq!(lan_members(&p, Some(1), &listed), vec![3]);
    }

    #[test]
    fn memory_round_trip() {
        let p = &ports(2)[1];
        let text = memory_text(p);
        assert_eq!(text, "52:54:00:00:00:01 eth1\n");
        assert_eq!(remembered_mac(&text), Some("52:54:00:00:00:01"));
        assert_eq!(remembered_mac("garbage\n"), None);
        assert_eq!(remembered_mac(""), None);
    }

    #[test]
    fn console_lines() {
        let p = ports(3);
        assert_eq!(
            summary(&p, Some(1), &SRV, &[0, 2]),
            "wan = eth1 (52:54:00:00:00:01; carrier, DHCP offer from 10.99.0.1), \
             lan = eth0, eth2 -> br-lan"
        );
        assert_eq!(
            summary(&p[..0], None, &Why::NoCarrier, &[]),
            "wan = none, lan = no port -> br-lan"
        );
        assert_eq!(
            describe(&p[0], seen(false, false).as_ref()),
            "eth0: no carrier"
        );
        assert_eq!(
            describe(&p[0], seen(true, true).as_ref()),
            "eth0: carrier, offer from 10.99.0.1 at 0.10 s"
        );
    }
}
