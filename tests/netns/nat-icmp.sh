#!/usr/bin/env bash
# ICMP errors through the NAT (RFC 5508): traceroute (UDP and ICMP probes) shows every hop,
# a UDP send to a closed port is refused, fragmentation-needed reaches the sender's PMTU
# cache, and an error the router itself sends about a packet it translated in quotes the WAN
# address, never the LAN host's. A far host sits two hops past the router:
#   ghf-wan (203.0.113.1, 198.51.100.1, forwarding) ── ghf-far 198.51.100.2
set -euo pipefail
TEST=nat-icmp
source "$(dirname "$0")/lib/nat-lab.sh"
need traceroute socat

FAR=ghf-far
NAMESPACES+=($FAR)
ip netns del $FAR 2>/dev/null || true
ip netns add $FAR
inns $FAR ip link set lo up
ip link add ghf-f1 netns $WAN type veth peer name ghf-f2 netns $FAR
inns $WAN ip addr add 198.51.100.1/24 dev ghf-f1
inns $WAN ip link set ghf-f1 up
inns $WAN ip link set ghf-f1 mtu 1280
inns $FAR ip addr add 198.51.100.2/24 dev ghf-f2
inns $FAR ip link set ghf-f2 mtu 1280
inns $FAR ip link set ghf-f2 up
inns $FAR ip route add default via 198.51.100.1
inns $WAN sysctl -qw net.ipv4.ip_forward=1
# Every probe must get its answer: no ICMP rate limits in the lab.
for ns in $LAN $RTR $WAN $FAR; do inns $ns sysctl -qw net.ipv4.icmp_ratelimit=0; done

write_config </dev/null
start_gatewayd 1
ui_password || true

# UDP echo on the wan host that answers with the source it saw.
ip netns exec $WAN socat UDP4-RECVFROM:7000,bind=203.0.113.1,fork \
    SYSTEM:'echo "$SOCAT_PEERADDR:$SOCAT_PEERPORT"' >/dev/null 2>&1 &
PIDS+=($!)

# ---- traceroute, UDP and ICMP probes ----
for mode in UDP ICMP; do
    flag=; [ $mode = ICMP ] && flag=-I
    inns $LAN traceroute $flag -n -q 2 -w 2 -m 6 198.51.100.2 >"$WORK/tr.$mode" 2>&1 ||
        fail "traceroute $mode: $(cat "$WORK/tr.$mode")"
    hops=$(awk 'NR > 1 {print $2}' "$WORK/tr.$mode" | paste -sd' ')
    [ "$hops" = "192.168.1.1 203.0.113.1 198.51.100.2" ] ||
        fail "traceroute $mode: hops '$hops', want '192.168.1.1 203.0.113.1 198.51.100.2':
$(cat "$WORK/tr.$mode")"
    ! grep -q '\*' "$WORK/tr.$mode" || fail "traceroute $mode: a probe went unanswered:
$(cat "$WORK/tr.$mode")"
    echo "ok   traceroute ($mode probes): $hops"
done

# ---- port unreachable: the LAN client is refused; the mapping survives the error ----
inns $LAN python3 - >"$WORK/refused" 2>&1 <<'PY' || fail "refused: $(cat "$WORK/refused")"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 41000))
s.settimeout(3)
s.connect(("203.0.113.1", 9))
for attempt in range(3):
    s.send(b"anyone?")
    try:
        s.recv(100)
        raise SystemExit("got an answer from a closed port")
    except ConnectionRefusedError:
        print("refused")
        break
    except socket.timeout:
        if attempt == 2:
            raise
s.connect(("203.0.113.1", 7000))
# The echo comes from a process socat forks: resend if a loaded machine is slow or drops it.
for attempt in range(3):
    s.send(b"hello")
    try:
        print("seen", s.recv(100).decode().strip())
        break
    except socket.timeout:
        if attempt == 2:
            raise
PY
grep -qx refused "$WORK/refused" || fail "no connection refused: $(cat "$WORK/refused")"
grep -qx "seen 203.0.113.2:41000" "$WORK/refused" || fail "mapping after the error: $(cat "$WORK/refused")"
echo "ok   UDP to a closed port: connection refused; same mapping afterwards"

# ---- fragmentation needed: the LAN host learns the path MTU ----
# The WAN router rate-limits its ICMP errors per destination, and the traceroutes above just
# spent that budget: send the too-big packet once a second until the error gets through.
frag_probe() {
    inns $LAN python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
try:
    s.sendto(b"x" * 1400, ("198.51.100.2", 9999))
except OSError:
    pass
PY
}
for _ in $(seq 10); do
    frag_probe
    sleep 1
    inns $LAN ip route get 198.51.100.2 | grep -q 'mtu 1280' && break
done
inns $LAN ip route get 198.51.100.2 | grep -q 'mtu 1280' ||
    fail "frag-needed did not reach the LAN host: $(inns $LAN ip route get 198.51.100.2)"
echo "ok   fragmentation needed: LAN host's path MTU to 198.51.100.2 is 1280"

# ---- the router's own error about a packet it translated in quotes the WAN address ----
ip netns exec $WAN python3 "$LIB/icmp-quote.py" 4 >"$WORK/quotes" 2>&1 &
PIDS+=($!)
wait_for 30 grep -q ready "$WORK/quotes" || fail "icmp-quote did not start"
inns $LAN python3 - <<'PY' &
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 42000))
s.sendto(b"open", ("203.0.113.1", 7001))
time.sleep(2)
PY
sleep 0.5
inns $WAN python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("203.0.113.1", 7001))
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
s.sendto(b"expires at the router", ("203.0.113.2", 42000))
PY
wait_for 30 grep -q '^11 0 ' "$WORK/quotes" || fail "no time-exceeded from the router: $(cat "$WORK/quotes")"
grep -q '^11 0 203.0.113.1:7001 203.0.113.2:42000$' "$WORK/quotes" ||
    fail "router's time-exceeded quotes $(grep '^11' "$WORK/quotes"), want 203.0.113.1:7001 203.0.113.2:42000"
! grep -q '192\.168\.' "$WORK/quotes" || fail "an ICMP error leaked a LAN address: $(cat "$WORK/quotes")"
echo "ok   router's time-exceeded for a translated packet quotes 203.0.113.2:42000"

kill -0 "$GW_PID" || fail "gatewayd died"
echo "PASS $TEST"
