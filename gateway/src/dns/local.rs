//! Names that must never leave the LAN: the local domain (and `lan.`), and the
//! reverse zones of private and link-local address space (RFC 6303). Asking
//! the Internet about them leaks LAN structure and gets nothing useful back.
//!
//! In the local domain we answer authoritatively, in this order of precedence:
//! the router itself (`<hostname>.<domain>`), static `[dns] hosts` entries, and
//! the hostnames of active DHCP leases. Each gets A and PTR; other types of a
//! known name get NODATA. Everything else in these zones is NXDOMAIN, except
//! empty non-terminals (parents of known names), which get NODATA (RFC 8020).
//!
//! Lease names come from an index rebuilt from the lease store at most once a
//! second (and, on a miss, at most every 100 ms), so a query never walks the
//! lease table and rarely touches the DHCP server's lock.

use super::message::response_to;
use crate::config::DnsHost;
use crate::dhcp::lease_store::SharedStore;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// TTL of what we answer locally: short, since the LAN config may change.
pub const LOCAL_TTL: u32 = 60;
/// How long a lease-name index is used before it is rebuilt.
const INDEX_MAX_AGE: Duration = Duration::from_secs(1);
/// A miss rebuilds an index older than this (a lease may just have been bound).
const INDEX_MISS_AGE: Duration = Duration::from_millis(100);

/// Reverse zones answered locally, whatever the LAN subnet is.
fn private_reverse_zones() -> Vec<String> {
    let mut z = vec![
        "10.in-addr.arpa.".to_string(),
        "168.192.in-addr.arpa.".to_string(),
        "254.169.in-addr.arpa.".to_string(),
        "127.in-addr.arpa.".to_string(),
    ];
    z.extend((16..=31).map(|n| format!("{n}.172.in-addr.arpa.")));
    z
}

pub fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
}

/// The octets a name under in-addr.arpa. stands for, most significant first
/// ("1.168.192.in-addr.arpa." -> [192, 168, 1]); None for other names.
fn reverse_octets(name: &str) -> Option<Vec<u8>> {
    let rest = name.strip_suffix("in-addr.arpa.")?;
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let mut v = rest
        .split('.')
        .map(|l| {
            // No leading zeros: "01" is a different name than "1".
            (l == "0" || !l.starts_with('0')).then(|| l.parse::<u8>().ok())?
        })
        .collect::<Option<Vec<u8>>>()?;
    if v.len() > 4 {
        return None;
    }
    v.reverse();
    Some(v)
}

/// Lowercase FQDN text ("nas.lan.") for a label under `domain`.
fn host_fqdn(label: &str, domain: &str) -> Option<String> {
    let label = label.trim_matches('.').to_ascii_lowercase();
    if label.is_empty() || !crate::config::is_dns_name(&label) {
        return None;
    }
    let domain = domain.trim_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return None;
    }
    if label == domain || label.ends_with(&format!(".{domain}")) {
        Some(format!("{label}."))
    } else {
        Some(format!("{label}.{domain}."))
    }
}

/// Forward and reverse maps of a set of local names (lowercase FQDN text).
#[derive(Debug, Default, Clone)]
struct Names {
    by_name: HashMap<String, Ipv4Addr>,
    by_ip: HashMap<Ipv4Addr, String>,
}

impl Names {
    fn add(&mut self, fqdn: String, ip: Ipv4Addr) {
        if self.by_name.contains_key(&fqdn) {
            return; // first come wins
        }
        self.by_ip.entry(ip).or_insert_with(|| fqdn.clone());
        self.by_name.insert(fqdn, ip);
    }
}

struct LeaseIndex {
    store: SharedStore,
    built: Mutex<Option<(Instant, Names)>>,
}

impl LeaseIndex {
    fn build(&self, domain: &str) -> Names {
        let now = crate::clock::unix_now();
        let mut leases: Vec<(String, Ipv4Addr, u64)> = {
            let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            store
                .leases()
                .filter(|l| l.is_active(now))
                .filter_map(|l| {
                    let h = l.hostname.as_deref()?;
                    // DHCP hostnames should be one label; keep the first if not.
                    let label = h.split('.').next()?;
                    Some((host_fqdn(label, domain)?, l.ip, l.expires))
                })
                .collect()
        };
        // Two leases with one name: the one that lasts longest wins.
        leases.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));
        let mut names = Names::default();
        for (n, ip, _) in leases {
            names.add(n, ip);
        }
        names
    }

    /// Runs `f` on a fresh enough index.
    fn with<R>(&self, domain: &str, f: impl Fn(&Names) -> Option<R>) -> Option<R> {
        let mut g = self.built.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let age = g.as_ref().map(|(t, _)| now.saturating_duration_since(*t));
        if age.is_none_or(|a| a >= INDEX_MAX_AGE) {
            *g = Some((now, self.build(domain)));
        } else if let Some((_, names)) = g.as_ref() {
            if let Some(r) = f(names) {
                return Some(r);
            }
            if age.is_some_and(|a| a < INDEX_MISS_AGE) {
                return None;
            }
            *g = Some((now, self.build(domain)));
        }
        g.as_ref().and_then(|(_, names)| f(names))
    }
}

pub struct LocalZones {
    zones: Vec<Name>,
    /// Lowercased last label of every zone ("lan", "arpa"): a quick test
    /// that most names are not local, on the wire form.
    tops: Vec<Vec<u8>>,
    /// Lowercase domain without dots at the ends ("lan").
    domain: String,
    /// `<hostname>.<domain>.`, if both are usable names.
    host: Option<Name>,
    host_reverse: Name,
    address: Ipv4Addr,
    statics: Names,
    leases: Option<LeaseIndex>,
}

impl LocalZones {
    pub fn new(hostname: &str, domain: &str, lan_address: Ipv4Addr) -> Self {
        let fqdn = |s: &str| {
            let s = s.trim_matches('.');
            (!s.is_empty())
                .then(|| Name::from_ascii(format!("{s}.")).ok())
                .flatten()
        };
        let mut zones: Vec<Name> = fqdn(domain).into_iter().collect();
        zones.extend(fqdn("lan"));
        zones.extend(private_reverse_zones().iter().filter_map(|z| fqdn(z)));
        let host = fqdn(domain).and_then(|d| {
            let h = hostname.trim_matches('.');
            if h.is_empty() {
                return None;
            }
            Name::from_ascii(h).ok()?.append_domain(&d).ok()
        });
        let host_reverse =
            Name::from_ascii(reverse_name(lan_address)).expect("dotted-quad reverse name is valid");
        // A public LAN subnet: still answer for the router's own address.
        if !zones.iter().any(|z| z.zone_of(&host_reverse)) {
            zones.push(host_reverse.clone());
        }
        zones.dedup();
        let mut tops: Vec<Vec<u8>> = zones
            .iter()
            .filter_map(|z| z.iter().next_back().map(|l| l.to_ascii_lowercase()))
            .collect();
        tops.sort();
        tops.dedup();
        LocalZones {
            zones,
            tops,
            domain: domain.trim_matches('.').to_ascii_lowercase(),
            host,
            host_reverse,
            address: lan_address,
            statics: Names::default(),
            leases: None,
        }
    }

    /// Adds static host entries (config `[dns] hosts`).
    pub fn with_hosts(mut self, hosts: &[DnsHost]) -> Self {
        for h in hosts {
            match host_fqdn(&h.name, &self.domain) {
                Some(n) => self.statics.add(n, h.ip),
                None => eprintln!("gatewayd: dns: host name {:?} ignored", h.name),
            }
        }
        self
    }

    /// Serves the hostnames of active leases in `store`.
    pub fn with_leases(mut self, store: SharedStore) -> Self {
        self.leases = Some(LeaseIndex {
            store,
            built: Mutex::new(None),
        });
        self
    }

    /// Whether a lowercased wire-format name could be local: false for most
    /// names after one comparison, so the hot path can skip `zone_of`.
    pub fn maybe_local(&self, wire_name: &[u8], last_label_at: usize) -> bool {
        let last = wire_name
            .get(last_label_at + 1..wire_name.len().saturating_sub(1))
            .unwrap_or(&[]);
        self.tops.iter().any(|t| t.as_slice() == last)
    }

    /// The local zone `name` belongs to, if any: such names are never forwarded.
    pub fn zone_of(&self, name: &Name) -> Option<&Name> {
        self.zones.iter().find(|z| z.zone_of(name))
    }

    fn lookup_name(&self, name: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.statics.by_name.get(name) {
            return Some(*ip);
        }
        self.leases
            .as_ref()?
            .with(&self.domain, |n| n.by_name.get(name).copied())
    }

    fn lookup_ip(&self, ip: Ipv4Addr) -> Option<String> {
        if let Some(n) = self.statics.by_ip.get(&ip) {
            return Some(n.clone());
        }
        self.leases
            .as_ref()?
            .with(&self.domain, |n| n.by_ip.get(&ip).cloned())
    }

    /// Whether some known address lies under the reverse name `octets`.
    fn reverse_has_names(&self, octets: &[u8]) -> bool {
        let under = |ip: &Ipv4Addr| ip.octets().starts_with(octets);
        under(&self.address)
            || self.statics.by_ip.keys().any(under)
            || self
                .leases
                .as_ref()
                .and_then(|l| l.with(&self.domain, |n| n.by_ip.keys().any(under).then_some(())))
                .is_some()
    }

    /// The authoritative reply for a local name, or None if `req` is not ours.
    pub fn answer(&self, req: &Message) -> Option<Message> {
        let q = req.queries().first()?;
        let zone = self.zone_of(q.name())?;
        let name = q.name();
        let lower = name.to_lowercase().to_ascii();
        let (qtype, in_class) = (q.query_type(), q.query_class() == DNSClass::IN);
        let mut m = response_to(req);
        m.set_authoritative(true);

        let wants = |t: RecordType| in_class && (qtype == t || qtype == RecordType::ANY);
        let is_host = self.host.as_ref().is_some_and(|h| h == name);
        // What the name is: an address owner, a reverse name, or neither.
        let forward = if is_host {
            Some(self.address)
        } else {
            self.lookup_name(&lower)
        };
        let reverse_ip = reverse_octets(&lower)
            .filter(|o| o.len() == 4)
            .map(|o| Ipv4Addr::new(o[0], o[1], o[2], o[3]));
        let ptr: Option<Name> = match reverse_ip {
            Some(_) if name == &self.host_reverse => self.host.clone(),
            Some(ip) => self.lookup_ip(ip).and_then(|n| Name::from_ascii(n).ok()),
            None => None,
        };
        let mut answers = Vec::new();
        if let Some(ip) = forward.filter(|_| wants(RecordType::A)) {
            answers.push(RData::A(A(ip)));
        }
        if let Some(p) = ptr.clone().filter(|_| wants(RecordType::PTR)) {
            answers.push(RData::PTR(PTR(p)));
        }
        if name == zone && wants(RecordType::SOA) {
            answers.push(RData::SOA(self.soa(zone)));
        }
        for rdata in answers {
            m.add_answer(Record::from_rdata(name.clone(), LOCAL_TTL, rdata));
        }
        if m.answers().is_empty() {
            // A name that exists (or has names below it) gets NODATA, not
            // NXDOMAIN, which would deny everything underneath (RFC 8020).
            let exists = forward.is_some()
                || ptr.is_some()
                || [Some(zone), self.host.as_ref(), Some(&self.host_reverse)]
                    .into_iter()
                    .flatten()
                    .any(|n| name.zone_of(n))
                || reverse_octets(&lower)
                    .filter(|o| o.len() < 4)
                    .is_some_and(|o| self.reverse_has_names(&o));
            if !exists {
                m.set_response_code(ResponseCode::NXDomain);
            }
            // The SOA lets clients cache the negative answer (RFC 2308).
            m.add_name_server(Record::from_rdata(
                zone.clone(),
                LOCAL_TTL,
                RData::SOA(self.soa(zone)),
            ));
        }
        Some(m)
    }

    fn soa(&self, zone: &Name) -> SOA {
        let mname = self.host.clone().unwrap_or_else(|| zone.clone());
        let rname = Name::from_ascii("hostmaster")
            .and_then(|h| h.append_domain(zone))
            .unwrap_or_else(|_| zone.clone());
        SOA::new(mname, rname, 1, 3600, 600, 86400, LOCAL_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::message::tests::query_msg;

    fn zones() -> LocalZones {
        LocalZones::new("gatehouse", "lan", Ipv4Addr::new(192, 168, 1, 1))
    }

    fn is_local(z: &LocalZones, n: &str) -> bool {
        z.zone_of(&Name::from_ascii(n).unwrap()).is_some()
    }

    #[test]
    fn private_and_local_detection() {
        let z = zones();
        for n in [
            "5.1.168.192.in-addr.arpa.",
            "1.0.0.10.in-addr.arpa.",
            "9.9.16.172.in-addr.arpa.",
            "9.9.31.172.in-addr.arpa.",
            "168.192.IN-ADDR.ARPA.",
            "1.0.254.169.in-addr.arpa.",
            "printer.lan.",
            "Printer.LAN.",
            "lan.",
        ] {
            assert!(is_local(&z, n), "{n} should be local");
        }
        for n in [
            "9.9.15.172.in-addr.arpa.",
            "9.9.32.172.in-addr.arpa.",
            "8.8.8.8.in-addr.arpa.",
            "example.com.",
            "plan.",
            "lan.example.com.",
            "in-addr.arpa.",
        ] {
            assert!(!is_local(&z, n), "{n} should be forwarded");
        }
        let custom = LocalZones::new("gw", "home.arpa", Ipv4Addr::new(100, 64, 0, 1));
        assert!(is_local(&custom, "nas.home.arpa."));
        assert!(is_local(&custom, "x.lan."), "lan. stays local");
        assert!(is_local(&custom, "1.0.64.100.in-addr.arpa."), "own address");
        assert!(!is_local(&custom, "2.0.64.100.in-addr.arpa."));
    }

    #[test]
    fn router_name_resolves_to_lan_address() {
        let z = zones();
        let m = z
            .answer(&query_msg("GateHouse.lan.", RecordType::A, 42))
            .unwrap();
        assert_eq!(m.id(), 42);
        assert!(m.authoritative());
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert_eq!(m.answers().len(), 1);
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(192, 168, 1, 1)));
        // The question is echoed as the client spelled it.
        assert_eq!(m.queries()[0].name().to_ascii(), "GateHouse.lan.");
        assert!(Message::from_vec(&m.to_vec().unwrap()).is_ok());
    }

    #[test]
    fn router_reverse_and_nodata() {
        let z = zones();
        let m = z
            .answer(&query_msg("1.1.168.192.in-addr.arpa.", RecordType::PTR, 1))
            .unwrap();
        assert_eq!(
            m.answers()[0].data(),
            &RData::PTR(PTR(Name::from_ascii("gatehouse.lan.").unwrap()))
        );
        let m = z
            .answer(&query_msg("gatehouse.lan.", RecordType::AAAA, 1))
            .unwrap();
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn other_local_names_are_nxdomain() {
        let z = zones();
        for (n, t) in [
            ("printer.lan.", RecordType::A),
            ("5.1.168.192.in-addr.arpa.", RecordType::PTR),
            ("1.0.0.10.in-addr.arpa.", RecordType::PTR),
        ] {
            let m = z.answer(&query_msg(n, t, 3)).unwrap();
            assert_eq!(m.response_code(), ResponseCode::NXDomain, "{n}");
            assert!(m.authoritative());
            assert!(m.answers().is_empty());
            assert_eq!(m.name_servers().len(), 1);
        }
        assert!(z
            .answer(&query_msg("example.com.", RecordType::A, 3))
            .is_none());
    }

    fn lease_json(ip: &str, host: &str, expires: u64, n: u8) -> crate::dhcp::lease_store::Lease {
        serde_json::from_str(&format!(
            r#"{{"mac": "52:54:00:00:00:{n:02x}", "ip": "{ip}", "hostname": "{host}", "expires": {expires}}}"#
        ))
        .unwrap()
    }

    fn store_with(leases: &[crate::dhcp::lease_store::Lease]) -> (SharedStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "gh-local-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut s =
            crate::dhcp::lease_store::LeaseStore::open(&dir.join("leases.json"), 64).unwrap();
        for l in leases {
            s.bind(l.clone(), 0).unwrap();
        }
        (std::sync::Arc::new(Mutex::new(s)), dir)
    }

    fn a_of(m: &Message) -> Option<Ipv4Addr> {
        m.answers().iter().find_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
    }

    #[test]
    fn lease_hostnames_and_static_hosts() {
        let now = crate::clock::unix_now();
        let (store, dir) = store_with(&[
            lease_json("192.168.1.100", "Laptop", now + 3600, 1),
            lease_json("192.168.1.101", "gone", now.saturating_sub(10), 2),
            lease_json("192.168.1.102", "nas", now + 3600, 3),
        ]);
        let hosts = [DnsHost {
            name: "nas".into(),
            ip: Ipv4Addr::new(192, 168, 1, 5),
        }];
        let z = zones().with_hosts(&hosts).with_leases(store.clone());
        let ask = |n: &str, t| z.answer(&query_msg(n, t, 1)).unwrap();

        let m = ask("laptop.lan.", RecordType::A);
        assert!(m.authoritative());
        assert_eq!(a_of(&m), Some(Ipv4Addr::new(192, 168, 1, 100)));
        let m = ask("100.1.168.192.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            m.answers()[0].data(),
            &RData::PTR(PTR(Name::from_ascii("laptop.lan.").unwrap()))
        );
        // A known name without that type: NODATA with SOA.
        let m = ask("LAPTOP.lan.", RecordType::AAAA);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
        // Expired leases are not served.
        let m = ask("gone.lan.", RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        // A static entry wins over a lease with the same name; the lease's
        // address still reverses to its name.
        assert_eq!(
            a_of(&ask("nas.lan.", RecordType::A)),
            Some(Ipv4Addr::new(192, 168, 1, 5))
        );
        let m = ask("5.1.168.192.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            m.answers()[0].data(),
            &RData::PTR(PTR(Name::from_ascii("nas.lan.").unwrap()))
        );
        // A parent of known reverse names is an empty non-terminal: NODATA.
        let m = ask("1.168.192.in-addr.arpa.", RecordType::PTR);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        let m = ask("2.168.192.in-addr.arpa.", RecordType::PTR);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);

        // A new lease shows up once the index is older than the miss interval.
        store
            .lock()
            .unwrap()
            .bind(lease_json("192.168.1.110", "phone", now + 3600, 4), now)
            .unwrap();
        std::thread::sleep(INDEX_MISS_AGE + Duration::from_millis(20));
        assert_eq!(
            a_of(&ask("phone.lan.", RecordType::A)),
            Some(Ipv4Addr::new(192, 168, 1, 110))
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reverse_names_parse_strictly() {
        assert_eq!(
            reverse_octets("5.1.168.192.in-addr.arpa."),
            Some(vec![192, 168, 1, 5])
        );
        assert_eq!(
            reverse_octets("168.192.in-addr.arpa."),
            Some(vec![192, 168])
        );
        assert_eq!(reverse_octets("in-addr.arpa."), Some(vec![]));
        assert_eq!(reverse_octets("05.1.168.192.in-addr.arpa."), None);
        assert_eq!(reverse_octets("256.1.168.192.in-addr.arpa."), None);
        assert_eq!(reverse_octets("1.2.3.4.5.in-addr.arpa."), None);
        assert_eq!(reverse_octets("example.com."), None);
        assert_eq!(host_fqdn("NAS", "lan").as_deref(), Some("nas.lan."));
        assert_eq!(host_fqdn("nas.lan", "lan").as_deref(), Some("nas.lan."));
        assert_eq!(host_fqdn("bad_name", "lan"), None);
    }

    #[test]
    fn quick_local_test_on_wire_names() {
        let z = zones();
        let wire = crate::dns::wire::name_from_str("printer.lan").unwrap();
        assert!(z.maybe_local(&wire, 8));
        let wire = crate::dns::wire::name_from_str("www.example.com").unwrap();
        assert!(!z.maybe_local(&wire, 12));
        let wire = crate::dns::wire::name_from_str("1.0.0.10.in-addr.arpa").unwrap();
        assert!(z.maybe_local(&wire, 17));
    }
}
