#!/usr/bin/env python3
"""STUN-like UDP reflector for the NAT filtering test (stdlib only).

udp-reflector.py ADDR1 ADDR2 PORT1 PORT2: listens on all four ADDR:PORT pairs. A datagram
"TAG HOW" gets the answer "TAG IP:PORT" (the source the reflector saw), sent from
  same: the socket it arrived on     port: same address, the other port
  addr: the other address, same port  both: the other address and port
so a client can tell which of those the NAT in between lets back in."""
import select
import socket
import sys

a1, a2, p1, p2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
socks = {}
for a in (a1, a2):
    for p in (p1, p2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a, p))
        socks[(a, p)] = s
other_addr = {a1: a2, a2: a1}
other_port = {p1: p2, p2: p1}
print("ready", flush=True)
while True:
    ready, _, _ = select.select(list(socks.values()), [], [])
    for s in ready:
        data, peer = s.recvfrom(2048)
        a, p = s.getsockname()
        try:
            tag, how = data.decode().split()
        except ValueError:
            continue
        src = {
            "same": (a, p),
            "port": (a, other_port[p]),
            "addr": (other_addr[a], p),
            "both": (other_addr[a], other_port[p]),
        }.get(how)
        if src is None:
            continue
        socks[src].sendto(f"{tag} {peer[0]}:{peer[1]}".encode(), peer)
        print(f"{a}:{p} {how} <- {peer[0]}:{peer[1]}", flush=True)
