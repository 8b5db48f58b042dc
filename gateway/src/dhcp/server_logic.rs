//! The DHCPv4 server's decisions (RFC 2131), free of sockets and clocks: given
//! the settings, the lease store, a request and the time, say what to answer.
//!
//! This server is authoritative for its LAN: a client asking for an address we
//! would not give it gets a NAK (so it restarts with DISCOVER at once), and a
//! client we have no record of (lease file lost) may keep a free address it
//! asks for.
//!
//! An address the client never had is offered only after a ping check: the
//! decision comes back with `Outcome::probe` set, the caller pings, and
//! `probe_done` says what follows. Host names are sanitized and made unique
//! (`resolve_hostname`).

use super::codec;
use super::lease_store::{ClientKey, Lease, LeaseStore};
use crate::config::Config;
use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode, UnknownOption};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// How long an OFFER reserves its address for the client's REQUEST.
pub const OFFER_HOLD_SECS: u64 = 60;
/// How long a DECLINEd address (someone else is using it) stays out of the pool.
pub const DECLINE_HOLD_SECS: u64 = 600;
/// How long an address that answered the conflict-check ping stays out of the pool.
pub const CONFLICT_HOLD_SECS: u64 = 600;
/// How long an address is held for a client while it is ping-checked. The
/// check itself is much shorter; this only bounds a check that never ends.
pub const PROBE_HOLD_SECS: u64 = 10;
/// Addresses tried for one DISCOVER before giving up (the client retries).
pub const MAX_PROBES: u8 = 3;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

#[derive(Debug, Clone, PartialEq)]
pub struct StaticEntry {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
}

/// What the allocator needs from the configuration, precomputed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub server_ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub lease_secs: u32,
    /// T1 and T2 (options 58 and 59).
    pub renew_secs: u32,
    pub rebind_secs: u32,
    pub domain: Option<String>,
    pub statics: Vec<StaticEntry>,
    /// Ping time before offering an address new to the client; 0: no check.
    pub conflict_check_ms: u32,
    /// Option 26, when configured.
    pub mtu: Option<u16>,
    /// Option 42; empty: not sent.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Option 121's payload (RFC 3442); empty: not sent.
    pub classless_routes: Vec<u8>,
    /// Host names no client may take (the router's own).
    pub reserved_names: Vec<String>,
}

impl Default for Settings {
    /// The settings of a default configuration.
    fn default() -> Self {
        Settings::from_config(&Config::default())
    }
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Self {
        let statics = cfg
            .dhcp
            .static_leases
            .iter()
            .filter_map(|s| {
                Some(StaticEntry {
                    mac: crate::config::parse_mac(&s.mac)?,
                    ip: s.ip,
                    hostname: s.hostname.as_deref().and_then(sanitize_hostname),
                })
            })
            .collect();
        let domain = cfg.system.domain.trim().trim_matches('.');
        let d = &cfg.dhcp;
        let routes: Vec<(Ipv4Addr, u8, Ipv4Addr)> = d
            .routes
            .iter()
            .filter_map(|r| r.network().map(|(net, len)| (net, len, r.gateway)))
            .collect();
        Settings {
            server_ip: cfg.lan.address,
            netmask: cfg.lan.netmask(),
            range_start: d.range_start,
            range_end: d.range_end,
            lease_secs: d.lease_secs,
            renew_secs: d.renew_secs.unwrap_or(d.lease_secs / 2),
            rebind_secs: d
                .rebind_secs
                .unwrap_or((u64::from(d.lease_secs) * 7 / 8) as u32),
            domain: (!domain.is_empty()).then(|| domain.to_string()),
            statics,
            conflict_check_ms: d.conflict_check_ms,
            mtu: d.mtu,
            ntp_servers: d.ntp_servers.clone(),
            classless_routes: encode_classless_routes(&routes, cfg.lan.address),
            reserved_names: sanitize_hostname(&cfg.system.hostname)
                .into_iter()
                .collect(),
        }
    }

    fn mask(&self) -> u32 {
        u32::from(self.netmask)
    }

    pub fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.server_ip) & self.mask()
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.range_start..=self.range_end).contains(&ip)
    }

    /// Never handed out: the router itself, the network and broadcast addresses.
    fn reserved(&self, ip: Ipv4Addr) -> bool {
        let host = u32::from(ip) & !self.mask();
        ip == self.server_ip || host == 0 || host == !self.mask()
    }

    fn static_for(&self, mac: [u8; 6]) -> Option<&StaticEntry> {
        self.statics.iter().find(|s| s.mac == mac)
    }

    fn static_owner(&self, ip: Ipv4Addr) -> Option<&StaticEntry> {
        self.statics.iter().find(|s| s.ip == ip)
    }
}

/// RFC 3442 option 121 payload: per route the prefix length, the significant
/// octets of the destination, the gateway. A client that gets option 121
/// ignores the Router option (3), so a default route via `router` is added
/// unless the list has one. No routes: empty (the option is not sent).
pub fn encode_classless_routes(routes: &[(Ipv4Addr, u8, Ipv4Addr)], router: Ipv4Addr) -> Vec<u8> {
    if routes.is_empty() {
        return Vec::new();
    }
    let mut all = routes.to_vec();
    if !all.iter().any(|(_, len, _)| *len == 0) {
        all.push((Ipv4Addr::UNSPECIFIED, 0, router));
    }
    let mut out = Vec::new();
    for (dest, len, gw) in all {
        let len = len.min(32);
        out.push(len);
        out.extend_from_slice(&dest.octets()[..usize::from(len).div_ceil(8)]);
        out.extend_from_slice(&gw.octets());
    }
    out
}

/// Lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Reduces a client-supplied name to one DNS label: lowercase [a-z0-9-], at
/// most 63 characters, no leading or trailing '-'. Only the first label of a
/// dotted name is kept (the domain is ours to choose).
pub fn sanitize_hostname(raw: &str) -> Option<String> {
    let first = raw.trim().split('.').next().unwrap_or("");
    let mut out = String::new();
    let mut replaced = false;
    for c in first.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            out.push(c);
            replaced = false;
        } else if !replaced {
            // "My  Laptop" -> "my-laptop", not "my--laptop".
            out.push('-');
            replaced = true;
        }
    }
    let out: String = out.trim_matches('-').chars().take(63).collect();
    let out = out.trim_end_matches('-');
    (!out.is_empty()).then(|| out.to_string())
}

/// What the caller should count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Offer,
    Ack,
    Nak,
    Decline,
    Release,
    /// Nothing to answer: meant for another server, unsupported, or no address left.
    Dropped,
}

#[derive(Debug, Clone)]
pub struct Reply {
    /// Header fields; options are in `opts`, in wire order.
    pub header: v4::Message,
    pub opts: Vec<DhcpOption>,
    pub dest: SocketAddrV4,
}

impl Reply {
    pub fn encode(&self) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
        codec::encode(&self.header, &self.opts)
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    pub reply: Option<Reply>,
    /// Set on an OFFER of an address new to the client: ping this address
    /// first, send `reply` only if nothing answers (then `probe_done`). A
    /// DISCOVER that arrives while the client's address is being checked gets
    /// the same `probe`: it is answered when that check ends.
    pub probe: Option<Ipv4Addr>,
    /// One line for the log.
    pub log: LogLine,
}

/// A log line, formatted only if it is printed: under load most are not, and
/// formatting every one would cost more than deciding the reply.
#[derive(Debug, Clone)]
pub enum LogLine {
    Offer {
        ip: Ipv4Addr,
        mac: Mac,
        name: Option<String>,
    },
    Ack {
        ip: Ipv4Addr,
        mac: Mac,
        name: Option<String>,
    },
    Checking {
        ip: Ipv4Addr,
        mac: Mac,
    },
    Text(String),
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix =
            |n: &Option<String>| n.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        match self {
            LogLine::Offer { ip, mac, name } => {
                write!(f, "dhcp: OFFER {ip} to {mac}{}", suffix(name))
            }
            LogLine::Ack { ip, mac, name } => write!(f, "dhcp: ACK {ip} to {mac}{}", suffix(name)),
            LogLine::Checking { ip, mac } => {
                write!(f, "dhcp: checking {ip} for {mac} before offering it")
            }
            LogLine::Text(t) => f.write_str(t),
        }
    }
}

/// A MAC address that prints as aa:bb:cc:dd:ee:ff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

fn dropped(log: String) -> Outcome {
    Outcome {
        kind: Kind::Dropped,
        reply: None,
        probe: None,
        log: LogLine::Text(log),
    }
}

/// Facts about one request, pulled out once.
struct Req<'a> {
    msg: &'a v4::Message,
    client: ClientKey,
    mac: Mac,
    hostname: Option<String>,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    prl: Vec<OptionCode>,
}

impl<'a> Req<'a> {
    fn new(msg: &'a v4::Message) -> Option<Self> {
        if msg.hlen() != 6 {
            return None;
        }
        let mac: [u8; 6] = msg.chaddr().try_into().ok()?;
        let opts = msg.opts();
        let id = match opts.get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => Some(hex(id)),
            _ => None,
        };
        Some(Req {
            msg,
            client: ClientKey { mac, id },
            mac: Mac(mac),
            hostname: match opts.get(OptionCode::Hostname) {
                Some(DhcpOption::Hostname(h)) => sanitize_hostname(h),
                _ => None,
            },
            requested: match opts.get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
                _ => None,
            },
            server_id: match opts.get(OptionCode::ServerIdentifier) {
                Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
                _ => None,
            },
            prl: match opts.get(OptionCode::ParameterRequestList) {
                Some(DhcpOption::ParameterRequestList(l)) => l.clone(),
                _ => Vec::new(),
            },
        })
    }

    fn ciaddr(&self) -> Option<Ipv4Addr> {
        let c = self.msg.ciaddr();
        (!c.is_unspecified()).then_some(c)
    }

    fn asks_for(&self, code: OptionCode) -> bool {
        self.prl.contains(&code)
    }
}

/// Decides the answer to `msg` at unix time `now`, updating `store`. The
/// caller must make the store's changes durable (`journal_seq`) before sending
/// an ACK, and must ping-check `probe` before sending an OFFER that has one.
pub fn handle(s: &Settings, store: &mut LeaseStore, msg: &v4::Message, now: u64) -> Outcome {
    let Some(req) = Req::new(msg) else {
        return dropped("dhcp: ignoring request without an Ethernet address".into());
    };
    let giaddr = msg.giaddr();
    if !giaddr.is_unspecified() && !s.in_subnet(giaddr) {
        // Our only pool is the LAN's; a relay on another network needs another pool.
        return dropped(format!(
            "dhcp: ignoring request from {} relayed by {giaddr}, which is not on the LAN",
            req.mac
        ));
    }
    match msg.opts().msg_type() {
        Some(MessageType::Discover) => discover(s, store, &req, now),
        Some(MessageType::Request) => request(s, store, &req, now),
        Some(MessageType::Decline) => decline(s, store, &req, now),
        Some(MessageType::Release) => release(s, store, &req, now),
        Some(MessageType::Inform) => inform(s, &req),
        other => dropped(format!(
            "dhcp: ignoring message type {other:?} from {}",
            req.mac
        )),
    }
}

/// The ping check for `ip`, started for the DISCOVER `msg` (the `attempt`-th
/// address tried for it), ended: `answered` means some host uses `ip`. Then
/// the client gets its OFFER, or another address is tried, or (after
/// `MAX_PROBES` conflicts, or when the reservation was withdrawn meanwhile)
/// nothing is sent and the client will retry.
pub fn probe_done(
    s: &Settings,
    store: &mut LeaseStore,
    msg: &v4::Message,
    ip: Ipv4Addr,
    answered: bool,
    attempt: u8,
    now: u64,
) -> Outcome {
    let Some(req) = Req::new(msg) else {
        return dropped("dhcp: probe for a request without an Ethernet address".into());
    };
    if store.probing_for(&req.client, now) != Some(ip) {
        return dropped(format!(
            "dhcp: check of {ip} for {} ended, but the address is no longer held for it",
            req.mac
        ));
    }
    if answered {
        store.quarantine(ip, now, now + CONFLICT_HOLD_SECS);
        let why = format!(
            "dhcp: {ip} answered a ping: in use on the LAN, not offered for {CONFLICT_HOLD_SECS}s"
        );
        if attempt >= MAX_PROBES {
            store.unreserve(&req.client);
            return dropped(format!(
                "{why}; {} gets no offer after {attempt} conflicts",
                req.mac
            ));
        }
        let mut o = discover(s, store, &req, now);
        o.log = LogLine::Text(format!(
            "{why}; {}",
            o.log.to_string().trim_start_matches("dhcp: ")
        ));
        return o;
    }
    store.reserve(&req.client, ip, now, now + OFFER_HOLD_SECS);
    offer(s, &req, ip)
}

/// Whether `ip` must be ping-checked before it is offered to `client`: it is
/// new to the client (not its static address, not its lease, not already
/// offered to it) and checking is on.
pub fn needs_probe(
    s: &Settings,
    store: &LeaseStore,
    client: &ClientKey,
    ip: Ipv4Addr,
    now: u64,
) -> bool {
    s.conflict_check_ms > 0
        && s.static_for(client.mac).is_none_or(|st| st.ip != ip)
        && !store.at(ip).is_some_and(|l| l.belongs_to(client))
        && store.reserved_for(client, now) != Some(ip)
}

/// Whether `ip` may be given to `client`: in the pool, not the router's, not
/// someone's static address, not quarantined, not held or offered to anyone else.
fn assignable(
    s: &Settings,
    store: &LeaseStore,
    client: &ClientKey,
    ip: Ipv4Addr,
    now: u64,
) -> bool {
    s.in_range(ip)
        && !s.reserved(ip)
        && s.static_owner(ip).is_none_or(|st| st.mac == client.mac)
        && !store.is_quarantined(ip, now)
        && store
            .at(ip)
            .is_none_or(|l| l.belongs_to(client) || !l.is_active(now))
        && !store.reserved_for_other(ip, client, now)
}

/// Whether the client may have `ip` now (REQUEST): its static address if it
/// has one, otherwise any address it could be offered.
fn acceptable(
    s: &Settings,
    store: &LeaseStore,
    client: &ClientKey,
    ip: Ipv4Addr,
    now: u64,
) -> bool {
    match s.static_for(client.mac) {
        Some(st) => st.ip == ip,
        None => assignable(s, store, client, ip, now),
    }
}

/// DISCOVER address choice: static lease; else the client's previous address;
/// else the address it asks for; else a never-used one; else the one whose
/// lease expired longest ago.
fn choose(s: &Settings, store: &mut LeaseStore, req: &Req, now: u64) -> Option<Ipv4Addr> {
    let c = &req.client;
    if let Some(st) = s.static_for(c.mac) {
        return Some(st.ip);
    }
    let ok = |store: &LeaseStore, ip: Ipv4Addr| assignable(s, store, c, ip, now);
    if let Some(ip) = store.find(c).map(|l| l.ip).filter(|ip| ok(store, *ip)) {
        return Some(ip);
    }
    if let Some(ip) = store.reserved_for(c, now).filter(|ip| ok(store, *ip)) {
        return Some(ip);
    }
    if let Some(ip) = req.requested.filter(|ip| ok(store, *ip)) {
        return Some(ip);
    }
    // Prefer addresses nobody ever had, lowest first, so expired leases stay
    // available to their owners for as long as possible. Below the store's
    // cursor every address has a record, is held, quarantined, the router's
    // or someone's static one, so the scan starts there: handing out a large
    // pool stays linear overall, whatever the clients do.
    let (lo, hi) = (u32::from(s.range_start), u32::from(s.range_end));
    if lo <= hi {
        store.sweep(now);
        let start = store
            .alloc_cursor()
            .filter(|c| (lo..=hi.saturating_add(1)).contains(c))
            .unwrap_or(lo);
        for a in start..=hi {
            let ip = Ipv4Addr::from(a);
            let taken = store.at(ip).is_some()
                || s.reserved(ip)
                || s.static_owner(ip).is_some()
                || store.is_held(ip, now)
                || store.is_quarantined(ip, now);
            if !taken {
                store.set_alloc_cursor(a);
                return Some(ip);
            }
        }
        store.set_alloc_cursor(hi.saturating_add(1));
    }
    store
        .expired_oldest_first(now)
        .find(|l| ok(store, l.ip))
        .map(|l| l.ip)
}

fn discover(s: &Settings, store: &mut LeaseStore, req: &Req, now: u64) -> Outcome {
    if let Some(ip) = store.probing_for(&req.client, now) {
        // A retransmission (perhaps with a new xid): no second check, the
        // one under way answers it too.
        let mut o = offer(s, req, ip);
        o.probe = Some(ip);
        o.log = LogLine::Text(format!(
            "dhcp: DISCOVER from {} while {ip} is being checked",
            req.mac
        ));
        return o;
    }
    let Some(ip) = choose(s, store, req, now) else {
        return dropped(format!(
            "dhcp: no free address for {}: pool exhausted",
            req.mac
        ));
    };
    if !store.has_room(&req.client, now) {
        return dropped(format!(
            "dhcp: no address for {}: lease table full",
            req.mac
        ));
    }
    if needs_probe(s, store, &req.client, ip, now) {
        store.reserve_probing(&req.client, ip, now, now + PROBE_HOLD_SECS);
        let mut o = offer(s, req, ip);
        o.probe = Some(ip);
        o.log = LogLine::Checking { ip, mac: req.mac };
        return o;
    }
    store.reserve(&req.client, ip, now, now + OFFER_HOLD_SECS);
    offer(s, req, ip)
}

fn offer(s: &Settings, req: &Req, ip: Ipv4Addr) -> Outcome {
    Outcome {
        kind: Kind::Offer,
        reply: Some(reply(s, req, MessageType::Offer, ip, true)),
        probe: None,
        log: LogLine::Offer {
            ip,
            mac: req.mac,
            name: req.hostname.clone(),
        },
    }
}

fn request(s: &Settings, store: &mut LeaseStore, req: &Req, now: u64) -> Outcome {
    match req.server_id {
        // SELECTING: the client picked an offer.
        Some(sid) if sid != s.server_ip => {
            store.unreserve(&req.client);
            dropped(format!("dhcp: {} chose server {sid}", req.mac))
        }
        Some(_) => match req.requested.or(req.ciaddr()) {
            Some(ip) => commit(s, store, req, ip, now),
            None => dropped(format!("dhcp: REQUEST from {} names no address", req.mac)),
        },
        // RENEWING / REBINDING: the client has an address (ciaddr) and wants to
        // keep it. INIT-REBOOT: it remembers one (option 50) after a reboot.
        None => match req.ciaddr().or(req.requested) {
            Some(ip) if !s.in_subnet(ip) => nak(s, req, format!("{ip} is not on this network")),
            Some(ip) => commit(s, store, req, ip, now),
            None => dropped(format!("dhcp: REQUEST from {} names no address", req.mac)),
        },
    }
}

/// The name a client's lease gets. A static lease's name is used as is (it
/// wins). Otherwise the client's wish (or its previous name, when it sends
/// none), made unique: if another client holds the name, or it is a static
/// lease's or the router's, "-2", "-3", ... is appended. A name resolved
/// earlier ("laptop-2") is kept as long as it stays free, so it does not
/// change from one renewal to the next.
pub fn resolve_hostname(
    s: &Settings,
    store: &LeaseStore,
    client: &ClientKey,
    wanted: Option<&str>,
    now: u64,
) -> Option<String> {
    if let Some(name) = s
        .static_for(client.mac)
        .and_then(|st| st.hostname.as_deref())
    {
        return Some(name.to_string());
    }
    let previous = store.find(client).and_then(|l| l.hostname.clone());
    let base = wanted.map(str::to_string).or_else(|| previous.clone())?;
    let free = |name: &str| {
        !s.reserved_names.iter().any(|r| r == name)
            && !s
                .statics
                .iter()
                .any(|st| st.mac != client.mac && st.hostname.as_deref() == Some(name))
            && store
                .by_hostname(name)
                .is_none_or(|l| l.belongs_to(client) || !l.is_active(now))
    };
    if let Some(p) = previous.filter(|p| is_variant_of(p, &base) && free(p)) {
        return Some(p);
    }
    if free(&base) {
        return Some(base);
    }
    (2..1000u32).find_map(|n| {
        let suffix = format!("-{n}");
        let stem = base[..base.len().min(63 - suffix.len())].trim_end_matches('-');
        let name = format!("{stem}{suffix}");
        free(&name).then_some(name)
    })
}

/// `name` is `base` or `base` with a "-N" collision suffix (possibly with
/// `base` shortened to fit 63 characters).
fn is_variant_of(name: &str, base: &str) -> bool {
    if name == base {
        return true;
    }
    match name.rsplit_once('-') {
        Some((stem, n)) => {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && !stem.is_empty()
                && base.starts_with(stem)
        }
        None => false,
    }
}

/// Binds `ip` to the client and ACKs, or NAKs if it may not have it.
fn commit(s: &Settings, store: &mut LeaseStore, req: &Req, ip: Ipv4Addr, now: u64) -> Outcome {
    if !acceptable(s, store, &req.client, ip, now) {
        return nak(s, req, format!("{ip} is not available"));
    }
    let hostname = resolve_hostname(s, store, &req.client, req.hostname.as_deref(), now);
    let lease = Lease {
        mac: req.client.mac,
        ip,
        hostname: hostname.clone(),
        expires: now + u64::from(s.lease_secs),
        client_id: req.client.id.clone(),
    };
    if store.bind(lease, now).is_err() {
        return nak(s, req, "lease table full".into());
    }
    store.unreserve(&req.client);
    Outcome {
        kind: Kind::Ack,
        reply: Some(reply(s, req, MessageType::Ack, ip, true)),
        probe: None,
        log: LogLine::Ack {
            ip,
            mac: req.mac,
            name: hostname,
        },
    }
}

fn decline(s: &Settings, store: &mut LeaseStore, req: &Req, now: u64) -> Outcome {
    if req.server_id.is_some_and(|sid| sid != s.server_ip) {
        return dropped(format!("dhcp: DECLINE from {} for another server", req.mac));
    }
    let Some(ip) = req.requested.filter(|ip| s.in_range(*ip)) else {
        return dropped(format!(
            "dhcp: DECLINE from {} without a pool address",
            req.mac
        ));
    };
    // Only the client that was given the address may take it out of the pool,
    // otherwise any host could drain the pool with forged DECLINEs.
    let ours = store.at(ip).is_some_and(|l| l.belongs_to(&req.client))
        || store.reserved_for(&req.client, now) == Some(ip);
    if !ours {
        return dropped(format!(
            "dhcp: DECLINE of {ip} from {}, which does not hold it",
            req.mac
        ));
    }
    store.remove(ip);
    store.quarantine(ip, now, now + DECLINE_HOLD_SECS);
    Outcome {
        kind: Kind::Decline,
        reply: None,
        probe: None,
        log: LogLine::Text(format!(
            "dhcp: DECLINE {ip} from {}: address in use on the LAN, unused for {DECLINE_HOLD_SECS}s",
            req.mac
        )),
    }
}

fn release(s: &Settings, store: &mut LeaseStore, req: &Req, now: u64) -> Outcome {
    if req.server_id.is_some_and(|sid| sid != s.server_ip) {
        return dropped(format!("dhcp: RELEASE from {} for another server", req.mac));
    }
    match req.ciaddr() {
        Some(ip) if store.release(&req.client, ip, now) => Outcome {
            kind: Kind::Release,
            reply: None,
            probe: None,
            log: LogLine::Text(format!("dhcp: RELEASE {ip} from {}", req.mac)),
        },
        ip => dropped(format!(
            "dhcp: RELEASE of {} from {}, which holds no such lease",
            ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            req.mac
        )),
    }
}

/// The client configured its address itself and only wants the options.
fn inform(s: &Settings, req: &Req) -> Outcome {
    Outcome {
        kind: Kind::Ack,
        reply: Some(reply(
            s,
            req,
            MessageType::Ack,
            Ipv4Addr::UNSPECIFIED,
            false,
        )),
        probe: None,
        log: LogLine::Text(format!(
            "dhcp: ACK (INFORM) to {} at {}",
            req.mac,
            req.msg.ciaddr()
        )),
    }
}

fn nak(s: &Settings, req: &Req, why: String) -> Outcome {
    let mut header = header(req, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
    if !req.msg.giaddr().is_unspecified() {
        // RFC 2131 4.3.2: the relay must broadcast a NAK to the client.
        header.set_flags(req.msg.flags().set_broadcast());
    }
    let opts = vec![
        DhcpOption::MessageType(MessageType::Nak),
        DhcpOption::ServerIdentifier(s.server_ip),
        DhcpOption::Message(why.clone()),
    ];
    Outcome {
        kind: Kind::Nak,
        reply: Some(Reply {
            header,
            opts,
            dest: destination(req.msg, MessageType::Nak),
        }),
        probe: None,
        log: LogLine::Text(format!("dhcp: NAK to {}: {why}", req.mac)),
    }
}

fn header(req: &Req, yiaddr: Ipv4Addr, ciaddr: Ipv4Addr) -> v4::Message {
    let m = req.msg;
    let mut h = v4::Message::new_with_id(
        m.xid(),
        ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        m.giaddr(),
        m.chaddr(),
    );
    h.set_opcode(v4::Opcode::BootReply)
        .set_htype(m.htype())
        .set_flags(m.flags());
    h
}

/// OFFER or ACK (with a lease), or the ACK to an INFORM (without one).
///
/// Option order: message type and server id, the lease times, then the
/// options the client asked for in the order of its parameter request list,
/// then the basic ones it did not ask for (mask, router, DNS, domain: every
/// client needs them). MTU, NTP servers and classless routes are sent only
/// when configured and asked for.
fn reply(s: &Settings, req: &Req, ty: MessageType, ip: Ipv4Addr, with_lease: bool) -> Reply {
    // RFC 2131 table 3: ciaddr is echoed in ACKs, zero in OFFERs.
    let ciaddr = if ty == MessageType::Ack {
        req.msg.ciaddr()
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let mut opts = vec![
        DhcpOption::MessageType(ty),
        DhcpOption::ServerIdentifier(s.server_ip),
    ];
    if with_lease {
        opts.push(DhcpOption::AddressLeaseTime(s.lease_secs));
        opts.push(DhcpOption::Renewal(s.renew_secs));
        opts.push(DhcpOption::Rebinding(s.rebind_secs));
    }
    let mut extra = vec![
        DhcpOption::SubnetMask(s.netmask),
        DhcpOption::Router(vec![s.server_ip]),
        DhcpOption::DomainNameServer(vec![s.server_ip]),
    ];
    if let Some(d) = &s.domain {
        extra.push(DhcpOption::DomainName(d.clone()));
    }
    if let Some(mtu) = s.mtu.filter(|_| req.asks_for(OptionCode::InterfaceMtu)) {
        extra.push(DhcpOption::InterfaceMtu(mtu));
    }
    if !s.ntp_servers.is_empty() && req.asks_for(OptionCode::NtpServers) {
        extra.push(DhcpOption::NtpServers(s.ntp_servers.clone()));
    }
    if !s.classless_routes.is_empty() && req.asks_for(OptionCode::ClasslessStaticRoute) {
        extra.push(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::ClasslessStaticRoute,
            s.classless_routes.clone(),
        )));
    }
    // Requested options in the client's order; the rest after them.
    // (Compared as numbers: option 121 is built as an `Unknown` option.)
    extra.sort_by_key(|o| {
        let code = u8::from(OptionCode::from(o));
        req.prl
            .iter()
            .position(|c| u8::from(*c) == code)
            .unwrap_or(usize::MAX)
    });
    opts.extend(extra);
    Reply {
        header: header(req, ip, ciaddr),
        opts,
        dest: destination(req.msg, ty),
    }
}

/// RFC 2131 4.1: via the relay if there is one; unicast to a client that
/// already has its address; otherwise broadcast (a client without an address
/// cannot answer ARP, and we do not inject ARP entries).
pub fn destination(req: &v4::Message, ty: MessageType) -> SocketAddrV4 {
    if !req.giaddr().is_unspecified() {
        SocketAddrV4::new(req.giaddr(), SERVER_PORT)
    } else if ty != MessageType::Nak && !req.ciaddr().is_unspecified() {
        SocketAddrV4::new(req.ciaddr(), CLIENT_PORT)
    } else {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticLease;
    use std::path::PathBuf;

    const NOW: u64 = 1_000_000;
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

    struct Fixture {
        s: Settings,
        store: LeaseStore,
        dir: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(edit: impl FnOnce(&mut Config), max: usize) -> Fixture {
        let mut cfg = Config::default();
        // The ping check has its own tests; elsewhere offers go out at once.
        cfg.dhcp.conflict_check_ms = 0;
        edit(&mut cfg);
        let dir = std::env::temp_dir().join(format!(
            "gh-dhcp-logic-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let store = LeaseStore::open(&dir.join("leases.json"), max).unwrap();
        Fixture {
            s: Settings::from_config(&cfg),
            store,
            dir,
        }
    }

    fn default_fixture() -> Fixture {
        fixture(|_| {}, 4096)
    }

    fn mac(n: u8) -> [u8; 6] {
        [0x52, 0x54, 0x00, 0x00, 0x00, n]
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 1, last)
    }

    fn msg(ty: MessageType, mac: [u8; 6], opts: Vec<DhcpOption>) -> v4::Message {
        let mut m = v4::Message::new_with_id(
            42,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(DhcpOption::MessageType(ty));
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }

    fn yiaddr(o: &Outcome) -> Ipv4Addr {
        o.reply.as_ref().expect("a reply").header.yiaddr()
    }

    fn opt_codes(o: &Outcome) -> Vec<u8> {
        o.reply
            .as_ref()
            .unwrap()
            .opts
            .iter()
            .map(|o| u8::from(OptionCode::from(o)))
            .collect()
    }

    impl Fixture {
        fn run(&mut self, m: &v4::Message) -> Outcome {
            handle(&self.s, &mut self.store, m, NOW)
        }

        /// DISCOVER then REQUEST (selecting); returns the ACKed address.
        fn obtain(&mut self, mac: [u8; 6], extra: Vec<DhcpOption>) -> Ipv4Addr {
            let offer = self.run(&msg(MessageType::Discover, mac, extra.clone()));
            assert_eq!(offer.kind, Kind::Offer, "{}", offer.log);
            let got = yiaddr(&offer);
            let mut opts = extra;
            opts.push(DhcpOption::ServerIdentifier(SERVER));
            opts.push(DhcpOption::RequestedIpAddress(got));
            let ack = self.run(&msg(MessageType::Request, mac, opts));
            assert_eq!(ack.kind, Kind::Ack, "{}", ack.log);
            assert_eq!(yiaddr(&ack), got);
            got
        }
    }

    #[test]
    fn offer_comes_from_range_with_options() {
        let mut f = default_fixture();
        let o = f.run(&msg(
            MessageType::Discover,
            mac(1),
            vec![DhcpOption::ParameterRequestList(vec![
                OptionCode::DomainNameServer,
                OptionCode::SubnetMask,
                OptionCode::Router,
            ])],
        ));
        assert_eq!(o.kind, Kind::Offer);
        assert_eq!(yiaddr(&o), ip(100));
        let r = o.reply.as_ref().unwrap();
        assert_eq!(r.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert_eq!(r.header.opcode(), v4::Opcode::BootReply);
        assert_eq!(r.header.xid(), 42);
        // Fixed options first, then the requested ones in the client's order.
        assert_eq!(opt_codes(&o), vec![53, 54, 51, 58, 59, 6, 1, 3, 15]);
        assert!(r.opts.contains(&DhcpOption::AddressLeaseTime(43200)));
        assert!(r.opts.contains(&DhcpOption::Renewal(21600)));
        assert!(r.opts.contains(&DhcpOption::Rebinding(37800)));
        assert!(r.opts.contains(&DhcpOption::DomainName("lan".into())));
        assert!(r
            .opts
            .contains(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0))));
        // The offer reserves the address: the next client gets another one.
        let o2 = f.run(&msg(MessageType::Discover, mac(2), vec![]));
        assert_eq!(yiaddr(&o2), ip(101));
        // Nothing is persisted for an offer.
        assert!(f.store.is_empty());
        // And the encoded reply decodes.
        let bytes = r.encode().unwrap();
        let back = <v4::Message as dhcproto::Decodable>::from_bytes(&bytes).unwrap();
        assert_eq!(back.opts().msg_type(), Some(MessageType::Offer));
    }

    #[test]
    fn ack_binds_and_persists() {
        let mut f = default_fixture();
        let got = f.obtain(mac(1), vec![DhcpOption::Hostname("Kitchen Pad".into())]);
        assert_eq!(got, ip(100));
        assert!(f.store.is_dirty());
        let l = f.store.at(got).unwrap();
        assert_eq!(l.mac, mac(1));
        assert_eq!(l.hostname.as_deref(), Some("kitchen-pad"));
        assert_eq!(l.expires, NOW + 43200);
    }

    #[test]
    fn static_lease_wins() {
        let mut f = fixture(
            |c| {
                c.dhcp.static_leases.push(StaticLease {
                    mac: "52:54:00:00:00:02".into(),
                    ip: ip(50),
                    hostname: Some("printer".into()),
                });
                c.dhcp.static_leases.push(StaticLease {
                    mac: "52:54:00:00:00:09".into(),
                    ip: ip(100),
                    hostname: None,
                });
            },
            4096,
        );
        // Even asking for another address, the static one is offered.
        let o = f.run(&msg(
            MessageType::Discover,
            mac(2),
            vec![DhcpOption::RequestedIpAddress(ip(120))],
        ));
        assert_eq!(yiaddr(&o), ip(50));
        assert_eq!(
            f.obtain(mac(2), vec![DhcpOption::Hostname("x".into())]),
            ip(50)
        );
        assert_eq!(
            f.store.at(ip(50)).unwrap().hostname.as_deref(),
            Some("printer")
        );
        // A static address inside the pool is never given to anyone else.
        assert_eq!(f.obtain(mac(3), vec![]), ip(101));
        // The static client may not keep another address.
        let r = f.run(&msg(
            MessageType::Request,
            mac(2),
            vec![DhcpOption::RequestedIpAddress(ip(120))],
        ));
        assert_eq!(r.kind, Kind::Nak);
    }

    #[test]
    fn returning_client_gets_old_address() {
        let mut f = default_fixture();
        f.obtain(mac(1), vec![]);
        let second = f.obtain(mac(2), vec![]);
        assert_eq!(second, ip(101));
        // Lease expired long ago, new clients came meanwhile: still its address.
        let later = NOW + 100_000;
        f.obtain(mac(3), vec![]);
        let o = handle(
            &f.s,
            &mut f.store,
            &msg(MessageType::Discover, mac(2), vec![]),
            later,
        );
        assert_eq!(yiaddr(&o), ip(101));
        // Same via client identifier on a different NIC.
        let cid = vec![DhcpOption::ClientIdentifier(vec![0xff, 1, 2, 3])];
        let a = f.obtain(mac(7), cid.clone());
        let o = f.run(&msg(MessageType::Discover, mac(8), cid));
        assert_eq!(yiaddr(&o), a);
    }

    #[test]
    fn requested_address_honoured() {
        let mut f = default_fixture();
        let o = f.run(&msg(
            MessageType::Discover,
            mac(1),
            vec![DhcpOption::RequestedIpAddress(ip(200))],
        ));
        assert_eq!(yiaddr(&o), ip(200));
        // Outside the pool, or the router's own address: ignored.
        for bad in [ip(1), ip(10), Ipv4Addr::new(10, 0, 0, 5)] {
            let o = f.run(&msg(
                MessageType::Discover,
                mac(2),
                vec![DhcpOption::RequestedIpAddress(bad)],
            ));
            assert_eq!(yiaddr(&o), ip(100));
        }
        // Taken by another client: ignored.
        let o = f.run(&msg(
            MessageType::Discover,
            mac(3),
            vec![DhcpOption::RequestedIpAddress(ip(200))],
        ));
        assert_ne!(yiaddr(&o), ip(200));
    }

    #[test]
    fn request_for_another_server_is_ignored() {
        let mut f = default_fixture();
        let o = f.run(&msg(MessageType::Discover, mac(1), vec![]));
        let offered = yiaddr(&o);
        let r = f.run(&msg(
            MessageType::Request,
            mac(1),
            vec![
                DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 1, 2)),
                DhcpOption::RequestedIpAddress(offered),
            ],
        ));
        assert_eq!(r.kind, Kind::Dropped);
        assert!(r.reply.is_none());
        assert!(f.store.is_empty());
        // The offer's reservation was withdrawn.
        let o = f.run(&msg(MessageType::Discover, mac(2), vec![]));
        assert_eq!(yiaddr(&o), offered);
    }

    #[test]
    fn init_reboot() {
        let mut f = default_fixture();
        let had = f.obtain(mac(1), vec![]);
        // Remembered address, no server id: ACK.
        let r = f.run(&msg(
            MessageType::Request,
            mac(1),
            vec![DhcpOption::RequestedIpAddress(had)],
        ));
        assert_eq!(r.kind, Kind::Ack);
        // Wrong subnet: NAK, broadcast.
        let r = f.run(&msg(
            MessageType::Request,
            mac(1),
            vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 1, 2, 3))],
        ));
        assert_eq!(r.kind, Kind::Nak);
        let reply = r.reply.as_ref().unwrap();
        assert_eq!(reply.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert_eq!(reply.header.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(opt_codes(&r), vec![53, 54, 56]);
        // Someone else's address: NAK.
        let r = f.run(&msg(
            MessageType::Request,
            mac(2),
            vec![DhcpOption::RequestedIpAddress(had)],
        ));
        assert_eq!(r.kind, Kind::Nak);
        // Right subnet but outside the pool: NAK.
        let r = f.run(&msg(
            MessageType::Request,
            mac(2),
            vec![DhcpOption::RequestedIpAddress(ip(20))],
        ));
        assert_eq!(r.kind, Kind::Nak);
        // Unknown client, free pool address (lease file lost): it keeps it.
        let r = f.run(&msg(
            MessageType::Request,
            mac(3),
            vec![DhcpOption::RequestedIpAddress(ip(180))],
        ));
        assert_eq!(r.kind, Kind::Ack);
    }

    #[test]
    fn renewing_is_unicast_and_extends() {
        let mut f = default_fixture();
        let had = f.obtain(mac(1), vec![DhcpOption::Hostname("pc".into())]);
        let mut m = msg(MessageType::Request, mac(1), vec![]);
        m.set_ciaddr(had);
        let r = handle(&f.s, &mut f.store, &m, NOW + 1000);
        assert_eq!(r.kind, Kind::Ack);
        let reply = r.reply.as_ref().unwrap();
        assert_eq!(reply.dest, SocketAddrV4::new(had, 68));
        assert_eq!(reply.header.ciaddr(), had);
        let l = f.store.at(had).unwrap();
        assert_eq!(l.expires, NOW + 1000 + 43200);
        // The hostname is kept when the renewal does not repeat it.
        assert_eq!(l.hostname.as_deref(), Some("pc"));
        // Through a relay: reply goes to the relay's server port.
        m.set_giaddr(Ipv4Addr::new(192, 168, 1, 254));
        let r = f.run(&m);
        assert_eq!(
            r.reply.unwrap().dest,
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 254), 67)
        );
    }

    #[test]
    fn release_frees_address() {
        let mut f = default_fixture();
        let had = f.obtain(mac(1), vec![]);
        f.store.save().unwrap();
        let mut m = msg(
            MessageType::Release,
            mac(1),
            vec![DhcpOption::ServerIdentifier(SERVER)],
        );
        m.set_ciaddr(had);
        // Another client cannot release it.
        let mut forged = m.clone();
        forged.set_chaddr(&mac(2));
        assert_eq!(f.run(&forged).kind, Kind::Dropped);
        assert!(f.store.at(had).unwrap().is_active(NOW));
        let r = f.run(&m);
        assert_eq!(r.kind, Kind::Release);
        assert!(r.reply.is_none());
        assert!(f.store.is_dirty());
        // The address is free for someone who asks for it.
        let o = f.run(&msg(
            MessageType::Discover,
            mac(2),
            vec![DhcpOption::RequestedIpAddress(had)],
        ));
        assert_eq!(yiaddr(&o), had);
    }

    #[test]
    fn decline_quarantines_address() {
        let mut f = default_fixture();
        let had = f.obtain(mac(1), vec![]);
        let m = msg(
            MessageType::Decline,
            mac(1),
            vec![
                DhcpOption::ServerIdentifier(SERVER),
                DhcpOption::RequestedIpAddress(had),
            ],
        );
        let r = f.run(&m);
        assert_eq!(r.kind, Kind::Decline);
        assert!(f.store.at(had).is_none());
        // The decliner and everyone else get another address for a while.
        let o = f.run(&msg(MessageType::Discover, mac(1), vec![]));
        assert_ne!(yiaddr(&o), had);
        let later = NOW + DECLINE_HOLD_SECS + 1;
        let o = handle(
            &f.s,
            &mut f.store,
            &msg(MessageType::Discover, mac(3), vec![]),
            later,
        );
        assert_eq!(yiaddr(&o), had);
    }

    #[test]
    fn inform_gets_options_without_lease() {
        let mut f = default_fixture();
        let mut m = msg(MessageType::Inform, mac(1), vec![]);
        m.set_ciaddr(ip(20));
        let r = f.run(&m);
        assert_eq!(r.kind, Kind::Ack);
        let reply = r.reply.as_ref().unwrap();
        assert_eq!(reply.header.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(reply.dest, SocketAddrV4::new(ip(20), 68));
        assert_eq!(opt_codes(&r), vec![53, 54, 1, 3, 6, 15]);
        assert!(f.store.is_empty());
    }

    #[test]
    fn pool_exhaustion_gives_no_offer() {
        let mut f = fixture(
            |c| {
                c.dhcp.range_start = ip(100);
                c.dhcp.range_end = ip(102);
            },
            4096,
        );
        for n in 1..=3 {
            f.obtain(mac(n), vec![]);
        }
        let o = f.run(&msg(MessageType::Discover, mac(4), vec![]));
        assert_eq!(o.kind, Kind::Dropped);
        assert!(o.reply.is_none());
        assert!(o.log.to_string().contains("exhausted"), "{}", o.log);
        // Once a lease expires, its address is reused.
        let later = NOW + 43200 + 1;
        let o = handle(
            &f.s,
            &mut f.store,
            &msg(MessageType::Discover, mac(4), vec![]),
            later,
        );
        assert_eq!(o.kind, Kind::Offer);
    }

    #[test]
    fn full_lease_table_gives_no_offer() {
        let mut f = fixture(|_| {}, 2);
        f.obtain(mac(1), vec![]);
        f.obtain(mac(2), vec![]);
        let o = f.run(&msg(MessageType::Discover, mac(3), vec![]));
        assert_eq!(o.kind, Kind::Dropped);
        assert!(o.log.to_string().contains("full"), "{}", o.log);
    }

    #[test]
    fn unexpected_types_are_dropped() {
        let mut f = default_fixture();
        let o = f.run(&msg(MessageType::Offer, mac(1), vec![]));
        assert_eq!(o.kind, Kind::Dropped);
        let o = f.run(&msg(MessageType::Request, mac(1), vec![]));
        assert_eq!(o.kind, Kind::Dropped);
    }

    #[test]
    fn hostname_sanitizing() {
        let cases = [
            ("Laptop", Some("laptop")),
            ("My  Laptop", Some("my-laptop")),
            ("host.example.com", Some("host")),
            ("-_weird_-", Some("weird")),
            ("xn--bcher-kva", Some("xn--bcher-kva")),
            ("Jürgen's PC", Some("j-rgen-s-pc")),
            ("---", None),
            ("", None),
            (".hidden", None),
            ("   ", None),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize_hostname(raw).as_deref(), want, "{raw:?}");
        }
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let s = sanitize_hostname(&long).unwrap();
        assert_eq!(
            s,
            "a".repeat(62),
            "trailing '-' left by truncation is removed"
        );
        assert!(sanitize_hostname(&"x".repeat(300)).unwrap().len() == 63);
    }

    fn probe_fixture() -> Fixture {
        fixture(|c| c.dhcp.conflict_check_ms = 300, 4096)
    }

    fn request_for(mac: [u8; 6], ip: Ipv4Addr, extra: Vec<DhcpOption>) -> v4::Message {
        let mut opts = extra;
        opts.push(DhcpOption::ServerIdentifier(SERVER));
        opts.push(DhcpOption::RequestedIpAddress(ip));
        msg(MessageType::Request, mac, opts)
    }

    #[test]
    fn new_address_is_ping_checked_before_offer() {
        let mut f = probe_fixture();
        let d1 = msg(MessageType::Discover, mac(1), vec![]);
        let o = f.run(&d1);
        // An OFFER, but only once the address stayed silent.
        assert_eq!(o.kind, Kind::Offer);
        assert_eq!(o.probe, Some(ip(100)));
        assert_eq!(yiaddr(&o), ip(100));
        // A retransmission while the check runs waits for the same check.
        let again = f.run(&d1);
        assert_eq!((again.kind, again.probe), (Kind::Offer, Some(ip(100))));
        // Meanwhile nobody else is given the address.
        let d2 = msg(MessageType::Discover, mac(2), vec![]);
        let o2 = f.run(&d2);
        assert_eq!(o2.probe, Some(ip(101)));
        // .100 answered: it is skipped, and the next free one is checked.
        let o = probe_done(&f.s, &mut f.store, &d1, ip(100), true, 1, NOW);
        assert_eq!(o.kind, Kind::Offer);
        assert_eq!(o.probe, Some(ip(102)));
        assert!(
            o.log.to_string().contains("192.168.1.100 answered a ping"),
            "{}",
            o.log
        );
        assert!(f.store.is_quarantined(ip(100), NOW));
        // .102 stayed silent: the OFFER goes out, and is held as usual.
        let o = probe_done(&f.s, &mut f.store, &d1, ip(102), false, 2, NOW);
        assert_eq!(o.kind, Kind::Offer);
        assert_eq!(o.probe, None);
        assert_eq!(yiaddr(&o), ip(102));
        assert!(o.reply.is_some());
        let ack = f.run(&request_for(mac(1), ip(102), vec![]));
        assert_eq!(ack.kind, Kind::Ack);
        // The client's own address is not checked again, even once expired.
        let later = NOW + 43200 + 5;
        let o = handle(&f.s, &mut f.store, &d1, later);
        assert_eq!((yiaddr(&o), o.probe), (ip(102), None));
        // The quarantine ends.
        let o = handle(
            &f.s,
            &mut f.store,
            &msg(MessageType::Discover, mac(9), vec![]),
            NOW + CONFLICT_HOLD_SECS + 1,
        );
        assert_eq!(o.probe, Some(ip(100)));
    }

    #[test]
    fn probe_gives_up_and_handles_withdrawn_reservations() {
        let mut f = probe_fixture();
        let d = msg(MessageType::Discover, mac(1), vec![]);
        let mut o = f.run(&d);
        for attempt in 1..MAX_PROBES {
            let ip = o.probe.unwrap();
            o = probe_done(&f.s, &mut f.store, &d, ip, true, attempt, NOW);
            assert_eq!(o.kind, Kind::Offer);
        }
        let last = o.probe.unwrap();
        let o = probe_done(&f.s, &mut f.store, &d, last, true, MAX_PROBES, NOW);
        assert_eq!(o.kind, Kind::Dropped);
        assert_eq!(
            f.store.reserved_for(
                &ClientKey {
                    mac: mac(1),
                    id: None
                },
                NOW
            ),
            None
        );
        // The client retries later and gets a fresh check.
        let o = f.run(&d);
        assert_eq!(o.probe, Some(ip(100 + MAX_PROBES)));
        // It chose another server meanwhile: the check's end sends nothing.
        let r = f.run(&msg(
            MessageType::Request,
            mac(1),
            vec![
                DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 1, 2)),
                DhcpOption::RequestedIpAddress(ip(77)),
            ],
        ));
        assert_eq!(r.kind, Kind::Dropped);
        let o = probe_done(&f.s, &mut f.store, &d, ip(100 + MAX_PROBES), false, 1, NOW);
        assert_eq!(o.kind, Kind::Dropped);
        assert!(o.reply.is_none());
    }

    #[test]
    fn what_needs_a_ping_check() {
        let mut f = fixture(
            |c| {
                c.dhcp.conflict_check_ms = 300;
                c.dhcp.static_leases.push(StaticLease {
                    mac: "52:54:00:00:00:05".into(),
                    ip: ip(50),
                    hostname: None,
                });
            },
            4096,
        );
        let key = |n| ClientKey {
            mac: mac(n),
            id: None,
        };
        assert!(needs_probe(&f.s, &f.store, &key(1), ip(100), NOW));
        // Static address of this client: never.
        assert!(!needs_probe(&f.s, &f.store, &key(5), ip(50), NOW));
        assert_eq!(
            f.run(&msg(MessageType::Discover, mac(5), vec![])).probe,
            None
        );
        // Its own lease, active or not: no.
        f.obtain(mac(1), vec![]);
        assert!(!needs_probe(&f.s, &f.store, &key(1), ip(100), NOW));
        assert!(!needs_probe(
            &f.s,
            &f.store,
            &key(1),
            ip(100),
            NOW + 100_000
        ));
        // Someone else's old address: yes.
        assert!(needs_probe(&f.s, &f.store, &key(2), ip(100), NOW + 100_000));
        // Checking off: never.
        f.s.conflict_check_ms = 0;
        assert!(!needs_probe(&f.s, &f.store, &key(2), ip(101), NOW));
    }

    #[test]
    fn classless_routes_encoding() {
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let routes = [
            (Ipv4Addr::new(10, 0, 0, 0), 8, gw),
            (Ipv4Addr::new(10, 17, 0, 0), 16, gw),
            (Ipv4Addr::new(10, 27, 129, 0), 24, gw),
            (Ipv4Addr::new(10, 229, 0, 128), 25, gw),
            (Ipv4Addr::new(10, 198, 122, 47), 32, gw),
        ];
        let router = Ipv4Addr::new(10, 0, 0, 254);
        // RFC 3442 section 3's examples, then the added default route.
        assert_eq!(
            encode_classless_routes(&routes, router),
            vec![
                8, 10, 10, 0, 0, 1, //
                16, 10, 17, 10, 0, 0, 1, //
                24, 10, 27, 129, 10, 0, 0, 1, //
                25, 10, 229, 0, 128, 10, 0, 0, 1, //
                32, 10, 198, 122, 47, 10, 0, 0, 1, //
                0, 10, 0, 0, 254,
            ]
        );
        // A configured default route is not doubled; no routes, no option.
        assert_eq!(
            encode_classless_routes(&[(Ipv4Addr::UNSPECIFIED, 0, gw)], router),
            vec![0, 10, 0, 0, 1]
        );
        assert!(encode_classless_routes(&[], router).is_empty());
    }

    #[test]
    fn optional_options_follow_config_and_request_list() {
        let cfg = crate::config::parse(
            r#"
[dhcp]
conflict_check_ms = 0
mtu = 1400
ntp_servers = ["192.168.1.1", "192.168.1.3"]
routes = [{ destination = "10.8.0.0/16", gateway = "192.168.1.2" }]
renew_secs = 1000
rebind_secs = 2000
"#,
        )
        .unwrap();
        let s = Settings::from_config(&cfg);
        let mut f = default_fixture();
        f.s = s;
        let prl = |codes: &[u8]| {
            DhcpOption::ParameterRequestList(codes.iter().map(|c| OptionCode::from(*c)).collect())
        };
        let o = f.run(&msg(
            MessageType::Discover,
            mac(1),
            vec![prl(&[121, 42, 3, 26, 1])],
        ));
        assert_eq!(
            opt_codes(&o),
            vec![53, 54, 51, 58, 59, 121, 42, 3, 26, 1, 6, 15]
        );
        let r = o.reply.as_ref().unwrap();
        assert!(r.opts.contains(&DhcpOption::InterfaceMtu(1400)));
        assert!(r.opts.contains(&DhcpOption::Renewal(1000)));
        assert!(r.opts.contains(&DhcpOption::Rebinding(2000)));
        assert!(r.opts.contains(&DhcpOption::NtpServers(vec![
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(192, 168, 1, 3)
        ])));
        // On the wire, and back through dhcproto's own decoder.
        let back = <v4::Message as dhcproto::Decodable>::from_bytes(&r.encode().unwrap()).unwrap();
        match back.opts().get(OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(routes)) => {
                let text: Vec<String> =
                    routes.iter().map(|(n, g)| format!("{n} via {g}")).collect();
                assert_eq!(
                    text,
                    vec!["10.8.0.0/16 via 192.168.1.2", "0.0.0.0/0 via 192.168.1.1"]
                );
            }
            other => panic!("no option 121: {other:?}"),
        }
        // Not asked for: not sent.
        let o = f.run(&msg(MessageType::Discover, mac(2), vec![prl(&[1, 3])]));
        assert_eq!(opt_codes(&o), vec![53, 54, 51, 58, 59, 1, 3, 6, 15]);
        // Asked for but not configured: not sent.
        let mut f = default_fixture();
        let o = f.run(&msg(
            MessageType::Discover,
            mac(3),
            vec![prl(&[121, 42, 26])],
        ));
        assert_eq!(opt_codes(&o), vec![53, 54, 51, 58, 59, 1, 3, 6, 15]);
    }

    #[test]
    fn dhcp_option_config_is_validated() {
        use crate::config::parse;
        for (text, why) in [
            (
                "routes = [{ destination = \"10.8.0.1/16\", gateway = \"192.168.1.2\" }]",
                "host bits",
            ),
            (
                "routes = [{ destination = \"10.8.0.0\", gateway = \"192.168.1.2\" }]",
                "a.b.c.d/len",
            ),
            (
                "routes = [{ destination = \"10.8.0.0/33\", gateway = \"192.168.1.2\" }]",
                "a.b.c.d/len",
            ),
            (
                "routes = [{ destination = \"10.8.0.0/16\", gateway = \"10.0.0.2\" }]",
                "not on the LAN",
            ),
            ("mtu = 20", "mtu"),
            ("conflict_check_ms = 60000", "conflict_check_ms"),
            ("renew_secs = 40000", "renew_secs"),
            ("renew_secs = 100\nrebind_secs = 50", "renew_secs"),
        ] {
            let e = parse(&format!("[dhcp]\n{text}\n")).unwrap_err();
            assert!(e.message.contains(why), "{text}: {e}");
        }
        let c = parse("[dhcp]\nrenew_secs = 100\n").unwrap();
        assert_eq!(Settings::from_config(&c).rebind_secs, 37800);
        assert_eq!(Settings::default().conflict_check_ms, 300);
    }

    #[test]
    fn hostname_collisions_are_resolved() {
        let mut f = fixture(
            |c| {
                c.dhcp.static_leases.push(StaticLease {
                    mac: "52:54:00:00:00:09".into(),
                    ip: ip(50),
                    hostname: Some("printer".into()),
                });
            },
            4096,
        );
        let name = |f: &Fixture, ip: Ipv4Addr| f.store.at(ip).unwrap().hostname.clone().unwrap();
        let host = |h: &str| vec![DhcpOption::Hostname(h.into())];
        let a = f.obtain(mac(1), host("Twin"));
        let b = f.obtain(mac(2), host("twin"));
        let c = f.obtain(mac(3), host("twin"));
        assert_eq!(
            (name(&f, a), name(&f, b), name(&f, c)),
            ("twin".into(), "twin-2".into(), "twin-3".into())
        );
        // A renewal keeps the resolved name, even once the plain one is free.
        let mut rel = msg(
            MessageType::Release,
            mac(1),
            vec![DhcpOption::ServerIdentifier(SERVER)],
        );
        rel.set_ciaddr(a);
        assert_eq!(f.run(&rel).kind, Kind::Release);
        let mut renew = msg(MessageType::Request, mac(2), host("twin"));
        renew.set_ciaddr(b);
        assert_eq!(f.run(&renew).kind, Kind::Ack);
        assert_eq!(name(&f, b), "twin-2");
        // A renewal without option 12 keeps the name too.
        let mut renew = msg(MessageType::Request, mac(3), vec![]);
        renew.set_ciaddr(c);
        f.run(&renew);
        assert_eq!(name(&f, c), "twin-3");
        // The released name goes to the next client that asks.
        let d = f.obtain(mac(4), host("twin"));
        assert_eq!(name(&f, d), "twin");
        // A static lease's name and the router's own are taken.
        let e = f.obtain(mac(5), host("printer"));
        assert_eq!(name(&f, e), "printer-2");
        let g = f.obtain(mac(6), host("gatehouse"));
        assert_eq!(name(&f, g), "gatehouse-2");
        // The static client gets its configured name whatever it asks.
        let p = f.obtain(mac(9), host("twin"));
        assert_eq!((p, name(&f, p)), (ip(50), "printer".into()));
        // A client changing its name gets the new one.
        let mut renew = msg(MessageType::Request, mac(2), host("den"));
        renew.set_ciaddr(b);
        f.run(&renew);
        assert_eq!(name(&f, b), "den");
        // Names stay within 63 characters.
        let long = "x".repeat(63);
        let h = f.obtain(mac(7), host(&long));
        let i = f.obtain(mac(8), host(&long));
        assert_eq!(name(&f, h), long);
        assert_eq!(name(&f, i), format!("{}-2", "x".repeat(61)));
        assert!(f
            .store
            .by_hostname(&format!("{}-2", "x".repeat(61)))
            .is_some());
    }

    #[test]
    fn relay_from_another_network_is_ignored() {
        let mut f = default_fixture();
        let mut m = msg(MessageType::Discover, mac(1), vec![]);
        m.set_giaddr(Ipv4Addr::new(10, 9, 9, 1));
        assert_eq!(f.run(&m).kind, Kind::Dropped);
        m.set_giaddr(ip(254));
        let o = f.run(&m);
        assert_eq!(o.reply.unwrap().dest, SocketAddrV4::new(ip(254), 67));
    }

    #[test]
    fn large_pool_allocates_in_order() {
        let mut f = fixture(
            |c| {
                c.lan.address = Ipv4Addr::new(10, 0, 0, 1);
                c.lan.prefix_len = 16;
                c.dhcp.range_start = Ipv4Addr::new(10, 0, 1, 0);
                c.dhcp.range_end = Ipv4Addr::new(10, 0, 255, 255);
            },
            100_000,
        );
        let mut last = 0u32;
        for n in 0..3000u32 {
            let b = n.to_be_bytes();
            let m = [0x02, 0, b[0], b[1], b[2], b[3]];
            let offer = f.run(&msg(MessageType::Discover, m, vec![]));
            let got = u32::from(yiaddr(&offer));
            assert!(got > last);
            last = got;
            let mut req = msg(
                MessageType::Request,
                m,
                vec![DhcpOption::RequestedIpAddress(yiaddr(&offer))],
            );
            req.opts_mut()
                .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)));
            assert_eq!(f.run(&req).kind, Kind::Ack);
        }
        assert_eq!(Ipv4Addr::from(last), Ipv4Addr::new(10, 0, 12, 183));
        // A freed low address is found again.
        f.store.remove(Ipv4Addr::new(10, 0, 1, 7));
        let o = f.run(&msg(MessageType::Discover, mac(1), vec![]));
        assert_eq!(yiaddr(&o), Ipv4Addr::new(10, 0, 1, 7));
    }

    #[test]
    fn unanswered_offers_do_not_slow_the_pool_scan() {
        let mut f = default_fixture();
        // mac(1) is offered .100 and never comes back.
        let o = f.run(&msg(MessageType::Discover, mac(1), vec![]));
        assert_eq!(yiaddr(&o), ip(100));
        for n in 2..=5 {
            assert_eq!(f.obtain(mac(n), vec![]), ip(99 + n));
        }
        // The scan resumes past the held address, not at it.
        assert_eq!(f.store.alloc_cursor(), Some(u32::from(ip(104))));
        // Once the hold is withdrawn the address is found again.
        f.store.unreserve(&ClientKey {
            mac: mac(1),
            id: None,
        });
        assert_eq!(f.obtain(mac(6), vec![]), ip(100));
        // Held addresses whose hold ran out come back too.
        let o = f.run(&msg(MessageType::Discover, mac(7), vec![]));
        assert_eq!(yiaddr(&o), ip(105));
        f.obtain(mac(8), vec![]);
        let later = NOW + OFFER_HOLD_SECS + 20;
        let o = handle(
            &f.s,
            &mut f.store,
            &msg(MessageType::Discover, mac(9), vec![]),
            later,
        );
        assert_eq!(yiaddr(&o), ip(105));
    }
}
