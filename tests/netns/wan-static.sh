#!/usr/bin/env bash
# Static WAN addressing ([wan] mode = "static"), end to end, in three network namespaces:
#
#   ghz-lan  ghz-c (DHCP from gatewayd) ── br-lan 192.168.1.1/24  ghz-rtr  wan ── ghz-h 203.0.113.1/24  ghz-wan
#                                                                                  lo 198.51.100.53 (dnsmasq)
#
# The router's ports carry the image's default names (br-lan, wan; here a veth each), so the
# built-in defaults fit the lab when a config is rejected. `wan` starts down, with a stale
# 10.99.0.120/24 on it, and gatewayd runs without --no-wan-client: it must bring the link up,
# drop the stale address, set 203.0.113.2/24 and the default route via 203.0.113.1, and run no
# udhcpc. Checked: `ip -4 addr`, `ip route`, /api/status, a LAN client's HTTP fetch arriving at
# the wan host from 203.0.113.2 (NAT), DNS forwarded to the configured [wan] dns server, the
# address applied again when the cable comes back. Then a config with the gateway outside the
# subnet: the error is logged and in /api/status, and gatewayd serves on the defaults.
#
# Needs root. GATEWAYD overrides the binary (default: target/debug/gatewayd); KEEP_WORK=1 keeps
# the scratch directory (logs) for inspection.
set -euo pipefail

TEST=wan-static
LAN=ghz-lan RTR=ghz-rtr WAN=ghz-wan
NAMESPACES=($LAN $RTR $WAN)

fail() {
    echo "FAIL $TEST: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "must run as root"
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
GATEWAYD=${GATEWAYD:-$ROOT/target/debug/gatewayd}
[ -x "$GATEWAYD" ] || fail "$GATEWAYD not built (cargo build -p gateway)"
for t in ip busybox unshare curl jq dig dnsmasq python3 nft iptables-nft; do
    command -v "$t" >/dev/null || fail "missing tool $t"
done

WORK=$(mktemp -d /tmp/ghz-$TEST.XXXXXX)
PIDS=()
GW_PID=
GW_LOG=

cleanup() {
    local rc=$?
    set +e
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    # Whatever else runs in our namespaces (the defaults run's udhcpc, gatewayd's child).
    for ns in "${NAMESPACES[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    if [ "$rc" != 0 ]; then
        for f in "$WORK"/gatewayd-*.log "$WORK/dnsmasq.log" "$WORK/http.log" "$WORK/udhcpc.log"; do
            [ -f "$f" ] || continue
            echo "--- $f" >&2
            tail -40 "$f" >&2
        done
    fi
    if [ -n "${KEEP_WORK:-}" ]; then
        echo "$TEST: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap "exit 130" INT TERM

inns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}
# Waits up to $1 tenths of a second for the command to succeed.
wait_for() {
    local n=$1
    shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
wait_log() {
    local pattern=$1
    for _ in $(seq 100); do
        grep -q -- "$pattern" "$GW_LOG" 2>/dev/null && return 0
        kill -0 "$GW_PID" 2>/dev/null || fail "gatewayd exited (waiting for '$pattern')"
        sleep 0.1
    done
    fail "timed out waiting for '$pattern' in $GW_LOG"
}
# more_lines PATTERN N: gatewayd's log has more than N lines with PATTERN.
more_lines() { [ "$(grep -c -- "$1" "$GW_LOG")" -gt "$2" ]; }
# Command lines of the router namespace's processes that run udhcpc.
udhcpc_in_router() {
    local p
    for p in $(ip netns pids $RTR); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null && echo
    done | grep udhcpc || true
}
# The router's WAN addresses as "a.b.c.d/len", one a line.
wan_addrs() { inns $RTR ip -4 -o addr show dev wan | awk '{print $4}'; }

# shellcheck source=lib/ui.sh
. "$ROOT/tests/netns/lib/ui.sh"
status() { ui_get $LAN http://192.168.1.1 "$WORK/cookies" /api/status | jq -r "$1"; }

start_gatewayd() { # run-name config-file
    GW_LOG=$WORK/gatewayd-$1.log
    ip netns exec $RTR "$GATEWAYD" --config "$2" --data-dir "$WORK/data" \
        --run-dir "$WORK/run-$1" >"$GW_LOG" 2>&1 &
    GW_PID=$!
}

stop_gatewayd() {
    [ -n "$GW_PID" ] || return 0
    kill "$GW_PID" 2>/dev/null
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=
}

# ---- topology ----
for ns in "${NAMESPACES[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    inns "$ns" ip link set lo up
done
ip link add ghz-c netns $LAN type veth peer name br-lan netns $RTR
ip link add wan netns $RTR type veth peer name ghz-h netns $WAN
inns $LAN ip link set ghz-c up
inns $RTR ip addr add 192.168.1.1/24 dev br-lan
inns $RTR ip link set br-lan up
# What an earlier DHCP lease would have left; the link stays down for gatewayd to bring up.
inns $RTR ip addr add 10.99.0.120/24 dev wan
inns $WAN ip addr add 203.0.113.1/24 dev ghz-h
inns $WAN ip addr add 198.51.100.53/32 dev lo
inns $WAN ip link set ghz-h up
mkdir -p "$WORK/data" "$WORK/www"

# ---- the wan side: an HTTP server that logs its clients, a DNS server for example.test ----
echo "hello from wan" >"$WORK/www/hello.txt"
ip netns exec $WAN python3 -m http.server 8000 --bind 203.0.113.1 --directory "$WORK/www" \
    >"$WORK/http.log" 2>&1 &
PIDS+=($!)
ip netns exec $WAN dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --pid-file= \
    --listen-address=198.51.100.53 --bind-interfaces --user=root --log-queries --log-facility=- \
    --host-record=www.example.test,203.0.113.80 >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
wait_for 50 sh -c "ip netns exec $WAN ss -ltn | grep -q '203.0.113.1:8000 '" || fail "http server did not start"
wait_for 50 sh -c "ip netns exec $WAN ss -lnu | grep -q '198.51.100.53:53 '" || fail "dnsmasq did not start"

# ---- run 1: a static WAN ----
cat >"$WORK/static.toml" <<'EOF'
schema = 1
[wan]
mode = "static"
address = "203.0.113.2"
# prefix_len: the default, 24
gateway = "203.0.113.1"
dns = ["198.51.100.53"]
[dhcp]
conflict_check_ms = 0
EOF
start_gatewayd static "$WORK/static.toml"
wait_log "wan: static 203.0.113.2/24 via 203.0.113.1 on wan"
wait_log "nat: WAN address 203.0.113.2"
wait_log "dns: listening on 192.168.1.1:53"

inns $RTR ip link show dev wan | grep -q '[<,]UP[,>]' || fail "wan not up: $(inns $RTR ip link show dev wan)"
[ "$(wan_addrs)" = "203.0.113.2/24" ] || fail "wan addresses: $(wan_addrs | tr '\n' ' ')"
grep -q "wan: removing 10.99.0.120/24 from wan" "$GW_LOG" || fail "stale address removal not logged"
route=$(inns $RTR ip -4 route show default | sed 's/ *$//')
[[ $route == "default via 203.0.113.1 dev wan"* ]] || fail "default route: '$route'"
[ "$(wc -l <<<"$route")" = 1 ] || fail "more than one default route: $route"
echo "ok   router: wan up, only 203.0.113.2/24 (stale 10.99.0.120/24 gone), $route"

sleep 1 # a udhcpc started with the services would be up by now
procs=$(udhcpc_in_router)
[ -z "$procs" ] || fail "udhcpc runs in the router: $procs"
[ ! -e "$WORK/run-static/udhcpc-hook" ] || fail "the udhcpc hook was written"
! grep -q udhcpc "$GW_LOG" || fail "gatewayd mentions udhcpc: $(grep udhcpc "$GW_LOG")"
echo "ok   no udhcpc in the router namespace"

# A LAN client: busybox udhcpc in its own namespace, fenced (own mount namespace, scratch
# resolv.conf, a hook that only sets the address and route inside ghz-lan).
echo "# ghz test scratch" >"$WORK/resolv.conf"
cat >"$WORK/udhcpc-hook.sh" <<EOF
#!/bin/sh
case "\$1" in
bound | renew)
    ip addr replace "\$ip/\${mask:-24}" dev "\$interface"
    ip route replace default via "\$router" dev "\$interface"
    echo "\$ip router=\$router dns=\$dns" >"$WORK/lease" ;;
esac
exit 0
EOF
chmod +x "$WORK/udhcpc-hook.sh"
inns $LAN unshare -m --propagation private \
    sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$WORK/resolv.conf" \
    timeout 30 busybox udhcpc -f -q -n -t 5 -T 1 -i ghz-c -s "$WORK/udhcpc-hook.sh" \
    >"$WORK/udhcpc.log" 2>&1 || fail "the LAN client got no lease"
lease=$(cat "$WORK/lease")
[[ $lease =~ ^192\.168\.1\.[0-9]+\ router=192\.168\.1\.1\ dns=192\.168\.1\.1$ ]] || fail "lease: '$lease'"
echo "ok   LAN client lease: $lease"

[ "$(status .wan.address)" = 203.0.113.2 ] || fail "/api/status wan: $(status .wan)"
[ "$(status '"\(.wan.prefix_len) \(.wan.gateway) \(.wan.dns | join(","))"')" = "24 203.0.113.1 198.51.100.53" ] ||
    fail "/api/status wan: $(status .wan)"
[ "$(status '.wan.since > 0 and .config_error == null')" = true ] || fail "/api/status: $(status '{wan, config_error}')"
echo "ok   /api/status: wan $(status '"\(.wan.address)/\(.wan.prefix_len) via \(.wan.gateway), dns \(.wan.dns | join(","))"')"

body=$(inns $LAN curl -sS --max-time 10 http://203.0.113.1:8000/hello.txt) || fail "HTTP through the NAT failed"
[ "$body" = "hello from wan" ] || fail "HTTP: got '$body'"
grep -q '^203\.0\.113\.2 .*GET /hello.txt' "$WORK/http.log" || fail "the wan host saw: $(cat "$WORK/http.log")"
! grep -q '192\.168\.1\.' "$WORK/http.log" || fail "the wan host saw a LAN address"
echo "ok   LAN client's HTTP fetch reached the wan host from 203.0.113.2 (NAT)"

out=$(inns $LAN dig @192.168.1.1 +time=5 +tries=1 +short www.example.test A)
[ "$out" = 203.0.113.80 ] || fail "www.example.test through the router: '$out'"
grep -q 'query\[A\] www.example.test from 203.0.113.2' "$WORK/dnsmasq.log" ||
    fail "dnsmasq did not see the query from 203.0.113.2: $(tail -5 "$WORK/dnsmasq.log")"
echo "ok   DNS forwarded to [wan] dns 198.51.100.53: www.example.test -> $out"

# ---- cable out, the address lost meanwhile, cable in: applied again ----
# (The link watch may already have seen wan without a carrier at start, before gatewayd
# brought it up: count the log lines.)
lost=$(grep -c "wan: wan lost its carrier" "$GW_LOG" || true)
applied=$(grep -c "wan: static 203.0.113.2/24" "$GW_LOG")
inns $WAN ip link set ghz-h down
wait_for 50 more_lines "wan: wan lost its carrier" "$lost" || fail "cable out not seen"
[ "$(status .wan.carrier)" = false ] || fail "/api/status with the cable out: $(status .wan)"
inns $RTR ip -4 addr flush dev wan
inns $WAN ip link set ghz-h up
wait_for 50 more_lines "wan: static 203.0.113.2/24 via 203.0.113.1" "$applied" || fail "not applied again"
grep -q "wan: re-applying static 203.0.113.2/24 via 203.0.113.1" "$GW_LOG" || fail "re-apply not logged"
grep -q "carrier back (cable in); re-applying the static address" "$GW_LOG" || fail "cable in not logged as a re-apply"
! grep -q "restarting DHCP" "$GW_LOG" || fail "static mode logs a DHCP restart: $(grep 'restarting DHCP' "$GW_LOG")"
[ "$(wan_addrs)" = "203.0.113.2/24" ] || fail "after the cable came back: $(wan_addrs | tr '\n' ' ')"
route=$(inns $RTR ip -4 route show default)
[[ $route == "default via 203.0.113.1 dev wan"* ]] || fail "default route after the cable came back: '$route'"
wait_for 50 sh -c "ip netns exec $LAN curl -sS --max-time 2 http://203.0.113.1:8000/hello.txt" || fail "HTTP after the cable came back"
[ "$(status .wan.carrier)" = true ] || fail "carrier after the cable came back: $(status .wan)"
[ -z "$(udhcpc_in_router)" ] || fail "udhcpc runs in the router after the cable came back"
echo "ok   cable out and in: address and default route applied again, NAT works, still no udhcpc"
stop_gatewayd

# ---- run 2: the gateway outside the subnet: rejected, defaults in force ----
cat >"$WORK/bad.toml" <<'EOF'
schema = 1
[wan]
mode = "static"
address = "203.0.113.2"
gateway = "198.51.100.1"
EOF
start_gatewayd bad "$WORK/bad.toml"
wait_log "config rejected, running on built-in defaults"
line=$(grep "config rejected" "$GW_LOG")
[[ $line == *"wan.gateway 198.51.100.1 is outside the WAN subnet 203.0.113.0/24"* ]] || fail "rejection: $line"
wait_log "web: listening on http://192.168.1.1:80/"
err=$(status .config_error)
[[ $err == *"wan.gateway 198.51.100.1 is outside the WAN subnet"* ]] || fail "/api/status config_error: $err"
# The defaults: mode "dhcp", so udhcpc runs on the WAN.
wait_for 50 sh -c "ip netns pids $RTR | xargs -I{} cat /proc/{}/cmdline 2>/dev/null | tr '\0' ' ' | grep -q 'udhcpc.*-i wan'" ||
    fail "on defaults, no udhcpc on the WAN"
sleep 1
kill -0 "$GW_PID" 2>/dev/null || fail "gatewayd exited on the rejected config"
echo "ok   gateway outside the subnet: rejected (\"${err##*: }\"), gatewayd serves on defaults (WAN by DHCP)"
stop_gatewayd

echo "PASS $TEST"
