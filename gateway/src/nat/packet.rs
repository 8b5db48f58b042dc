//! Checked view over an IPv4 packet buffer, and in-place address/port rewriting.
//!
//! Every accessor is bounds-checked once in `new_checked`/`l4`, so nothing here can panic on
//! hostile input. Checksums are updated incrementally (RFC 1624) when the packet arrives with
//! complete checksums; when the kernel says the L4 checksum is "not ready" (offload pending, the
//! field holds only the pseudo-header sum) the full L4 checksum is computed instead, because
//! nfqueue marks a payload it has mangled as CHECKSUM_NONE and sends it as-is.

use std::net::Ipv4Addr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than a minimal IPv4 header, or a header/length field that does not add up.
    Malformed,
    NotIpv4,
    /// The buffer holds less than the IP total length: a truncated copy, never to be modified.
    Truncated,
    /// A fragment: ports are absent (non-first) or the L4 checksum spans other fragments.
    Fragment,
    /// Protocol or ICMP type we do not translate.
    Unsupported,
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;

    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
}

/// What the transport header says, as far as NAT cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: TcpFlags,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP echo request (`request == true`) or reply, keyed by its identifier.
    IcmpEcho {
        request: bool,
        ident: u16,
    },
    /// Destination unreachable (fragmentation needed included), time exceeded or parameter
    /// problem: errors that quote the packet they are about (see `Ipv4Packet::quoted`).
    IcmpError {
        icmp_type: u8,
    },
    /// Any other ICMP message (timestamps, redirects...).
    Icmp {
        icmp_type: u8,
    },
    /// A non-first fragment: it carries no transport header at all.
    NonFirstFragment,
    Other(u8),
}

/// Which end of the packet to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// Whether the L4 checksum field holds a complete checksum or only the pseudo-header sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csum {
    Complete,
    NotReady,
}

/// The packet an ICMP error is about, as quoted in it: its IP header and the first 8 or more
/// bytes of its transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// PROTO_TCP, PROTO_UDP or PROTO_ICMP (then an echo request or reply).
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Ports; for an echo message its identifier in both.
    pub src_port: u16,
    pub dst_port: u16,
    /// For a quoted echo message: whether it is a request.
    pub echo_request: bool,
    /// Offset of the quoted IP header in the packet, and its length.
    at: usize,
    hlen: usize,
}

/// A validated IPv4 packet: header length and total length are known to fit the buffer.
#[derive(Debug)]
pub struct Ipv4Packet<T> {
    buf: T,
    hlen: usize,
    total: usize,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < 20 {
            return Err(if b.first().is_some_and(|v| v >> 4 != 4) {
                Error::NotIpv4
            } else {
                Error::Malformed
            });
        }
        if b[0] >> 4 != 4 {
            return Err(Error::NotIpv4);
        }
        let hlen = usize::from(b[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if hlen < 20 || total < hlen {
            return Err(Error::Malformed);
        }
        if b.len() < total {
            return Err(Error::Truncated);
        }
        Ok(Self { buf, hlen, total })
    }

    fn bytes(&self) -> &[u8] {
        &self.buf.as_ref()[..self.total]
    }

    fn be16(&self, off: usize) -> u16 {
        let b = self.bytes();
        u16::from_be_bytes([b[off], b[off + 1]])
    }

    pub fn total_len(&self) -> usize {
        self.total
    }

    pub fn protocol(&self) -> u8 {
        self.bytes()[9]
    }

    pub fn src(&self) -> Ipv4Addr {
        let b = self.bytes();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b = self.bytes();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// More-fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.be16(6) & 0x3fff != 0
    }

    fn frag_offset(&self) -> u16 {
        self.be16(6) & 0x1fff
    }

    /// The transport view. Non-first fragments never get ports parsed out of their payload.
    pub fn l4(&self) -> Result<L4, Error> {
        if self.frag_offset() != 0 {
            return Ok(L4::NonFirstFragment);
        }
        let seg = &self.bytes()[self.hlen..];
        let port = |o: usize| u16::from_be_bytes([seg[o], seg[o + 1]]);
        match self.protocol() {
            PROTO_TCP => {
                if seg.len() < 20 {
                    return Err(Error::Malformed);
                }
                let doff = usize::from(seg[12] >> 4) * 4;
                if doff < 20 || doff > seg.len() {
                    return Err(Error::Malformed);
                }
                Ok(L4::Tcp {
                    src_port: port(0),
                    dst_port: port(2),
                    flags: TcpFlags(seg[13]),
                })
            }
            PROTO_UDP => {
                if seg.len() < 8 {
                    return Err(Error::Malformed);
                }
                Ok(L4::Udp {
                    src_port: port(0),
                    dst_port: port(2),
                })
            }
            PROTO_ICMP => {
                if seg.len() < 8 {
                    return Err(Error::Malformed);
                }
                Ok(match seg[0] {
                    ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY if seg[1] == 0 => L4::IcmpEcho {
                        request: seg[0] == ICMP_ECHO_REQUEST,
                        ident: port(4),
                    },
                    t @ (ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM) => {
                        L4::IcmpError { icmp_type: t }
                    }
                    t => L4::Icmp { icmp_type: t },
                })
            }
            p => Ok(L4::Other(p)),
        }
    }

    /// The packet an ICMP error quotes, checked as RFC 5508 REQ-3 asks: the error's own
    /// checksum and the quoted IP header's checksum must verify, IP options in the quote are
    /// skipped, and at least 8 bytes of its transport header must be there. A quote that is
    /// cut short is `Truncated`; one without ports (a non-first fragment) is `Fragment`; a
    /// quoted ICMP error or other protocol is `Unsupported`.
    pub fn quoted(&self) -> Result<Quoted, Error> {
        if !matches!(self.l4()?, L4::IcmpError { .. }) {
            return Err(Error::Unsupported);
        }
        let seg = &self.bytes()[self.hlen..];
        if fold(sum16(seg, 0)) != 0xffff {
            return Err(Error::Malformed);
        }
        let q = seg.get(8..).unwrap_or_default();
        if q.len() < 20 {
            return Err(Error::Truncated);
        }
        if q[0] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let qh = usize::from(q[0] & 0x0f) * 4;
        if qh < 20 {
            return Err(Error::Malformed);
        }
        if q.len() < qh + 8 {
            return Err(Error::Truncated);
        }
        if fold(sum16(&q[..qh], 0)) != 0xffff {
            return Err(Error::Malformed);
        }
        if u16::from_be_bytes([q[6], q[7]]) & 0x1fff != 0 {
            return Err(Error::Fragment);
        }
        let t = &q[qh..];
        let be = |o: usize| u16::from_be_bytes([t[o], t[o + 1]]);
        let (src_port, dst_port, echo_request) = match q[9] {
            PROTO_TCP | PROTO_UDP => (be(0), be(2), false),
            PROTO_ICMP if matches!(t[0], ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) && t[1] == 0 => {
                (be(4), be(4), t[0] == ICMP_ECHO_REQUEST)
            }
            _ => return Err(Error::Unsupported),
        };
        Ok(Quoted {
            protocol: q[9],
            src: Ipv4Addr::new(q[12], q[13], q[14], q[15]),
            dst: Ipv4Addr::new(q[16], q[17], q[18], q[19]),
            src_port,
            dst_port,
            echo_request,
            at: self.hlen + 8,
            hlen: qh,
        })
    }

    /// True when the IP header checksum verifies.
    #[cfg(test)]
    pub fn ip_checksum_ok(&self) -> bool {
        fold(sum16(&self.bytes()[..self.hlen], 0)) == 0xffff
    }

    /// True when the TCP/UDP/ICMP checksum verifies (UDP checksum 0 counts as valid).
    #[cfg(test)]
    pub fn l4_checksum_ok(&self) -> bool {
        let seg = &self.bytes()[self.hlen..];
        match self.protocol() {
            PROTO_ICMP => fold(sum16(seg, 0)) == 0xffff,
            PROTO_UDP if seg.len() >= 8 && seg[6] == 0 && seg[7] == 0 => true,
            p @ (PROTO_TCP | PROTO_UDP) => {
                let acc = pseudo_sum(self.src(), self.dst(), p, seg.len());
                fold(sum16(seg, acc)) == 0xffff
            }
            _ => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        let total = self.total;
        &mut self.buf.as_mut()[..total]
    }

    /// Rewrites the source or destination address and port (ICMP echo: identifier), fixing the
    /// IP and L4 checksums. Fragments and unsupported protocols are refused untouched.
    pub fn rewrite(
        &mut self,
        side: Side,
        addr: Ipv4Addr,
        port: u16,
        csum: Csum,
    ) -> Result<(), Error> {
        if self.is_fragment() {
            return Err(Error::Fragment);
        }
        let l4 = self.l4()?;
        // Offsets inside the L4 segment of the port/identifier and of the checksum.
        let (port_off, csum_off, pseudo) = match (l4, side) {
            (L4::Tcp { .. }, Side::Src) => (0, 16, true),
            (L4::Tcp { .. }, Side::Dst) => (2, 16, true),
            (L4::Udp { .. }, Side::Src) => (0, 6, true),
            (L4::Udp { .. }, Side::Dst) => (2, 6, true),
            (L4::IcmpEcho { .. }, _) => (4, 2, false),
            _ => return Err(Error::Unsupported),
        };
        let is_udp = matches!(l4, L4::Udp { .. });
        let hlen = self.hlen;
        let addr_off = match side {
            Side::Src => 12,
            Side::Dst => 16,
        };
        let new_addr = addr.octets();
        let new_port = port.to_be_bytes();
        let src_before = self.src();
        let dst_before = self.dst();
        let b = self.bytes_mut();

        let mut old_addr = [0u8; 4];
        old_addr.copy_from_slice(&b[addr_off..addr_off + 4]);
        let p = hlen + port_off;
        let old_port = [b[p], b[p + 1]];
        let c = hlen + csum_off;
        let old_l4 = u16::from_be_bytes([b[c], b[c + 1]]);

        // IP header checksum covers the address only.
        let ip_c = u16::from_be_bytes([b[10], b[11]]);
        b[10..12].copy_from_slice(&incremental(ip_c, &old_addr, &new_addr).to_be_bytes());
        b[addr_off..addr_off + 4].copy_from_slice(&new_addr);
        b[p..p + 2].copy_from_slice(&new_port);

        // UDP checksum 0 means "none": it stays none.
        let keep_none = is_udp && old_l4 == 0 && csum == Csum::Complete;
        let new_l4 = match csum {
            _ if keep_none => 0,
            // ICMP has no pseudo-header and echo messages are small: recompute in
            // full. An incremental update can yield 0x0000 for all-zero data,
            // where the only valid checksum is 0xffff (found by fuzzing).
            Csum::Complete if !pseudo => {
                b[c..c + 2].fill(0);
                !fold(sum16(&b[hlen..], 0))
            }
            Csum::Complete => {
                // The pseudo-header includes the rewritten address.
                let mut old = [0u8; 6];
                let mut new = [0u8; 6];
                old[..2].copy_from_slice(&old_port);
                new[..2].copy_from_slice(&new_port);
                old[2..].copy_from_slice(&old_addr);
                new[2..].copy_from_slice(&new_addr);
                incremental(old_l4, &old, &new)
            }
            Csum::NotReady => {
                b[c..c + 2].fill(0);
                let acc = if pseudo {
                    let (s, d) = match side {
                        Side::Src => (addr, dst_before),
                        Side::Dst => (src_before, addr),
                    };
                    pseudo_sum(s, d, b[9], b.len() - hlen)
                } else {
                    0
                };
                !fold(sum16(&b[hlen..], acc))
            }
        };
        // In UDP a computed 0 goes on the wire as 0xffff (0 would mean "no checksum").
        let new_l4 = if is_udp && !keep_none && new_l4 == 0 {
            0xffff
        } else {
            new_l4
        };
        b[c..c + 2].copy_from_slice(&new_l4.to_be_bytes());
        Ok(())
    }

    /// Translates an ICMP error: the outer packet's `outer` address becomes `outer_addr`, and
    /// the quoted packet's `inner` address and port (echo: identifier) become `inner_addr` and
    /// `inner_port`. Fixes the outer IP checksum, the quoted IP checksum, the quoted transport
    /// checksum where the quote holds it (incrementally: the quote is usually cut short, and
    /// the change does not depend on the missing bytes) and the ICMP checksum (in full).
    /// Refused packets are left untouched.
    pub fn rewrite_quoted(
        &mut self,
        outer: Side,
        outer_addr: Ipv4Addr,
        inner: Side,
        inner_addr: Ipv4Addr,
        inner_port: u16,
    ) -> Result<(), Error> {
        if self.is_fragment() {
            return Err(Error::Fragment);
        }
        let q = self.quoted()?;
        let hlen = self.hlen;
        let b = self.bytes_mut();
        set_addr(b, 0, outer, outer_addr);
        let old_addr = set_addr(b, q.at, inner, inner_addr);
        let t = q.at + q.hlen;
        let avail = b.len() - t;
        // Port (identifier) offset and checksum offset within the quoted transport header.
        let (port_off, csum_off, pseudo) = match (q.protocol, inner) {
            (PROTO_ICMP, _) => (4, 2, false),
            (PROTO_TCP, Side::Src) => (0, 16, true),
            (PROTO_TCP, Side::Dst) => (2, 16, true),
            (_, Side::Src) => (0, 6, true),
            (_, Side::Dst) => (2, 6, true),
        };
        let p = t + port_off;
        let old_port = [b[p], b[p + 1]];
        let new_port = inner_port.to_be_bytes();
        b[p..p + 2].copy_from_slice(&new_port);
        if csum_off + 2 <= avail {
            let c = t + csum_off;
            let old = u16::from_be_bytes([b[c], b[c + 1]]);
            let udp = q.protocol == PROTO_UDP;
            // UDP checksum 0 means "none" and stays so; a computed 0 is sent as 0xffff.
            if !(udp && old == 0) {
                let mut new = if pseudo {
                    let mut o = [0u8; 6];
                    let mut n = [0u8; 6];
                    o[..2].copy_from_slice(&old_port);
                    n[..2].copy_from_slice(&new_port);
                    o[2..].copy_from_slice(&old_addr);
                    n[2..].copy_from_slice(&inner_addr.octets());
                    incremental(old, &o, &n)
                } else {
                    incremental(old, &old_port, &new_port)
                };
                if udp && new == 0 {
                    new = 0xffff;
                }
                b[c..c + 2].copy_from_slice(&new.to_be_bytes());
            }
        }
        let icmp = &mut b[hlen..];
        icmp[2..4].fill(0);
        let sum = !fold(sum16(icmp, 0));
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        Ok(())
    }
}

/// Sets the source or destination address of the IP header at `at`, keeping its header
/// checksum right. Returns the old address.
fn set_addr(b: &mut [u8], at: usize, side: Side, addr: Ipv4Addr) -> [u8; 4] {
    let off = at
        + match side {
            Side::Src => 12,
            Side::Dst => 16,
        };
    let mut old = [0u8; 4];
    old.copy_from_slice(&b[off..off + 4]);
    let new = addr.octets();
    let c = u16::from_be_bytes([b[at + 10], b[at + 11]]);
    b[at + 10..at + 12].copy_from_slice(&incremental(c, &old, &new).to_be_bytes());
    b[off..off + 4].copy_from_slice(&new);
    old
}

/// One's-complement sum of big-endian 16-bit words (odd tail padded with zero), unfolded.
pub fn sum16(data: &[u8], acc: u64) -> u64 {
    // The one's-complement sum does not depend on byte order (RFC 1071 2.B): summing
    // native-endian 32-bit words and swapping the folded result once gives the same as
    // summing big-endian 16-bit words, in a loop the compiler vectorizes. GSO packets of
    // 64 KiB get summed in full, so this is on the datapath's hot path.
    let mut words = data.chunks_exact(4);
    let mut native = 0u64;
    for w in &mut words {
        native += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let folded = fold(native);
    let mut acc = acc
        + u64::from(if cfg!(target_endian = "little") {
            folded.swap_bytes()
        } else {
            folded
        });
    let mut chunks = words.remainder().chunks_exact(2);
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds carries back in: the 16-bit one's-complement sum.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Sum of the TCP/UDP pseudo-header.
pub fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u64 {
    let acc = sum16(&src.octets(), 0);
    let acc = sum16(&dst.octets(), acc);
    acc + u64::from(proto) + len as u64
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over equal-length, even-length field images.
pub fn incremental(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u64::from(!hc);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// Tiny deterministic PRNG (xorshift64*) so the property tests are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn u16(&mut self) -> u16 {
            self.next() as u16
        }
        fn ip(&mut self) -> Ipv4Addr {
            Ipv4Addr::from(self.next() as u32)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn word_sum_equals_the_plain_16_bit_sum() {
        // The reference: RFC 1071's big-endian 16-bit words, an odd byte padded with zero.
        fn reference(d: &[u8], acc: u64) -> u16 {
            let mut a = acc;
            for w in d.chunks(2) {
                a += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            fold(a)
        }
        let mut rng = Rng(0x5eed);
        for len in (0..80).chain([1499, 1500, 65_000, 65_535]) {
            for fill in [None, Some(0u8), Some(0xff)] {
                let d = match fill {
                    None => rng.bytes(len),
                    Some(b) => vec![b; len],
                };
                let acc = rng.next() >> 40;
                assert_eq!(
                    fold(sum16(&d, acc)),
                    reference(&d, acc),
                    "len {len} fill {fill:?}"
                );
            }
        }
    }

    #[test]
    fn icmp_all_zero_echo_reply_keeps_a_valid_checksum() {
        // Fuzzer find: echo reply with ident 0 and no payload has checksum 0xffff;
        // an incremental update produced 0x0000, which receivers reject.
        let hex = "4500001c000140004001691ec0a8010a080808080800f7ff00000000";
        let mut bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        // Turn the request into its reply: type 0, ICMP part all zero, checksum 0xffff.
        bytes[20] = 0;
        bytes[22..24].copy_from_slice(&[0xff, 0xff]);
        let mut r = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert!(r.l4_checksum_ok() && r.ip_checksum_ok());
        r.rewrite(Side::Dst, Ipv4Addr::new(192, 168, 1, 10), 0, Csum::Complete)
            .unwrap();
        assert!(r.l4_checksum_ok() && r.ip_checksum_ok());
    }

    /// A real SYN captured from `curl` (192.168.1.10:40000 -> 203.0.113.1:80), checksums valid.
    fn sample_syn() -> Vec<u8> {
        let b = PacketBuilder::ipv4([192, 168, 1, 10], [203, 0, 113, 1], 64)
            .tcp(40000, 80, 0x1234_5678, 64240)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn parses_known_bytes() {
        // Hand-written: IPv4, ihl 5, total 28, id 0, DF, ttl 64, UDP, 10.0.0.1 -> 10.0.0.2,
        // UDP 1234 -> 53, length 8, checksum 0.
        let raw = [
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x04, 0xd2, 0,
            53, 0, 8, 0, 0,
        ];
        let p = Ipv4Packet::new_checked(&raw[..]).unwrap();
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(!p.is_fragment());
        assert_eq!(
            p.l4(),
            Ok(L4::Udp {
                src_port: 1234,
                dst_port: 53
            })
        );

        let syn = sample_syn();
        let p = Ipv4Packet::new_checked(&syn[..]).unwrap();
        assert!(p.ip_checksum_ok() && p.l4_checksum_ok());
        match p.l4().unwrap() {
            L4::Tcp {
                src_port: 40000,
                dst_port: 80,
                flags,
            } => assert!(flags.syn() && !flags.ack()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn icmp_echo_identifier() {
        let b =
            PacketBuilder::ipv4([192, 168, 1, 10], [8, 8, 8, 8], 64).icmpv4_echo_request(0x4242, 7);
        let mut buf = Vec::new();
        b.write(&mut buf, b"ping").unwrap();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            p.l4(),
            Ok(L4::IcmpEcho {
                request: true,
                ident: 0x4242
            })
        );
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            Ipv4Packet::new_checked(&[0x45u8; 10][..]).unwrap_err(),
            Error::Malformed
        );
        let mut syn = sample_syn();
        syn[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&syn[..]).unwrap_err(),
            Error::NotIpv4
        );
        let mut syn = sample_syn();
        syn[0] = 0x44; // ihl 4 < 5
        assert_eq!(
            Ipv4Packet::new_checked(&syn[..]).unwrap_err(),
            Error::Malformed
        );
        let syn = sample_syn();
        let cut = &syn[..syn.len() - 1];
        assert_eq!(Ipv4Packet::new_checked(cut).unwrap_err(), Error::Truncated);
        // TCP data offset pointing past the end.
        let mut syn = sample_syn();
        syn[20 + 12] = 0xf0;
        let p = Ipv4Packet::new_checked(&syn[..]).unwrap();
        assert_eq!(p.l4(), Err(Error::Malformed));
    }

    #[test]
    fn fragments_have_no_ports() {
        let mut syn = sample_syn();
        // Offset 8 bytes: the payload bytes that look like ports must not be read as such.
        syn[6] = 0x00;
        syn[7] = 0x01;
        let mut p = Ipv4Packet::new_checked(&mut syn[..]).unwrap();
        assert!(p.is_fragment());
        assert_eq!(p.l4(), Ok(L4::NonFirstFragment));
        let before = p.bytes().to_vec();
        assert_eq!(
            p.rewrite(Side::Src, Ipv4Addr::new(1, 2, 3, 4), 9, Csum::Complete),
            Err(Error::Fragment)
        );
        assert_eq!(
            p.bytes(),
            &before[..],
            "refused rewrite must not touch the packet"
        );

        // First fragment (MF set, offset 0) parses ports but is still never rewritten.
        let mut syn = sample_syn();
        syn[6] = 0x20;
        let mut p = Ipv4Packet::new_checked(&mut syn[..]).unwrap();
        assert!(p.is_fragment());
        assert!(matches!(p.l4(), Ok(L4::Tcp { .. })));
        assert_eq!(
            p.rewrite(Side::Src, Ipv4Addr::new(1, 2, 3, 4), 9, Csum::Complete),
            Err(Error::Fragment)
        );
    }

    fn random_packet(rng: &mut Rng) -> Vec<u8> {
        let len = (rng.next() % 1400) as usize;
        let payload = rng.bytes(len);
        let b = PacketBuilder::ipv4(rng.ip().octets(), rng.ip().octets(), 64);
        let mut out = Vec::new();
        match rng.next() % 3 {
            0 => b
                .tcp(rng.u16(), rng.u16(), rng.next() as u32, rng.u16())
                .ack(rng.next() as u32)
                .write(&mut out, &payload)
                .unwrap(),
            1 => b
                .udp(rng.u16(), rng.u16())
                .write(&mut out, &payload)
                .unwrap(),
            _ => {
                let b = if rng.next().is_multiple_of(2) {
                    b.icmpv4_echo_request(rng.u16(), rng.u16())
                } else {
                    b.icmpv4_echo_reply(rng.u16(), rng.u16())
                };
                b.write(&mut out, &payload).unwrap()
            }
        }
        out
    }

    /// Full recomputation with an independent implementation (etherparse) as the oracle.
    fn oracle_checksums(buf: &[u8]) -> (u16, u16) {
        let (ip, rest) = etherparse::Ipv4Header::from_slice(buf).unwrap();
        let payload = &rest[..usize::from(ip.total_len) - ip.header_len()];
        let l4 = match ip.protocol {
            etherparse::IpNumber::TCP => {
                let (tcp, data) = etherparse::TcpHeader::from_slice(payload).unwrap();
                tcp.calc_checksum_ipv4(&ip, data).unwrap()
            }
            etherparse::IpNumber::UDP => {
                let (udp, data) = etherparse::UdpHeader::from_slice(payload).unwrap();
                udp.calc_checksum_ipv4(&ip, data).unwrap()
            }
            _ => {
                let (icmp, data) = etherparse::Icmpv4Header::from_slice(payload).unwrap();
                icmp.icmp_type.calc_checksum(data)
            }
        };
        (ip.calc_header_checksum(), l4)
    }

    fn l4_csum_field(buf: &[u8]) -> u16 {
        let off = 20
            + match buf[9] {
                PROTO_TCP => 16,
                PROTO_UDP => 6,
                _ => 2,
            };
        u16::from_be_bytes([buf[off], buf[off + 1]])
    }

    #[test]
    fn incremental_rewrite_matches_full_recomputation() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..5000 {
            let mut buf = random_packet(&mut rng);
            let side = if i % 2 == 0 { Side::Src } else { Side::Dst };
            let (addr, port) = (rng.ip(), rng.u16());
            let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            p.rewrite(side, addr, port, Csum::Complete).unwrap();
            assert!(p.ip_checksum_ok(), "case {i}");
            assert!(p.l4_checksum_ok(), "case {i}");
            match side {
                Side::Src => assert_eq!(p.src(), addr),
                Side::Dst => assert_eq!(p.dst(), addr),
            }
            let (ip_c, l4_c) = oracle_checksums(&buf);
            assert_eq!(u16::from_be_bytes([buf[10], buf[11]]), ip_c, "case {i}");
            let got = l4_csum_field(&buf);
            // 0x0000 and 0xffff are the same number in one's complement; only UDP cares.
            assert!(
                got == l4_c
                    || (buf[9] != PROTO_UDP
                        && (got ^ l4_c) == 0xffff
                        && got.is_multiple_of(0xffff)),
                "case {i}: got {got:#x} want {l4_c:#x}"
            );
        }
    }

    #[test]
    fn not_ready_checksum_gets_full_recomputation() {
        let mut rng = Rng(42);
        for i in 0..2000 {
            let mut buf = random_packet(&mut rng);
            if buf[9] == PROTO_ICMP {
                continue; // ICMP has no offload state; covered by the Complete test
            }
            // Emulate CHECKSUM_PARTIAL: the field holds the folded, uncomplemented pseudo sum.
            let (src, dst) = {
                let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
                (p.src(), p.dst())
            };
            let partial = fold(pseudo_sum(src, dst, buf[9], buf.len() - 20));
            let off = 20 + if buf[9] == PROTO_TCP { 16 } else { 6 };
            buf[off..off + 2].copy_from_slice(&partial.to_be_bytes());
            let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            p.rewrite(Side::Src, rng.ip(), rng.u16(), Csum::NotReady)
                .unwrap();
            assert!(p.ip_checksum_ok() && p.l4_checksum_ok(), "case {i}");
            let (_, l4_c) = oracle_checksums(&buf);
            assert_eq!(l4_csum_field(&buf), l4_c, "case {i}");
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let b = PacketBuilder::ipv4([192, 168, 1, 10], [1, 1, 1, 1], 64).udp(5000, 53);
        let mut buf = Vec::new();
        b.write(&mut buf, b"query").unwrap();
        buf[26] = 0;
        buf[27] = 0;
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.rewrite(
            Side::Src,
            Ipv4Addr::new(203, 0, 113, 2),
            5001,
            Csum::Complete,
        )
        .unwrap();
        assert!(p.ip_checksum_ok());
        assert_eq!(&buf[26..28], &[0, 0]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(7);
        for _ in 0..20000 {
            let n = (rng.next() % 80) as usize;
            let mut buf = rng.bytes(n);
            if n > 0 && rng.next().is_multiple_of(2) {
                buf[0] = 0x45;
            }
            if n > 3 && rng.next().is_multiple_of(2) {
                let len = (n as u16).to_be_bytes();
                buf[2] = len[0];
                buf[3] = len[1];
            }
            if let Ok(mut p) = Ipv4Packet::new_checked(&mut buf[..]) {
                let _ = p.l4();
                let csum = if rng.next().is_multiple_of(2) {
                    Csum::Complete
                } else {
                    Csum::NotReady
                };
                let _ = p.rewrite(Side::Dst, Ipv4Addr::LOCALHOST, 1, csum);
            }
        }
    }

    /// ICMP errors quoting random packets cut at random lengths, with random damage: parsing
    /// and rewriting never panic, a refused rewrite changes nothing, and an accepted one
    /// leaves every checksum it covers valid.
    #[test]
    fn quoted_packets_never_panic_and_keep_checksums() {
        let mut rng = Rng(0xfeed);
        let mut accepted = 0;
        for i in 0..20000 {
            let inner = random_packet(&mut rng);
            let cut = (rng.next() % (inner.len() as u64 + 1)) as usize;
            let quote = &inner[..cut.min(inner.len())];
            let total = 28 + quote.len();
            let mut v = vec![0u8; total];
            v[0] = 0x45;
            v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            v[9] = PROTO_ICMP;
            v[12..20].copy_from_slice(&rng.bytes(8));
            let c = !fold(sum16(&v[..20], 0));
            v[10..12].copy_from_slice(&c.to_be_bytes());
            v[20] = [3, 11, 12][i % 3];
            v[28..].copy_from_slice(quote);
            let c = !fold(sum16(&v[20..], 0));
            v[22..24].copy_from_slice(&c.to_be_bytes());
            if rng.next().is_multiple_of(4) {
                let k = (rng.next() as usize) % v.len();
                v[k] ^= 1 << (rng.next() % 8);
            }
            let orig = v.clone();
            let Ok(mut p) = Ipv4Packet::new_checked(&mut v[..]) else {
                continue;
            };
            let side = if i % 2 == 0 { Side::Src } else { Side::Dst };
            let r = p.rewrite_quoted(side, rng.ip(), side, rng.ip(), rng.u16());
            if r.is_err() {
                assert_eq!(v, orig, "case {i}: refused rewrite touched the packet");
                continue;
            }
            accepted += 1;
            let p = Ipv4Packet::new_checked(&v[..]).unwrap();
            assert!(p.l4_checksum_ok(), "case {i}");
            let q = p.quoted().unwrap();
            let ip_ok = |b: &[u8]| fold(sum16(b, 0)) == 0xffff;
            assert!(ip_ok(&v[q.at..q.at + q.hlen]), "case {i}");
            if ip_ok(&orig[..20]) {
                assert!(ip_ok(&v[..20]), "case {i}");
            }
        }
        assert!(accepted > 5000, "only {accepted} accepted");
    }
}
