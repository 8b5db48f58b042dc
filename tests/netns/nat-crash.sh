#!/usr/bin/env bash
# A crash loses no flows. gatewayd is killed (SIGKILL) in the middle of an iperf3 upload and
# started again at once with the same command line, as its supervisor would; the mapping
# table it keeps in the run dir brings every mapping back before the queue is bound.
#
# TCP: iperf3 ends well (no reset), and its longest stall, counted by the receiving wan host
# in 0.1 s intervals, is under 1 s. Its data connection's inside port is taken by another
# host first, so it is mapped to another outside port: a gatewayd that forgot the mapping
# would give it its own port back, and the wan would answer with a reset. Nothing with a LAN source reaches the wan meanwhile
# (netdev ingress counter on the wan host), and gatewayd reports restored mappings.
# UDP, address-dependent filtering: a mapping that could not keep its inside port keeps the
# outside port it was given, and after the restart its peer's address still gets in while a
# stranger does not, with nothing sent from inside in between.
set -euo pipefail
TEST=nat-crash
LAB_PREFIX=ghp
source "$(dirname "$0")/lib/nat-lab.sh"
need iperf3 socat curl jq

UI=http://192.168.1.1:8080
inns $WAN ip addr add 203.0.113.3/24 dev $P-h
inns $LAN ip addr add 192.168.1.11/24 dev $P-c
inns $WAN nft -f - <<EOF
table netdev mon {
	chain in {
		type filter hook ingress device "$P-h" priority 0; policy accept;
		ip saddr 192.168.0.0/16 counter
	}
}
EOF
leaked() { inns $WAN nft list chain netdev mon in | awk '/192.168.0.0\/16/ {for (i=1;i<=NF;i++) if ($i=="packets") print $(i+1)}'; }

write_config <<'EOF'
[nat]
filtering = "address-dependent"
EOF
ip netns exec $WAN python3 "$LIB/udp-reflector.py" 203.0.113.1 203.0.113.3 3478 3479 \
    >"$WORK/reflector.log" 2>&1 &
PIDS+=($!)
wait_for 50 grep -q ready "$WORK/reflector.log" || fail "reflector did not start"

start_gatewayd 1
ui_password || fail "cannot log in to the UI"

# ---- UDP: a mapping whose port is not the inside one, so only a restored table keeps it ----
# .11 takes outside port 40000 first; .10's 40000 then gets another one.
for _ in 1 2 3; do
    decoy=$(echo "d1 same" | inns $LAN socat -t 2 - UDP4:203.0.113.1:3478,bind=192.168.1.11:40000 || true)
    [ -z "$decoy" ] || break
done
[ "$decoy" = "d1 203.0.113.2:40000" ] || fail "decoy: reflector answered '$decoy'"
ip netns exec $LAN python3 "$LIB/udp-hold.py" 192.168.1.10 40000 203.0.113.1 3478 \
    >"$WORK/hold.log" 2>&1 &
HOLD=$!
PIDS+=($HOLD)
# The outside address the reflector saw last.
seen() { awk '$1 == "from" && $2 == "203.0.113.1:3478" {a = $4} END {print a}' "$WORK/hold.log"; }
# ask N: waits until the LAN host has had N answers from the reflector, asking again (UDP may
# be lost on a busy host) up to three times.
ask() {
    for _ in 1 2 3; do
        wait_for 10 sh -c "[ \$(grep -c '^from 203.0.113.1:3478 ' '$WORK/hold.log') -ge $1 ]" &&
            return 0
        kill -USR1 $HOLD
    done
    return 1
}
ask 1 || fail "UDP: no answer from the reflector: $(cat "$WORK/hold.log")"
mapped=$(seen)
port=${mapped#203.0.113.2:}
[ "$port" != "$mapped" ] && [ "$port" != 40000 ] || fail "UDP: mapped to '$mapped'"
# send_in SRC TEXT: one datagram from SRC:5555 to the mapping.
send_in() { echo "$2" | inns $WAN socat -u - UDP4-SENDTO:203.0.113.2:$port,bind=$1:5555; }
# got TEXT: whether it reached the LAN host (up to three sends from SRC $2, if given).
got() {
    for _ in 1 2 3; do
        [ -n "${2:-}" ] && send_in "$2" "$1"
        wait_for 5 grep -q " $1\$" "$WORK/hold.log" && return 0
    done
    return 1
}
got peer-before 203.0.113.1 || fail "UDP: the peer's address did not get in before the restart"
send_in 203.0.113.3 stranger-before
sleep 0.3
! got stranger-before || fail "UDP: a stranger got in (filtering is address-dependent)"
echo "ok   UDP mapping 192.168.1.10:40000 -> $mapped, peer admitted, stranger filtered"

# ---- TCP: iperf3 upload, gatewayd killed and restarted after 3 s ----
# .11 takes TCP outside port 20000 (the wan resets it; the mapping stays, closing, 240 s).
inns $LAN socat -T1 /dev/null TCP4:203.0.113.1:9,bind=192.168.1.11:20000,connect-timeout=1 \
    2>/dev/null || true
ip netns exec $WAN iperf3 -s -1 -B 203.0.113.1 -p 5201 -i 0.1 -J >"$WORK/iperf-server.json" 2>&1 &
IPERF_S=$!
PIDS+=($IPERF_S)
wait_for 50 sh -c "ip netns exec $WAN ss -ltn | grep -q ':5201 '" || fail "iperf3 server did not start"
ip netns exec $LAN iperf3 -c 203.0.113.1 -p 5201 -t 8 -i 0.1 -J --cport 20000 \
    >"$WORK/iperf.json" 2>&1 &
IPERF_C=$!
PIDS+=($IPERF_C)
sleep 3
# The wan's view of the connections: the data one must not come from port 20000.
peers=$(inns $WAN ss -tnH state established '( sport = :5201 )' | awk '{print $4}' | sort)
[ "$(wc -l <<<"$peers")" = 2 ] && ! grep -q ':20000$' <<<"$peers" ||
    fail "iperf3 connections seen by the wan: $peers"
[ -s "$WORK/run/nat-mappings" ] || fail "no saved table in the run dir"
kill -0 $IPERF_C 2>/dev/null || fail "iperf3 ended early: $(tail -5 "$WORK/iperf.json")"

t0=$(date +%s%N)
kill -9 "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
# The supervisor's part: the same command line, at once.
GW_LOG=$WORK/gatewayd.2.log
ip netns exec $RTR "$GATEWAYD" --config "$WORK/gatehouse.toml" --data-dir "$WORK/data" \
    --run-dir "$WORK/run" --no-wan-client >"$GW_LOG" 2>&1 &
GW_PID=$!
for _ in $(seq 1000); do
    grep -q "nat: queue" "$GW_LOG" && break
    sleep 0.01
done
t1=$(date +%s%N)
grep -q "nat: queue" "$GW_LOG" || fail "gatewayd did not come back"
echo "ok   restart: $(((t1 - t0) / 1000000)) ms from kill to 'nat: queue'"
grep "nat: restored" "$GW_LOG" | sed 's/^/     /'

# ---- UDP after the restart: nothing sent from inside yet ----
send_in 203.0.113.3 stranger-after
got peer-after 203.0.113.1 || fail "UDP: the peer's address did not get in after the restart"
! got stranger-after || fail "UDP: a stranger got in after the restart"
n=$(grep -c '^from 203.0.113.1:3478 ' "$WORK/hold.log")
kill -USR1 $HOLD
ask $((n + 1)) || fail "UDP: no answer from the reflector after the restart"
[ "$(seen)" = "$mapped" ] || fail "UDP: mapped to $(seen) after the restart, $mapped before"
echo "ok   UDP after the restart: still $mapped, peer admitted, stranger filtered"

# ---- TCP outcome ----
rc=0
wait $IPERF_C || rc=$?
wait $IPERF_S || true
# A reset may still end in exit status 0 with -J: the error is in the JSON.
for side in iperf iperf-server; do
    err=$(jq -r '.error // empty' "$WORK/$side.json" 2>&1) || true
    [ "$rc" = 0 ] && [ -z "$err" ] || fail "$side: rc $rc, error: ${err:-$(tail -5 "$WORK/$side.json")}"
done
# Longest run of empty 0.1 s intervals (seconds), and the mean rate, as one side counted.
stall() {
    python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
run = best = 0.0
for i in d["intervals"]:
    s = i["sum"]
    run = run + s["seconds"] if s["bytes"] == 0 else 0.0
    best = max(best, run)
rate = d["end"].get("sum_received", {}).get("bits_per_second", 0)
print(f"{best:.2f} {int(rate) // 1000000}")
PY
}
read -r srv_stall srv_mbps <<<"$(stall "$WORK/iperf-server.json")" || fail "iperf3 server: $(tail -5 "$WORK/iperf-server.json")"
read -r cli_stall _ <<<"$(stall "$WORK/iperf.json")"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 1.0 else 1)" "$srv_stall" ||
    fail "TCP stalled ${srv_stall}s at the receiver (sender: ${cli_stall}s)"
echo "ok   iperf3 8 s upload through the crash (data connection $(tr '\n' ' ' <<<"$peers")): no reset, longest stall ${srv_stall}s at the receiver (${cli_stall}s at the sender), $srv_mbps Mbit/s"

[ "$(leaked)" = 0 ] || fail "LAN-sourced packets reached the wan: $(leaked)"
echo "ok   no LAN-sourced packet reached the wan"

nat=$(ui_get $LAN $UI "$WORK/ui.jar" /api/nat) || fail "GET /api/nat: $nat"
restored=$(jq -r .stats.restored <<<"$nat")
persistent=$(jq -r .stats.persistent <<<"$nat")
# iperf3's control and data connections, the UDP mapping and the two decoys.
[ "$restored" -ge 5 ] || fail "gatewayd restored $restored mappings, want 5: $(jq -c .stats <<<"$nat")"
[ "$persistent" = true ] || fail "the table is no longer kept: $(jq -c .stats <<<"$nat")"
echo "ok   /api/nat: $restored mappings restored, table kept"

echo "PASS $TEST"
