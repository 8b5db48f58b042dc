//! The DHCPv4 server's decisions (RFC 2131), free of sockets and clocks: given
//! the settings, the lease store, a request and the time, say what to answer.
//!
//! This server is authoritative for its LAN: a client asking for an address we
//! would not give it gets a NAK (so it restarts with DISCOVER at once), and a
//! client we have no record of (lease file lost) may keep a free address it
//! asks for.

use super::codec;
use super::lease_store::{format_mac, ClientKey, Lease, LeaseStore};
use crate::config::Config;
use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use std::net::{Ipv4Addr, SocketAddrV4};

/// How long an OFFER reserves its address for the client's REQUEST.
pub const OFFER_HOLD_SECS: u64 = 60;
/// How long a DECLINEd address (someone else is using it) stays out of the pool.
pub const DECLINE_HOLD_SECS: u64 = 600;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

#[derive(Debug, Clone)]
pub struct StaticEntry {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
}

/// What the allocator needs from the configuration, precomputed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server_ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub lease_secs: u32,
    pub domain: Option<String>,
    pub statics: Vec<StaticEntry>,
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
        Settings {
            server_ip: cfg.lan.address,
            netmask: cfg.lan.netmask(),
            range_start: cfg.dhcp.range_start,
            range_end: cfg.dhcp.range_end,
            lease_secs: cfg.dhcp.lease_secs,
            domain: (!domain.is_empty()).then(|| domain.to_string()),
            statics,
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
    /// One line for the log.
    pub log: String,
}

fn dropped(log: String) -> Outcome {
    Outcome {
        kind: Kind::Dropped,
        reply: None,
        log,
    }
}

/// Facts about one request, pulled out once.
struct Req<'a> {
    msg: &'a v4::Message,
    client: ClientKey,
    mac: String,
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
            Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => {
                Some(id.iter().map(|b| format!("{b:02x}")).collect())
            }
            _ => None,
        };
        Some(Req {
            msg,
            client: ClientKey { mac, id },
            mac: format_mac(&mac),
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
}

/// Decides the answer to `msg` at unix time `now`, updating `store`. The
/// caller must persist the store (if dirty) before sending an ACK.
pub fn handle(s: &Settings, store: &mut LeaseStore, msg: &v4::Message, now: u64) -> Outcome {
    let Some(req) = Req::new(msg) else {
        return dropped("dhcp: ignoring request without an Ethernet address".into());
    };
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
fn choose(s: &Settings, store: &LeaseStore, req: &Req, now: u64) -> Option<Ipv4Addr> {
    let c = &req.client;
    if let Some(st) = s.static_for(c.mac) {
        return Some(st.ip);
    }
    let ok = |ip: Ipv4Addr| assignable(s, store, c, ip, now);
    if let Some(ip) = store.find(c).map(|l| l.ip).filter(|ip| ok(*ip)) {
        return Some(ip);
    }
    if let Some(ip) = store.reserved_for(c, now).filter(|ip| ok(*ip)) {
        return Some(ip);
    }
    if let Some(ip) = req.requested.filter(|ip| ok(*ip)) {
        return Some(ip);
    }
    let (lo, hi) = (u32::from(s.range_start), u32::from(s.range_end));
    // Prefer addresses nobody ever had, so expired leases stay available to
    // their owners for as long as possible.
    if let Some(ip) = (lo..=hi)
        .map(Ipv4Addr::from)
        .find(|ip| store.at(*ip).is_none() && ok(*ip))
    {
        return Some(ip);
    }
    store
        .leases()
        .filter(|l| !l.is_active(now) && ok(l.ip))
        .min_by_key(|l| l.expires)
        .map(|l| l.ip)
}

fn discover(s: &Settings, store: &mut LeaseStore, req: &Req, now: u64) -> Outcome {
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
    store.reserve(&req.client, ip, now, now + OFFER_HOLD_SECS);
    Outcome {
        kind: Kind::Offer,
        reply: Some(reply(s, req, MessageType::Offer, ip, true)),
        log: format!(
            "dhcp: OFFER {ip} to {}{}",
            req.mac,
            name_suffix(req.hostname.as_deref())
        ),
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

/// Binds `ip` to the client and ACKs, or NAKs if it may not have it.
fn commit(s: &Settings, store: &mut LeaseStore, req: &Req, ip: Ipv4Addr, now: u64) -> Outcome {
    if !acceptable(s, store, &req.client, ip, now) {
        return nak(s, req, format!("{ip} is not available"));
    }
    let previous = store.find(&req.client).and_then(|l| l.hostname.clone());
    let hostname = s
        .static_for(req.client.mac)
        .and_then(|st| st.hostname.clone())
        .or_else(|| req.hostname.clone())
        .or(previous);
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
        log: format!(
            "dhcp: ACK {ip} to {}{}",
            req.mac,
            name_suffix(hostname.as_deref())
        ),
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
        log: format!(
            "dhcp: DECLINE {ip} from {}: address in use on the LAN, unused for {DECLINE_HOLD_SECS}s",
            req.mac
        ),
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
            log: format!("dhcp: RELEASE {ip} from {}", req.mac),
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
        log: format!("dhcp: ACK (INFORM) to {} at {}", req.mac, req.msg.ciaddr()),
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
        log: format!("dhcp: NAK to {}: {why}", req.mac),
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
        let t = s.lease_secs;
        opts.push(DhcpOption::AddressLeaseTime(t));
        opts.push(DhcpOption::Renewal(t / 2));
        opts.push(DhcpOption::Rebinding((u64::from(t) * 7 / 8) as u32));
    }
    let mut extra = vec![
        DhcpOption::SubnetMask(s.netmask),
        DhcpOption::Router(vec![s.server_ip]),
        DhcpOption::DomainNameServer(vec![s.server_ip]),
    ];
    if let Some(d) = &s.domain {
        extra.push(DhcpOption::DomainName(d.clone()));
    }
    // Requested options in the client's order; the rest (all harmless and
    // needed by every client) after them.
    extra.sort_by_key(|o| {
        let code = OptionCode::from(o);
        req.prl
            .iter()
            .position(|c| *c == code)
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

fn name_suffix(h: Option<&str>) -> String {
    h.map(|h| format!(" ({h})")).unwrap_or_default()
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
        assert!(o.log.contains("exhausted"), "{}", o.log);
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
        assert!(o.log.contains("full"), "{}", o.log);
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
}
