#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets: fuzz/seeds/<target>/<name>.

Hand-assembled from the RFCs and what real clients send (busybox udhcpc, a stub
resolver, Linux TCP/UDP/ICMP). Usage: fuzz/seeds/make-seeds.py [fuzz/seeds]
"""
import os
import struct
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

def w(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), 'wb').write(data)

# ---- DHCP: BOOTREQUESTs as busybox udhcpc sends them ----
MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
def bootp(xid, ciaddr=b'\0'*4, flags=0x0000, secs=0):
    h = struct.pack('!BBBBIHH', 1, 1, 6, 0, xid, secs, flags)
    h += ciaddr + b'\0'*4 + b'\0'*4 + b'\0'*4     # ciaddr yiaddr siaddr giaddr
    h += MAC + b'\0'*10                              # chaddr
    h += b'\0'*64 + b'\0'*128                         # sname file
    assert len(h) == 236
    return h + bytes([99, 130, 83, 99])
def opt(code, val): return bytes([code, len(val)]) + val
CID = opt(61, b'\x01' + MAC)
PRL = opt(55, bytes([1, 3, 6, 12, 15, 28, 42]))
HOST = opt(12, b'laptop')
VENDOR = opt(60, b'udhcp 1.36.1')
MAXSZ = opt(57, struct.pack('!H', 576))
def pad(b): return b + b'\0' * max(0, 300 - len(b))
w('dhcp_decode', 'discover', pad(bootp(0x3903f326) + opt(53, b'\x01') + CID + MAXSZ + VENDOR + HOST + PRL + b'\xff'))
w('dhcp_decode', 'request-selecting', pad(bootp(0x3903f326) + opt(53, b'\x03') + CID + opt(50, bytes([192,168,1,105])) + opt(54, bytes([192,168,1,1])) + MAXSZ + VENDOR + HOST + PRL + b'\xff'))
w('dhcp_decode', 'request-renewing', pad(bootp(0x1c2d3e4f, ciaddr=bytes([192,168,1,100])) + opt(53, b'\x03') + CID + MAXSZ + VENDOR + HOST + PRL + b'\xff'))
w('dhcp_decode', 'request-init-reboot', pad(bootp(0x0a0b0c0d) + opt(53, b'\x03') + CID + opt(50, bytes([10,0,0,5])) + HOST + PRL + b'\xff'))
w('dhcp_decode', 'decline', pad(bootp(0x11223344) + opt(53, b'\x04') + CID + opt(50, bytes([192,168,1,100])) + opt(54, bytes([192,168,1,1])) + b'\xff'))
w('dhcp_decode', 'release', pad(bootp(0x55667788, ciaddr=bytes([192,168,1,100])) + opt(53, b'\x07') + CID + opt(54, bytes([192,168,1,1])) + b'\xff'))
w('dhcp_decode', 'inform', pad(bootp(0x99aabbcc, ciaddr=bytes([192,168,1,77])) + opt(53, b'\x08') + PRL + b'\xff'))

# ---- DNS: queries as a stub resolver sends them ----
def qname(n): return b''.join(bytes([len(l)]) + l.encode() for l in n.split('.') if l) + b'\0'
def dns(id, flags, q, an=0, ns=0, ar=0, body=b''):
    return struct.pack('!HHHHHH', id, flags, len(q), an, ns, ar) + b''.join(qname(n) + struct.pack('!HH', t, 1) for n, t in q) + body
OPT = b'\0' + struct.pack('!HHIH', 41, 1232, 0, 0)   # EDNS0, 1232 bytes
w('dns_query', 'a-query', dns(0x1a2b, 0x0100, [('example.com', 1)]))
w('dns_query', 'aaaa-edns', dns(0x3c4d, 0x0120, [('www.example.org', 28)], ar=1, body=OPT))
w('dns_query', 'ptr-query', dns(0x0001, 0x0100, [('1.1.168.192.in-addr.arpa', 12)]))
w('dns_query', 'axfr', dns(0x0002, 0x0000, [('example.com', 252)]))
# A response with one A record using a compression pointer to the question.
ans = b'\xc0\x0c' + struct.pack('!HHIH', 1, 1, 300, 4) + bytes([93, 184, 216, 34])
w('dns_query', 'a-response', dns(0x1a2b, 0x8180, [('example.com', 1)], an=1, body=ans))

# ---- IPv4 packets as nfqueue hands them over ----
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ip(proto, src, dst, payload, ident=0x1c46, df=True):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), ident, 0x4000 if df else 0, 64, proto, 0, bytes(src), bytes(dst))
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload
def l4sum(proto, src, dst, seg):
    return csum(bytes(src) + bytes(dst) + struct.pack('!BBH', 0, proto, len(seg)) + seg)
LAN = [192, 168, 1, 10]; REMOTE = [93, 184, 216, 34]
# TCP SYN with MSS, SACK-permitted, timestamps, window scale (Linux style, 60 bytes).
opts = bytes([2, 4, 0x05, 0xb4, 4, 2, 8, 10]) + struct.pack('!II', 0x12345678, 0) + bytes([1, 3, 3, 7])
tcp = struct.pack('!HHIIBBHHH', 51514, 443, 0xa1b2c3d4, 0, (20 + len(opts)) // 4 << 4, 0x02, 64240, 0, 0) + opts
tcp = tcp[:16] + struct.pack('!H', l4sum(6, LAN, REMOTE, tcp)) + tcp[18:]
w('nat_packet', 'tcp-syn', ip(6, LAN, REMOTE, tcp))
# The same SYN with the checksum field holding only the pseudo-header sum (offload pending).
pseudo_only = (~l4sum(6, LAN, REMOTE, bytes(len(tcp)))) & 0xffff
partial = tcp[:16] + struct.pack('!H', pseudo_only) + tcp[18:]
w('nat_packet', 'tcp-syn-offload', ip(6, LAN, REMOTE, partial))
# UDP DNS query to 1.1.1.1.
q = dns(0x1a2b, 0x0100, [('example.com', 1)])
udp = struct.pack('!HHHH', 40000, 53, 8 + len(q), 0) + q
udp = udp[:6] + struct.pack('!H', l4sum(17, LAN, [1, 1, 1, 1], udp) or 0xffff) + udp[8:]
w('nat_packet', 'udp-dns', ip(17, LAN, [1, 1, 1, 1], udp))
# UDP without a checksum.
udp0 = struct.pack('!HHHH', 5353, 5353, 12, 0) + b'ping'
w('nat_packet', 'udp-nocsum', ip(17, LAN, REMOTE, udp0))
# ICMP echo request (ping -c1), 56 bytes of payload.
icmp = struct.pack('!BBHHH', 8, 0, 0, 0x2a2a, 1) + bytes(range(56))
icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]
w('nat_packet', 'icmp-echo', ip(1, LAN, [8, 8, 8, 8], icmp))
# An inbound TCP SYN-ACK to the WAN address, and an ICMP port unreachable.
synack = struct.pack('!HHIIBBHHH', 443, 61000 - 1000, 0x0, 0xa1b2c3d5, 5 << 4, 0x12, 65535, 0, 0)
synack = synack[:16] + struct.pack('!H', l4sum(6, REMOTE, [203, 0, 113, 2], synack)) + synack[18:]
w('nat_packet', 'tcp-synack-inbound', ip(6, REMOTE, [203, 0, 113, 2], synack))
unreach = struct.pack('!BBHI', 3, 3, 0, 0) + ip(17, LAN, REMOTE, udp0)[:28]
unreach = unreach[:2] + struct.pack('!H', csum(unreach)) + unreach[4:]
w('nat_packet', 'icmp-unreachable', ip(1, REMOTE, LAN, unreach))
# A first fragment (MF set).
frag = bytearray(ip(17, LAN, REMOTE, udp0, df=False)); frag[6] = 0x20
w('nat_packet', 'udp-fragment', bytes(frag))

# ---- nfnetlink_queue datagrams as the kernel sends them (host byte order) ----
def nla(ty, val): return struct.pack('=HH', 4 + len(val), ty) + val + b'\0' * (-len(val) % 4)
def nlmsg(ty, attrs, seq=0, queue=0):
    body = struct.pack('!BBH', 0, 0, queue) + attrs   # nfgenmsg: AF_UNSPEC, v0, queue
    return struct.pack('=IHHII', 16 + len(body), ty, 0, seq, 0) + body
def nfq_packet(id, hook, payload, extra=b''):
    hdr = nla(1, struct.pack('!IHB', id, 0x0800, hook))  # NFQA_PACKET_HDR
    return nlmsg(3 << 8 | 0, hdr + extra + nla(10, payload))  # NFQNL_MSG_PACKET, NFQA_PAYLOAD
syn = ip(6, LAN, REMOTE, tcp)
w('nfqueue_parse', 'packet', nfq_packet(1, 0, syn, nla(5, struct.pack('!I', 3)) + nla(14, struct.pack('!I', 0))))
w('nfqueue_parse', 'packet-gso-outdev', nfq_packet(2, 4, ip(17, LAN, [1, 1, 1, 1], udp), nla(6, struct.pack('!I', 9)) + nla(14, struct.pack('!I', 3))))
w('nfqueue_parse', 'packet-cap-len', nfq_packet(3, 0, syn[:40], nla(13, struct.pack('!I', len(syn)))))
# Two packets (one with an odd length, so padding follows) and an ack for request 1.
ack = struct.pack('=IHHIIi', 36, 2, 0, 1, 0, 0) + b'\0' * 16  # NLMSG_ERROR, errno 0
w('nfqueue_parse', 'batch-and-ack', nfq_packet(4, 0, ip(17, LAN, REMOTE, udp0) + b'!') + nfq_packet(5, 0, syn) + ack)

# ---- The saved NAT table (persist.rs): header and slots, little-endian ----
import zlib
def header(wan):
    h = b'GHNATMAP' + struct.pack('<IIII', 1, 256, 32768, 8) + bytes(wan)
    return (h + struct.pack('<I', zlib.crc32(h))).ljust(256, b'\0')
def record(kind, proto, tcp, flags, inside, iport, oport, remote=(0, 0, 0, 0), rport=0,
           remotes=(), created=0, seen=0, counters=(0, 0, 0, 0)):
    b = struct.pack('<BBBB4sHH4sHB', kind, proto, tcp, flags, bytes(inside), iport, oport, bytes(remote), rport, len(remotes))
    b += b'\0' + struct.pack('<QQQQQQ', created, seen, *counters)
    for addr, port, last in remotes:
        b += struct.pack('<4sHHQ', bytes(addr), port, 0, last)
    b = b.ljust(252, b'\0')
    return struct.pack('<I', zlib.crc32(b)) + b
w('nat_persist_decode', 'header-wan', header([203, 0, 113, 2]))
w('nat_persist_decode', 'header-no-wan', header([0, 0, 0, 0]))
w('nat_persist_decode', 'tcp-mapping', record(1, 1, 1, 1, LAN, 51514, 51514, REMOTE, 443,
    [(REMOTE, 443, 1_700_000_000_500), ([1, 1, 1, 1], 53, 1_700_000_000_100)],
    1_700_000_000_000, 1_700_000_001_000, (12, 3400, 30, 45000)))
w('nat_persist_decode', 'icmp-mapping', record(1, 3, 0, 0, LAN, 0x2a2a, 0x2a2a, [8, 8, 8, 8], 0,
    [], 1_700_000_000_000, 1_700_000_000_000, (1, 84, 1, 84)))
w('nat_persist_decode', 'udp-hold', record(2, 2, 0, 0, LAN, 40000, 40000, seen=1_700_000_120_000))
w('nat_persist_decode', 'empty-slot', bytes(256))
