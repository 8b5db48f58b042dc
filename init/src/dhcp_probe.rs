//! Is there a DHCP server behind this port? One DHCPDISCOVER, broadcast from
//! the port's own MAC on a packet socket bound to it, and a wait for any
//! DHCPOFFER. Nothing is accepted: no REQUEST is ever sent, so no lease is
//! taken and the port keeps no address. A packet socket, not a UDP one: the
//! port has no address yet, and with rp_filter on the kernel would drop the
//! offer before a UDP socket saw it.
//!
//! The packet building and parsing is pure and unit-tested; `probe` does the
//! I/O and is bounded by its deadlines.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BOOTP_LEN: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;

/// IPv4 + UDP + BOOTP: a DHCPDISCOVER from `mac` with transaction id `xid`,
/// from 0.0.0.0:68 to 255.255.255.255:67, asking for a broadcast reply.
pub fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut d = vec![0u8; BOOTP_LEN];
    d[0] = 1; // BOOTREQUEST
    d[1] = 1; // ethernet
    d[2] = 6;
    d[4..8].copy_from_slice(&xid.to_be_bytes());
    d[10] = 0x80; // broadcast flag: the port has no address to unicast to
    d[28..34].copy_from_slice(&mac);
    d.extend_from_slice(&MAGIC);
    d.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER
    d.extend_from_slice(&[61, 7, 1]); // client id: type 1 + MAC, as udhcpc sends
    d.extend_from_slice(&mac);
    d.extend_from_slice(&[55, 3, 1, 3, 6]); // netmask, router, DNS
    d.push(255);
    d.resize(d.len().max(300), 0); // BOOTP's minimum, which some servers insist on

    let udp_len = (8 + d.len()) as u16;
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    udp.extend_from_slice(&SERVER_PORT.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&d);
    let (src, dst) = ([0u8; 4], [255u8; 4]);
    let mut pseudo = Vec::with_capacity(12 + udp.len());
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let sum = match checksum(&pseudo) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());

    let total = (20 + udp.len()) as u16;
    let mut ip = vec![0x45, 0x10];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]); // id, flags, TTL, UDP, checksum
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&udp);
    ip
}

/// The internet checksum (RFC 1071).
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// If `packet` (an IPv4 packet as a packet socket hands it over) is a
/// DHCPOFFER for our `xid` and `mac`, the server that made it (its server
/// identifier, else the packet's source).
pub fn offer_from(packet: &[u8], xid: u32, mac: [u8; 6]) -> Option<Ipv4Addr> {
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[9] != 17 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]])).min(packet.len());
    let frag = u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff;
    let udp = packet.get(ihl..total)?;
    if frag != 0 || udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != CLIENT_PORT {
        return None;
    }
    let d = &udp[8..];
    if d.len() < BOOTP_LEN + 4
        || d[0] != 2
        || d[4..8] != xid.to_be_bytes()
        || d[28..34] != mac
        || d[BOOTP_LEN..BOOTP_LEN + 4] != MAGIC
    {
        return None;
    }
    let (mut kind, mut server) = (None, None);
    let mut o = &d[BOOTP_LEN + 4..];
    while let Some((&code, rest)) = o.split_first() {
        match code {
            0 => o = rest,
            255 => break,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let value = rest.get(..usize::from(len))?;
                match (code, value) {
                    (53, [t]) => kind = Some(*t),
                    (54, [a, b, c, d]) => server = Some(Ipv4Addr::new(*a, *b, *c, *d)),
                    _ => {}
                }
                o = &rest[usize::from(len)..];
            }
        }
    }
    (kind == Some(2)).then(|| {
        server.unwrap_or(Ipv4Addr::new(
            packet[12], packet[13], packet[14], packet[15],
        ))
    })
}

/// "52:54:00:6a:01:01" -> bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

const ETH_P_IP: u16 = libc::ETH_P_IP as u16;

fn link_addr(ifindex: u32, dest: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = ETH_P_IP.to_be();
    a.sll_ifindex = ifindex as i32;
    if let Some(d) = dest {
        a.sll_halen = 6;
        a.sll_addr[..6].copy_from_slice(&d);
    }
    a
}

fn socket(ifindex: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscalls on a descriptor we own; the address outlives the call.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            i32::from(ETH_P_IP.to_be()),
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let a = link_addr(ifindex, None);
        if libc::bind(
            fd.as_raw_fd(),
            &a as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn send(fd: &OwnedFd, ifindex: u32, packet: &[u8]) -> std::io::Result<()> {
    let a = link_addr(ifindex, Some([0xff; 6]));
    // SAFETY: the buffer and the address are valid for the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            &a as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits up to `wait` for a packet; `None` when there was none.
fn recv(fd: &OwnedFd, buf: &mut [u8], wait: Duration) -> Option<usize> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, then a read into a buffer we own.
    unsafe {
        if libc::poll(&mut p, 1, wait.as_millis().min(1000) as i32) <= 0 {
            return None;
        }
        let n = libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0);
        (n > 0).then_some(n as usize)
    }
}

/// When to (re)send the DISCOVER, from the start of the wait: lost packets
/// happen, and a server that pings an address before offering it (dnsmasq:
/// 3 s) answers the first one late anyway.
const RESEND: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(1000),
    Duration::from_millis(2200),
];

/// Broadcasts a DISCOVER on `ifindex` and waits until `deadline` (or `stop`)
/// for an OFFER. Returns the server that offered, if any.
pub fn probe(
    ifindex: u32,
    mac: [u8; 6],
    xid: u32,
    deadline: Instant,
    stop: &AtomicBool,
) -> std::io::Result<Option<Ipv4Addr>> {
    let fd = socket(ifindex)?;
    let packet = discover(mac, xid);
    let start = Instant::now();
    let mut sent = 0;
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if sent < RESEND.len() && start.elapsed() >= RESEND[sent] {
            // A send can fail while the link settles; the next one may not.
            let _ = send(&fd, ifindex, &packet);
            sent += 1;
        }
        if let Some(n) = recv(&fd, &mut buf, Duration::from_millis(50)) {
            if let Some(server) = offer_from(&buf[..n], xid, mac) {
                return Ok(Some(server));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{v4, Decodable, Encodable};

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x6a, 1, 1];

    #[test]
    fn discover_is_a_valid_ipv4_udp_dhcp_packet() {
        let p = discover(MAC, 0xdeadbeef);
        assert_eq!(checksum(&p[..20]), 0, "IPv4 header checksum");
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        assert_eq!(&p[16..20], &[255; 4]);
        let udp = &p[20..];
        let mut pseudo = vec![0, 0, 0, 0, 255, 255, 255, 255, 0, 17];
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(udp);
        assert_eq!(checksum(&pseudo), 0, "UDP checksum");
        let m = v4::Message::decode(&mut v4::Decoder::new(&udp[8..])).unwrap();
        assert_eq!(m.opcode(), v4::Opcode::BootRequest);
        assert_eq!(m.xid(), 0xdeadbeef);
        assert_eq!(&m.chaddr()[..6], &MAC);
        assert!(m.flags().broadcast());
        assert_eq!(
            m.opts().msg_type(),
            Some(v4::MessageType::Discover),
            "message type"
        );
        assert!(udp.len() - 8 >= 300);
    }

    /// An OFFER as a server sends it, wrapped in IPv4 and UDP.
    fn offer(xid: u32, mac: [u8; 6], kind: v4::MessageType, server_id: bool) -> Vec<u8> {
        let mut m = v4::Message::default();
        m.set_opcode(v4::Opcode::BootReply)
            .set_xid(xid)
            .set_yiaddr(Ipv4Addr::new(10, 99, 0, 120))
            .set_chaddr(&mac);
        m.opts_mut().insert(v4::DhcpOption::MessageType(kind));
        if server_id {
            m.opts_mut()
                .insert(v4::DhcpOption::ServerIdentifier(Ipv4Addr::new(
                    10, 99, 0, 1,
                )));
        }
        let mut d = Vec::new();
        m.encode(&mut v4::Encoder::new(&mut d)).unwrap();
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 99, 0, 2, 255, 255, 255, 255,
        ];
        p.extend_from_slice(&67u16.to_be_bytes());
        p.extend_from_slice(&68u16.to_be_bytes());
        p.extend_from_slice(&((8 + d.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&d);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p
    }

    #[test]
    fn recognises_an_offer_for_us_only() {
        let ours = offer(7, MAC, v4::MessageType::Offer, true);
        assert_eq!(offer_from(&ours, 7, MAC), Some(Ipv4Addr::new(10, 99, 0, 1)));
        // Without a server identifier: the packet's source.
        let bare = offer(7, MAC, v4::MessageType::Offer, false);
        assert_eq!(offer_from(&bare, 7, MAC), Some(Ipv4Addr::new(10, 99, 0, 2)));
        assert_eq!(offer_from(&ours, 8, MAC), None, "another transaction");
        assert_eq!(
            offer_from(&ours, 7, [0x52, 0, 0, 0, 0, 9]),
            None,
            "another client"
        );
        let ack = offer(7, MAC, v4::MessageType::Ack, true);
        assert_eq!(offer_from(&ack, 7, MAC), None, "not an offer");
        assert_eq!(
            offer_from(&discover(MAC, 7), 7, MAC),
            None,
            "our own request"
        );
        assert_eq!(offer_from(&ours[..100], 7, MAC), None, "truncated");
        assert_eq!(offer_from(&[], 7, MAC), None);
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("52:54:00:6A:01:01"), Some(MAC));
        assert_eq!(parse_mac("52:54:00:6a:01"), None);
        assert_eq!(parse_mac("52:54:00:6a:01:01:02"), None);
        assert_eq!(parse_mac("zz:54:00:6a:01:01"), None);
    }
}
