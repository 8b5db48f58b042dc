#!/usr/bin/env bash
# gatewayd's DNS forwarder, end to end, in three network namespaces:
#
#   ghs-cli (cli0 192.168.1.10) -- (lan0 192.168.1.1) ghs-rtr (up0 10.53.0.1) -- (upd0 10.53.0.2, .4) ghs-up
#
# ghs-up runs dnsmasq as an authoritative upstream for example.test on
# 10.53.0.2 (so NXDOMAIN and NODATA carry an SOA and big answers get TC), and
# a small python3 server on 10.53.0.4 that plays a spoofing resolver on UDP 53
# and a DNS-over-TLS resolver on 853 (certificate from a CA made here).
#
# Three gatewayd runs, one after the other:
#   1. DHCP on, upstreams 10.53.0.3 (dead: every first answer proves failover)
#      and 10.53.0.2; static hosts; blocklists in "null" mode. Checked with dig
#      and kdig: local names, a DHCP lease's name (busybox udhcpc, fenced),
#      forwarding, TCP, EDNS, TC, blocking, positive and negative caching.
#   2. upstreams 10.53.0.3 (dead) and 10.53.0.4 (spoofer): failover seen by
#      kdig, forged replies ignored and counted; blocklists in "nxdomain" mode.
#   3. DNS over TLS to 10.53.0.4:853 with certificate verification.
# Needs root. GATEWAYD overrides the binary (default: target/debug/gatewayd).
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
GATEWAYD=${GATEWAYD:-$ROOT/target/debug/gatewayd}
CLI=ghs-cli RTR=ghs-rtr UP=ghs-up
WORK=$(mktemp -d /tmp/ghs-dns.XXXXXX)
GW_PID= DM_PID= PY_PID=
GW_LOG=$WORK/gatewayd-1.log

fail() {
    echo "FAIL dns: $*" >&2
    exit 1
}

stop_gatewayd() {
    if [[ -n $GW_PID ]]; then
        kill "$GW_PID" 2>/dev/null
        wait "$GW_PID" 2>/dev/null || true
        GW_PID=
    fi
}

cleanup() {
    local rc=$?
    set +e
    stop_gatewayd
    [[ -n $DM_PID ]] && kill "$DM_PID" 2>/dev/null && wait "$DM_PID" 2>/dev/null
    [[ -n $PY_PID ]] && kill "$PY_PID" 2>/dev/null && wait "$PY_PID" 2>/dev/null
    # Anything else still running in our namespaces (dnsmasq's TCP children, udhcpc).
    for ns in $CLI $RTR $UP; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    if [[ $rc -ne 0 ]]; then
        for f in "$WORK"/gatewayd-*.log "$WORK/dnsmasq.log" "$WORK/fake.log" "$WORK/udhcpc.log"; do
            [[ -f $f ]] || continue
            echo "--- $f" >&2
            tail -40 "$f" >&2
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

[[ $EUID -eq 0 ]] || fail "must run as root"
[[ -x $GATEWAYD ]] || fail "$GATEWAYD missing (cargo build -p gateway)"
need=()
command -v dig >/dev/null || need+=(dnsutils)
command -v kdig >/dev/null || need+=(knot-dnsutils)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v ip >/dev/null || need+=(iproute2)
command -v busybox >/dev/null || need+=(busybox)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}
# dig/kdig from the LAN client; one try, so a wrong answer is not papered over by retries.
cdig() { in_ns $CLI dig @192.168.1.1 +time=6 +tries=1 "$@"; }
ckdig() { in_ns $CLI kdig @192.168.1.1 +timeout=6 +retry=0 "$@"; }
# shellcheck source=lib/ui.sh
. "$ROOT/tests/netns/lib/ui.sh"
status_json() { ui_get $CLI http://192.168.1.1:8080 "$WORK/cookies" /api/status; }
dns_counter() { status_json | jq -r ".dns.$1"; }

start_gatewayd() { # run-number
    GW_LOG="$WORK/gatewayd-$1.log"
    ip netns exec $RTR "$GATEWAYD" --config "$WORK/gatehouse-$1.toml" --data-dir "$WORK/data" \
        --run-dir "$WORK/run" --no-wan-client >"$GW_LOG" 2>&1 &
    GW_PID=$!
}

wait_dns() {
    for _ in $(seq 50); do
        grep -q 'dns: listening on 192.168.1.1:53' "$GW_LOG" && break
        kill -0 "$GW_PID" 2>/dev/null || fail "gatewayd exited: $(tail -5 "$GW_LOG")"
        sleep 0.1
    done
    grep -q 'dns: listening on 192.168.1.1:53' "$GW_LOG" || fail "dns never bound"
    for _ in $(seq 50); do
        status_json >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "admin API never answered"
}

# --- topology
for ns in $CLI $RTR $UP; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
done
ip link add cli0 netns $CLI type veth peer name lan0 netns $RTR
ip link add up0 netns $RTR type veth peer name upd0 netns $UP
in_ns $CLI ip addr add 192.168.1.10/24 dev cli0
in_ns $CLI ip link set cli0 up
in_ns $RTR ip link set lan0 up
in_ns $RTR ip addr add 10.53.0.1/24 dev up0
in_ns $RTR ip link set up0 up
in_ns $UP ip addr add 10.53.0.2/24 dev upd0
in_ns $UP ip addr add 10.53.0.4/24 dev upd0
in_ns $UP ip link set upd0 up

# --- upstream: authoritative for example.test, names with TTL 300, a TXT too big for one UDP reply
big=$(printf 'x%.0s' {1..250})
txt=$big
for _ in 1 2 3 4 5 6 7; do txt+=",$big"; done
ip netns exec $UP dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --pid-file= \
    --listen-address=10.53.0.2 --bind-interfaces --user=root \
    --log-queries --log-facility=- \
    --auth-server=ns.example.test,10.53.0.2 --auth-zone=example.test --auth-ttl=300 \
    --auth-soa=1,hostmaster.example.test,1200,120,604800 \
    --host-record=www.example.test,198.51.100.7 \
    --host-record=tcp.example.test,198.51.100.8 \
    --host-record=late.example.test,198.51.100.9 \
    --host-record=kdig.example.test,198.51.100.10 \
    --host-record=ads.example.test,198.51.100.66 \
    --txt-record="big.example.test,$txt" \
    >"$WORK/dnsmasq.log" 2>&1 &
DM_PID=$!

# --- the fake resolver on 10.53.0.4: spoofs on UDP 53, DNS over TLS on 853
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj "/CN=Gatehouse test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/dot.key" -out "$WORK/dot.csr" -subj "/CN=dot.test" 2>/dev/null
printf 'subjectAltName=DNS:dot.test\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' \
    >"$WORK/dot.ext"
openssl x509 -req -in "$WORK/dot.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -out "$WORK/dot.pem" -extfile "$WORK/dot.ext" 2>/dev/null
cat >"$WORK/fake.py" <<'EOF'
import socket, socketserver, ssl, sys, threading

SPOOFED, REAL, TLS = bytes([203, 0, 113, 66]), bytes([198, 51, 100, 77]), bytes([198, 51, 100, 99])

def log(*a):
    print(*a, flush=True)

def qname(q):
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
        i += 1 + q[i]
    return ".".join(labels).lower(), i + 5

def answer(q, addr, ident=None):
    name, qend = qname(q)
    is_a = q[qend - 4:qend - 2] == b"\x00\x01"
    head = (ident if ident is not None else q[:2]) + bytes([0x80 | (q[2] & 1), 0x80, 0, 1, 0, int(is_a), 0, 0, 0, 0])
    rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + addr if is_a else b""
    return head + q[12:qend] + rr

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.53.0.4", 53))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("10.53.0.4", 0))
    while True:
        q, peer = s.recvfrom(4096)
        log("udp query", qname(q)[0], "from", peer)
        wrong = bytes([q[0] ^ 0xff, q[1] ^ 0x5a])
        s.sendto(answer(q, SPOOFED, wrong), peer)       # wrong ID
        other.sendto(answer(q, SPOOFED), peer)          # right ID, wrong source port
        s.sendto(answer(q, REAL), peer)                 # the genuine reply

class Dot(socketserver.StreamRequestHandler):
    def handle(self):
        log("tls connection from", self.client_address)
        while True:
            n = self.rfile.read(2)
            if len(n) < 2:
                return
            q = self.rfile.read(int.from_bytes(n, "big"))
            log("tls query", qname(q)[0])
            r = answer(q, TLS)
            self.wfile.write(len(r).to_bytes(2, "big") + r)
            self.wfile.flush()

class TlsServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    def get_request(self):
        sock, addr = super().get_request()
        return ctx.wrap_socket(sock, server_side=True), addr

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
threading.Thread(target=udp, daemon=True).start()
srv = TlsServer(("10.53.0.4", 853), Dot)
log("ready")
srv.serve_forever()
EOF
ip netns exec $UP python3 "$WORK/fake.py" "$WORK/dot.pem" "$WORK/dot.key" >"$WORK/fake.log" 2>&1 &
PY_PID=$!

# --- blocklists: a hosts file, a directory of lists, and a list that is missing
mkdir -p "$WORK/bl" "$WORK/bl.d"
cat >"$WORK/bl/ads.hosts" <<'EOF'
# hosts-format blocklist
127.0.0.1 localhost
0.0.0.0 ads.example.test
0.0.0.0 tracker.example.test metrics.example.test   # two names on one line
this line is not valid
EOF
printf 'evil.example.test\n# comment\n\n' >"$WORK/bl.d/domains.txt"
printf '0.0.0.0 pixel.example.test\n' >"$WORK/bl.d/more.hosts"

# --- run 1: DHCP on, failover, static hosts, blocklists (null)
cat >"$WORK/gatehouse-1.toml" <<EOF
[lan]
interface = "lan0"
[dhcp]
enabled = true
[nat]
enabled = false
[ui]
port = 8080
[dns]
upstreams = ["10.53.0.3", "10.53.0.2"]
hosts = [{ name = "nas", ip = "192.168.1.5" }]
blocklists = [
  { name = "ads", path = "$WORK/bl/ads.hosts" },
  { name = "dir", path = "$WORK/bl.d" },
  { name = "gone", path = "$WORK/bl/absent.txt" },
]
block_mode = "null"
EOF
start_gatewayd 1

# The LAN address arrives after gatewayd starts, as at boot: it must keep retrying.
sleep 1.5
kill -0 $GW_PID 2>/dev/null || fail "gatewayd exited before the LAN address existed"
in_ns $RTR ip addr add 192.168.1.1/24 dev lan0
wait_dns
for _ in $(seq 50); do
    in_ns $UP ss -lnu | grep -q '10.53.0.2:53' && grep -q ready "$WORK/fake.log" && break
    sleep 0.1
done
grep -q ready "$WORK/fake.log" || fail "fake resolver did not start"

# --- the router's own name, answered locally and authoritatively
out=$(cdig gatehouse.lan A +noall +answer +comments)
grep -qE '^gatehouse\.lan\.\s+[0-9]+\s+IN\s+A\s+192\.168\.1\.1$' <<<"$out" || fail "gatehouse.lan: $out"
grep -q 'flags: qr aa' <<<"$out" || fail "gatehouse.lan not authoritative: $out"
echo "ok   gatehouse.lan -> 192.168.1.1 (aa)"
out=$(cdig -x 192.168.1.1 +short)
[[ $out == gatehouse.lan. ]] || fail "reverse of 192.168.1.1: $out"
echo "ok   192.168.1.1 -> gatehouse.lan."

# --- forwarded over UDP, via failover from the dead first upstream
t0=$(date +%s%N)
out=$(cdig www.example.test A +noall +answer)
ms=$((($(date +%s%N) - t0) / 1000000))
grep -qE '^www\.example\.test\.\s+300\s+IN\s+A\s+198\.51\.100\.7$' <<<"$out" || fail "www.example.test: $out"
# Only waiting out 10.53.0.3 first makes this take seconds.
((ms >= 1500)) || fail "answer after ${ms} ms: 10.53.0.3 was not tried first?"
echo "ok   www.example.test -> 198.51.100.7 over UDP after failover (${ms} ms)"
# The dead upstream is now skipped first: no second timeout.
t0=$(date +%s%N)
out=$(cdig late.example.test A +short)
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $out == 198.51.100.9 ]] || fail "late.example.test: $out"
((ms < 1500)) || fail "second query took ${ms} ms: working upstream not preferred"
echo "ok   late.example.test -> 198.51.100.9, working upstream preferred (${ms} ms)"
out=$(ckdig kdig.example.test A +short)
[[ $out == 198.51.100.10 ]] || fail "kdig kdig.example.test: $out"
echo "ok   kdig: kdig.example.test -> 198.51.100.10"

# --- TCP from the client
out=$(cdig +tcp tcp.example.test A +short)
[[ $out == 198.51.100.8 ]] || fail "tcp.example.test over TCP: $out"
out=$(ckdig +tcp tcp.example.test A +short)
[[ $out == 198.51.100.8 ]] || fail "kdig tcp.example.test over TCP: $out"
echo "ok   tcp.example.test -> 198.51.100.8 over TCP (dig, kdig)"
# Two queries on one TCP connection.
out=$(in_ns $CLI dig @192.168.1.1 +tcp +keepopen +time=6 +tries=1 +short tcp.example.test A www.example.test A)
[[ $out == $'198.51.100.8\n198.51.100.7' ]] || fail "two queries on one TCP connection: $out"
echo "ok   two queries on one TCP connection"

# --- too big for UDP: upstream TC -> gatewayd asks over TCP -> client told TC -> retries over TCP
out=$(cdig big.example.test TXT +noall +answer)
chunks=$(grep -o '"x\{250\}"' <<<"$out" | wc -l)
((chunks == 8)) || fail "big TXT carried $chunks of 8 strings: $out"
grep -q 'auth\[TXT\] big.example.test from 10.53.0.1' "$WORK/dnsmasq.log" || fail "big TXT never asked upstream"
out=$(cdig +ignore big.example.test TXT +comments)
grep -qE 'flags:[a-z ]* tc' <<<"$out" || fail "oversized UDP reply not truncated: $out"
echo "ok   big.example.test TXT (2000 bytes) via TC + TCP"
# EDNS: a client with a 4096-byte buffer gets all of it in one datagram.
out=$(cdig +bufsize=4096 +ignore big.example.test TXT +comments +answer)
grep -qE 'flags:[a-z ]* tc' <<<"$out" && fail "4096-byte EDNS client got TC: $out"
chunks=$(grep -o '"x\{250\}"' <<<"$out" | wc -l)
((chunks == 8)) || fail "EDNS 4096 big TXT carried $chunks of 8 strings"
grep -qE 'udp: [0-9]+' <<<"$out" || fail "no OPT record in the EDNS reply: $out"
out=$(ckdig +bufsize=4096 +ignore big.example.test TXT)
grep -q 'Flags: qr' <<<"$out" || fail "kdig EDNS big TXT: $out"
grep -qE 'Flags: qr[a-z ]* tc' <<<"$out" && fail "kdig EDNS 4096 got TC: $out"
((($(grep -o '"x\{250\}"' <<<"$out" | wc -l) == 8))) || fail "kdig EDNS big TXT incomplete: $out"
echo "ok   EDNS 4096: 2000-byte answer in one UDP reply (dig, kdig)"

# --- private and local names never leave the router
for q in "-x 192.168.1.55" "-x 10.1.2.3" "-x 172.20.0.9" "printer.lan A"; do
    # shellcheck disable=SC2086
    out=$(cdig $q +noall +comments)
    grep -q 'status: NXDOMAIN' <<<"$out" || fail "$q: $out"
    grep -q 'flags: qr aa' <<<"$out" || fail "$q not authoritative: $out"
done
echo "ok   private PTRs and .lan names answered NXDOMAIN locally"

# --- static host entry
[[ $(cdig nas.lan A +short) == 192.168.1.5 ]] || fail "nas.lan"
[[ $(ckdig -x 192.168.1.5 +short) == nas.lan. ]] || fail "PTR of nas.lan: $(ckdig -x 192.168.1.5 +short)"
echo "ok   static host nas.lan <-> 192.168.1.5 (dig, kdig)"

# --- a DHCP lease's hostname: busybox udhcpc in the client netns, fenced: own
# mount namespace, scratch resolv.conf, a hook that only adds the address.
echo "# ghs-dns test scratch" >"$WORK/resolv.conf"
cat >"$WORK/udhcpc-hook.sh" <<EOF
#!/bin/sh
case "\$1" in
bound | renew) ip addr add "\$ip/\${mask:-24}" dev "\$interface" 2>/dev/null; echo "\$ip" >"$WORK/lease" ;;
esac
exit 0
EOF
chmod +x "$WORK/udhcpc-hook.sh"
in_ns $CLI unshare -m --propagation private \
    sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$WORK/resolv.conf" \
    timeout 30 busybox udhcpc -f -q -n -t 5 -T 1 -i cli0 -x hostname:laptop \
    -s "$WORK/udhcpc-hook.sh" >"$WORK/udhcpc.log" 2>&1 || fail "udhcpc got no lease"
LEASE=$(cat "$WORK/lease")
[[ $LEASE =~ ^192\.168\.1\.[0-9]+$ ]] || fail "udhcpc lease: '$LEASE'"
out=$(cdig laptop.lan A +noall +answer +comments)
grep -qE "^laptop\.lan\.\s+[0-9]+\s+IN\s+A\s+${LEASE//./\\.}$" <<<"$out" || fail "laptop.lan: $out"
grep -q 'flags: qr aa' <<<"$out" || fail "laptop.lan not authoritative: $out"
[[ $(ckdig laptop.lan A +short) == "$LEASE" ]] || fail "kdig laptop.lan"
[[ $(cdig -x "$LEASE" +short) == laptop.lan. ]] || fail "PTR of $LEASE: $(cdig -x "$LEASE" +short)"
[[ $(ckdig -x "$LEASE" +short) == laptop.lan. ]] || fail "kdig PTR of $LEASE"
for tool in cdig ckdig; do
    out=$($tool laptop.lan AAAA)
    grep -qiE 'status: NOERROR' <<<"$out" || fail "$tool laptop.lan AAAA: $out"
    grep -qE 'SOA' <<<"$out" || fail "$tool laptop.lan AAAA has no SOA: $out"
    # Question lines start with ';' in both tools; an answer record would not.
    grep -qE '^[^;].*IN\s+AAAA' <<<"$out" && fail "$tool laptop.lan AAAA answered: $out"
done
echo "ok   DHCP lease laptop.lan <-> $LEASE (A, PTR; AAAA NODATA with SOA; dig, kdig)"
if grep -E '(query|auth)\[.*(in-addr\.arpa|\.lan )' "$WORK/dnsmasq.log"; then
    fail "a local/private name was forwarded upstream"
fi
echo "ok   no local or private name was forwarded"

# --- blocklists, "null" mode
[[ $(cdig ads.example.test A +short) == 0.0.0.0 ]] || fail "ads.example.test not blocked"
[[ $(ckdig deep.ads.example.test A +short) == 0.0.0.0 ]] || fail "subdomain not blocked"
[[ $(cdig ads.example.test AAAA +short) == :: ]] || fail "AAAA of a blocked name"
[[ $(cdig metrics.example.test A +short) == 0.0.0.0 ]] || fail "second name on a hosts line"
[[ $(cdig evil.example.test A +short) == 0.0.0.0 ]] || fail "domain-list file in a directory"
[[ $(cdig +tcp pixel.example.test A +short) == 0.0.0.0 ]] || fail "hosts file in a directory, TCP"
grep -q 'ads.example.test' "$WORK/dnsmasq.log" && fail "a blocked name was forwarded"
st=$(status_json)
[[ $(jq '.dns.blocklists[0].blocked' <<<"$st") -ge 4 ]] || fail "ads list count: $(jq -c '.dns.blocklists' <<<"$st")"
[[ $(jq '.dns.blocklists[0].bad_lines' <<<"$st") -eq 1 ]] || fail "bad lines: $(jq -c '.dns.blocklists[0]' <<<"$st")"
[[ $(jq '.dns.blocklists[1].entries' <<<"$st") -eq 2 ]] || fail "directory list: $(jq -c '.dns.blocklists[1]' <<<"$st")"
[[ $(jq '.dns.blocklists[2].errors | length' <<<"$st") -eq 1 ]] || fail "missing list not reported"
client=$(jq '.dns.clients[] | select(.ip == "192.168.1.10")' <<<"$st")
[[ $(jq .blocked <<<"$client") -ge 6 ]] || fail "per-client blocked count: $client"
echo "ok   blocked names -> 0.0.0.0 / :: (hosts, domain list, directory), counted per list and client"

# --- negative answers: NXDOMAIN and NODATA with the upstream's SOA, cached
out=$(cdig nx.example.test A +noall +comments +authority)
grep -q 'status: NXDOMAIN' <<<"$out" || fail "nx.example.test: $out"
grep -q 'SOA' <<<"$out" || fail "NXDOMAIN without SOA: $out"
out=$(ckdig nx2.example.test A)
grep -q 'status: NXDOMAIN' <<<"$out" || fail "kdig nx2.example.test: $out"
grep -q 'SOA' <<<"$out" || fail "kdig NXDOMAIN without SOA: $out"
out=$(ckdig www.example.test AAAA)
grep -q 'status: NOERROR' <<<"$out" || fail "www AAAA NODATA: $out"
echo "ok   NXDOMAIN and NODATA relayed with SOA (dig, kdig)"

# --- cache: upstream gone, cached answers still served with decremented TTLs
n_before=$(grep -c 'auth\[A\] www.example.test' "$WORK/dnsmasq.log")
sleep 2
kill "$DM_PID"
wait "$DM_PID" 2>/dev/null || true
DM_PID=
out=$(cdig www.example.test A +noall +answer)
grep -qE '^www\.example\.test\.\s+[0-9]+\s+IN\s+A\s+198\.51\.100\.7$' <<<"$out" || fail "cached www.example.test: $out"
ttl=$(awk '{print $2}' <<<"$out")
((ttl < 300 && ttl > 200)) || fail "cached TTL $ttl not decremented"
n_after=$(grep -c 'auth\[A\] www.example.test' "$WORK/dnsmasq.log")
((n_before == 1 && n_after == 1)) || fail "www.example.test asked upstream $n_after times"
echo "ok   www.example.test from cache with upstream down (TTL $ttl)"
out=$(cdig NX.example.test A +noall +comments +authority)
grep -q 'status: NXDOMAIN' <<<"$out" || fail "negative answer not cached: $out"
ttl=$(awk '/SOA/ {print $2}' <<<"$out")
((ttl < 300 && ttl > 200)) || fail "negative TTL $ttl"
out=$(ckdig www.example.test AAAA)
grep -q 'status: NOERROR' <<<"$out" || fail "NODATA not cached: $out"
[[ $(dns_counter negative_cache_hits) -ge 2 ]] || fail "negative cache hits not counted"
echo "ok   NXDOMAIN (SOA TTL $ttl) and NODATA served from cache with upstream down"

# --- nothing cached, nobody upstream: SERVFAIL, not silence
out=$(cdig nocache.example.test A +noall +comments)
grep -q 'status: SERVFAIL' <<<"$out" || fail "no upstream: $out"
echo "ok   SERVFAIL when no upstream answers"
kill -0 $GW_PID 2>/dev/null || fail "gatewayd died"
stop_gatewayd

# --- run 2: a resolver that sends forged replies first; blocklists in "nxdomain" mode
cat >"$WORK/gatehouse-2.toml" <<EOF
[lan]
interface = "lan0"
[dhcp]
enabled = false
[nat]
enabled = false
[ui]
port = 8080
[dns]
upstreams = ["10.53.0.3", "10.53.0.4"]
blocklists = [{ name = "ads", path = "$WORK/bl/ads.hosts" }]
block_mode = "nxdomain"
EOF
start_gatewayd 2
wait_dns
# kdig this time sees the failover from the dead 10.53.0.3.
t0=$(date +%s%N)
out=$(ckdig spoof.example.test A +short)
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $out == 198.51.100.77 ]] || fail "kdig spoof.example.test: got '$out', not the genuine 198.51.100.77"
((ms >= 1500)) || fail "kdig answer after ${ms} ms: 10.53.0.3 was not tried first?"
echo "ok   kdig: answer after failover from a dead upstream (${ms} ms)"
out=$(cdig spoof2.example.test A +short)
[[ $out == 198.51.100.77 ]] || fail "spoof2.example.test: '$out'"
grep -q 'udp query spoof.example.test' "$WORK/fake.log" || fail "fake resolver never asked"
n=$(dns_counter spoofed_rejected)
((n >= 2)) || fail "spoofed_rejected is $n, expected one per query (wrong ID)"
echo "ok   forged replies (wrong ID, wrong port) ignored, genuine one used; spoofed_rejected=$n"
out=$(cdig ads.example.test A +noall +comments)
grep -q 'status: NXDOMAIN' <<<"$out" || fail "nxdomain mode: $out"
grep -q 'ads.example.test' "$WORK/fake.log" && fail "blocked name forwarded"
echo "ok   block_mode nxdomain"
stop_gatewayd

# --- run 3: DNS over TLS. The first upstream's certificate does not match the
# configured name (verification must fail), the second does.
cat >"$WORK/gatehouse-3.toml" <<EOF
[lan]
interface = "lan0"
[dhcp]
enabled = false
[nat]
enabled = false
[ui]
port = 8080
[dns]
upstreams = ["10.53.0.2"]
tls_upstreams = [
  { address = "10.53.0.4", name = "wrong.test" },
  { address = "10.53.0.4", name = "dot.test", port = 853 },
]
tls_ca_file = "$WORK/ca.pem"
EOF
start_gatewayd 3
wait_dns
out=$(cdig tls.example.test A +short)
[[ $out == 198.51.100.99 ]] || fail "tls.example.test over DoT: '$out'"
grep -q 'tls query tls.example.test' "$WORK/fake.log" || fail "query did not arrive over TLS"
[[ $(dns_counter upstream_failures) -ge 1 ]] || fail "certificate for the wrong name was accepted"
out=$(ckdig tls2.example.test A +short)
[[ $out == 198.51.100.99 ]] || fail "tls2.example.test over DoT: '$out'"
conns=$(grep -c 'tls connection' "$WORK/fake.log")
((conns == 1)) || fail "$conns TLS connections for 2 queries: not reused"
grep -q 'udp query tls' "$WORK/fake.log" && fail "a query went out in clear text"
echo "ok   DNS over TLS with certificate verification (wrong name rejected, $conns connections)"
kill -0 $GW_PID 2>/dev/null || fail "gatewayd died"
echo "PASS dns"
