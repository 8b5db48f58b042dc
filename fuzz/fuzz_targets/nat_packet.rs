//! NAT datapath input: the checked IPv4 view (`Ipv4Packet::new_checked`, `l4`
//! and the accessors), `rewrite` on copies (both sides, both checksum modes),
//! and the per-packet decision `translate` in both directions: the packet goes
//! out, and the peer's answer (addresses and ports swapped) comes back in.
//!
//! ICMP errors too: any input is also tried as an ICMP error (`quoted`,
//! `rewrite_quoted`), and a translated packet is quoted, cut at a fuzzed length,
//! in a time-exceeded from the path (inbound), as is the peer's answer in a port
//! unreachable from the inside host (outbound). Hairpin directions with an
//! empty table must leave every packet alone.
//!
//! Properties: nothing panics; rewrites never change the length; checksums that
//! were right stay right; a reply to a translated packet is translated back to
//! the inside host, and so is an ICMP error about it.

#![no_main]

use gateway::nat::mapping::{Mappings, Params};
use gateway::nat::packet::{self, Csum, Ipv4Packet, Side, L4};
use gateway::nat::translate::{self, Direction};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

const WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

/// L4 checksum offset in the segment and whether it covers a pseudo-header,
/// for the packets `rewrite` handles.
fn csum_layout(p: &Ipv4Packet<&[u8]>) -> Option<(usize, bool)> {
    match p.l4().ok()? {
        L4::Tcp { .. } => Some((16, true)),
        L4::Udp { .. } => Some((6, true)),
        L4::IcmpEcho { .. } => Some((2, false)),
        _ => None,
    }
}

fn hlen(buf: &[u8]) -> usize {
    usize::from(buf[0] & 0x0f) * 4
}

fn total(buf: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([buf[2], buf[3]]))
}

fn ip_ok(buf: &[u8]) -> bool {
    packet::fold(packet::sum16(&buf[..hlen(buf)], 0)) == 0xffff
}

/// L4 checksum verifies (UDP's "no checksum" 0 counts as valid). `None` for
/// packets without a checksum we rewrite.
fn l4_ok(buf: &[u8]) -> Option<bool> {
    let p = Ipv4Packet::new_checked(buf).ok()?;
    let (off, pseudo) = csum_layout(&p)?;
    let seg = &buf[hlen(buf)..total(buf)];
    if p.protocol() == packet::PROTO_UDP && seg[off] == 0 && seg[off + 1] == 0 {
        return Some(true);
    }
    let acc = if pseudo {
        packet::pseudo_sum(p.src(), p.dst(), p.protocol(), seg.len())
    } else {
        0
    };
    Some(packet::fold(packet::sum16(seg, acc)) == 0xffff)
}

/// Exercises every accessor of the view; returns its L4 result.
fn inspect(buf: &[u8]) -> Option<Result<L4, packet::Error>> {
    let p = Ipv4Packet::new_checked(buf).ok()?;
    let _ = (
        p.total_len(),
        p.protocol(),
        p.src(),
        p.dst(),
        p.is_fragment(),
    );
    assert!(p.total_len() <= buf.len());
    let l4 = p.l4();
    if let Ok(L4::Tcp { flags, .. }) = l4 {
        let _ = (flags.syn(), flags.ack(), flags.fin(), flags.rst());
    }
    Some(l4)
}

fn rewrite_copy(data: &[u8], side: Side, csum: Csum) {
    let mut buf = data.to_vec();
    let ip_before = ip_ok(data);
    let l4_before = l4_ok(data);
    let refused = match Ipv4Packet::new_checked(&mut buf[..]) {
        Ok(mut p) => p
            .rewrite(side, Ipv4Addr::new(10, 1, 2, 3), 4242, csum)
            .is_err(),
        Err(_) => return,
    };
    if refused {
        assert_eq!(buf, data, "a refused rewrite modified the packet");
        return;
    }
    assert_eq!(buf.len(), data.len());
    assert_eq!(
        &buf[total(data)..],
        &data[total(data)..],
        "rewrite touched bytes past the IP total length"
    );
    if ip_before {
        assert!(ip_ok(&buf), "rewrite broke a valid IP header checksum");
    }
    let after = l4_ok(&buf);
    match csum {
        Csum::Complete if l4_before == Some(true) => {
            assert_eq!(after, Some(true), "rewrite broke a valid L4 checksum")
        }
        Csum::NotReady => assert_eq!(after, Some(true), "recomputed L4 checksum is wrong"),
        _ => {}
    }
}

/// Turns a packet into the peer's answer: addresses and ports (ICMP: echo
/// request -> reply) swapped. Checksums stay valid: the one's-complement sum
/// is order-independent, and ICMP's is recomputed for the type change (an
/// incremental update would give 0x0000 for an all-zero reply, RFC 1624 4).
fn answer(buf: &mut [u8]) {
    let h = hlen(buf);
    let was_ok = l4_ok(buf) == Some(true);
    for i in 0..4 {
        buf.swap(12 + i, 16 + i);
    }
    match buf[9] {
        packet::PROTO_TCP | packet::PROTO_UDP => {
            buf.swap(h, h + 2);
            buf.swap(h + 1, h + 3);
        }
        packet::PROTO_ICMP => {
            let old = [buf[h], buf[h + 1]];
            buf[h] = 0;
            let c = u16::from_be_bytes([buf[h + 2], buf[h + 3]]);
            let c = if was_ok {
                buf[h + 2..h + 4].fill(0);
                !packet::fold(packet::sum16(&buf[h..total(buf)], 0))
            } else {
                packet::incremental(c, &old, &[buf[h], buf[h + 1]])
            };
            buf[h + 2..h + 4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// Wraps `quote` in an ICMP error from `src` to `dst`, checksums valid.
fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, typ: u8, quote: &[u8]) -> Vec<u8> {
    let total = 28 + quote.len();
    let mut v = vec![0u8; total];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    v[8] = 64;
    v[9] = packet::PROTO_ICMP;
    v[12..16].copy_from_slice(&src.octets());
    v[16..20].copy_from_slice(&dst.octets());
    let c = !packet::fold(packet::sum16(&v[..20], 0));
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v[20] = typ;
    v[28..].copy_from_slice(quote);
    let c = !packet::fold(packet::sum16(&v[20..], 0));
    v[22..24].copy_from_slice(&c.to_be_bytes());
    v
}

/// The input itself as an ICMP error: parsing never panics, a refused rewrite
/// leaves it alone, an accepted one leaves valid ICMP and quoted IP checksums.
fn quoted_copy(data: &[u8], side: Side) {
    let mut buf = data.to_vec();
    let Ok(mut p) = Ipv4Packet::new_checked(&mut buf[..]) else {
        return;
    };
    let _ = p.quoted();
    if p.rewrite_quoted(side, WAN, side, Ipv4Addr::new(10, 1, 2, 3), 4242)
        .is_err()
    {
        assert_eq!(buf, data, "a refused quoted rewrite modified the packet");
        return;
    }
    let h = hlen(&buf);
    let seg = &buf[h..total(&buf)];
    assert_eq!(packet::fold(packet::sum16(seg, 0)), 0xffff, "ICMP checksum");
    let q = &seg[8..];
    let qh = usize::from(q[0] & 0x0f) * 4;
    assert_eq!(packet::fold(packet::sum16(&q[..qh], 0)), 0xffff, "quoted IP checksum");
}

/// Quoted length for the error round trip: at least the header plus 8 bytes.
fn quote_len(out: &[u8], fuzz: u8) -> usize {
    (hlen(out) + 8 + usize::from(fuzz)).min(total(out))
}

fn translate_round_trip(data: &[u8], csum: Csum) {
    let mut map = Mappings::new(Params::default(), 0x5eed);
    let mut out = data.to_vec();
    let res = translate::translate(&mut out, Direction::Outbound, Some(WAN), csum, &mut map, 0);
    if res.is_err() {
        assert_eq!(out, data, "a dropped outbound packet was modified");
        return;
    }
    let src = Ipv4Packet::new_checked(data).unwrap();
    let (inside_ip, inside_port) = match src.l4().unwrap() {
        L4::Tcp { src_port, .. } | L4::Udp { src_port, .. } => (src.src(), src_port),
        L4::IcmpEcho { ident, .. } => (src.src(), ident),
        other => panic!("translated an unsupported packet: {other:?}"),
    };
    let p = Ipv4Packet::new_checked(&out[..]).unwrap();
    assert_eq!(p.src(), WAN, "outbound source is not the WAN address");

    let mut back = out.clone();
    answer(&mut back);
    translate::translate(
        &mut back,
        Direction::Inbound,
        Some(WAN),
        Csum::Complete,
        &mut map,
        1,
    )
    .unwrap_or_else(|d| panic!("the answer to a translated packet was dropped: {d:?}"));
    let p = Ipv4Packet::new_checked(&back[..]).unwrap();
    assert_eq!(
        p.dst(),
        inside_ip,
        "answer not sent back to the inside host"
    );
    match p.l4().unwrap() {
        L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } => assert_eq!(dst_port, inside_port),
        L4::IcmpEcho { ident, .. } => assert_eq!(ident, inside_port),
        other => panic!("answer became {other:?}"),
    }
    if ip_ok(data) {
        assert!(
            ip_ok(&back),
            "NAT round trip broke a valid IP header checksum"
        );
    }
    if csum == Csum::NotReady || l4_ok(data) == Some(true) {
        assert_eq!(
            l4_ok(&back),
            Some(true),
            "NAT round trip left a bad L4 checksum"
        );
    }

    // A router on the path reports the translated packet: the error goes to the
    // inside host, quoting the packet as the inside host sent it.
    let hop = Ipv4Addr::new(198, 51, 100, 254);
    let k = quote_len(&out, data[data.len() - 1]);
    let mut err = icmp_error(hop, WAN, 11, &out[..k]);
    let res = translate::translate(&mut err, Direction::Inbound, Some(WAN), csum, &mut map, 2);
    if ip_ok(data) {
        res.unwrap_or_else(|d| panic!("an error about a translated packet was dropped: {d:?}"));
    }
    if res.is_ok() {
        let p = Ipv4Packet::new_checked(&err[..]).unwrap();
        assert_eq!(p.dst(), inside_ip, "error not sent to the inside host");
        let q = p.quoted().expect("translated error still parses");
        assert_eq!((q.src, q.src_port), (inside_ip, inside_port), "quote not restored");
        assert!(ip_ok(&err));
    }

    // The inside host reports the answer it got: the error leaves from the WAN
    // address, quoting the answer as the peer sent it.
    let k = quote_len(&back, data[0]);
    let mut err = icmp_error(inside_ip, p.src(), 3, &back[..k]);
    let res = translate::translate(&mut err, Direction::Outbound, Some(WAN), csum, &mut map, 3);
    let answer_is_echo_reply = matches!(p.l4(), Ok(L4::IcmpEcho { request: false, .. }));
    if ip_ok(data) && (p.protocol() != packet::PROTO_ICMP || answer_is_echo_reply) {
        res.unwrap_or_else(|d| panic!("an error about a delivered packet was dropped: {d:?}"));
    }
    if res.is_ok() {
        let p = Ipv4Packet::new_checked(&err[..]).unwrap();
        assert_eq!(p.src(), WAN, "error from inside left with a LAN source");
        let q = p.quoted().expect("translated error still parses");
        assert_eq!(q.dst, WAN, "quote leaks the inside address");
    }

    // Anything addressed to the WAN without a mapping is dropped, untouched.
    let mut fresh = Mappings::new(Params::default(), 1);
    let mut stray = data.to_vec();
    let res = translate::translate(
        &mut stray,
        Direction::Inbound,
        Some(WAN),
        csum,
        &mut fresh,
        0,
    );
    assert!(res.is_err(), "inbound packet translated without a mapping");
    assert_eq!(stray, data);
}

fuzz_target!(|data: &[u8]| {
    if inspect(data).is_none() {
        return;
    }
    for side in [Side::Src, Side::Dst] {
        for csum in [Csum::Complete, Csum::NotReady] {
            rewrite_copy(data, side, csum);
        }
    }
    for side in [Side::Src, Side::Dst] {
        quoted_copy(data, side);
    }
    for csum in [Csum::Complete, Csum::NotReady] {
        translate_round_trip(data, csum);
    }
    // From the LAN to the WAN address (hairpin): with no mapping, anything
    // accepted stays with the router untouched, and a dropped packet is untouched.
    for dir in [Direction::HairpinIn, Direction::HairpinOut] {
        let mut map = Mappings::new(Params::default(), 9);
        let mut buf = data.to_vec();
        match translate::translate(&mut buf, dir, Some(WAN), Csum::Complete, &mut map, 0) {
            Ok(translate::Action::Translated) => panic!("{dir:?} translated with no mapping"),
            _ => assert_eq!(buf, data, "{dir:?} changed a packet it did not translate"),
        }
    }
    // Inbound as the datapath sees it: the packet as is, and aimed at the WAN
    // address so the mapping lookup runs.
    let mut map = Mappings::new(Params::default(), 7);
    let mut buf = data.to_vec();
    let _ = translate::translate(
        &mut buf,
        Direction::Inbound,
        Some(WAN),
        Csum::Complete,
        &mut map,
        0,
    );
    let _ = translate::translate(
        &mut buf,
        Direction::Outbound,
        None,
        Csum::Complete,
        &mut map,
        0,
    );
});
