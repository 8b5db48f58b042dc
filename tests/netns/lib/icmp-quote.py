#!/usr/bin/env python3
"""icmp-quote.py SECONDS: prints "TYPE CODE QSRC:QSPORT QDST:QDPORT" for each ICMP error
received within SECONDS (raw socket, so run it in the namespace to watch). Used to check
which addresses an ICMP error quotes."""
import socket
import struct
import sys
import time

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
end = time.time() + float(sys.argv[1])
print("ready", flush=True)
while time.time() < end:
    s.settimeout(max(0.05, end - time.time()))
    try:
        pkt = s.recv(65535)
    except socket.timeout:
        break
    ihl = (pkt[0] & 15) * 4
    t, c = pkt[ihl], pkt[ihl + 1]
    if t not in (3, 11, 12):
        continue
    q = pkt[ihl + 8:]
    if len(q) < 28:
        continue
    qihl = (q[0] & 15) * 4
    src, dst = socket.inet_ntoa(q[12:16]), socket.inet_ntoa(q[16:20])
    sp, dp = struct.unpack("!HH", q[qihl:qihl + 4])
    print(f"{t} {c} {src}:{sp} {dst}:{dp}", flush=True)
