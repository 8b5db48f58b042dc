#!/usr/bin/env bash
# gatewayd's DNS forwarder, end to end, in three network namespaces:
#
#   ghs-cli (cli0 192.168.1.10) -- (lan0 192.168.1.1) ghs-rtr (up0 10.53.0.1) -- (upd0 10.53.0.2) ghs-up
#
# ghs-up runs dnsmasq as the upstream resolver on 10.53.0.2. gatewayd is told to
# use 10.53.0.3 first: nothing answers there, so every answer proves failover.
# Needs root. GATEWAYD overrides the binary (default: target/debug/gatewayd).
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
GATEWAYD=${GATEWAYD:-$ROOT/target/debug/gatewayd}
CLI=ghs-cli RTR=ghs-rtr UP=ghs-up
WORK=$(mktemp -d /tmp/ghs-dns.XXXXXX)
GW_PID= DM_PID=

fail() {
    echo "FAIL dns: $*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    [[ -n $DM_PID ]] && kill "$DM_PID" 2>/dev/null && wait "$DM_PID" 2>/dev/null
    # Anything else still running in our namespaces (dnsmasq's TCP children).
    for ns in $CLI $RTR $UP; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    if [[ $rc -ne 0 ]]; then
        echo "--- gatewayd log" >&2
        cat "$WORK/gatewayd.log" >&2 2>/dev/null || true
        echo "--- dnsmasq log" >&2
        cat "$WORK/dnsmasq.log" >&2 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

[[ $EUID -eq 0 ]] || fail "must run as root"
[[ -x $GATEWAYD ]] || fail "$GATEWAYD missing (cargo build -p gateway)"
need=()
command -v dig >/dev/null || need+=(dnsutils)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v ip >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}
# dig from the LAN client; one try, so a wrong answer is not papered over by retries.
cdig() { in_ns $CLI dig @192.168.1.1 +time=6 +tries=1 "$@"; }

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
in_ns $UP ip link set upd0 up

# --- upstream: a few names with a real TTL, and a TXT too big for one UDP reply
big=$(printf 'x%.0s' {1..250})
txt=$big
for _ in 1 2 3 4 5 6 7; do txt+=",$big"; done
ip netns exec $UP dnsmasq --no-daemon --no-resolv --no-hosts --pid-file= \
    --listen-address=10.53.0.2 --bind-interfaces --user=root \
    --log-queries --log-facility=- --local-ttl=300 \
    --host-record=www.example.test,198.51.100.7 \
    --host-record=tcp.example.test,198.51.100.8 \
    --host-record=late.example.test,198.51.100.9 \
    --txt-record="big.example.test,$txt" \
    >"$WORK/dnsmasq.log" 2>&1 &
DM_PID=$!

# --- router (ip netns exec execs the daemon, so $! is its PID)
cat >"$WORK/gatehouse.toml" <<'EOF'
[lan]
interface = "lan0"
[dhcp]
enabled = false
[nat]
enabled = false
[ui]
port = 8080
[dns]
upstreams = ["10.53.0.3", "10.53.0.2"]
EOF
ip netns exec $RTR "$GATEWAYD" --config "$WORK/gatehouse.toml" --data-dir "$WORK/data" \
    --run-dir "$WORK/run" --no-wan-client >"$WORK/gatewayd.log" 2>&1 &
GW_PID=$!

# The LAN address arrives after gatewayd starts, as at boot: it must keep retrying.
sleep 1.5
kill -0 $GW_PID 2>/dev/null || fail "gatewayd exited before the LAN address existed"
in_ns $RTR ip addr add 192.168.1.1/24 dev lan0
for _ in $(seq 50); do
    grep -q 'dns: listening on 192.168.1.1:53' "$WORK/gatewayd.log" && break
    sleep 0.1
done
grep -q 'dns: listening on 192.168.1.1:53' "$WORK/gatewayd.log" || fail "dns never bound"
for _ in $(seq 50); do
    in_ns $UP ss -lnu | grep -q '10.53.0.2:53' && break
    sleep 0.1
done

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

# --- TCP from the client
out=$(cdig +tcp tcp.example.test A +short)
[[ $out == 198.51.100.8 ]] || fail "tcp.example.test over TCP: $out"
echo "ok   tcp.example.test -> 198.51.100.8 over TCP"
# Two queries on one TCP connection.
out=$(in_ns $CLI dig @192.168.1.1 +tcp +keepopen +time=6 +tries=1 +short tcp.example.test A www.example.test A)
[[ $out == $'198.51.100.8\n198.51.100.7' ]] || fail "two queries on one TCP connection: $out"
echo "ok   two queries on one TCP connection"

# --- too big for UDP: upstream TC -> gatewayd asks over TCP -> client told TC -> retries over TCP
out=$(cdig big.example.test TXT +noall +answer)
chunks=$(grep -o '"x\{250\}"' <<<"$out" | wc -l)
((chunks == 8)) || fail "big TXT carried $chunks of 8 strings: $out"
grep -q 'query\[TXT\] big.example.test from 10.53.0.1' "$WORK/dnsmasq.log" || fail "big TXT never asked upstream"
out=$(cdig +ignore big.example.test TXT +comments)
grep -qE 'flags:[a-z ]* tc' <<<"$out" || fail "oversized UDP reply not truncated: $out"
echo "ok   big.example.test TXT (2000 bytes) via TC + TCP"

# --- private and local names never leave the router
for q in "-x 192.168.1.55" "-x 10.1.2.3" "-x 172.20.0.9" "printer.lan A"; do
    # shellcheck disable=SC2086
    out=$(cdig $q +noall +comments)
    grep -q 'status: NXDOMAIN' <<<"$out" || fail "$q: $out"
    grep -q 'flags: qr aa' <<<"$out" || fail "$q not authoritative: $out"
done
if grep -E 'query\[.*(in-addr\.arpa|\.lan )' "$WORK/dnsmasq.log"; then
    fail "a local/private name was forwarded upstream"
fi
echo "ok   private PTRs and .lan names answered NXDOMAIN locally, never forwarded"

# --- garbage is dropped and does not hurt
in_ns $CLI bash -c 'printf "\x12\x34garbage" >/dev/udp/192.168.1.1/53'
in_ns $CLI bash -c 'printf "\x00\x05\x12\x34abc" >/dev/tcp/192.168.1.1/53' || true
out=$(cdig gatehouse.lan A +short)
[[ $out == 192.168.1.1 ]] || fail "after garbage: $out"
echo "ok   malformed input ignored"

# --- cache: upstream gone, cached answer still served with a decremented TTL
n_before=$(grep -c 'query\[A\] www.example.test' "$WORK/dnsmasq.log")
sleep 2
kill "$DM_PID"
wait "$DM_PID" 2>/dev/null || true
DM_PID=
out=$(cdig www.example.test A +noall +answer)
grep -qE '^www\.example\.test\.\s+[0-9]+\s+IN\s+A\s+198\.51\.100\.7$' <<<"$out" || fail "cached www.example.test: $out"
ttl=$(awk '{print $2}' <<<"$out")
((ttl < 300 && ttl > 200)) || fail "cached TTL $ttl not decremented"
n_after=$(grep -c 'query\[A\] www.example.test' "$WORK/dnsmasq.log")
((n_before == 1 && n_after == 1)) || fail "www.example.test asked upstream $n_after times"
echo "ok   www.example.test from cache with upstream down (TTL $ttl)"

# --- nothing cached, nobody upstream: SERVFAIL, not silence
out=$(cdig nocache.example.test A +noall +comments)
grep -q 'status: SERVFAIL' <<<"$out" || fail "no upstream: $out"
echo "ok   SERVFAIL when no upstream answers"

kill -0 $GW_PID 2>/dev/null || fail "gatewayd died"
echo "PASS dns"
