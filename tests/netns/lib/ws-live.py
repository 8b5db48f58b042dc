#!/usr/bin/env python3
"""Minimal WebSocket client (RFC 6455, stdlib only) for the netns tests.

ws-live.py HOST PORT PATH SECONDS OUTFILE [COOKIE]: connects (sending COOKIE,
e.g. "gh_session=..."), then writes every text message received within
SECONDS to OUTFILE, one per line. Exits 2 if the upgrade is refused."""
import base64
import os
import socket
import struct
import sys
import time

host, port, path, secs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
cookie = f"Cookie: {sys.argv[6]}\r\n" if len(sys.argv) > 6 else ""
s = socket.create_connection((host, port), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{cookie}\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit(2)
    buf += chunk
head, buf = buf.split(b"\r\n\r\n", 1)
if b" 101 " not in head.split(b"\r\n")[0]:
    sys.stderr.write(head.decode(errors="replace") + "\n")
    sys.exit(2)


def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    data, buf = buf[:n], buf[n:]
    return data


end = time.time() + secs
with open(out, "w") as f:
    try:
        while time.time() < end:
            s.settimeout(max(0.05, end - time.time()))
            try:
                b0, b1 = need(2)
            except socket.timeout:
                break
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", need(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", need(8))[0]
            payload = need(n)
            op = b0 & 0x0F
            if op == 1:
                f.write(payload.decode() + "\n")
                f.flush()
            elif op == 8:
                break
    except EOFError:
        pass
