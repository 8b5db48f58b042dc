#!/usr/bin/env bash
# End-to-end test of gatewayd's DHCPv4 server with real clients, inside network
# namespaces. gatewayd runs in ghd-rtr on the bridge lan0 (192.168.1.1/24);
# every other namespace hangs off that bridge by a veth pair:
#
#   ghd-c1  busybox udhcpc   dynamic                       (MAC1)
#   ghd-c2  ISC dhclient     static lease 192.168.1.50      (MAC2)
#   ghd-c3  dhcpcd           dynamic                       (MAC3)
#   ghd-c4  busybox udhcpc   asks for the static lease's name (MAC4)
#   ghd-c5  busybox udhcpc   asks for 192.168.1.150 as "twin" (MAC5)
#   ghd-c6  ISC dhclient     remembers 192.168.1.150, as "twin" (MAC6)
#   ghd-sq  a host squatting on 192.168.1.100 (no DHCP): the ping check must skip it
#   ghd-jk  192.168.1.20, sends malformed packets to port 67
#
# Checks: all three clients get a lease, renew it (same address), and receive
# the configured MTU, NTP and classless routes; the squatted address is never
# offered; the static lease and its name win; two clients asking for the same
# address at once get distinct addresses and distinct names; a lease ACKed
# just before `kill -9` of gatewayd is on disk; after a restart of server and
# clients every client has its address back (with the squatter gone, a server
# that forgot its leases would hand out .100 first); malformed packets are
# counted and the server keeps serving.
#
# Builds nothing: uses $GATEWAYD, default <repo>/target/debug/gatewayd.
# KEEP_WORK=1 keeps the scratch directory (logs, lease files) for inspection.
# Run as root. Nothing outside the namespaces is touched: each DHCP client runs
# in a private mount namespace with a scratch /etc/resolv.conf, a scratch
# /var/lib/dhcpcd and a private /run, and its hook only records what it got
# and sets the address inside its own namespace.
set -euo pipefail

RTR=ghd-rtr
CLIENTS=(ghd-c1 ghd-c2 ghd-c3 ghd-c4 ghd-c5 ghd-c6)
SQ=ghd-sq
JK=ghd-jk
ALL_NS=("${CLIENTS[@]}" "$SQ" "$JK" "$RTR")
declare -A MAC=(
    [ghd-c1]=52:54:00:d7:00:01 [ghd-c2]=52:54:00:d7:00:02 [ghd-c3]=52:54:00:d7:00:03
    [ghd-c4]=52:54:00:d7:00:04 [ghd-c5]=52:54:00:d7:00:05 [ghd-c6]=52:54:00:d7:00:06
    [ghd-sq]=52:54:00:d7:00:a0 [ghd-jk]=52:54:00:d7:00:a1
)
STATIC_IP=192.168.1.50
SQUAT_IP=192.168.1.100
WANT_IP=192.168.1.150

fail() {
    echo "FAIL dhcp: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "must run as root"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && git rev-parse --show-toplevel)
GATEWAYD=${GATEWAYD:-$ROOT/target/debug/gatewayd}
[ -x "$GATEWAYD" ] || fail "no gatewayd at $GATEWAYD (cargo build -p gateway first)"
for t in ip busybox dhclient dhcpcd unshare jq curl timeout python3; do
    command -v "$t" >/dev/null || fail "missing tool: $t (scripts/install-deps; dhcpcd is in dhcpcd-base)"
done
[ -d /var/lib/dhcpcd ] || fail "/var/lib/dhcpcd missing (package dhcpcd-base)"

WORK=$(mktemp -d /tmp/ghd-dhcp.XXXXXX)
GW_PID=
GW_LOG=
T0=$SECONDS

kill_ns_procs() {
    local ns=$1 pid
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
        kill -9 "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    set +e
    [ -n "$GW_PID" ] && kill -9 "$GW_PID" 2>/dev/null
    for ns in "${ALL_NS[@]}"; do
        kill_ns_procs "$ns"
        ip netns del "$ns" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$rc" != 0 ]; then
        for f in "$WORK"/gatewayd-*.log "$WORK"/*.out "$WORK"/client-*.log; do
            [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
        done >&2
        for f in "$WORK/data/dhcp/leases.json" "$WORK/data/dhcp/leases.journal"; do
            [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
        done >&2
    fi
    if [ -n "${KEEP_WORK:-}" ]; then
        echo "dhcp.sh: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT

# Leftovers of an interrupted earlier run of this test.
for ns in "${ALL_NS[@]}"; do
    if ip netns list | grep -qw "$ns"; then
        kill_ns_procs "$ns"
        ip netns del "$ns"
    fi
done

mkdir -p "$WORK/data" "$WORK/run"
cat >"$WORK/gatehouse.toml" <<EOF
[lan]
interface = "lan0"
address = "192.168.1.1"
prefix_len = 24

[nat]
enabled = false

[dns]
enabled = false

[ui]
port = 8080

[dhcp]
range_start = "192.168.1.100"
range_end = "192.168.1.249"
lease_secs = 120
# Renewals within the test's time.
renew_secs = 3
rebind_secs = 100
conflict_check_ms = 300
mtu = 1400
ntp_servers = ["192.168.1.1"]
routes = [{ destination = "10.8.0.0/16", gateway = "192.168.1.2" }]

[[dhcp.static_leases]]
mac = "${MAC[ghd-c2]}"
ip = "$STATIC_IP"
hostname = "static-box"
EOF

echo "# ghd-dhcp test scratch" >"$WORK/resolv.conf"

# --- hooks: record "bound|renew IP mtu=.. ntp=.. routes=..", set the address in the netns ---

hook_udhcpc() { # ns set|record
    local f="$WORK/hook-udhcpc-$1" out="$WORK/$1.out" set=$2
    cat >"$f" <<EOF
#!/bin/sh
case "\$1" in
deconfig) [ $set = set ] && ip addr flush dev "\$interface" ;;
bound | renew)
    [ $set = set ] && ip addr replace "\$ip/\${mask:-24}" dev "\$interface"
    echo "\$1 \$ip mtu=\$mtu ntp=\$ntpsrv routes=\$staticroutes" >>"$out" ;;
esac
exit 0
EOF
    chmod +x "$f"
    echo "$f"
}

hook_dhclient() { # ns set|record
    local f="$WORK/hook-dhclient-$1" out="$WORK/$1.out" set=$2
    cat >"$f" <<EOF
#!/bin/sh
case "\$reason" in
PREINIT) ip link set dev "\$interface" up ;;
BOUND | REBOOT | RENEW | REBIND)
    [ $set = set ] && ip addr replace "\$new_ip_address/\$new_subnet_mask" dev "\$interface"
    case "\$reason" in BOUND | REBOOT) r=bound ;; *) r=renew ;; esac
    echo "\$r \$new_ip_address mtu=\$new_interface_mtu ntp=\$new_ntp_servers routes=\$new_rfc3442_classless_static_routes" >>"$out" ;;
EXPIRE | FAIL | RELEASE | STOP) [ $set = set ] && ip addr flush dev "\$interface" ;;
esac
exit 0
EOF
    chmod +x "$f"
    echo "$f"
}

hook_dhcpcd() { # ns  (dhcpcd sets the address itself, inside the netns)
    local f="$WORK/hook-dhcpcd-$1" out="$WORK/$1.out"
    cat >"$f" <<EOF
#!/bin/sh
case "\$reason" in
BOUND | REBOOT) r=bound ;;
RENEW | REBIND) r=renew ;;
*) exit 0 ;;
esac
echo "\$r \$new_ip_address mtu=\$new_interface_mtu ntp=\$new_ntp_servers routes=\$new_classless_static_routes" >>"$out"
EOF
    chmod +x "$f"
    echo "$f"
}

dhclient_conf() { # ns hostname
    local f="$WORK/dhclient-$1.conf"
    {
        echo 'option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;'
        echo "send host-name \"$2\";"
        echo 'request subnet-mask, routers, domain-name-servers, domain-name, interface-mtu, ntp-servers, rfc3442-classless-static-routes;'
    } >"$f"
    echo "$f"
}

# A dhclient lease file remembering $2, as after a reboot: dhclient asks for it
# again (INIT-REBOOT, then DISCOVER with option 50 if that is refused).
dhclient_remember() { # ns ip
    cat >"$WORK/dhclient-$1.leases" <<EOF
lease {
  interface "eth0";
  fixed-address $2;
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 192.168.1.1;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
EOF
}

# Runs "$@" in netns $1, fenced: private mount namespace, scratch resolv.conf
# and /var/lib/dhcpcd, private /run.
fenced() {
    local ns=$1
    shift
    mkdir -p "$WORK/dhcpcd-$ns"
    ip netns exec "$ns" unshare -m --propagation private sh -c '
        mount --bind "$0" /etc/resolv.conf &&
        mount --bind "$1" /var/lib/dhcpcd &&
        mount -t tmpfs -o size=1m ghd-run /run && mkdir /run/dhcpcd &&
        shift && exec "$@"' "$WORK/resolv.conf" "$WORK/dhcpcd-$ns" "$@"
}

start_udhcpc() { # ns hostname set|record [extra args]: a daemon
    local ns=$1 name=$2 set=$3
    shift 3
    fenced "$ns" busybox udhcpc -f -t 10 -T 1 -i eth0 -p "$WORK/$ns.pid" -x "hostname:$name" \
        -O mtu -O ntpsrv -O staticroutes -s "$(hook_udhcpc "$ns" "$set")" "$@" \
        >>"$WORK/client-$ns.log" 2>&1 &
    disown $!
}

once_udhcpc() { # ns hostname [extra args]: one lease, then exit
    local ns=$1 name=$2
    shift 2
    fenced "$ns" timeout 30 busybox udhcpc -f -q -n -t 10 -T 1 -i eth0 -x "hostname:$name" \
        -s "$(hook_udhcpc "$ns" record)" "$@" >>"$WORK/client-$ns.log" 2>&1
}

start_dhclient() { # ns hostname set|record: a daemon (-d, in the background)
    local ns=$1 name=$2 set=$3
    fenced "$ns" dhclient -d -v -sf "$(hook_dhclient "$ns" "$set")" -cf "$(dhclient_conf "$ns" "$name")" \
        -lf "$WORK/dhclient-$ns.leases" -pf "$WORK/dhclient-$ns.pid" eth0 \
        >>"$WORK/client-$ns.log" 2>&1 &
    disown $!
}

start_dhcpcd() { # ns hostname: a daemon (-B, in the background)
    local ns=$1 name=$2
    fenced "$ns" dhcpcd -4 -B -f /dev/null -c "$(hook_dhcpcd "$ns")" -h "$name" \
        -o interface_mtu -o ntp_servers -o classless_static_routes --noipv4ll -t 30 eth0 \
        >>"$WORK/client-$ns.log" 2>&1 &
    disown $!
}

# Waits for a "$2" line (bound|renew) in ns $1's record; prints the address.
wait_record() { # ns kind [timeout-seconds]
    local f="$WORK/$1.out" i n=$((${3:-20} * 10))
    for ((i = 0; i < n; i++)); do
        if grep -q "^$2 " "$f" 2>/dev/null; then
            grep "^$2 " "$f" | tail -n 1 | cut -d' ' -f2
            return 0
        fi
        sleep 0.1
    done
    fail "$1: no '$2' from its DHCP client within ${3:-20}s"
}

stop_clients() { # ns...: kill -9, as a crash or power cut would (no RELEASE)
    local ns
    for ns in "$@"; do
        kill_ns_procs "$ns"
        ip -n "$ns" addr flush dev eth0
        ip -n "$ns" route flush dev eth0 2>/dev/null || true
        rm -f "$WORK/$ns.out"
    done
}

start_gatewayd() {
    GW_LOG="$WORK/gatewayd-$1.log"
    ip netns exec "$RTR" "$GATEWAYD" --config "$WORK/gatehouse.toml" \
        --data-dir "$WORK/data" --run-dir "$WORK/run" --no-wan-client \
        >"$GW_LOG" 2>&1 &
    GW_PID=$!
    # No "Killed" job report from bash when the test kill -9s it.
    disown "$GW_PID"
}

kill_gatewayd() {
    kill -9 "$GW_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$GW_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$GW_PID" 2>/dev/null && fail "gatewayd $GW_PID survived kill -9"
    GW_PID=
}

wait_log() {
    local pattern=$1 i
    for i in $(seq 1 100); do
        grep -q "$pattern" "$GW_LOG" 2>/dev/null && return 0
        kill -0 "$GW_PID" 2>/dev/null || fail "gatewayd exited (waiting for '$pattern')"
        sleep 0.1
    done
    fail "timed out waiting for '$pattern' in $GW_LOG"
}

# shellcheck source=lib/ui.sh
. "$ROOT/tests/netns/lib/ui.sh"
api() { # jq filter over /api/status
    ui_get "$RTR" http://192.168.1.1:8080 "$WORK/cookies" /api/status | jq -r "$1"
}

in_pool() {
    local last=${1##*.}
    [[ $1 == 192.168.1.* ]] && [ "$last" -ge 100 ] && [ "$last" -le 249 ]
}

# Leases on disk, snapshot then journal replayed in order (what a restart sees).
disk_leases() {
    local d="$WORK/data/dhcp"
    jq -c '.leases[]' "$d/leases.json"
    # The journal counts only when its generation matches the snapshot's.
    if [ "$(head -n1 "$d/leases.journal" | jq .gen)" = "$(jq .journal_gen "$d/leases.json")" ]; then
        tail -n +2 "$d/leases.journal" | jq -c 'if .put then .put else {del: .del} end'
    fi
}

on_disk() { # mac ip [hostname]: the last word on disk for that address is this lease
    disk_leases | jq -s -e --arg mac "$1" --arg ip "$2" --arg name "${3:-}" '
        map(select(.ip == $ip or .del == $ip)) | last
        | .mac == $mac and ($name == "" or .hostname == $name)' >/dev/null
}

# --- the lab ---

for ns in "${ALL_NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done

# Start before lan0 exists: at boot init may still be creating the bridge.
start_gatewayd 1
wait_log "lan0 not present yet"

ip -n "$RTR" link add lan0 type bridge
ip -n "$RTR" addr add 192.168.1.1/24 dev lan0
ip -n "$RTR" link set lan0 up
n=0
for ns in "${CLIENTS[@]}" "$SQ" "$JK"; do
    n=$((n + 1))
    ip -n "$RTR" link add "p$n" type veth peer name eth0 netns "$ns"
    ip -n "$RTR" link set "p$n" master lan0 up
    ip -n "$ns" link set eth0 address "${MAC[$ns]}"
    ip -n "$ns" link set eth0 up
done
ip -n "$SQ" addr add "$SQUAT_IP/24" dev eth0
ip -n "$JK" addr add 192.168.1.20/24 dev eth0
wait_log "dhcp: listening on lan0"

# --- 1. three real clients: lease, options, renewal; the squatter is skipped ---

start_udhcpc ghd-c1 bb-one set
start_dhclient ghd-c2 dh-two set
start_dhcpcd ghd-c3 dc-three

IP1=$(wait_record ghd-c1 bound)
IP2=$(wait_record ghd-c2 bound)
IP3=$(wait_record ghd-c3 bound)
echo "udhcpc -> $IP1, dhclient -> $IP2 (static), dhcpcd -> $IP3"
[ "$IP2" = "$STATIC_IP" ] || fail "dhclient (static lease) got $IP2, not $STATIC_IP"
for ip in "$IP1" "$IP3"; do
    in_pool "$ip" || fail "$ip is outside 192.168.1.100-249"
    [ "$ip" != "$SQUAT_IP" ] || fail "$SQUAT_IP, in use by another host, was offered"
done
[ "$IP1" != "$IP3" ] || fail "udhcpc and dhcpcd both got $IP1"
grep -q "dhcp: $SQUAT_IP answered a ping" "$GW_LOG" || fail "no conflict logged for $SQUAT_IP"
[ "$(api .dhcp.conflicts)" -ge 1 ] || fail "conflict counter not raised"

# Options: MTU 26, NTP 42, classless routes 121 (with the default route added).
grep -q "^bound $IP1 mtu=1400 ntp=192.168.1.1 routes=10.8.0.0/16 192.168.1.2 0.0.0.0/0 192.168.1.1" \
    "$WORK/ghd-c1.out" || fail "udhcpc options: $(head -n1 "$WORK/ghd-c1.out")"
grep -q "^bound $IP2 mtu=1400 ntp=192.168.1.1 routes=16 10 8 192 168 1 2 0 192 168 1 1" \
    "$WORK/ghd-c2.out" || fail "dhclient options: $(head -n1 "$WORK/ghd-c2.out")"
grep -q "^bound $IP3 mtu=1400 ntp=192.168.1.1 routes=10.8.0.0/16 192.168.1.2 0.0.0.0/0 192.168.1.1" \
    "$WORK/ghd-c3.out" || fail "dhcpcd options: $(head -n1 "$WORK/ghd-c3.out")"
for i in $(seq 1 30); do
    ip -n ghd-c3 route | grep -q "10.8.0.0/16 via 192.168.1.2" && break
    [ "$i" = 30 ] && fail "dhcpcd did not install the classless route"
    sleep 0.1
done

# Renewals (T1 is 3 s; udhcpc ignores T1, so it is poked with SIGUSR1).
sleep 1
kill -USR1 "$(cat "$WORK/ghd-c1.pid")"
for pair in "ghd-c1 $IP1" "ghd-c2 $IP2" "ghd-c3 $IP3"; do
    set -- $pair
    got=$(wait_record "$1" renew 15)
    [ "$got" = "$2" ] || fail "$1 renewed to $got, had $2"
done
echo "renewals ok ($((SECONDS - T0))s)"

# --- 2. two clients ask for the same address at once ---

# udhcpc asks first (DISCOVER with option 50); while .150 is held for it,
# dhclient asks for it too (INIT-REBOOT REQUEST): it must be refused and get
# another address.
dhclient_remember ghd-c6 "$WANT_IP"
once_udhcpc ghd-c5 twin -r "$WANT_IP" &
udhcpc5=$!
wait_log "checking $WANT_IP for ${MAC[ghd-c5]}"
start_dhclient ghd-c6 twin record
wait "$udhcpc5" || fail "udhcpc asking for $WANT_IP got no lease"
IP5=$(wait_record ghd-c5 bound)
IP6=$(wait_record ghd-c6 bound)
kill_ns_procs ghd-c6
echo "both asked for $WANT_IP: udhcpc -> $IP5, dhclient -> $IP6"
[ "$IP5" != "$IP6" ] || fail "two clients were given the same address $IP5"
[ "$IP5" = "$WANT_IP" ] || fail "udhcpc asked first for $WANT_IP but got $IP5"
grep -q "NAK to ${MAC[ghd-c6]}: $WANT_IP is not available" "$GW_LOG" || fail "dhclient's INIT-REBOOT for $WANT_IP was not refused"
names=$(api "[.leases[] | select(.ip == \"$IP5\" or .ip == \"$IP6\") | .hostname] | sort | join(\",\")")
[ "$names" = "twin,twin-2" ] || fail "same hostname twice should give twin and twin-2, got '$names'"

# --- 3. a dynamic client asking for the static lease's name; kill -9 right after its ACK ---

once_udhcpc ghd-c4 static-box || fail "udhcpc (ghd-c4) got no lease"
kill_gatewayd
IP4=$(wait_record ghd-c4 bound 1)
on_disk "${MAC[ghd-c4]}" "$IP4" static-box-2 ||
    fail "lease $IP4 (ACKed just before kill -9) is not on disk as static-box-2"
on_disk "${MAC[ghd-c1]}" "$IP1" bb-one || fail "lease $IP1 missing on disk after kill -9"
on_disk "${MAC[ghd-c2]}" "$IP2" static-box || fail "static lease $IP2 missing on disk"
on_disk "${MAC[ghd-c3]}" "$IP3" dc-three || fail "lease $IP3 missing on disk after kill -9"
echo "kill -9 right after the ACK: $IP4 (static-box-2) was on disk"

# --- 4. restart of server and clients: same addresses ---

stop_clients ghd-c1 ghd-c2 ghd-c3
# With the squatter gone, a server that lost its leases would offer .100 first.
ip -n "$SQ" addr flush dev eth0
start_gatewayd 2
wait_log "dhcp: listening on lan0"
for pair in "${MAC[ghd-c1]} $IP1" "${MAC[ghd-c3]} $IP3" "${MAC[ghd-c4]} $IP4" "${MAC[ghd-c5]} $IP5"; do
    # shellcheck disable=SC2086
    set -- $pair
    jq -e --arg mac "$1" --arg ip "$2" '.leases | any(.mac == $mac and .ip == $ip)' \
        "$WORK/data/dhcp/leases.json" >/dev/null || fail "after restart, leases.json lacks $2 ($1)"
done
start_udhcpc ghd-c1 bb-one set
start_dhclient ghd-c2 dh-two set
start_dhcpcd ghd-c3 dc-three
for pair in "ghd-c1 $IP1" "ghd-c2 $IP2" "ghd-c3 $IP3"; do
    set -- $pair
    got=$(wait_record "$1" bound)
    [ "$got" = "$2" ] || fail "after restarting server and client, $1 got $got, had $2"
done
echo "after restart: udhcpc -> $IP1, dhclient -> $IP2, dhcpcd -> $IP3 ($((SECONDS - T0))s)"

# --- 5. malformed packets are counted; the server keeps serving ---

before=$(api .dhcp.malformed)
ip netns exec "$JK" python3 - <<'EOF'
import os, random, socket
random.seed(67)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
def header(op=1, htype=1, hlen=6, cookie=b"\x63\x82\x53\x63"):
    h = bytearray(236)
    h[0], h[1], h[2] = op, htype, hlen
    h[28:34] = os.urandom(6)
    return bytes(h) + cookie
bad = []
for _ in range(20):
    bad.append(os.urandom(random.randrange(0, 240)))                  # too short
    bad.append(header(op=2) + b"\x35\x01\x01\xff")                     # a reply
    bad.append(header(htype=6) + b"\x35\x01\x01\xff")                  # not Ethernet
    bad.append(header(hlen=200) + b"\x35\x01\x01\xff")                 # absurd hlen
    bad.append(header(cookie=os.urandom(4)) + b"\x35\x01\x01\xff")     # bad cookie
    bad.append(header() + b"\x35\x01\x01\x0c\xf0ab")                  # option runs off the end
    bad.append(header() + b"\x0c\x03abc\xff")                          # no message type
for i, p in enumerate(bad):
    s.sendto(p, ("192.168.1.1" if i % 2 else "255.255.255.255", 67))
# Plus random mutations of a valid DISCOVER (some may well be valid).
disc = header() + b"\x35\x01\x01\x37\x03\x01\x03\x06\xff"
for _ in range(300):
    p = bytearray(disc)
    for _ in range(random.randrange(1, 8)):
        p[random.randrange(len(p))] = random.randrange(256)
    s.sendto(bytes(p[: random.randrange(len(p) + 1)]), ("192.168.1.1", 67))

EOF
sleep 0.5
after=$(api .dhcp.malformed)
[ $((after - before)) -ge 140 ] || fail "malformed counter rose by $((after - before)), expected >= 140"
kill -0 "$GW_PID" 2>/dev/null || fail "gatewayd died on malformed packets"
rm -f "$WORK/ghd-c4.out"
once_udhcpc ghd-c4 static-box || fail "no lease after the malformed packets"
got=$(wait_record ghd-c4 bound 1)
[ "$got" = "$IP4" ] || fail "after the malformed packets ghd-c4 got $got, had $IP4"
echo "malformed packets: $((after - before)) counted, server still serving"

echo "dhcp.sh: $((SECONDS - T0))s"
echo "PASS dhcp"
