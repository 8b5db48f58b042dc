#!/usr/bin/env bash
# End-to-end test of gatewayd's NAPT datapath: lan client -> router (gatewayd) -> wan host,
# each in its own network namespace. Needs root, socat, iperf3, curl, python3, nft, iptables-nft.
#
#   ghn-lan  lan-c 192.168.1.10/24 ── lan0 192.168.1.1/24  ghn-rtr  wan0 203.0.113.2/24 ── wan-h 203.0.113.1/24  ghn-wan
#
# The wan host has no route back to 192.168.1.0/24, and counts (netdev ingress, before
# anything else) every packet arriving with a LAN source address: any such packet is a leak.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "nat.sh: must run as root" >&2; exit 1; }
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
GATEWAYD=${GATEWAYD:-$ROOT/target/debug/gatewayd}
[ -x "$GATEWAYD" ] || { echo "nat.sh: $GATEWAYD not built (cargo build -p gateway)" >&2; exit 1; }
for t in socat iperf3 curl python3 nft iptables-nft ping; do
    command -v "$t" >/dev/null || { echo "nat.sh: missing tool $t" >&2; exit 1; }
done

LAN=ghn-lan RTR=ghn-rtr WAN=ghn-wan
WORK=$(mktemp -d /tmp/ghn-nat.XXXXXX)
# Background processes are started with `ip netns exec ... &` (never via a shell function),
# so these are the real pids and teardown kills exactly what the test started.
PIDS=()
GW_PID=

cleanup() {
    local rc=$?
    set +e
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    for ns in $LAN $RTR $WAN; do ip netns del "$ns" 2>/dev/null; done
    if [ "$rc" != 0 ]; then
        echo "---- gatewayd log ----" >&2
        cat "$WORK"/gatewayd*.log >&2 2>/dev/null
        echo "FAIL nat (rc=$rc)" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# Waits up to $1 tenths of a second for the command to succeed.
wait_for() {
    local n=$1; shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
# Packets the wan host received with a LAN source address.
leaked() { inns $WAN nft list chain netdev mon in | awk '/192.168.1.0\/24/ {for (i=1;i<=NF;i++) if ($i=="packets") print $(i+1)}'; }
dport_count() { inns $WAN nft list chain netdev mon in | awk -v p="dport $1" '$0 ~ p {for (i=1;i<=NF;i++) if ($i=="packets") print $(i+1)}'; }

# ---- topology ----
for ns in $LAN $RTR $WAN; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    inns "$ns" ip link set lo up
done
ip link add lan-c netns $LAN type veth peer name lan0 netns $RTR
ip link add wan0 netns $RTR type veth peer name wan-h netns $WAN
inns $LAN ip addr add 192.168.1.10/24 dev lan-c
inns $LAN ip link set lan-c up
inns $LAN ip route add default via 192.168.1.1
inns $RTR ip addr add 192.168.1.1/24 dev lan0
inns $RTR ip addr add 203.0.113.2/24 dev wan0
inns $RTR ip link set lan0 up
inns $RTR ip link set wan0 up
inns $RTR ip route add default via 203.0.113.1
inns $WAN ip addr add 203.0.113.1/24 dev wan-h
inns $WAN ip link set wan-h up

inns $WAN nft -f - <<'EOF'
table netdev mon {
	chain in {
		type filter hook ingress device "wan-h" priority 0; policy accept;
		ip saddr 192.168.1.0/24 counter
		udp dport 9001 counter
	}
}
EOF

cat >"$WORK/gatehouse.toml" <<'EOF'
[lan]
interface = "lan0"
[wan]
interface = "wan0"
[dhcp]
enabled = false
[dns]
enabled = false
[ui]
port = 8080
EOF

start_gatewayd() {
    local log=$WORK/gatewayd.$1.log
    # `ip netns exec` directly (not the inns function), so $! is gatewayd's own pid.
    ip netns exec $RTR "$GATEWAYD" --config "$WORK/gatehouse.toml" --data-dir "$WORK/data" \
        --run-dir "$WORK/run" --no-wan-client >"$log" 2>&1 &
    GW_PID=$!
    wait_for 100 grep -q "nat: queue" "$log" || fail "gatewayd did not install the NAT ($log)"
    wait_for 50 grep -q "WAN address 203.0.113.2" "$log" || fail "gatewayd did not find the WAN address"
}

# ---- servers on the wan host ----
mkdir -p "$WORK/www" "$WORK/data" "$WORK/run"
echo "hello from wan" >"$WORK/www/hello.txt"
ip netns exec $WAN python3 -m http.server 8000 --bind 203.0.113.1 --directory "$WORK/www" \
    >"$WORK/http.log" 2>&1 &
PIDS+=($!)
# UDP echo that records each datagram's source address:port.
ip netns exec $WAN socat UDP4-RECVFROM:9000,bind=203.0.113.1,fork \
    SYSTEM:'echo "$SOCAT_PEERADDR:$SOCAT_PEERPORT" >>'"$WORK/udp-peers"'; cat' >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec $WAN socat -u UDP4-RECV:9001,bind=203.0.113.1 OPEN:"$WORK/udp-9001",creat,append \
    >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec $WAN iperf3 -s -B 203.0.113.1 -p 5201 >"$WORK/iperf-server.log" 2>&1 &
PIDS+=($!)
wait_for 50 sh -c "ip netns exec $WAN ss -ltn | grep -q ':8000 '" || fail "http server did not start"
wait_for 50 sh -c "ip netns exec $WAN ss -ltn | grep -q ':5201 '" || fail "iperf3 server did not start"

start_gatewayd 1

# ---- TCP ----
body=$(inns $LAN curl -sS --max-time 10 http://203.0.113.1:8000/hello.txt)
[ "$body" = "hello from wan" ] || fail "TCP: got '$body'"
grep -q '^203\.0\.113\.2 .*GET /hello.txt' "$WORK/http.log" || fail "TCP: server did not see 203.0.113.2: $(cat "$WORK/http.log")"
! grep -q '192\.168\.1\.' "$WORK/http.log" || fail "TCP: server saw a LAN address"
echo "ok   TCP through NAT, server saw 203.0.113.2"

# ---- UDP ----
# UDP may be lost on a busy test host: up to three tries.
for _ in 1 2 3; do
    reply=$(echo ping-udp | inns $LAN socat -t 3 - UDP4:203.0.113.1:9000,sourceport=40000 2>/dev/null || true)
    [ -z "$reply" ] || break
done
[ "$reply" = "ping-udp" ] || fail "UDP: got '$reply'"
grep -qx '203.0.113.2:40000' "$WORK/udp-peers" || fail "UDP: peers were $(cat "$WORK/udp-peers")"
echo "ok   UDP echo through NAT, source 203.0.113.2:40000 (port preserved)"

# ---- ICMP ----
inns $LAN ping -c 3 -i 0.2 -W 2 203.0.113.1 >/dev/null || fail "ping"
echo "ok   ping through NAT"

# ---- throughput ----
inns $LAN iperf3 -c 203.0.113.1 -p 5201 -t 5 -J >"$WORK/iperf.json" || fail "iperf3 client: $(tail -5 "$WORK/iperf.json")"
bps=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' "$WORK/iperf.json")
[ "$bps" -gt 0 ] || fail "iperf3: no throughput"
echo "ok   iperf3 TCP upload 5 s: $((bps / 1000000)) Mbit/s"
inns $LAN iperf3 -c 203.0.113.1 -p 5201 -t 3 -R -J >"$WORK/iperf-r.json" || fail "iperf3 -R: $(tail -5 "$WORK/iperf-r.json")"
bps=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' "$WORK/iperf-r.json")
[ "$bps" -gt 0 ] || fail "iperf3 -R: no throughput"
echo "ok   iperf3 TCP download 3 s: $((bps / 1000000)) Mbit/s"

[ "$(leaked)" = 0 ] || fail "LAN-sourced packets reached the wan host: $(leaked)"
echo "ok   no LAN-sourced packet reached the wan"

# ---- unsolicited inbound is dropped ----
ip netns exec $LAN socat -u UDP4-RECV:5555 OPEN:"$WORK/lan-5555",creat,append >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.3
echo unsolicited | inns $WAN socat -u - UDP4-SENDTO:203.0.113.2:5555
sleep 0.5
[ ! -s "$WORK/lan-5555" ] || fail "unsolicited inbound UDP reached the LAN"
echo "ok   unsolicited inbound dropped"

# ---- gatewayd killed: nothing leaks ----
rules_before=$(inns $RTR nft list table inet gatehouse | grep -cE 'notrack|queue|accept')
ipt_before=$(inns $RTR iptables-nft-save -t mangle | grep -cE 'GATEHOUSE|NFQUEUE' || true)
kill -9 "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
GW_PID=
echo leak-probe | inns $LAN socat -u - UDP4-SENDTO:203.0.113.1:9001,sourceport=40001
inns $LAN curl -sS --max-time 2 http://203.0.113.1:8000/hello.txt >/dev/null 2>&1 && fail "TCP worked with gatewayd dead"
inns $LAN ping -c 2 -i 0.2 -W 1 203.0.113.1 >/dev/null 2>&1 && fail "ping worked with gatewayd dead"
sleep 0.5
[ "$(leaked)" = 0 ] || fail "with gatewayd dead, LAN packets leaked to the wan: $(leaked)"
[ "$(dport_count 9001)" = 0 ] || fail "with gatewayd dead, a UDP packet reached the wan"
[ ! -s "$WORK/udp-9001" ] || fail "with gatewayd dead, the wan listener received data"
echo "ok   gatewayd killed: traffic stops, nothing leaks"

# ---- restart: same rules, no duplicates, traffic flows again ----
start_gatewayd 2
[ "$(inns $RTR nft list tables | grep -c 'inet gatehouse')" = 1 ] || fail "duplicate gatehouse tables"
rules_after=$(inns $RTR nft list table inet gatehouse | grep -cE 'notrack|queue|accept')
ipt_after=$(inns $RTR iptables-nft-save -t mangle | grep -cE 'GATEHOUSE|NFQUEUE' || true)
[ "$rules_before" = "$rules_after" ] || fail "nft rules $rules_before before restart, $rules_after after"
[ "$ipt_before" = "$ipt_after" ] || fail "iptables rules $ipt_before before restart, $ipt_after after"
body=$(inns $LAN curl -sS --max-time 10 http://203.0.113.1:8000/hello.txt)
[ "$body" = "hello from wan" ] || fail "TCP after restart: got '$body'"
[ "$(leaked)" = 0 ] || fail "LAN-sourced packets reached the wan: $(leaked)"
echo "ok   restart: $rules_after nft rules, $ipt_after iptables lines, unchanged; traffic flows"

echo "PASS nat"
