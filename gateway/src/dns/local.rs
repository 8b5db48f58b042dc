//! Names that must never leave the LAN: the local domain (and `lan.`), and the
//! reverse zones of private and link-local address space (RFC 6303). Asking
//! the Internet about them leaks LAN structure and gets nothing useful back.
//! For now the only name we know is the router itself; everything else in
//! these zones is an authoritative NXDOMAIN.

use super::message::response_to;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::Ipv4Addr;

/// TTL of what we answer locally: short, since the LAN config may change.
pub const LOCAL_TTL: u32 = 60;

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

pub struct LocalZones {
    zones: Vec<Name>,
    /// `<hostname>.<domain>.`, if both are usable names.
    host: Option<Name>,
    host_reverse: Name,
    address: Ipv4Addr,
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
        LocalZones {
            zones,
            host,
            host_reverse,
            address: lan_address,
        }
    }

    /// The local zone `name` belongs to, if any: such names are never forwarded.
    pub fn zone_of(&self, name: &Name) -> Option<&Name> {
        self.zones.iter().find(|z| z.zone_of(name))
    }

    /// The authoritative reply for a local name, or None if `req` is not ours.
    pub fn answer(&self, req: &Message) -> Option<Message> {
        let q = req.queries().first()?;
        let zone = self.zone_of(q.name())?;
        let name = q.name();
        let (qtype, in_class) = (q.query_type(), q.query_class() == DNSClass::IN);
        let mut m = response_to(req);
        m.set_authoritative(true);

        let wants = |t: RecordType| in_class && (qtype == t || qtype == RecordType::ANY);
        let is_host = self.host.as_ref().is_some_and(|h| h == name);
        let mut answers = Vec::new();
        if is_host && wants(RecordType::A) {
            answers.push(RData::A(A(self.address)));
        }
        if name == &self.host_reverse && wants(RecordType::PTR) {
            if let Some(h) = &self.host {
                answers.push(RData::PTR(PTR(h.clone())));
            }
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
            let exists = [Some(zone), self.host.as_ref(), Some(&self.host_reverse)]
                .into_iter()
                .flatten()
                .any(|n| name.zone_of(n));
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
}
