//! The per-packet NAPT decision: parse, look up or create the mapping, rewrite in place.
//! No I/O: the queue loop hands in the buffer and applies the verdict.

use super::mapping::{Mappings, Millis, Miss, Proto};
use super::packet::{self, Csum, Error, Ipv4Packet, Side, TcpFlags, L4};
use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Leaving through the WAN (postrouting): source NAT.
    Outbound,
    /// Arriving from the WAN (prerouting): destination NAT back to the inside host.
    Inbound,
    /// From the LAN to the router itself (prerouting): a LAN host reaching the WAN address.
    /// When the port is mapped or forwarded: destination NAT to that LAN host, as if the
    /// packet had come from outside (hairpinning, RFC 4787 REQ-9).
    HairpinIn,
    /// Routed back out to the LAN with a LAN source (postrouting): the second half of a
    /// hairpin, source NAT to the sender's mapping, so the receiver sees an outside address.
    HairpinOut,
}

/// What to do with a packet `translate` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Rewritten: pass it on.
    Translated,
    /// Untouched, for the router itself (a LAN host reaching an unmapped port of the WAN
    /// address): its own stack answers, as without NAT.
    Local,
}

/// Why a packet was dropped. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    NoWanAddress,
    Truncated,
    Malformed,
    Fragment,
    Unsupported,
    NoMapping,
    /// A mapping exists but its filtering mode does not admit the sender.
    Filtered,
    NotForUs,
    PortsExhausted,
}

impl From<Miss> for Drop {
    fn from(m: Miss) -> Self {
        match m {
            Miss::NoMapping => Drop::NoMapping,
            Miss::Filtered => Drop::Filtered,
        }
    }
}

impl From<Error> for Drop {
    fn from(e: Error) -> Self {
        match e {
            Error::Malformed | Error::NotIpv4 => Drop::Malformed,
            Error::Truncated => Drop::Truncated,
            Error::Fragment => Drop::Fragment,
            Error::Unsupported => Drop::Unsupported,
        }
    }
}

/// Translates `buf` in place. `Ok` means "accept the packet"; nothing that leaves the router
/// is ever accepted untranslated, so a packet we cannot handle never leaks with a private
/// address (only `Action::Local` packets, addressed to the router, go on untouched).
pub fn translate(
    buf: &mut [u8],
    dir: Direction,
    wan: Option<Ipv4Addr>,
    csum: Csum,
    map: &mut Mappings,
    now: Millis,
) -> Result<Action, Drop> {
    let wan = match wan {
        Some(a) => a,
        // Without a WAN address nothing is mapped: a LAN packet for the router stays its own.
        None if dir == Direction::HairpinIn => return Ok(Action::Local),
        None => return Err(Drop::NoWanAddress),
    };
    let mut pkt = Ipv4Packet::new_checked(buf)?;
    // The kernel reassembles before our hooks whenever conntrack is loaded, so fragments here
    // are rare; translating them would need per-datagram state, so they are dropped.
    if pkt.is_fragment() {
        return Err(Drop::Fragment);
    }
    let bytes = pkt.total_len() as u64;
    let (proto, src_port, dst_port, flags) = match pkt.l4()? {
        L4::IcmpError { .. } => return translate_error(&mut pkt, dir, wan, map, now),
        L4::Tcp {
            src_port,
            dst_port,
            flags,
        } => (Proto::Tcp, src_port, dst_port, flags),
        L4::Udp { src_port, dst_port } => (Proto::Udp, src_port, dst_port, TcpFlags(0)),
        // Echo is keyed by identifier on both sides; requests go out, replies come in.
        L4::IcmpEcho { request, ident } if request == (dir == Direction::Outbound) => {
            (Proto::Icmp, ident, ident, TcpFlags(0))
        }
        // Pings of the WAN address from the LAN are the router's to answer.
        _ if dir == Direction::HairpinIn => return Ok(Action::Local),
        _ => return Err(Drop::Unsupported),
    };
    match dir {
        Direction::Outbound => {
            let inside = SocketAddrV4::new(pkt.src(), src_port);
            let remote = SocketAddrV4::new(pkt.dst(), dst_port);
            let port = map
                .outbound(proto, inside, remote, flags, bytes, now)
                .ok_or(Drop::PortsExhausted)?;
            pkt.rewrite(Side::Src, wan, port, csum)?;
        }
        Direction::Inbound => {
            if pkt.dst() != wan {
                return Err(Drop::NotForUs);
            }
            let remote = SocketAddrV4::new(pkt.src(), src_port);
            let inside = map.inbound(proto, dst_port, remote, flags, bytes, now)?;
            pkt.rewrite(Side::Dst, *inside.ip(), inside.port(), csum)?;
        }
        Direction::HairpinIn => {
            if pkt.dst() != wan || proto == Proto::Icmp {
                return Ok(Action::Local);
            }
            // The receiver's filtering sees the sender as it will appear: WAN address and
            // the sender's outside port (none yet: port 0, which no remote set holds).
            let sender = SocketAddrV4::new(pkt.src(), src_port);
            let seen_as = map.outside_port(proto, sender, now).unwrap_or(0);
            let remote = SocketAddrV4::new(wan, seen_as);
            let receiver = match map.inbound(proto, dst_port, remote, flags, bytes, now) {
                Ok(r) => r,
                Err(Miss::NoMapping) => return Ok(Action::Local),
                Err(Miss::Filtered) => return Err(Drop::Filtered),
            };
            // The sender's own mapping, towards the WAN address and port it sent to; the
            // source rewrite waits for postrouting (a local source here would be a martian).
            map.outbound(
                proto,
                sender,
                SocketAddrV4::new(wan, dst_port),
                flags,
                bytes,
                now,
            )
            .ok_or(Drop::PortsExhausted)?;
            pkt.rewrite(Side::Dst, *receiver.ip(), receiver.port(), csum)?;
        }
        Direction::HairpinOut => {
            let sender = SocketAddrV4::new(pkt.src(), src_port);
            let port = map
                .outside_port(proto, sender, now)
                .ok_or(Drop::NoMapping)?;
            pkt.rewrite(Side::Src, wan, port, csum)?;
        }
    }
    Ok(Action::Translated)
}

/// An ICMP error about a packet that went through a mapping (RFC 5508 REQ-4/5): the quoted
/// packet is put back in the form its addressee sent or received it, and the error goes to
/// the inside host (inbound) or leaves from the WAN address (outbound). A LAN host's error
/// about a hairpinned packet goes back to the LAN host that sent it, in the two halves of any
/// hairpin. The mapping is looked up, never created or refreshed (REQ-6); an error about
/// anything else is dropped (or, addressed to the router from the LAN, left to the router).
fn translate_error(
    pkt: &mut Ipv4Packet<&mut [u8]>,
    dir: Direction,
    wan: Ipv4Addr,
    map: &Mappings,
    now: Millis,
) -> Result<Action, Drop> {
    let q = pkt.quoted()?;
    let proto = match q.protocol {
        packet::PROTO_TCP => Proto::Tcp,
        packet::PROTO_UDP => Proto::Udp,
        _ => Proto::Icmp,
    };
    match dir {
        Direction::Inbound => {
            // The quote is a packet we sent: from the WAN address, an echo if ICMP.
            if pkt.dst() != wan {
                return Err(Drop::NotForUs);
            }
            if q.src != wan || (proto == Proto::Icmp && !q.echo_request) {
                return Err(Drop::NoMapping);
            }
            let remote = SocketAddrV4::new(q.dst, q.dst_port);
            let inside = map.inbound_error(proto, q.src_port, remote, now)?;
            pkt.rewrite_quoted(
                Side::Dst,
                *inside.ip(),
                Side::Src,
                *inside.ip(),
                inside.port(),
            )?;
        }
        Direction::Outbound => {
            // The quote is a packet we delivered to an inside host: an echo reply if ICMP.
            if proto == Proto::Icmp && q.echo_request {
                return Err(Drop::NoMapping);
            }
            let inside = SocketAddrV4::new(q.dst, q.dst_port);
            let port = map
                .outside_port(proto, inside, now)
                .ok_or(Drop::NoMapping)?;
            pkt.rewrite_quoted(Side::Src, wan, Side::Dst, wan, port)?;
        }
        Direction::HairpinIn => {
            // The quote is the hairpinned packet as its receiver got it: from the WAN address
            // and the sender's outside port, to the receiver. An echo never gets here (pings
            // of the WAN address are the router's), nor does the router's own traffic.
            if pkt.dst() != wan || q.src != wan || proto == Proto::Icmp {
                return Ok(Action::Local);
            }
            // The sender sent to the receiver's outside port, which its filtering admitted.
            let receiver = SocketAddrV4::new(q.dst, q.dst_port);
            let Some(seen_port) = map.outside_port(proto, receiver, now) else {
                return Ok(Action::Local);
            };
            let remote = SocketAddrV4::new(wan, seen_port);
            let sender = match map.inbound_error(proto, q.src_port, remote, now) {
                Ok(s) => s,
                Err(Miss::NoMapping) => return Ok(Action::Local),
                Err(Miss::Filtered) => return Err(Drop::Filtered),
            };
            // To the sender, quoting its own packet; the source waits for postrouting, as in
            // any hairpin (a local source arriving from the LAN would be a martian).
            pkt.rewrite_quoted(
                Side::Dst,
                *sender.ip(),
                Side::Src,
                *sender.ip(),
                sender.port(),
            )?;
        }
        Direction::HairpinOut => {
            // The second half: from the WAN address, quoting the receiver as the sender knew
            // it, at its outside port.
            if proto == Proto::Icmp {
                return Err(Drop::Unsupported);
            }
            let receiver = SocketAddrV4::new(q.dst, q.dst_port);
            let port = map
                .outside_port(proto, receiver, now)
                .ok_or(Drop::NoMapping)?;
            pkt.rewrite_quoted(Side::Src, wan, Side::Dst, wan, port)?;
        }
    }
    Ok(Action::Translated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::mapping::Params;
    use etherparse::PacketBuilder;

    const WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    const CLIENT: [u8; 4] = [192, 168, 1, 10];
    const SERVER: [u8; 4] = [198, 51, 100, 1];

    fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, syn: bool) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, 1, 1000);
        let b = if syn { b.syn() } else { b.ack(5) };
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        v
    }

    fn view(buf: &[u8]) -> Ipv4Packet<&[u8]> {
        Ipv4Packet::new_checked(buf).unwrap()
    }

    #[test]
    fn tcp_round_trip() {
        let mut m = Mappings::new(Params::default(), 1);
        let mut out = tcp(CLIENT, SERVER, 40000, 80, true);
        translate(
            &mut out,
            Direction::Outbound,
            Some(WAN),
            Csum::Complete,
            &mut m,
            0,
        )
        .unwrap();
        let p = view(&out);
        assert_eq!(p.src(), WAN);
        assert!(p.ip_checksum_ok() && p.l4_checksum_ok());
        assert!(matches!(
            p.l4(),
            Ok(L4::Tcp {
                src_port: 40000,
                ..
            })
        ));

        let mut back = tcp(SERVER, WAN.octets(), 80, 40000, false);
        translate(
            &mut back,
            Direction::Inbound,
            Some(WAN),
            Csum::Complete,
            &mut m,
            1,
        )
        .unwrap();
        let p = view(&back);
        assert_eq!(p.dst(), Ipv4Addr::from(CLIENT));
        assert!(matches!(
            p.l4(),
            Ok(L4::Tcp {
                dst_port: 40000,
                ..
            })
        ));
        assert!(p.ip_checksum_ok() && p.l4_checksum_ok());
    }

    #[test]
    fn drops_without_wan_mapping_or_for_others() {
        let mut m = Mappings::new(Params::default(), 1);
        let mut out = tcp(CLIENT, SERVER, 40000, 80, true);
        let orig = out.clone();
        assert_eq!(
            translate(
                &mut out,
                Direction::Outbound,
                None,
                Csum::Complete,
                &mut m,
                0
            ),
            Err(Drop::NoWanAddress)
        );
        assert_eq!(out, orig);
        let mut unsolicited = tcp(SERVER, WAN.octets(), 80, 40000, true);
        assert_eq!(
            translate(
                &mut unsolicited,
                Direction::Inbound,
                Some(WAN),
                Csum::Complete,
                &mut m,
                0
            ),
            Err(Drop::NoMapping)
        );
        let mut other = tcp(SERVER, [203, 0, 113, 99], 80, 40000, false);
        assert_eq!(
            translate(
                &mut other,
                Direction::Inbound,
                Some(WAN),
                Csum::Complete,
                &mut m,
                0
            ),
            Err(Drop::NotForUs)
        );
        let mut cut = tcp(CLIENT, SERVER, 40000, 80, true);
        cut.pop();
        assert_eq!(
            translate(
                &mut cut,
                Direction::Outbound,
                Some(WAN),
                Csum::Complete,
                &mut m,
                0
            ),
            Err(Drop::Truncated)
        );
        assert_eq!(m.len(), 0, "nothing dropped may create a mapping");
    }

    #[test]
    fn filtered_inbound_is_dropped_untouched() {
        use crate::nat::mapping::Filtering;
        let params = Params {
            filtering: Filtering::AddressAndPortDependent,
            ..Params::default()
        };
        let mut m = Mappings::new(params, 1);
        let mut out = tcp(CLIENT, SERVER, 40000, 80, true);
        translate(
            &mut out,
            Direction::Outbound,
            Some(WAN),
            Csum::Complete,
            &mut m,
            0,
        )
        .unwrap();
        // Same server, other source port: not the endpoint the client talked to.
        let mut other = tcp(SERVER, WAN.octets(), 81, 40000, false);
        let orig = other.clone();
        let r = translate(
            &mut other,
            Direction::Inbound,
            Some(WAN),
            Csum::Complete,
            &mut m,
            1,
        );
        assert_eq!(r, Err(Drop::Filtered));
        assert_eq!(other, orig);
        let mut back = tcp(SERVER, WAN.octets(), 80, 40000, false);
        translate(
            &mut back,
            Direction::Inbound,
            Some(WAN),
            Csum::Complete,
            &mut m,
            1,
        )
        .unwrap();
    }

    #[test]
    fn icmp_echo_by_identifier() {
        let mut m = Mappings::new(Params::default(), 1);
        let mut req = Vec::new();
        PacketBuilder::ipv4(CLIENT, SERVER, 64)
            .icmpv4_echo_request(777, 1)
            .write(&mut req, b"abc")
            .unwrap();
        translate(
            &mut req,
            Direction::Outbound,
            Some(WAN),
            Csum::Complete,
            &mut m,
            0,
        )
        .unwrap();
        let p = view(&req);
        assert_eq!(p.src(), WAN);
        assert!(p.l4_checksum_ok());
        let L4::IcmpEcho { ident, .. } = p.l4().unwrap() else {
            panic!()
        };
        let mut rep = Vec::new();
        PacketBuilder::ipv4(SERVER, WAN.octets(), 64)
            .icmpv4_echo_reply(ident, 1)
            .write(&mut rep, b"abc")
            .unwrap();
        translate(
            &mut rep,
            Direction::Inbound,
            Some(WAN),
            Csum::Complete,
            &mut m,
            0,
        )
        .unwrap();
        let p = view(&rep);
        assert_eq!(p.dst(), Ipv4Addr::from(CLIENT));
        assert_eq!(
            p.l4(),
            Ok(L4::IcmpEcho {
                request: false,
                ident: 777
            })
        );
        assert!(p.ip_checksum_ok() && p.l4_checksum_ok());
        // An echo request arriving from outside is not ours to forward.
        let mut inreq = Vec::new();
        PacketBuilder::ipv4(SERVER, WAN.octets(), 64)
            .icmpv4_echo_request(ident, 1)
            .write(&mut inreq, b"abc")
            .unwrap();
        assert_eq!(
            translate(
                &mut inreq,
                Direction::Inbound,
                Some(WAN),
                Csum::Complete,
                &mut m,
                0
            ),
            Err(Drop::Unsupported)
        );
    }

    fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .udp(sp, dp)
            .write(&mut v, b"probe-payload")
            .unwrap();
        v
    }

    fn ip_sum_ok(h: &[u8]) -> bool {
        packet::fold(packet::sum16(h, 0)) == 0xffff
    }

    /// An ICMP error from `src` to `dst` quoting `quote`, checksums valid.
    fn icmp_error(src: [u8; 4], dst: [u8; 4], typ: u8, code: u8, quote: &[u8]) -> Vec<u8> {
        let total = 28 + quote.len();
        let mut v = vec![0u8; total];
        v[0] = 0x45;
        v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        v[8] = 64;
        v[9] = packet::PROTO_ICMP;
        v[12..16].copy_from_slice(&src);
        v[16..20].copy_from_slice(&dst);
        let c = !packet::fold(packet::sum16(&v[..20], 0));
        v[10..12].copy_from_slice(&c.to_be_bytes());
        v[20] = typ;
        v[21] = code;
        if typ == 3 && code == 4 {
            v[26..28].copy_from_slice(&1400u16.to_be_bytes()); // next-hop MTU
        }
        v[28..].copy_from_slice(quote);
        let c = !packet::fold(packet::sum16(&v[20..], 0));
        v[22..24].copy_from_slice(&c.to_be_bytes());
        v
    }

    fn run(buf: &mut [u8], dir: Direction, m: &mut Mappings, now: Millis) -> Result<Action, Drop> {
        translate(buf, dir, Some(WAN), Csum::Complete, m, now)
    }

    /// The packet a client sent, its translated form, and the table that translated it.
    /// Another host took the client's port first, so the outside port differs.
    fn sent(pkt: Vec<u8>) -> (Vec<u8>, Vec<u8>, Mappings) {
        let mut m = Mappings::new(Params::default(), 1);
        let mut first = pkt.clone();
        first[15] = 11;
        run(&mut first, Direction::Outbound, &mut m, 0).unwrap();
        let mut out = pkt.clone();
        run(&mut out, Direction::Outbound, &mut m, 0).unwrap();
        let hl = usize::from(pkt[0] & 0x0f) * 4;
        let port_at = if pkt[9] == packet::PROTO_ICMP {
            hl + 4
        } else {
            hl
        };
        assert_ne!(out[port_at..port_at + 2], pkt[port_at..port_at + 2]);
        (pkt, out, m)
    }

    const HOP: [u8; 4] = [198, 51, 100, 254];

    #[test]
    fn inbound_errors_go_back_to_the_inside_host_with_the_quote_restored() {
        let udp_probe = udp(CLIENT, SERVER, 40000, 33434);
        let tcp_syn = tcp(CLIENT, SERVER, 40001, 443, true);
        let mut echo = Vec::new();
        PacketBuilder::ipv4(CLIENT, SERVER, 64)
            .icmpv4_echo_request(777, 3)
            .write(&mut echo, b"traceroute -I")
            .unwrap();
        // Quotes of 8 bytes past the header (RFC 792's minimum: no TCP checksum in it) and
        // of the whole packet; time exceeded, port unreachable and fragmentation needed.
        for (orig, quote_len) in [
            (&udp_probe, 28),
            (&udp_probe, udp_probe.len()),
            (&tcp_syn, 28),
            (&tcp_syn, tcp_syn.len()),
            (&echo, 28),
            (&echo, echo.len()),
        ] {
            for (typ, code) in [(11, 0), (3, 3), (3, 4), (12, 0)] {
                let (orig, out, mut m) = sent(orig.clone());
                let before: Vec<_> = m.iter().map(|x| (x.last_seen, x.inb)).collect();
                let mut err = icmp_error(HOP, WAN.octets(), typ, code, &out[..quote_len]);
                run(&mut err, Direction::Inbound, &mut m, 5).unwrap();
                let p = view(&err);
                assert_eq!(p.dst(), Ipv4Addr::from(CLIENT));
                assert_eq!(p.src(), Ipv4Addr::from(HOP));
                assert!(p.ip_checksum_ok() && p.l4_checksum_ok(), "{typ}/{code}");
                assert_eq!((err[20], err[21]), (typ, code), "type and code unchanged");
                assert_eq!(&err[24..28], &icmp_error(HOP, HOP, typ, code, &[])[24..28]);
                // The quote is exactly what the client sent, checksums included.
                assert_eq!(
                    &err[28..],
                    &orig[..quote_len],
                    "{typ}/{code} len {quote_len}"
                );
                assert!(ip_sum_ok(&err[28..48]));
                let after: Vec<_> = m.iter().map(|x| (x.last_seen, x.inb)).collect();
                assert_eq!(before, after, "an ICMP error must not refresh a mapping");
            }
        }
    }

    #[test]
    fn quote_with_ip_options_and_no_udp_checksum() {
        let mut probe = udp(CLIENT, SERVER, 40000, 33434);
        probe[26..28].fill(0); // no UDP checksum
                               // Insert one 4-byte option (NOPs + EOL) and fix lengths and the header checksum.
        probe.splice(20..20, [1, 1, 1, 0]);
        probe[0] = 0x46;
        let len = probe.len() as u16;
        probe[2..4].copy_from_slice(&len.to_be_bytes());
        probe[10..12].fill(0);
        let c = !packet::fold(packet::sum16(&probe[..24], 0));
        probe[10..12].copy_from_slice(&c.to_be_bytes());
        let (orig, out, mut m) = sent(probe);
        let mut err = icmp_error(HOP, WAN.octets(), 11, 0, &out[..32]);
        run(&mut err, Direction::Inbound, &mut m, 1).unwrap();
        assert_eq!(&err[28..], &orig[..32]);
        assert_eq!(
            &err[28 + 24 + 6..28 + 24 + 8],
            &[0, 0],
            "no checksum stays none"
        );
        assert!(view(&err).l4_checksum_ok());
    }

    #[test]
    fn inbound_errors_about_anything_else_are_dropped_untouched() {
        let (_, out, mut m) = sent(udp(CLIENT, SERVER, 40000, 33434));
        let good = icmp_error(HOP, WAN.octets(), 11, 0, &out[..28]);
        let mut cases: Vec<(&str, Vec<u8>, Drop)> = Vec::new();
        let mut bad_sum = good.clone();
        bad_sum[40] ^= 1; // inside the quote: the ICMP checksum no longer verifies
        cases.push(("icmp checksum", bad_sum, Drop::Malformed));
        let mut q = out[..28].to_vec();
        q[8] = 1; // TTL changed without fixing the quoted header checksum
        cases.push((
            "quoted ip checksum",
            icmp_error(HOP, WAN.octets(), 11, 0, &q),
            Drop::Malformed,
        ));
        cases.push((
            "quote cut in the transport header",
            icmp_error(HOP, WAN.octets(), 11, 0, &out[..27]),
            Drop::Truncated,
        ));
        cases.push((
            "quote cut in the ip header",
            icmp_error(HOP, WAN.octets(), 11, 0, &out[..12]),
            Drop::Truncated,
        ));
        cases.push((
            "no quote",
            icmp_error(HOP, WAN.octets(), 3, 1, &[]),
            Drop::Truncated,
        ));
        cases.push((
            "not for our address",
            icmp_error(HOP, [203, 0, 113, 9], 11, 0, &out[..28]),
            Drop::NotForUs,
        ));
        let mut other = out[..28].to_vec();
        other[20..22].copy_from_slice(&40002u16.to_be_bytes());
        cases.push((
            "no such mapping",
            icmp_error(HOP, WAN.octets(), 11, 0, &other),
            Drop::NoMapping,
        ));
        let stranger = udp([192, 0, 2, 1], SERVER, 40000, 33434);
        cases.push((
            "quote not from the WAN address",
            icmp_error(HOP, WAN.octets(), 11, 0, &stranger[..28]),
            Drop::NoMapping,
        ));
        let mut frag = out[..28].to_vec();
        frag[6..8].copy_from_slice(&[0, 1]);
        frag[10..12].fill(0);
        let c = !packet::fold(packet::sum16(&frag[..20], 0));
        frag[10..12].copy_from_slice(&c.to_be_bytes());
        cases.push((
            "quoted non-first fragment",
            icmp_error(HOP, WAN.octets(), 11, 0, &frag),
            Drop::Fragment,
        ));
        let nested = icmp_error(WAN.octets(), HOP, 3, 3, &out[..28]);
        cases.push((
            "error about an error",
            icmp_error(HOP, WAN.octets(), 3, 3, &nested[..28]),
            Drop::Unsupported,
        ));
        for (what, mut pkt, want) in cases {
            let orig = pkt.clone();
            assert_eq!(
                run(&mut pkt, Direction::Inbound, &mut m, 1),
                Err(want),
                "{what}"
            );
            assert_eq!(pkt, orig, "{what}: dropped packet was modified");
        }
        // Never after expiry, and never creating anything.
        let mut late = good.clone();
        assert_eq!(
            run(&mut late, Direction::Inbound, &mut m, 300_000),
            Err(Drop::NoMapping)
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn inbound_errors_obey_filtering() {
        use crate::nat::mapping::Filtering;
        let params = Params {
            filtering: Filtering::AddressAndPortDependent,
            ..Params::default()
        };
        let mut m = Mappings::new(params, 1);
        let mut out = udp(CLIENT, SERVER, 40000, 33434);
        run(&mut out, Direction::Outbound, &mut m, 0).unwrap();
        // A forged error quoting a packet to a remote the client never sent to.
        let mut forged = out.clone();
        forged[16..20].copy_from_slice(&[192, 0, 2, 50]);
        forged[10..12].fill(0);
        let c = !packet::fold(packet::sum16(&forged[..20], 0));
        forged[10..12].copy_from_slice(&c.to_be_bytes());
        let mut err = icmp_error(HOP, WAN.octets(), 3, 3, &forged[..28]);
        assert_eq!(
            run(&mut err, Direction::Inbound, &mut m, 1),
            Err(Drop::Filtered)
        );
        let mut err = icmp_error(HOP, WAN.octets(), 3, 3, &out[..28]);
        run(&mut err, Direction::Inbound, &mut m, 1).unwrap();
    }

    #[test]
    fn outbound_errors_about_delivered_packets_leave_from_the_wan_address() {
        // The client talked to the server; the server's answer came in and was delivered;
        // now the client (or the router, for a TTL that ran out) reports an error about it.
        let (_, out, mut m) = sent(udp(CLIENT, SERVER, 40000, 9000));
        let outside = u16::from_be_bytes([out[20], out[21]]);
        let answer = udp(SERVER, WAN.octets(), 9000, outside);
        let mut delivered = answer.clone();
        run(&mut delivered, Direction::Inbound, &mut m, 1).unwrap();
        assert_eq!(delivered, udp(SERVER, CLIENT, 9000, 40000));
        for from in [CLIENT, WAN.octets()] {
            let mut err = icmp_error(from, SERVER, 3, 3, &delivered);
            run(&mut err, Direction::Outbound, &mut m, 2).unwrap();
            let p = view(&err);
            assert_eq!((p.src(), p.dst()), (WAN, Ipv4Addr::from(SERVER)));
            assert!(p.ip_checksum_ok() && p.l4_checksum_ok());
            // The quote is the answer exactly as the server sent it.
            assert_eq!(&err[28..], &answer[..]);
        }
        // Nothing about a packet we did not deliver gets out, and nothing leaks.
        let stray = udp(SERVER, CLIENT, 9000, 40001);
        let mut err = icmp_error(CLIENT, SERVER, 3, 3, &stray);
        let orig = err.clone();
        assert_eq!(
            run(&mut err, Direction::Outbound, &mut m, 2),
            Err(Drop::NoMapping)
        );
        assert_eq!(err, orig);
    }

    fn ports(buf: &[u8]) -> (SocketAddrV4, SocketAddrV4) {
        let p = view(buf);
        let (sp, dp) = match p.l4().unwrap() {
            L4::Tcp {
                src_port, dst_port, ..
            }
            | L4::Udp { src_port, dst_port } => (src_port, dst_port),
            other => panic!("{other:?}"),
        };
        (
            SocketAddrV4::new(p.src(), sp),
            SocketAddrV4::new(p.dst(), dp),
        )
    }

    /// Both halves of a hairpin, checking checksums after each.
    fn hairpin(buf: &mut [u8], m: &mut Mappings, now: Millis) -> Result<Action, Drop> {
        let a = translate(buf, Direction::HairpinIn, Some(WAN), Csum::Complete, m, now)?;
        if a == Action::Translated {
            assert!(view(buf).ip_checksum_ok() && view(buf).l4_checksum_ok());
            translate(
                buf,
                Direction::HairpinOut,
                Some(WAN),
                Csum::Complete,
                m,
                now,
            )?;
            assert!(view(buf).ip_checksum_ok() && view(buf).l4_checksum_ok());
        }
        Ok(a)
    }

    /// The strictest filtering, and one forward of `external` to `server`:`inside_port`.
    fn forwarding(proto: Proto, external: u16, inside_port: u16) -> (Mappings, Ipv4Addr) {
        use crate::nat::mapping::{Filtering, Forward};
        let params = Params {
            filtering: Filtering::AddressAndPortDependent,
            ..Params::default()
        };
        let mut m = Mappings::new(params, 1);
        let server = Ipv4Addr::new(192, 168, 1, 20);
        m.set_forwards(
            vec![Forward {
                proto,
                first: external,
                last: external,
                inside: server,
                inside_first: inside_port,
            }],
            0,
        );
        (m, server)
    }

    #[test]
    fn hairpin_through_a_forward_both_ways() {
        let (mut m, server) = forwarding(Proto::Tcp, 8080, 80);
        let wan = |p| SocketAddrV4::new(WAN, p);
        // The client reaches the server at the WAN address; the server sees the client's
        // outside endpoint (its port is preserved).
        let mut syn = tcp(CLIENT, WAN.octets(), 50000, 8080, true);
        assert_eq!(hairpin(&mut syn, &mut m, 1), Ok(Action::Translated));
        assert_eq!(ports(&syn), (wan(50000), SocketAddrV4::new(server, 80)));
        // The answer goes back to the client from the forwarded port, passing the client's
        // filtering (it sent to exactly that endpoint).
        let mut ack = tcp(server.octets(), WAN.octets(), 80, 50000, false);
        assert_eq!(hairpin(&mut ack, &mut m, 2), Ok(Action::Translated));
        let client = SocketAddrV4::new(Ipv4Addr::from(CLIENT), 50000);
        assert_eq!(ports(&ack), (wan(8080), client));
    }

    #[test]
    fn hairpinned_errors_go_back_to_the_sender() {
        let (mut m, server) = forwarding(Proto::Udp, 7100, 9100);
        let sent = udp(CLIENT, WAN.octets(), 50000, 7100);
        let mut dgram = sent.clone();
        assert_eq!(hairpin(&mut dgram, &mut m, 1), Ok(Action::Translated));
        // Nothing listens on the server: its port unreachable quotes what it got and goes to
        // the WAN address, the source it saw.
        let mut err = icmp_error(server.octets(), WAN.octets(), 3, 3, &dgram);
        assert_eq!(
            run(&mut err, Direction::HairpinIn, &mut m, 2),
            Ok(Action::Translated)
        );
        let p = view(&err);
        assert_eq!(p.dst(), Ipv4Addr::from(CLIENT));
        assert_eq!(p.src(), server, "the source waits for postrouting");
        assert_eq!(
            run(&mut err, Direction::HairpinOut, &mut m, 2),
            Ok(Action::Translated)
        );
        let p = view(&err);
        assert_eq!((p.src(), p.dst()), (WAN, Ipv4Addr::from(CLIENT)));
        assert!(p.ip_checksum_ok() && p.l4_checksum_ok());
        // The client gets its own datagram back in the quote, byte for byte, so its socket
        // can match the error to its connection.
        assert_eq!(&err[28..], &sent[..]);
        // Errors about anything no mapping knows are the router's own, untouched.
        let other = udp(WAN.octets(), server.octets(), 40000, 9100);
        let mut stray = icmp_error(server.octets(), WAN.octets(), 3, 3, &other);
        let before = stray.clone();
        assert_eq!(
            run(&mut stray, Direction::HairpinIn, &mut m, 3),
            Ok(Action::Local)
        );
        assert_eq!(stray, before);
        let mut lost = icmp_error(
            server.octets(),
            CLIENT,
            3,
            3,
            &udp(CLIENT, [192, 168, 1, 99], 1, 2),
        );
        assert_eq!(
            run(&mut lost, Direction::HairpinOut, &mut m, 3),
            Err(Drop::NoMapping)
        );
    }

    #[test]
    fn hairpin_to_a_mapping_obeys_filtering() {
        use crate::nat::mapping::Filtering;
        let peer = [192, 168, 1, 30];
        for (mode, ok) in [
            (Filtering::EndpointIndependent, true),
            (Filtering::AddressAndPortDependent, false),
        ] {
            let params = Params {
                filtering: mode,
                ..Params::default()
            };
            let mut m = Mappings::new(params, 1);
            // The peer has a mapping (UDP 6000) from talking to a server outside.
            let mut out = udp(peer, SERVER, 6000, 3478);
            run(&mut out, Direction::Outbound, &mut m, 0).unwrap();
            let mut pkt = udp(CLIENT, WAN.octets(), 7000, 6000);
            let orig = pkt.clone();
            let r = hairpin(&mut pkt, &mut m, 1);
            if ok {
                assert_eq!(r, Ok(Action::Translated));
                let peer_ep = SocketAddrV4::new(Ipv4Addr::from(peer), 6000);
                assert_eq!(ports(&pkt), (SocketAddrV4::new(WAN, 7000), peer_ep));
            } else {
                assert_eq!(r, Err(Drop::Filtered), "{mode:?}");
                assert_eq!(pkt, orig);
            }
        }
    }

    #[test]
    fn lan_traffic_to_unmapped_wan_ports_stays_with_the_router() {
        let mut m = Mappings::new(Params::default(), 1);
        let mut ping = Vec::new();
        PacketBuilder::ipv4(CLIENT, WAN.octets(), 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut ping, b"x")
            .unwrap();
        for mut pkt in [
            tcp(CLIENT, WAN.octets(), 50000, 22, true),
            udp(CLIENT, WAN.octets(), 50000, 53),
            udp(CLIENT, [10, 0, 0, 1], 50000, 53), // another local address
            ping,
        ] {
            let orig = pkt.clone();
            assert_eq!(hairpin(&mut pkt, &mut m, 1), Ok(Action::Local));
            assert_eq!(pkt, orig, "a packet for the router must reach it untouched");
        }
        assert_eq!(m.len(), 0, "nothing for the router creates a mapping");
        let mut early = tcp(CLIENT, WAN.octets(), 50000, 22, true);
        let r = translate(
            &mut early,
            Direction::HairpinIn,
            None,
            Csum::Complete,
            &mut m,
            1,
        );
        assert_eq!(r, Ok(Action::Local), "no WAN address yet");
        // A second half without a first (a spoofed LAN source) is dropped.
        let mut stray = tcp(CLIENT, [192, 168, 1, 20], 50000, 80, false);
        assert_eq!(
            translate(
                &mut stray,
                Direction::HairpinOut,
                Some(WAN),
                Csum::Complete,
                &mut m,
                1
            ),
            Err(Drop::NoMapping)
        );
    }
}
