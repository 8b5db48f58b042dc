#!/usr/bin/env bash
# A gatewayd killed outright (SIGKILL) with a DHCP WAN: the restarted one keeps the WAN lease
# the dead one had. Its WAN address never leaves the interface, the dead one's udhcpc does not
# linger beside the new one, the new udhcpc asks for the same address again, and LAN traffic
# through the NAT carries on.
#
#   ghy-lan 192.168.1.10 ── ghy-rtr (gatewayd, udhcpc on ghy-w) ── ghy-wan dnsmasq DHCP 203.0.113.1
set -euo pipefail
TEST=wan-dhcp-restart
LAB_PREFIX=ghy
source "$(dirname "$0")/lib/nat-lab.sh"
need dnsmasq busybox ping

# The WAN address comes from DHCP here, not from the lab.
inns $RTR ip addr flush dev $P-w
inns $RTR ip route flush default 2>/dev/null || true
ip netns exec $WAN dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --port=0 \
    --pid-file= --bind-interfaces --interface=$P-h --dhcp-range=203.0.113.50,203.0.113.59,255.255.255.0,1h \
    --dhcp-option=3,203.0.113.1 --dhcp-leasefile="$WORK/wan.leases" >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
write_config </dev/null

start() { # name
    ip netns exec $RTR "$GATEWAYD" --config "$WORK/gatehouse.toml" --data-dir "$WORK/data" \
        --run-dir "$WORK/run" >"$WORK/gatewayd.$1.log" 2>&1 &
    GW_PID=$!
}
udhcpc_pids() { ip netns pids $RTR | while read -r p; do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = busybox ] && grep -qa udhcpc /proc/"$p"/cmdline && echo "$p"
done; true; }

start 1
wait_for 200 grep -q "wan: $P-w bound" "$WORK/gatewayd.1.log" || fail "no WAN lease"
addr=$(grep -o "bound 203\.0\.113\.[0-9]*" "$WORK/gatewayd.1.log" | head -1 | cut -d' ' -f2)
wait_for 100 grep -q "nat: queue" "$WORK/gatewayd.1.log" || fail "NAT not up"
wait_for 50 grep -q "nat: WAN address $addr" "$WORK/gatewayd.1.log" || fail "the NAT did not take $addr"
inns $LAN ping -c 1 -W 2 203.0.113.1 >/dev/null || fail "no NAT through the DHCP WAN"
echo "ok   first start: WAN lease $addr, NAT up"

# Every address removal on the WAN from now on is recorded.
ip netns exec $RTR ip -4 monitor address >"$WORK/monitor" 2>&1 &
PIDS+=($!)
ip netns exec $LAN ping -i 0.05 -w 8 203.0.113.1 >"$WORK/ping" 2>&1 &
PING=$!
PIDS+=($PING)
sleep 2
old=$(udhcpc_pids)
[ -n "$old" ] || fail "no udhcpc running"
kill -9 "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
start 2
wait_for 100 grep -q "wan: keeping $addr" "$WORK/gatewayd.2.log" ||
    fail "the restarted gatewayd did not keep $addr: $(head -20 "$WORK/gatewayd.2.log")"
wait_for 100 grep -q "wan: $P-w bound $addr" "$WORK/gatewayd.2.log" ||
    fail "no lease for $addr again: $(cat "$WORK/gatewayd.2.log")"
echo "ok   restart: asked for $addr again and got it"

wait_for 30 sh -c "! kill -0 $old 2>/dev/null" || fail "the dead gatewayd's udhcpc ($old) still runs"
n=$(udhcpc_pids | wc -l)
[ "$n" = 1 ] || fail "$n udhcpc processes on the WAN, want 1"
echo "ok   the old udhcpc died with its gatewayd; one client on the WAN"

if grep -q "^Deleted" "$WORK/monitor"; then
    fail "the WAN address was removed during the restart: $(cat "$WORK/monitor")"
fi
inns $RTR ip -4 addr show dev $P-w | grep -q "inet $addr/24" || fail "WAN address gone"
echo "ok   $addr never left the WAN interface"

wait "$PING" || true
sent=$(grep -o '[0-9]* packets transmitted' "$WORK/ping" | cut -d' ' -f1)
got=$(grep -o '[0-9]* received' "$WORK/ping" | cut -d' ' -f1)
[ -n "$got" ] && [ "$got" -gt 0 ] || fail "no ping answers: $(tail -3 "$WORK/ping")"
# 20 pings a second for 8 s: a stall over 1 s would lose more than 20.
[ $((sent - got)) -le 20 ] || fail "lost $((sent - got)) of $sent pings across the restart"
echo "ok   pings through the NAT across the restart: $got of $sent answered"
echo "PASS $TEST"
