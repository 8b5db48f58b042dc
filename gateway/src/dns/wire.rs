//! Allocation-free reading of raw DNS messages, for the hot path: the question
//! of a client query (and the cache key derived from it), and a walk over the
//! records of an upstream reply. Anything unusual makes these return None and
//! the caller falls back to the full (hickory) path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const HEADER_LEN: usize = 12;
pub const TYPE_A: u16 = 1;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_TSIG: u16 = 250;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
/// Longest wire-format name (RFC 1035 3.1).
pub const MAX_NAME: usize = 255;
/// Cache key: lowercased wire name, type, class and one flags byte.
pub const MAX_KEY: usize = MAX_NAME + 5;

pub fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

pub fn u32_at(msg: &[u8], at: usize) -> Option<u32> {
    let b = msg.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The client's OPT record, as far as we care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub payload: u16,
    pub dnssec_ok: bool,
}

/// A plain standard query, read straight off the wire.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub id: u16,
    /// Header bytes 2 and 3 (QR, opcode, AA, TC, RD / RA, Z, AD, CD, rcode).
    pub flags: [u8; 2],
    /// The question section exactly as the client sent it (name, type, class).
    pub section: &'a [u8],
    /// Offsets (within the name, i.e. relative to `section`) where each label
    /// starts; the last entry is the root label.
    pub labels: LabelStarts,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

/// Where the labels of a name start, without allocating: a name has at most
/// 128 labels (255 bytes, each label at least 2 bytes but the root).
#[derive(Debug, Clone, Copy)]
pub struct LabelStarts {
    at: [u8; 128],
    n: u8,
}

impl LabelStarts {
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.at[..usize::from(self.n)]
            .iter()
            .map(|&o| usize::from(o))
    }
}

impl Question<'_> {
    pub fn name(&self) -> &[u8] {
        &self.section[..self.section.len() - 4]
    }
    pub fn cd(&self) -> bool {
        self.flags[1] & 0x10 != 0
    }
    pub fn ad(&self) -> bool {
        self.flags[1] & 0x20 != 0
    }
    /// The client wants DNSSEC records or unvalidated data: a different answer.
    pub fn dnssec(&self) -> bool {
        self.cd() || self.edns.is_some_and(|e| e.dnssec_ok)
    }
    /// Largest UDP reply the client can take (RFC 6891 6.2.5: never below 512).
    pub fn udp_limit(&self) -> usize {
        self.edns.map_or(512, |e| usize::from(e.payload).max(512))
    }
}

/// Reads a name without compression (as in a query's question). Returns the
/// position after it and the label starts (relative to `start`).
fn plain_name(msg: &[u8], start: usize) -> Option<(usize, LabelStarts)> {
    let mut labels = LabelStarts { at: [0; 128], n: 0 };
    let mut pos = start;
    loop {
        let len = usize::from(*msg.get(pos)?);
        if usize::from(labels.n) == labels.at.len() {
            return None;
        }
        labels.at[usize::from(labels.n)] = u8::try_from(pos - start).ok()?;
        labels.n += 1;
        if len == 0 {
            pos += 1;
            break;
        }
        if len > 63 {
            return None; // compression or an extended label type
        }
        pos += 1 + len;
        if pos - start > MAX_NAME {
            return None;
        }
    }
    (pos - start <= MAX_NAME).then_some((pos, labels))
}

/// A standard query with one question and at most an OPT record, or None.
/// Also returns None for anything the slow path should judge (other opcodes,
/// several questions, records in other sections, EDNS versions above 0...).
pub fn parse_question(msg: &[u8]) -> Option<Question<'_>> {
    if msg.len() < HEADER_LEN + 5 {
        return None;
    }
    let flags = [msg[2], msg[3]];
    // QR = 0, opcode = 0 (QUERY), TC = 0.
    if flags[0] & 0xfa != 0 {
        return None;
    }
    let (qd, an, ns, ar) = (
        u16_at(msg, 4)?,
        u16_at(msg, 6)?,
        u16_at(msg, 8)?,
        u16_at(msg, 10)?,
    );
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let (name_end, labels) = plain_name(msg, HEADER_LEN)?;
    let qtype = u16_at(msg, name_end)?;
    let qclass = u16_at(msg, name_end + 2)?;
    let qend = name_end + 4;
    // Zone transfers and meta types are for the slow path to refuse.
    if matches!(qtype, 251..=254) || qtype == TYPE_OPT {
        return None;
    }
    let edns = if ar == 1 {
        // OPT: root owner, type 41, class = payload, TTL = ext rcode, version, flags.
        if msg.get(qend) != Some(&0) || u16_at(msg, qend + 1)? != TYPE_OPT {
            return None;
        }
        let payload = u16_at(msg, qend + 3)?;
        let ttl = u32_at(msg, qend + 5)?;
        let rdlen = usize::from(u16_at(msg, qend + 9)?);
        if qend + 11 + rdlen != msg.len() || (ttl >> 16) & 0xff != 0 {
            return None; // trailing bytes, or an EDNS version we must answer BADVERS
        }
        // The options must exactly fill the record, as the slow path's parser
        // demands; otherwise the two paths would disagree (found by fuzzing).
        if !options_well_formed(&msg[qend + 11..]) {
            return None;
        }
        Some(Edns {
            payload,
            dnssec_ok: ttl & 0x8000 != 0,
        })
    } else {
        if qend != msg.len() {
            return None;
        }
        None
    };
    Some(Question {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        flags,
        section: &msg[HEADER_LEN..qend],
        labels,
        qtype,
        qclass,
        edns,
    })
}

/// EDNS option list: {code u16, length u16, data} repeated, nothing left over.
fn options_well_formed(mut rdata: &[u8]) -> bool {
    while !rdata.is_empty() {
        let Some(len) = u16_at(rdata, 2) else {
            return false;
        };
        let Some(rest) = rdata.get(4 + usize::from(len)..) else {
            return false;
        };
        rdata = rest;
    }
    true
}

/// Cache key bytes: lowercased name, type, class, DNSSEC flag.
pub struct Key {
    buf: [u8; MAX_KEY],
    len: usize,
}

impl Key {
    pub fn new(q: &Question) -> Key {
        let mut buf = [0u8; MAX_KEY];
        let name = q.name();
        for (d, s) in buf.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        let mut len = name.len();
        buf[len..len + 2].copy_from_slice(&q.qtype.to_be_bytes());
        buf[len + 2..len + 4].copy_from_slice(&q.qclass.to_be_bytes());
        buf[len + 4] = u8::from(q.dnssec());
        len += 5;
        Key { buf, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The lowercased wire name.
    pub fn name(&self) -> &[u8] {
        &self.buf[..self.len - 5]
    }
}

/// A wire name (uncompressed) in presentation form, lowercased, without the
/// trailing dot ("." for the root). Bytes outside [a-z0-9-_] are escaped as
/// \DDD, so the result is always printable and unambiguous.
#[cfg(test)]
pub fn name_to_string(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    write_name(name, &mut out);
    out
}

/// `name_to_string` into a reusable buffer (cleared first).
pub fn write_name(name: &[u8], out: &mut String) {
    out.clear();
    let mut pos = 0;
    while let Some(&len) = name.get(pos) {
        if len == 0 || len > 63 {
            break;
        }
        if !out.is_empty() {
            out.push('.');
        }
        let label = name.get(pos + 1..pos + 1 + usize::from(len)).unwrap_or(&[]);
        for &b in label {
            let b = b.to_ascii_lowercase();
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(char::from(b));
            } else {
                use std::fmt::Write;
                let _ = write!(out, "\\{b:03}");
            }
        }
        pos += 1 + usize::from(len);
    }
    if out.is_empty() {
        out.push('.');
    }
}

/// "example.com" (or "example.com.") to lowercase wire format, if it is a name.
pub fn name_from_str(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let mut out = Vec::with_capacity(s.len() + 2);
    if !s.is_empty() {
        for label in s.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))?;
            out.push(len);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    (out.len() <= MAX_NAME).then_some(out)
}

/// Skips a possibly compressed name; returns the position after it.
pub fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xc0 => {
                msg.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
    None
}

/// One resource record of a reply, located.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rr {
    pub section: Section,
    /// Offset of the owner name.
    pub start: usize,
    pub rtype: u16,
    pub class: u16,
    /// Offset of the 4-byte TTL field.
    pub ttl_at: usize,
    pub ttl: u32,
    /// rdata range.
    pub rdata: (usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// A reply's header facts and its records, all bounds-checked.
#[derive(Debug)]
pub struct Reply {
    pub rcode: u8,
    pub truncated: bool,
    pub is_response: bool,
    pub opcode: u8,
    /// End of the question section (exactly one question required).
    pub qend: usize,
    pub records: Vec<Rr>,
}

/// Walks a whole message; None if it is malformed or has trailing bytes.
pub fn walk(msg: &[u8]) -> Option<Reply> {
    if msg.len() < HEADER_LEN || u16_at(msg, 4)? != 1 {
        return None;
    }
    let counts = [u16_at(msg, 6)?, u16_at(msg, 8)?, u16_at(msg, 10)?];
    let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
    // A record takes at least 11 bytes: don't trust counts that cannot fit.
    if total * 11 > msg.len() {
        return None;
    }
    let qend = skip_name(msg, HEADER_LEN)? + 4;
    if qend > msg.len() {
        return None;
    }
    let mut records = Vec::with_capacity(total);
    let mut pos = qend;
    for (section, &n) in [Section::Answer, Section::Authority, Section::Additional]
        .into_iter()
        .zip(&counts)
    {
        for _ in 0..n {
            let start = pos;
            pos = skip_name(msg, pos)?;
            let rtype = u16_at(msg, pos)?;
            let class = u16_at(msg, pos + 2)?;
            let ttl = u32_at(msg, pos + 4)?;
            let rdlen = usize::from(u16_at(msg, pos + 8)?);
            let rd_start = pos + 10;
            let rd_end = rd_start + rdlen;
            if rd_end > msg.len() {
                return None;
            }
            records.push(Rr {
                section,
                start,
                rtype,
                class,
                ttl_at: pos + 4,
                ttl,
                rdata: (rd_start, rd_end),
            });
            pos = rd_end;
        }
    }
    if pos != msg.len() {
        return None;
    }
    Some(Reply {
        rcode: msg[3] & 0x0f,
        truncated: msg[2] & 0x02 != 0,
        is_response: msg[2] & 0x80 != 0,
        opcode: (msg[2] >> 3) & 0x0f,
        qend,
        records,
    })
}

/// The first A or AAAA address in the answer section.
pub fn first_address(msg: &[u8], reply: &Reply) -> Option<IpAddr> {
    reply
        .records
        .iter()
        .filter(|r| r.section == Section::Answer && r.class == CLASS_IN)
        .find_map(|r| {
            let data = &msg[r.rdata.0..r.rdata.1];
            match (r.rtype, data.len()) {
                (TYPE_A, 4) => Some(IpAddr::V4(Ipv4Addr::new(
                    data[0], data[1], data[2], data[3],
                ))),
                (TYPE_AAAA, 16) => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(data);
                    Some(IpAddr::V6(Ipv6Addr::from(b)))
                }
                _ => None,
            }
        })
}

/// Mnemonic of common record types, for the query log.
pub fn type_name(t: u16) -> String {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => return format!("TYPE{t}"),
    };
    s.to_string()
}

pub fn rcode_name(r: u8) -> &'static str {
    match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "OTHER",
    }
}

/// Appends our OPT record (payload 1232, DO echoed) and bumps ARCOUNT.
pub fn push_opt(out: &mut Vec<u8>, dnssec_ok: bool) {
    out.extend_from_slice(&[0, 0, 41]);
    out.extend_from_slice(&super::message::OUR_EDNS_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    let ar = u16_at(out, 10).unwrap_or(0).wrapping_add(1);
    out[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Cuts `out` (a reply to `q`) to header and question with TC set if it is
/// larger than the client can take over UDP (RFC 7766 5), keeping OPT.
pub fn fit_udp(out: &mut Vec<u8>, q: &Question) {
    if out.len() <= q.udp_limit() {
        return;
    }
    out.truncate(HEADER_LEN + q.section.len());
    out[2] |= 0x02;
    out[6..12].fill(0);
    if let Some(e) = q.edns {
        push_opt(out, e.dnssec_ok);
    }
}

/// A reply we make up for `q` (blocked names): header, the client's question,
/// optionally one answer record with the question's name, and OPT if the
/// client used EDNS.
pub fn synth_reply(q: &Question, rcode: u8, answer: Option<(u16, u32, &[u8])>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, RD echoed; RA, CD echoed, rcode.
    out.push(0x80 | (q.flags[0] & 0x01));
    out.push(0x80 | (q.flags[1] & 0x10) | (rcode & 0x0f));
    out.extend_from_slice(&[0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(q.section);
    if let Some((rtype, ttl, data)) = answer {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    if let Some(e) = q.edns {
        push_opt(out, e.dnssec_ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn malformed_edns_options_go_to_the_slow_path() {
        // Fuzzer find: an OPT record whose data is one stray byte (www.example.org AAAA).
        let query = "3c4d01000001000000000001037777770765786161706c65036f726700001c0001";
        let bad = unhex(&format!("{query}000029100000000000000100"));
        assert!(parse_question(&bad).is_none());
        // The same query with an empty option list is fine.
        let good = unhex(&format!("{query}0000291000000000000000"));
        assert!(parse_question(&good).is_some());
        // One whole option (code 10, cookie of 8 bytes) is fine too.
        let mut cookie = good.clone();
        let n = cookie.len();
        cookie[n - 2..].copy_from_slice(&[0, 12]);
        cookie.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(parse_question(&cookie).is_some());
    }
    use crate::dns::message::tests::query_msg;
    use hickory_proto::op::{Edns as HEdns, Message, MessageType};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    #[test]
    fn question_parsed_and_keyed_case_insensitively() {
        let a = query_msg("WwW.Example.TEST.", RecordType::A, 7)
            .to_vec()
            .unwrap();
        let q = parse_question(&a).unwrap();
        assert_eq!(q.id, 7);
        assert_eq!(q.flags[0] & 0x01, 1, "RD");
        assert_eq!(q.qtype, TYPE_A);
        assert_eq!(q.qclass, CLASS_IN);
        assert!(q.edns.is_none());
        assert_eq!(q.udp_limit(), 512);
        assert_eq!(q.labels.iter().collect::<Vec<_>>(), vec![0, 4, 12, 17]);
        let b = query_msg("www.example.test.", RecordType::A, 9)
            .to_vec()
            .unwrap();
        let qb = parse_question(&b).unwrap();
        assert_eq!(Key::new(&q).as_bytes(), Key::new(&qb).as_bytes());
        assert_eq!(name_to_string(Key::new(&q).name()), "www.example.test");
        let aaaa = query_msg("www.example.test.", RecordType::AAAA, 9)
            .to_vec()
            .unwrap();
        assert_ne!(
            Key::new(&parse_question(&aaaa).unwrap()).as_bytes(),
            Key::new(&qb).as_bytes()
        );
    }

    #[test]
    fn edns_read_and_do_bit_changes_key() {
        let mut m = query_msg("a.test.", RecordType::A, 1);
        let mut e = HEdns::new();
        e.set_max_payload(4096);
        m.set_edns(e.clone());
        let plain = m.to_vec().unwrap();
        let q = parse_question(&plain).unwrap();
        assert_eq!(
            q.edns,
            Some(Edns {
                payload: 4096,
                dnssec_ok: false
            })
        );
        assert_eq!(q.udp_limit(), 4096);
        e.set_dnssec_ok(true);
        m.set_edns(e);
        let with_do = m.to_vec().unwrap();
        let qd = parse_question(&with_do).unwrap();
        assert!(qd.dnssec());
        assert_ne!(Key::new(&q).as_bytes(), Key::new(&qd).as_bytes());
    }

    #[test]
    fn unusual_queries_go_to_the_slow_path() {
        let good = query_msg("a.test.", RecordType::A, 1).to_vec().unwrap();
        assert!(parse_question(&good).is_some());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_question(&trailing).is_none());
        assert!(parse_question(&good[..good.len() - 1]).is_none());
        let mut resp = good.clone();
        resp[2] |= 0x80;
        assert!(parse_question(&resp).is_none());
        let axfr = query_msg("a.test.", RecordType::AXFR, 1).to_vec().unwrap();
        assert!(parse_question(&axfr).is_none());
        let mut compressed = good[..12].to_vec();
        compressed.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert!(parse_question(&compressed).is_none());
        assert!(parse_question(&[0u8; 3]).is_none());
    }

    #[test]
    fn names_convert_both_ways() {
        let w = name_from_str("Ads.Example.com").unwrap();
        assert_eq!(w, b"\x03ads\x07example\x03com\x00");
        assert_eq!(name_to_string(&w), "ads.example.com");
        assert_eq!(name_from_str(".").unwrap(), vec![0]);
        assert!(name_from_str("a..b").is_none());
        assert!(name_from_str(&"x".repeat(64)).is_none());
        assert_eq!(name_to_string(b"\x03a b\x00"), "a\\032b");
    }

    #[test]
    fn walk_finds_records_ttls_and_addresses() {
        let mut m = query_msg("a.test.", RecordType::A, 1);
        m.set_message_type(MessageType::Response);
        let name = Name::from_ascii("a.test.").unwrap();
        m.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let zone = Name::from_ascii("test.").unwrap();
        m.add_name_server(Record::from_rdata(
            zone.clone(),
            900,
            RData::SOA(SOA::new(zone.clone(), zone, 1, 2, 3, 4, 60)),
        ));
        let bytes = m.to_vec().unwrap();
        let r = walk(&bytes).unwrap();
        assert!(r.is_response);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0].ttl, 300);
        assert_eq!(u32_at(&bytes, r.records[0].ttl_at), Some(300));
        assert_eq!(r.records[1].section, Section::Authority);
        assert_eq!(r.records[1].rtype, TYPE_SOA);
        let (_, end) = r.records[1].rdata;
        assert_eq!(u32_at(&bytes, end - 4), Some(60), "SOA minimum is last");
        assert_eq!(
            first_address(&bytes, &r),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert!(walk(&bytes[..bytes.len() - 1]).is_none());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(walk(&extra).is_none());
    }

    #[test]
    fn synthesized_reply_parses() {
        let mut m = query_msg("Ads.Example.com.", RecordType::A, 0x4321);
        m.set_edns(HEdns::new());
        let bytes = m.to_vec().unwrap();
        let q = parse_question(&bytes).unwrap();
        let mut out = Vec::new();
        synth_reply(
            &q,
            RCODE_NOERROR,
            Some((TYPE_A, 60, &[0, 0, 0, 0])),
            &mut out,
        );
        let r = Message::from_vec(&out).unwrap();
        assert_eq!(r.id(), 0x4321);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.answers()[0].data(), &RData::A(A::new(0, 0, 0, 0)));
        assert!(r.extensions().is_some());
        assert_eq!(r.queries()[0].name().to_ascii(), "Ads.Example.com.");
        synth_reply(&q, RCODE_NXDOMAIN, None, &mut out);
        let r = Message::from_vec(&out).unwrap();
        assert_eq!(r.response_code(), hickory_proto::op::ResponseCode::NXDomain);
        assert!(r.answers().is_empty());
    }

    #[test]
    fn fit_udp_truncates_keeping_opt() {
        let mut m = query_msg("big.test.", RecordType::TXT, 1);
        m.set_edns(HEdns::new()); // hickory's default payload is 512
        let bytes = m.to_vec().unwrap();
        let q = parse_question(&bytes).unwrap();
        let mut out = Vec::new();
        synth_reply(&q, RCODE_NOERROR, Some((16, 60, &[0u8; 600])), &mut out);
        fit_udp(&mut out, &q);
        let r = Message::from_vec(&out).unwrap();
        assert!(r.truncated());
        assert!(r.answers().is_empty());
        assert!(r.extensions().is_some());
    }
}
