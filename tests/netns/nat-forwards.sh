#!/usr/bin/env bash
# Static port forwards, changed live: forwards added to the config and applied with SIGHUP
# carry real traffic from the wan host to a LAN server (which sees the real remote address),
# a bad file on SIGHUP changes nothing, and removing the forwards stops them. Runs under the
# strictest filtering, which forwards must not be subject to. Also hairpinning: a second LAN
# address (192.168.1.11) reaches the server through the WAN address and port, and the server
# sees the WAN address as its source.
set -euo pipefail
TEST=nat-forwards
source "$(dirname "$0")/lib/nat-lab.sh"
need curl socat

inns $LAN ip addr add 192.168.1.11/24 dev ghf-c

# ---- servers on the LAN host ----
mkdir -p "$WORK/www"
echo "hello from lan" >"$WORK/www/hello.txt"
ip netns exec $LAN python3 -m http.server 8000 --bind 192.168.1.10 --directory "$WORK/www" \
    >"$WORK/http.log" 2>&1 &
PIDS+=($!)
for p in 9000 9001; do
    ip netns exec $LAN socat UDP4-RECVFROM:$p,bind=192.168.1.10,fork \
        SYSTEM:"echo \"$p \$SOCAT_PEERADDR:\$SOCAT_PEERPORT\"" >/dev/null 2>&1 &
    PIDS+=($!)
done
ip netns exec $LAN socat TCP4-LISTEN:6000,bind=192.168.1.10,fork,reuseaddr \
    SYSTEM:'echo "tcp $SOCAT_PEERADDR"' >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec $LAN socat UDP4-RECVFROM:6000,bind=192.168.1.10,fork \
    SYSTEM:'echo "udp $SOCAT_PEERADDR"' >/dev/null 2>&1 &
PIDS+=($!)
wait_for 100 sh -c "ip netns exec $LAN ss -ltn | grep -q :8000" || fail "http server did not start: $(cat $WORK/http.log) $(ip netns exec $LAN ss -ltnp)"

http() { inns $WAN curl -sS --max-time "$1" http://203.0.113.2:8080/hello.txt 2>&1; }
# udp PORT: one datagram from the wan host; prints the answer, which must come back from
# 203.0.113.2:PORT (the socket is connected to it).
# Up to three tries, 4 s each: UDP may be lost, and on a busy machine the LAN side's forked
# answer can take a while.
udp() {
    local try got=
    for try in 1 2 3; do
        got=$(echo ping | inns $WAN socat -t 4 - UDP4:203.0.113.2:$1 2>/dev/null || true)
        [ -z "$got" ] || break
    done
    echo "$got"
}
hup() {
    local n
    n=$(grep -c 'SIGHUP' "$GW_LOG" || true)
    kill -HUP "$GW_PID"
    wait_for 50 sh -c "[ \$(grep -c SIGHUP '$GW_LOG') -gt $n ]" || fail "no reaction to SIGHUP"
    tail -1 "$GW_LOG"
}

write_config <<'EOF2'
[nat]
filtering = "address-and-port-dependent"
EOF2
start_gatewayd 1
ui_password || true
http 2 >/dev/null && fail "port 8080 answered before any forward"
echo "ok   no forward: 203.0.113.2:8080 closed"

FORWARDS='
[[nat.forwards]]
protocol = "tcp"
external = 8080
inside = "192.168.1.10:8000"

[[nat.forwards]]
protocol = "udp"
external = "7000-7001"
inside = "192.168.1.10:9000"

[[nat.forwards]]
protocol = "both"
external = 6000
inside = "192.168.1.10:6000"

[[nat.forwards]]
protocol = "udp"
external = 7100
inside = "192.168.1.10:9100"
'
write_config <<EOF2
[nat]
filtering = "address-and-port-dependent"
$FORWARDS
EOF2
line=$(hup)
[[ "$line" == *"4 forwards in force"* ]] || fail "SIGHUP: $line"
kill -0 "$GW_PID" || fail "gatewayd died on SIGHUP"

body=$(http 10) || fail "forwarded TCP: $body"
[ "$body" = "hello from lan" ] || fail "forwarded TCP: got '$body'"
grep -q '^203\.0\.113\.1 .*GET /hello.txt' "$WORK/http.log" ||
    fail "LAN server did not see the real remote: $(cat "$WORK/http.log")"
echo "ok   SIGHUP added forwards: wan -> 203.0.113.2:8080 reaches 192.168.1.10:8000, which saw 203.0.113.1"

for p in 7000 7001; do
    got=$(udp $p)
    [[ "$got" =~ ^$((p + 2000))\ 203\.0\.113\.1:[0-9]+$ ]] || fail "UDP forward $p: got '$got'"
done
echo "ok   UDP range 7000-7001 maps 1:1 onto 9000-9001, answers come back from the forwarded port"

# The answer comes from a process socat forks on the LAN host: on a busy machine that can
# take longer than socat's 2 s wait after sending, so give it three tries.
for _ in 1 2 3; do
    got=$(echo ping | inns $WAN socat -t 4 - TCP4:203.0.113.2:6000 2>/dev/null || true)
    [ -z "$got" ] || break
done
[ "$got" = "tcp 203.0.113.1" ] || fail "protocol both, TCP: got '$got'"
got=$(udp 6000)
[ "$got" = "udp 203.0.113.1" ] || fail "protocol both, UDP: got '$got'"
echo "ok   protocol \"both\" forwards TCP and UDP"

# ---- hairpinning: from the LAN to the WAN address ----
lines=$(wc -l <"$WORK/http.log")
body=$(inns $LAN curl -sS --max-time 5 --interface 192.168.1.11 http://203.0.113.2:8080/hello.txt 2>&1) ||
    fail "hairpin TCP: $body"
[ "$body" = "hello from lan" ] || fail "hairpin TCP: got '$body'"
seen=$(tail -n +$((lines + 1)) "$WORK/http.log" | grep 'GET /hello.txt' | awk '{print $1}')
[ "$seen" = 203.0.113.2 ] || fail "hairpin TCP: server saw '$seen', want 203.0.113.2"
# UDP has no retransmission: give a datagram lost on a loaded test host two more tries.
for _ in 1 2 3; do
    got=$(echo ping | inns $LAN socat -t 2 - UDP4:203.0.113.2:7001,bind=192.168.1.11 2>/dev/null || true)
    [[ "$got" =~ ^9001\ 203\.0\.113\.2:[0-9]+$ ]] && break
done
[[ "$got" =~ ^9001\ 203\.0\.113\.2:[0-9]+$ ]] || fail "hairpin UDP: got '$got'"
# An unmapped port of the WAN address is still the router's: refused at once, not dropped.
rc=0
inns $LAN curl -sS --max-time 3 --interface 192.168.1.11 http://203.0.113.2:9999/ >/dev/null 2>&1 || rc=$?
[ "$rc" = 7 ] || fail "LAN to an unmapped WAN port: curl exit $rc, want 7 (refused)"
echo "ok   hairpin: 192.168.1.11 -> 203.0.113.2:8080 and :7001 reach the server, which saw 203.0.113.2; unmapped ports refused by the router"
# Nothing listens behind forward 7100: the LAN server's port unreachable (to the WAN address,
# quoting the hairpinned datagram) must reach the sender as an error for its own datagram.
got=$(inns $LAN python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.168.1.11", 0))
s.connect(("203.0.113.2", 7100))
s.settimeout(2)
for _ in range(3):
    try:
        s.send(b"anyone?")
        s.recv(100)
        print("answered")
        break
    except ConnectionRefusedError:
        print("refused")
        break
    except socket.timeout:
        pass
else:
    print("silence")
')
[ "$got" = refused ] || fail "hairpin UDP to a closed port: got '$got', want the server's port unreachable (refused)"
echo "ok   hairpin ICMP: the LAN server's port unreachable reaches the sender, translated back (connection refused)"

# ---- a bad file on SIGHUP changes nothing ----
write_config <<'EOF2'
[nat
filtering = "address-and-port-dependent"
EOF2
line=$(hup)
[[ "$line" == *"config rejected, forwards unchanged (4 in force, 1 rejected reloads)"*"line 1"* ]] ||
    fail "bad syntax on SIGHUP: $line"
write_config <<'EOF2'
[[nat.forwards]]
protocol = "tcp"
external = 8080
inside = "10.9.9.9:80"
EOF2
line=$(hup)
[[ "$line" == *"2 rejected reloads"*"not a LAN host"* ]] || fail "bad forward on SIGHUP: $line"
body=$(http 10) || fail "forward after a rejected reload: $body"
[ "$body" = "hello from lan" ] || fail "forward after a rejected reload: got '$body'"
echo "ok   rejected reloads (syntax, bad forward) are logged and counted; forwards stay"

# ---- removal ----
write_config <<'EOF2'
[nat]
filtering = "address-and-port-dependent"
EOF2
line=$(hup)
[[ "$line" == *"0 forwards in force"* ]] || fail "removal: $line"
http 2 >/dev/null && fail "port 8080 still forwarded after removal"
[ -z "$(udp 7001)" ] || fail "UDP 7001 still forwarded after removal"
echo "ok   SIGHUP removed the forwards: TCP 8080 and UDP 7001 closed again"

kill -0 "$GW_PID" || fail "gatewayd died"
echo "PASS $TEST"
