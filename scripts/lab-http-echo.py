#!/usr/bin/env python3
"""Test HTTP server for the lab's WAN side: answers every GET with the source
address it saw, so a test can prove the router translated the client."""
import http.server
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from wan; you are {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.client_address[0], fmt % args))


addr, port = sys.argv[1], int(sys.argv[2])
http.server.ThreadingHTTPServer((addr, port), Echo).serve_forever()
