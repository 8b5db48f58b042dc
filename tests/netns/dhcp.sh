#!/usr/bin/env bash
# End-to-end test of gatewayd's DHCPv4 server, inside two network namespaces:
#
#   ghd-rtr [lan0 192.168.1.1/24, gatewayd] <--veth--> [eth0, DHCP clients] ghd-cli
#
# Checks: busybox udhcpc and ISC dhclient get leases from the pool, a static
# lease wins, and after `kill -9` + restart the lease file still holds the
# leases and a client gets its old address back.
#
# Builds nothing: uses $GATEWAYD, default <repo>/target/debug/gatewayd.
# KEEP_WORK=1 keeps the scratch directory (logs, lease file) for inspection.
# Run as root. Nothing outside the two namespaces is touched: the DHCP clients
# run in a private mount namespace with a scratch /etc/resolv.conf, and their
# hook scripts only write the address they got to a file.
set -euo pipefail

RTR=ghd-rtr
CLI=ghd-cli
MAC1=52:54:00:d7:00:01 # udhcpc, dynamic
MAC2=52:54:00:d7:00:02 # dhclient, static lease below
MAC3=52:54:00:d7:00:03 # udhcpc, dynamic (gets a non-first address)
STATIC_IP=192.168.1.50

fail() {
    echo "FAIL dhcp: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "must run as root"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && git rev-parse --show-toplevel)
GATEWAYD=${GATEWAYD:-$ROOT/target/debug/gatewayd}
[ -x "$GATEWAYD" ] || fail "no gatewayd at $GATEWAYD (cargo build -p gateway first)"
for t in ip busybox dhclient unshare jq timeout; do
    command -v "$t" >/dev/null || fail "missing tool: $t"
done

WORK=$(mktemp -d /tmp/ghd-dhcp.XXXXXX)
GW_PID=
GW_LOG=

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
    for ns in "$CLI" "$RTR"; do
        kill_ns_procs "$ns"
        ip netns del "$ns" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$rc" != 0 ]; then
        for f in "$WORK"/gatewayd-*.log "$WORK"/client-*.log; do
            [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }
        done >&2
        [ -f "$WORK/data/dhcp/leases.json" ] && { echo "--- leases.json"; cat "$WORK/data/dhcp/leases.json"; } >&2
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
for ns in "$CLI" "$RTR"; do
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
lease_secs = 600

[[dhcp.static_leases]]
mac = "$MAC2"
ip = "$STATIC_IP"
hostname = "static-box"
EOF

# Scratch resolv.conf bind-mounted over the real one for the clients.
echo "# ghd-dhcp test scratch" >"$WORK/resolv.conf"

# Hooks: record the address, nothing else (no routes, no resolv.conf). The
# result path is baked in because dhclient scrubs the environment.
RESULT="$WORK/result"
cat >"$WORK/udhcpc-hook.sh" <<EOF
#!/bin/sh
case "\$1" in
bound | renew) echo "\$ip" >"$RESULT" ;;
esac
exit 0
EOF
cat >"$WORK/dhclient-hook.sh" <<EOF
#!/bin/sh
case "\$reason" in
PREINIT) ip link set dev "\$interface" up ;;
BOUND | RENEW | REBIND | REBOOT) echo "\$new_ip_address" >"$RESULT" ;;
esac
exit 0
EOF
# For the renewal test: udhcpc renews by unicast from its address, so that
# address must exist on eth0 (inside ghd-cli only).
cat >"$WORK/udhcpc-renew-hook.sh" <<EOF
#!/bin/sh
case "\$1" in
deconfig) ip addr flush dev "\$interface" ;;
bound) ip addr replace "\$ip/\${mask:-24}" dev "\$interface" && echo "bound \$ip" >>"$RESULT" ;;
renew) echo "renew \$ip" >>"$RESULT" ;;
esac
exit 0
EOF
chmod +x "$WORK/udhcpc-hook.sh" "$WORK/dhclient-hook.sh" "$WORK/udhcpc-renew-hook.sh"

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

set_client_mac() {
    ip -n "$CLI" link set eth0 down
    ip -n "$CLI" link set eth0 address "$1"
    ip -n "$CLI" link set eth0 up
}

# Runs "$@" in the client netns, in a private mount namespace with the scratch
# resolv.conf bind-mounted over the real one.
in_client() {
    rm -f "$RESULT"
    ip netns exec "$CLI" unshare -m --propagation private \
        sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$WORK/resolv.conf" "$@"
}

udhcpc_lease() { # mac name -> prints address
    local mac=$1 name=$2
    set_client_mac "$mac"
    in_client timeout 30 busybox udhcpc -f -q -n -t 5 -T 1 -i eth0 \
        -x "hostname:$name" -s "$WORK/udhcpc-hook.sh" >>"$WORK/client-udhcpc.log" 2>&1 ||
        fail "udhcpc ($mac) got no lease"
    [ -s "$RESULT" ] || fail "udhcpc ($mac) hook recorded no address"
    cat "$RESULT"
}

dhclient_lease() { # mac -> prints address
    local mac=$1
    set_client_mac "$mac"
    in_client timeout 60 dhclient -1 -v -sf "$WORK/dhclient-hook.sh" \
        -lf "$WORK/dhclient.leases" -pf "$WORK/dhclient.pid" eth0 \
        >>"$WORK/client-dhclient.log" 2>&1 || fail "dhclient ($mac) got no lease"
    # dhclient daemonizes after binding; it must not linger.
    [ -s "$WORK/dhclient.pid" ] && kill "$(cat "$WORK/dhclient.pid")" 2>/dev/null || true
    [ -s "$RESULT" ] || fail "dhclient ($mac) hook recorded no address"
    cat "$RESULT"
}

in_pool() {
    local last=${1##*.}
    [[ $1 == 192.168.1.* ]] && [ "$last" -ge 100 ] && [ "$last" -le 249 ]
}

lease_in_file() { # mac ip
    jq -e --arg mac "$1" --arg ip "$2" \
        '.leases | map(select(.mac == $mac and .ip == $ip)) | length == 1' \
        "$WORK/data/dhcp/leases.json" >/dev/null
}

ip netns add "$RTR"
ip netns add "$CLI"
ip -n "$RTR" link set lo up
ip -n "$CLI" link set lo up

# Start before lan0 exists: at boot init may still be creating the bridge.
start_gatewayd 1
wait_log "lan0 not present yet"

ip -n "$RTR" link add lan0 type veth peer name eth0 netns "$CLI"
ip -n "$RTR" addr add 192.168.1.1/24 dev lan0
ip -n "$RTR" link set lan0 up
ip -n "$CLI" link set eth0 up
wait_log "dhcp: listening on lan0"

IP1=$(udhcpc_lease "$MAC1" bb-one)
in_pool "$IP1" || fail "udhcpc got $IP1, outside 192.168.1.100-249"
echo "udhcpc $MAC1 -> $IP1"

IP3=$(udhcpc_lease "$MAC3" bb-three)
in_pool "$IP3" || fail "udhcpc got $IP3, outside 192.168.1.100-249"
[ "$IP3" != "$IP1" ] || fail "two clients got the same address $IP1"
echo "udhcpc $MAC3 -> $IP3"

IP2=$(dhclient_lease "$MAC2")
[ "$IP2" = "$STATIC_IP" ] || fail "dhclient ($MAC2) got $IP2, static lease is $STATIC_IP"
echo "dhclient $MAC2 -> $IP2 (static)"

grep -q "dhcp: ACK $IP1 to $MAC1 (bb-one)" "$GW_LOG" || fail "no ACK log line for $IP1"

# Crash: the leases were written before the ACKs went out.
kill_gatewayd
for pair in "$MAC1 $IP1" "$MAC3 $IP3" "$MAC2 $IP2"; do
    # shellcheck disable=SC2086
    lease_in_file $pair || fail "lease $pair missing from leases.json after kill -9"
done
jq -e --arg mac "$MAC1" '.leases[] | select(.mac == $mac) | .hostname == "bb-one"' \
    "$WORK/data/dhcp/leases.json" >/dev/null || fail "hostname of $MAC1 not stored"

start_gatewayd 2
wait_log "dhcp: listening on lan0"

# MAC3 first: with the leases forgotten it would get the first pool address.
AGAIN3=$(udhcpc_lease "$MAC3" bb-three)
[ "$AGAIN3" = "$IP3" ] || fail "after restart $MAC3 got $AGAIN3, had $IP3"
AGAIN1=$(udhcpc_lease "$MAC1" bb-one)
[ "$AGAIN1" = "$IP1" ] || fail "after restart $MAC1 got $AGAIN1, had $IP1"
echo "after restart: $MAC3 -> $AGAIN3, $MAC1 -> $AGAIN1"

# RENEW (unicast REQUEST with ciaddr, unicast ACK back) and RELEASE on exit.
wait_result() {
    local i
    for i in $(seq 1 100); do
        grep -q "$1" "$RESULT" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "udhcpc never reported '$1'"
}
in_client busybox udhcpc -f -R -t 5 -T 1 -i eth0 -p "$WORK/udhcpc.pid" \
    -s "$WORK/udhcpc-renew-hook.sh" >>"$WORK/client-udhcpc.log" 2>&1 &
wait_result "bound $IP1"
acks_before=$(grep -c "dhcp: ACK $IP1 to $MAC1" "$GW_LOG")
kill -USR1 "$(cat "$WORK/udhcpc.pid")"
wait_result "renew $IP1"
[ "$(grep -c "dhcp: ACK $IP1 to $MAC1" "$GW_LOG")" -gt "$acks_before" ] || fail "renewal not ACKed"
kill -TERM "$(cat "$WORK/udhcpc.pid")"
wait
for i in $(seq 1 50); do
    grep -q "dhcp: RELEASE $IP1 from $MAC1" "$GW_LOG" && break
    sleep 0.1
done
grep -q "dhcp: RELEASE $IP1 from $MAC1" "$GW_LOG" || fail "no RELEASE of $IP1 logged"
ip -n "$CLI" addr flush dev eth0
echo "renew and release of $IP1 ok"

echo "PASS dhcp"
