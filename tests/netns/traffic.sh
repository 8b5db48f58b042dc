#!/usr/bin/env bash
# Traffic history, live stream and packet capture, end to end through gatewayd's NAT:
#
#   the NAT lab (lib/nat-lab.sh): client 192.168.1.10 (MAC 02:00:00:00:00:0a) ── router ── 203.0.113.1
#
# The wan host runs dnsmasq (sink.example.test -> 203.0.113.1), a UDP sink on 9001 and a
# UDP echo on 9000. The client looks the name up through the router, then sends exactly
# 100 datagrams of 500 bytes (IP length) to the sink and 50 of 300 to the echo, which
# answers each. The test asserts the history totals (summary, series JSON and CSV, top
# talkers with the DNS label), the live WebSocket stream, the pcap and pcapng files read
# back by tshark (exactly those 200 packets, inside addresses, correct sizes and times),
# switching capture off for the client, and the history surviving a clean restart.
# The client has a static address: its MAC comes from the router's neighbour table.
set -euo pipefail

TEST=traffic
# shellcheck source=lib/nat-lab.sh
. "$(dirname "$0")/lib/nat-lab.sh"
# shellcheck source=lib/ui.sh
. "$LIB/ui.sh"
need socat curl jq tshark dnsmasq dig
MAC=02:00:00:00:00:0a
API=http://192.168.1.1:8080
JAR=$WORK/cookies
api() { local path=$1; shift; inns $LAN curl -sS --max-time 10 -b "$JAR" "$@" "$API$path"; }
inns $LAN ip link set ghf-c address $MAC

ip netns exec $WAN dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
    --listen-address=203.0.113.1 --pid-file="$WORK/dnsmasq.pid" \
    --address=/sink.example.test/203.0.113.1 >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
ip netns exec $WAN socat -u UDP4-RECV:9001,bind=203.0.113.1 OPEN:/dev/null >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec $WAN socat UDP4-RECVFROM:9000,bind=203.0.113.1,fork SYSTEM:cat >/dev/null 2>&1 &
PIDS+=($!)

write_config <<'EOF'
[dns]
upstreams = ["203.0.113.1"]
EOF

# The lab's start, then a login: sessions live in memory, so again after every start.
start_logged_in() {
    start_gatewayd "$1"
    wait_for 50 inns $LAN curl -s --max-time 1 -o /dev/null "$API/login" || fail "no admin server"
    CSRF=$(ui_login $LAN "$API" "$JAR") || fail "cannot log in to the admin API"
}
start_logged_in 1
# Nothing without a session.
code=$(inns $LAN curl -s -o /dev/null -w '%{http_code}' "$API/api/capture/$MAC?format=pcap")
[ "$code" = 401 ] || fail "capture download without a session: HTTP $code"
T_START=$(date +%s%3N)

# ---- DNS label ----
out=$(inns $LAN dig @192.168.1.1 +short +timeout=3 +tries=2 sink.example.test A)
[ "$out" = 203.0.113.1 ] || fail "dig sink.example.test: '$out'"

# ---- the live stream listens while the traffic flows ----
SESSION=$(awk '$6 == "gh_session" {print $7}' "$JAR" | tail -n1)
inns $LAN python3 "$ROOT/tests/netns/lib/ws-live.py" 192.168.1.1 8080 \
    "/api/traffic/live?client=$MAC" 6 "$WORK/live.jsonl" "gh_session=$SESSION" &
WS_PID=$!
sleep 1

# ---- known traffic: 100 x 500 B to the sink, 50 x 300 B echoed ----
inns $LAN python3 - <<'EOF'
import socket, time
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(100):
    sink.sendto(bytes(500 - 28), ("203.0.113.1", 9001))
    time.sleep(0.002)
echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
echo.bind(("192.168.1.10", 40000))
echo.settimeout(3)
for i in range(50):
    echo.sendto(bytes(300 - 28), ("203.0.113.1", 9000))
    data, _ = echo.recvfrom(2048)
    assert len(data) == 272, len(data)
EOF
wait "$WS_PID" || fail "WebSocket client failed (upgrade refused?)"
T_END=$(date +%s%3N)
sleep 0.5

# ---- history ----
sum=$(api "/api/traffic/summary?client=$MAC&from=-5m")
echo "summary: $sum"
jq -e '.counts == {"up_bytes":65000,"down_bytes":15000,"up_packets":150,"down_packets":50}' \
    <<<"$sum" >/dev/null || fail "summary totals: $sum"
first=$(jq '.first_seen_ms' <<<"$sum") last=$(jq '.last_seen_ms' <<<"$sum")
((first >= T_START - 100 && last <= T_END)) || fail "first/last seen $first..$last outside $T_START..$T_END"
echo "ok   summary: 150 packets / 65000 B up, 50 / 15000 B down, seen $first..$last"

ser=$(api "/api/traffic?client=$MAC&from=-5m&res=100ms")
jq -e '[.points[].up_bytes] | add == 65000' <<<"$ser" >/dev/null || fail "series 100ms: $ser"
jq -e '[.points[].down_packets] | add == 50' <<<"$ser" >/dev/null || fail "series 100ms down: $ser"
((($(jq '.points | length' <<<"$ser")) >= 2)) || fail "series has fewer than 2 buckets at 100 ms"
csvsum=$(api "/api/traffic?client=$MAC&from=-5m&res=1m&format=csv" | awk -F, 'NR>1 {u+=$2; d+=$3} END {print u, d}')
[ "$csvsum" = "65000 15000" ] || fail "CSV series totals: $csvsum"
api "/api/traffic?client=$MAC&res=7ms" | grep -q "res" || fail "a bad resolution is not explained"
echo "ok   series: 100 ms buckets and 1 min CSV add up to the same totals"

top=$(api "/api/traffic/top?client=$MAC&by=remote&from=-5m")
jq -e '.[0].remote == "203.0.113.1" and .[0].remote_name == "sink.example.test" and .[0].up_bytes == 65000' \
    <<<"$top" >/dev/null || fail "top talkers: $top"
jq -e --arg m $MAC '.[0].client == $m' <<<"$(api '/api/traffic/top?by=client&from=-5m')" >/dev/null ||
    fail "top clients"
echo "ok   top talkers: 203.0.113.1 labelled sink.example.test"

# ---- live ----
live_up=$(jq -s '[.[].flows[] | select(.remote == "203.0.113.1") | .up_bytes] | add' "$WORK/live.jsonl")
live_down=$(jq -s '[.[].flows[] | select(.remote == "203.0.113.1") | .down_packets] | add' "$WORK/live.jsonl")
ticks=$(wc -l <"$WORK/live.jsonl")
[ "$live_up" = 65000 ] && [ "$live_down" = 50 ] || fail "live stream saw up=$live_up B, down=$live_down pkts in $ticks ticks"
((ticks >= 30)) || fail "only $ticks live ticks in 6 s"
echo "ok   live WebSocket: $ticks ticks, the same 65000 B up / 50 packets down"

# ---- capture ----
hdr=$WORK/hdr
api "/api/capture/$MAC?format=pcapng" -D "$hdr" -o "$WORK/c.pcapng"
grep -qi 'content-disposition: attachment; filename="gatehouse-02-00-00-00-00-0a-.*\.pcapng"' "$hdr" ||
    fail "pcapng file name: $(grep -i disposition "$hdr")"
api "/api/capture/$MAC?format=pcap" -o "$WORK/c.pcap"
for f in c.pcapng c.pcap; do
    tshark -r "$WORK/$f" -T fields -e frame.time_epoch -e ip.src -e ip.dst -e ip.len -e udp.dstport \
        >"$WORK/$f.txt" 2>"$WORK/$f.err" || fail "tshark -r $f: $(cat "$WORK/$f.err")"
    n=$(wc -l <"$WORK/$f.txt")
    [ "$n" = 200 ] || fail "$f holds $n packets, want 200"
    up=$(awk '$2=="192.168.1.10" && $3=="203.0.113.1" && $4==500 && $5==9001' "$WORK/$f.txt" | wc -l)
    echo_up=$(awk '$2=="192.168.1.10" && $3=="203.0.113.1" && $4==300 && $5==9000' "$WORK/$f.txt" | wc -l)
    echo_dn=$(awk '$2=="203.0.113.1" && $3=="192.168.1.10" && $4==300 && $5==40000' "$WORK/$f.txt" | wc -l)
    [ "$up/$echo_up/$echo_dn" = 100/50/50 ] || fail "$f contents: $up/$echo_up/$echo_dn"
    ! grep -q 203.0.113.2 "$WORK/$f.txt" || fail "$f shows the NAT address, not the LAN view"
    awk -v a="$T_START" -v b="$T_END" '{t = $1 * 1000; if (t < a - 100 || t > b + 100) bad++} END {exit bad > 0}' \
        "$WORK/$f.txt" || fail "$f timestamps outside the test window"
done
echo "ok   pcapng and pcap: tshark reads exactly the 200 packets, inside addresses, times in the window"

# ---- capture switched off for the client ----
code=$(api "/api/capture/$MAC?enabled=false" -o /dev/null -w '%{http_code}' -X POST)
[ "$code" = 403 ] || fail "toggle without the CSRF token: HTTP $code"
api "/api/capture/$MAC?enabled=false" -X POST -H "X-CSRF-Token: $CSRF" | jq -e '.enabled == false' >/dev/null ||
    fail "capture toggle"
inns $LAN python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(10): s.sendto(bytes(100 - 28), ("203.0.113.1", 9001))'
sleep 0.5
n=$(api "/api/capture/$MAC?format=pcap" | tshark -r - 2>/dev/null | wc -l)
[ "$n" = 200 ] || fail "capture off: file now holds $n packets"
jq -e '.counts.up_packets == 160' <<<"$(api "/api/traffic/summary?client=$MAC&from=-5m")" >/dev/null ||
    fail "history stopped with capture"
echo "ok   capture off for the client: pcap unchanged, history still counts"

# ---- clean restart keeps the history ----
stats=$(api /api/traffic/stats)
jq -e '.history.memory_bytes > 0 and .history.oldest_ms != null and .dropped_packets == 0' <<<"$stats" >/dev/null ||
    fail "stats: $stats"
stop_gatewayd
grep -q "traffic history saved" "$WORK"/gatewayd.1.log || fail "no snapshot on SIGTERM"
start_logged_in 2
grep -q "history restored" "$WORK"/gatewayd.2.log || fail "snapshot not restored"
sum2=$(api "/api/traffic/summary?client=$MAC&from=-5m")
jq -e '.counts == {"up_bytes":66000,"down_bytes":15000,"up_packets":160,"down_packets":50}' <<<"$sum2" >/dev/null ||
    fail "after restart: $sum2"
echo "ok   clean restart: history restored ($(jq .history.memory_bytes <<<"$stats") B in memory before)"
echo "PASS traffic"
