#!/usr/bin/env bash
# NAT filtering modes (RFC 4787 REQ-8) with a STUN-style reflector: the wan host answers on two
# addresses and two ports, from the socket asked for, and the LAN client records which answers
# get back in. Also checks endpoint-independent mapping: one outside port towards both addresses.
set -euo pipefail
TEST=nat-filtering
source "$(dirname "$0")/lib/nat-lab.sh"

inns $WAN ip addr add 203.0.113.3/24 dev ghf-h
ip netns exec $WAN python3 "$LIB/udp-reflector.py" 203.0.113.1 203.0.113.3 3478 3479 \
    >"$WORK/reflector.log" 2>&1 &
PIDS+=($!)
wait_for 50 grep -q ready "$WORK/reflector.log" || fail "reflector did not start"

# mode, then the expected answers: port addr both after-a2-both after-a2-addr
check_mode() {
    local mode=$1 want="$2"
    write_config <<EOF2
[nat]
filtering = "$mode"
EOF2
    start_gatewayd "$mode"
    grep -q "filtering $3" "$GW_LOG" || fail "$mode: gatewayd did not report filtering $3"
    inns $LAN python3 "$LIB/stun-probe.py" 40000 203.0.113.1 203.0.113.3 3478 3479 \
        >"$WORK/probe.$mode" || fail "$mode: probe failed: $(cat "$WORK/probe.$mode")"
    local m1 m2 got
    m1=$(awk '$1=="mapped-1" {print $2}' "$WORK/probe.$mode")
    m2=$(awk '$1=="mapped-2" {print $2}' "$WORK/probe.$mode")
    [ "$m1" = 203.0.113.2:40000 ] || fail "$mode: mapped address $m1, want 203.0.113.2:40000"
    [ "$m1" = "$m2" ] || fail "$mode: mapping not endpoint-independent: $m1 vs $m2"
    got=$(awk '$1 ~ /^(port|addr|both|after-a2-both|after-a2-addr)$/ {printf "%s ", $2}' "$WORK/probe.$mode")
    [ "$got" = "$want " ] || fail "$mode: answers admitted (port addr both after-a2-both after-a2-addr) were '$got', want '$want'"
    ! grep -q '192\.168\.1\.' "$WORK/reflector.log" || fail "$mode: the reflector saw a LAN address"
    stop_gatewayd
    # Each mode starts from an empty table, as after a reboot: gatewayd keeps its mappings
    # across restarts (tests/netns/nat-crash.sh), and the remotes the last mode saw would
    # otherwise be admitted here.
    rm -f "$WORK/run/nat-mappings"
    echo "ok   $mode: mapping $m1 towards both addresses; admitted: $got"
}

check_mode endpoint-independent "yes yes yes yes yes" EndpointIndependent
check_mode address-dependent "yes no no yes yes" AddressDependent
check_mode address-and-port-dependent "no no no no yes" AddressAndPortDependent

# ---- a filtering change applies live on SIGHUP, to the mapping table in use ----
write_config <<EOF
[nat]
filtering = "endpoint-independent"
EOF
start_gatewayd live
write_config <<EOF
[nat]
filtering = "address-and-port-dependent"
EOF
kill -HUP "$GW_PID"
wait_for 50 grep -q "filtering now AddressAndPortDependent" "$GW_LOG" ||
    fail "SIGHUP did not change the filtering: $(tail -5 "$GW_LOG")"
inns $LAN python3 "$LIB/stun-probe.py" 40000 203.0.113.1 203.0.113.3 3478 3479 \
    >"$WORK/probe.live" || fail "live: probe failed: $(cat "$WORK/probe.live")"
got=$(awk '$1 ~ /^(port|addr|both|after-a2-both|after-a2-addr)$/ {printf "%s ", $2}' "$WORK/probe.live")
[ "$got" = "no no no no yes " ] || fail "after SIGHUP to address-and-port-dependent, admitted: '$got'"
stop_gatewayd
echo "ok   SIGHUP switched endpoint-independent to address-and-port-dependent live; admitted: $got"
echo "PASS $TEST"
