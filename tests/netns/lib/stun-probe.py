#!/usr/bin/env python3
"""Client side of the NAT filtering test: runs the STUN-style matrix against udp-reflector.py.

stun-probe.py LOCAL_PORT A1 A2 P1 P2 prints one line per check:
  mapped-1 IP:PORT          what A1:P1 saw
  same|port|addr|both yes|no  whether A1:P1's answer from (same / other port / other address /
                            both) got back in, while only A1:P1 had been contacted
  mapped-2 IP:PORT          what A2:P1 saw (endpoint-independent mapping: equal to mapped-1)
  after-a2-both yes|no      A1:P1 answering from A2:P2, once A2:P1 had been contacted
  after-a2-addr yes|no      A1:P1 answering from A2:P1 (now a known address and port)"""
import socket
import sys

port, a1, a2, p1, p2 = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
n = 0


def ask(dest, how, wait):
    """Sends one request; returns (reply source, seen address) or None."""
    global n
    n += 1
    tag = f"t{n}"
    s.sendto(f"{tag} {how}".encode(), dest)
    s.settimeout(wait)
    try:
        while True:
            data, src = s.recvfrom(2048)
            rtag, seen = data.decode().split()
            if rtag == tag:
                return src, seen
    except socket.timeout:
        return None


def retry(dest, how):
    for _ in range(3):
        r = ask(dest, how, 1.0)
        if r:
            return r
    sys.exit(f"no answer from {dest}")


src, seen = retry((a1, p1), "same")
print("mapped-1", seen)
print("same yes")
for how in ("port", "addr", "both"):
    print(how, "yes" if ask((a1, p1), how, 0.5) else "no")
src, seen = retry((a2, p1), "same")
print("mapped-2", seen)
print("after-a2-both", "yes" if ask((a1, p1), "both", 0.5) else "no")
print("after-a2-addr", "yes" if ask((a1, p1), "addr", 0.5) else "no")
