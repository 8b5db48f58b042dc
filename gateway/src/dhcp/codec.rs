//! Wire format: datagrams to dhcproto messages and replies back to datagrams.
//!
//! dhcproto's option decoder can panic on some malformed options (debug
//! assertions, unchecked `len - 3`) and gives up on every following option when
//! one fails to decode. So before handing a datagram to it we walk the option
//! TLVs ourselves, check bounds, and keep only the options the server reads,
//! each with a length it is known to decode. Everything else is discarded.

use dhcproto::v4::{self, DhcpOption};
use dhcproto::{Decodable, Encodable, Encoder};
use std::fmt;

/// op .. file: the fixed BOOTP header.
const HEADER_LEN: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Some BOOTP-era clients drop replies shorter than a BOOTP packet.
const MIN_REPLY_LEN: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    TooShort,
    NotRequest,
    NotEthernet,
    BadCookie,
    Truncated,
    Undecodable,
    NoMessageType,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::TooShort => "shorter than a DHCP header",
            Malformed::NotRequest => "not a BOOTREQUEST",
            Malformed::NotEthernet => "hardware type is not Ethernet",
            Malformed::BadCookie => "bad magic cookie",
            Malformed::Truncated => "option runs past the end of the packet",
            Malformed::Undecodable => "undecodable",
            Malformed::NoMessageType => "no DHCP message type",
        })
    }
}

/// Whether the server reads option `code`, and `len` is one dhcproto decodes.
fn wanted(code: u8, len: usize) -> bool {
    match code {
        53 => len == 1,           // message type
        50 | 54 | 51 => len == 4, // requested IP, server id, lease time
        57 => len == 2,           // max message size
        12 | 55 | 61 => len >= 1, // hostname, parameter list, client id
        _ => false,
    }
}

pub fn decode(buf: &[u8]) -> Result<v4::Message, Malformed> {
    if buf.len() < HEADER_LEN + MAGIC.len() {
        return Err(Malformed::TooShort);
    }
    if buf[0] != 1 {
        return Err(Malformed::NotRequest);
    }
    // Leases are keyed by 6-byte MACs; dhcproto's chaddr() would also panic on hlen > 16.
    if buf[1] != 1 || buf[2] != 6 {
        return Err(Malformed::NotEthernet);
    }
    if buf[HEADER_LEN..HEADER_LEN + 4] != MAGIC {
        return Err(Malformed::BadCookie);
    }
    let mut clean = buf[..HEADER_LEN + 4].to_vec();
    let mut seen = [false; 256];
    let mut i = HEADER_LEN + 4;
    while i < buf.len() {
        let code = buf[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = *buf.get(i + 1).ok_or(Malformed::Truncated)? as usize;
        let val = buf.get(i + 2..i + 2 + len).ok_or(Malformed::Truncated)?;
        i += 2 + len;
        // First copy only: dhcproto would concatenate repeats (RFC 3396), which
        // could turn a fixed-size option into an undecodable one.
        if !wanted(code, len) || seen[code as usize] {
            continue;
        }
        // A non-UTF-8 hostname would stop dhcproto parsing; it is only cosmetic.
        if code == 12 && std::str::from_utf8(val).is_err() {
            continue;
        }
        seen[code as usize] = true;
        clean.push(code);
        clean.push(len as u8);
        clean.extend_from_slice(val);
    }
    clean.push(255);
    let msg = v4::Message::from_bytes(&clean).map_err(|_| Malformed::Undecodable)?;
    if msg.opts().msg_type().is_none() {
        return Err(Malformed::NoMessageType);
    }
    Ok(msg)
}

/// Encodes `header` (its own options are ignored) followed by `opts` in the
/// given order: dhcproto keeps options in a HashMap, which would lose the
/// order the client asked for. The header and the options a reply carries are
/// written directly (dhcproto's encoder goes byte by byte); anything else goes
/// through dhcproto.
pub fn encode(
    header: &v4::Message,
    opts: &[DhcpOption],
) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
    let h = header;
    let mut buf = Vec::with_capacity(MIN_REPLY_LEN + 64);
    buf.push(u8::from(h.opcode()));
    buf.push(u8::from(h.htype()));
    buf.push(h.hlen());
    buf.push(h.hops());
    buf.extend_from_slice(&h.xid().to_be_bytes());
    buf.extend_from_slice(&h.secs().to_be_bytes());
    buf.extend_from_slice(&u16::from(h.flags()).to_be_bytes());
    for a in [h.ciaddr(), h.yiaddr(), h.siaddr(), h.giaddr()] {
        buf.extend_from_slice(&a.octets());
    }
    put_fixed(&mut buf, h.chaddr(), 16)?;
    put_fixed(&mut buf, h.sname().unwrap_or_default(), 64)?;
    put_fixed(&mut buf, h.fname().unwrap_or_default(), 128)?;
    buf.extend_from_slice(&MAGIC);
    for o in opts {
        put_option(&mut buf, o)?;
    }
    buf.push(255);
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, 0);
    }
    Ok(buf)
}

fn put_fixed(
    buf: &mut Vec<u8>,
    bytes: &[u8],
    len: usize,
) -> Result<(), dhcproto::error::EncodeError> {
    if bytes.len() > len {
        return Err(dhcproto::error::EncodeError::StringSizeTooBig { len: bytes.len() });
    }
    buf.extend_from_slice(bytes);
    buf.resize(buf.len() + len - bytes.len(), 0);
    Ok(())
}

fn put_option(buf: &mut Vec<u8>, o: &DhcpOption) -> Result<(), dhcproto::error::EncodeError> {
    let code = u8::from(v4::OptionCode::from(o));
    let mut tlv = |val: &[u8]| {
        buf.push(code);
        buf.push(val.len() as u8);
        buf.extend_from_slice(val);
    };
    match o {
        DhcpOption::MessageType(t) => tlv(&[u8::from(*t)]),
        DhcpOption::ServerIdentifier(ip) | DhcpOption::SubnetMask(ip) => tlv(&ip.octets()),
        DhcpOption::AddressLeaseTime(t) | DhcpOption::Renewal(t) | DhcpOption::Rebinding(t) => {
            tlv(&t.to_be_bytes())
        }
        DhcpOption::InterfaceMtu(m) => tlv(&m.to_be_bytes()),
        DhcpOption::Router(ips)
        | DhcpOption::DomainNameServer(ips)
        | DhcpOption::NtpServers(ips)
            if !ips.is_empty() && ips.len() <= 63 =>
        {
            buf.push(code);
            buf.push((ips.len() * 4) as u8);
            for ip in ips {
                buf.extend_from_slice(&ip.octets());
            }
        }
        DhcpOption::DomainName(d) if !d.is_empty() && d.len() <= 255 => tlv(d.as_bytes()),
        _ => {
            // dhcproto's encoder writes from the start of its buffer.
            let mut tmp = Vec::new();
            o.encode(&mut Encoder::new(&mut tmp))?;
            buf.extend_from_slice(&tmp);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dhcproto::v4::{MessageType, OptionCode};
    use rand::{Rng, SeedableRng};
    use std::net::Ipv4Addr;

    pub(crate) fn request_bytes(opts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[28..34].copy_from_slice(&[0x52, 0x54, 0, 1, 2, 3]);
        b.extend_from_slice(&MAGIC);
        for (code, val) in opts {
            b.push(*code);
            b.push(val.len() as u8);
            b.extend_from_slice(val);
        }
        b.push(255);
        b
    }

    #[test]
    fn decodes_a_discover() {
        let b = request_bytes(&[
            (53, &[1]),
            (12, b"laptop"),
            (55, &[1, 3, 6]),
            (61, &[1, 0x52]),
        ]);
        let m = decode(&b).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(m.chaddr(), &[0x52, 0x54, 0, 1, 2, 3]);
        assert_eq!(m.xid(), 0x1234_5678);
        assert!(
            matches!(m.opts().get(OptionCode::Hostname), Some(DhcpOption::Hostname(h)) if h == "laptop")
        );
    }

    #[test]
    fn rejects_bad_packets() {
        let good = request_bytes(&[(53, &[1])]);
        assert_eq!(decode(&good[..100]), Err(Malformed::TooShort));
        let mut b = good.clone();
        b[0] = 2;
        assert_eq!(decode(&b), Err(Malformed::NotRequest));
        let mut b = good.clone();
        b[2] = 17;
        assert_eq!(decode(&b), Err(Malformed::NotEthernet));
        let mut b = good.clone();
        b[236] = 0;
        assert_eq!(decode(&b), Err(Malformed::BadCookie));
        assert_eq!(
            decode(&request_bytes(&[(12, b"x")])),
            Err(Malformed::NoMessageType)
        );
        let mut b = request_bytes(&[(53, &[1])]);
        b.pop();
        b.extend_from_slice(&[12, 40, b'a']);
        assert_eq!(decode(&b), Err(Malformed::Truncated));
    }

    #[test]
    fn options_that_trip_dhcproto_are_filtered() {
        // RapidCommit with a length, short ClientFQDN, a bad hostname placed
        // before the message type, a wrong-size server id: all ignored.
        let b = request_bytes(&[
            (80, &[1]),
            (81, &[0]),
            (12, &[0xff, 0xfe]),
            (54, &[1, 2, 3]),
            (53, &[3]),
        ]);
        let m = decode(&b).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Request));
        assert!(m.opts().get(OptionCode::ServerIdentifier).is_none());
        assert!(m.opts().get(OptionCode::Hostname).is_none());
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(67);
        let base = request_bytes(&[
            (53, &[3]),
            (50, &[192, 168, 1, 100]),
            (12, b"h"),
            (55, &[1, 3]),
        ]);
        for _ in 0..20_000 {
            let mut b = if rng.random_bool(0.5) {
                let n = rng.random_range(0..600);
                (0..n).map(|_| rng.random()).collect::<Vec<u8>>()
            } else {
                base.clone()
            };
            // Keep the header valid half of the time so the option walker is exercised.
            if b.len() >= 240 && rng.random_bool(0.5) {
                b[..240].copy_from_slice(&base[..240]);
            }
            for _ in 0..rng.random_range(0..8) {
                if b.is_empty() {
                    break;
                }
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            if rng.random_bool(0.3) {
                let cut = rng.random_range(0..=b.len());
                b.truncate(cut);
            }
            let _ = decode(&b);
        }
    }

    #[test]
    fn fast_encoder_matches_dhcproto() {
        use dhcproto::v4::UnknownOption;
        let mut h = v4::Message::new_with_id(
            0xdead_beef,
            Ipv4Addr::new(192, 168, 1, 7),
            Ipv4Addr::new(192, 168, 1, 100),
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(192, 168, 1, 254),
            &[1, 2, 3, 4, 5, 6],
        );
        h.set_opcode(v4::Opcode::BootReply)
            .set_flags(v4::Flags::default().set_broadcast())
            .set_hops(2)
            .set_secs(9)
            .set_sname(b"srv")
            .set_fname(b"boot.img");
        let ip = Ipv4Addr::new(192, 168, 1, 1);
        let opts = vec![
            DhcpOption::MessageType(MessageType::Ack),
            DhcpOption::ServerIdentifier(ip),
            DhcpOption::AddressLeaseTime(43200),
            DhcpOption::Renewal(21600),
            DhcpOption::Rebinding(37800),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![ip]),
            DhcpOption::DomainNameServer(vec![ip, Ipv4Addr::new(9, 9, 9, 9)]),
            DhcpOption::DomainName("lan".into()),
            DhcpOption::InterfaceMtu(1400),
            DhcpOption::NtpServers(vec![ip]),
            DhcpOption::Unknown(UnknownOption::new(
                OptionCode::ClasslessStaticRoute,
                vec![0, 192, 168, 1, 1],
            )),
            DhcpOption::Message("x".repeat(300)),
        ];
        // The reference: dhcproto's encoder, one option after the other.
        let mut want = Vec::new();
        {
            let mut e = Encoder::new(&mut want);
            let mut bare = h.clone();
            bare.set_opts(v4::DhcpOptions::new());
            bare.encode(&mut e).unwrap();
            for o in &opts {
                o.encode(&mut e).unwrap();
            }
            e.write_u8(255).unwrap();
        }
        assert_eq!(encode(&h, &opts).unwrap(), want);
    }

    #[test]
    fn encode_keeps_option_order_and_pads() {
        let mut h = v4::Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(192, 168, 1, 100),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[1, 2, 3, 4, 5, 6],
        );
        h.set_opcode(v4::Opcode::BootReply);
        let opts = [
            DhcpOption::MessageType(MessageType::Offer),
            DhcpOption::DomainNameServer(vec![Ipv4Addr::new(192, 168, 1, 1)]),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
        ];
        let b = encode(&h, &opts).unwrap();
        assert_eq!(b.len(), MIN_REPLY_LEN);
        assert_eq!(
            &b[240..],
            &[53, 1, 2, 6, 4, 192, 168, 1, 1, 1, 4, 255, 255, 255, 0, 255][..]
                .iter()
                .copied()
                .chain(std::iter::repeat(0))
                .take(MIN_REPLY_LEN - 240)
                .collect::<Vec<u8>>()[..]
        );
        let back = v4::Message::from_bytes(&b).unwrap();
        assert_eq!(back.yiaddr(), Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(back.opts().msg_type(), Some(MessageType::Offer));
    }
}
