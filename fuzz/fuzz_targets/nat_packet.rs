//! NAT datapath input: the checked IPv4 view (`Ipv4Packet::new_checked`, `l4`
//! and the accessors), `rewrite` on copies (both sides, both checksum modes),
//! and the per-packet decision `translate` in both directions: the packet goes
//! out, and the peer's answer (addresses and ports swapped) comes back in.
//!
//! Properties: nothing panics; rewrites never change the length; checksums that
//! were right stay right; a reply to a translated packet is translated back to
//! the inside host.

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
    for csum in [Csum::Complete, Csum::NotReady] {
        translate_round_trip(data, csum);
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
