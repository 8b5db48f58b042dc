//! The per-packet NAPT decision: parse, look up or create the mapping, rewrite in place.
//! No I/O: the queue loop hands in the buffer and applies the verdict.

use super::mapping::{Mappings, Millis, Proto};
use super::packet::{Csum, Error, Ipv4Packet, Side, TcpFlags, L4};
use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Leaving through the WAN (postrouting): source NAT.
    Outbound,
    /// Arriving from the WAN (prerouting): destination NAT back to the inside host.
    Inbound,
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
    NotForUs,
    PortsExhausted,
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

/// Translates `buf` in place. `Ok` means "accept the modified packet"; nothing is ever accepted
/// untranslated, so a packet we cannot handle never leaks with a private address.
pub fn translate(
    buf: &mut [u8],
    dir: Direction,
    wan: Option<Ipv4Addr>,
    csum: Csum,
    map: &mut Mappings,
    now: Millis,
) -> Result<(), Drop> {
    let wan = wan.ok_or(Drop::NoWanAddress)?;
    let mut pkt = Ipv4Packet::new_checked(buf)?;
    // The kernel reassembles before our hooks whenever conntrack is loaded, so fragments here
    // are rare; translating them would need per-datagram state, so they are dropped.
    if pkt.is_fragment() {
        return Err(Drop::Fragment);
    }
    let bytes = pkt.total_len() as u64;
    let (proto, src_port, dst_port, flags) = match pkt.l4()? {
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
            let inside = map
                .inbound(proto, dst_port, flags, bytes, now)
                .ok_or(Drop::NoMapping)?;
            pkt.rewrite(Side::Dst, *inside.ip(), inside.port(), csum)?;
        }
    }
    Ok(())
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
}
