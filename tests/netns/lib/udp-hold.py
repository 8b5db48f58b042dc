#!/usr/bin/env python3
"""One UDP socket held open on the LAN side across a gatewayd restart (stdlib only).

udp-hold.py BIND_IP PORT IP DPORT: binds BIND_IP:PORT and asks the reflector
(udp-reflector.py) at IP:DPORT what source it sees ("tN same"), at start and again on every
SIGUSR1. Every datagram that arrives is printed as "from IP:PORT DATA", so a test can read
its mapping's outside address before and after a restart (the reflector's answers) and see
whether packets nobody asked for get in, without sending anything that would refresh the
mapping or its filter in between."""
import signal
import socket
import sys

bind_ip, port, ip, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((bind_ip, port))
n = 0


def ask(*_):
    global n
    n += 1
    s.sendto(f"t{n} same".encode(), (ip, dport))


signal.signal(signal.SIGUSR1, ask)
ask()
while True:
    data, src = s.recvfrom(2048)
    print(f"from {src[0]}:{src[1]} {data.decode(errors='replace')}", flush=True)
