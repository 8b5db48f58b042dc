# Shared lab for the NAT feature tests (nat-filtering, nat-icmp, nat-forwards, traffic, nat-crash).
# Source it after setting TEST (the test's name) and, for a lab of its own that can run
# beside the others, LAB_PREFIX (default ghf). It builds, with every name prefixed $LAB_PREFIX-:
#
#   ghf-lan  ghf-c 192.168.1.10/24 ── ghf-l 192.168.1.1/24  ghf-rtr  ghf-w 203.0.113.2/24 ── ghf-h 203.0.113.1/24  ghf-wan
#
# and tears everything down (processes it started, namespaces, work dir) on any exit.
# Background processes are started with `ip netns exec ... &` directly, so $! is the real pid.

[ "$(id -u)" = 0 ] || { echo "$TEST: must run as root" >&2; exit 1; }
ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
GATEWAYD=${GATEWAYD:-$ROOT/target/debug/gatewayd}
LIB=$ROOT/tests/netns/lib
[ -x "$GATEWAYD" ] || { echo "$TEST: $GATEWAYD not built (cargo build -p gateway)" >&2; exit 1; }

P=${LAB_PREFIX:-ghf}
LAN=$P-lan RTR=$P-rtr WAN=$P-wan
NAMESPACES=($LAN $RTR $WAN)
WORK=$(mktemp -d /tmp/$P-$TEST.XXXXXX)
PIDS=()
GW_PID=
# Set by ui_password: on a failure, the NAT counters from /metrics are shown.
UI_PW=

cleanup() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ] && [ -n "$UI_PW" ] && [ -n "$GW_PID" ]; then
        echo "---- NAT counters (/metrics) ----" >&2
        inns $LAN curl -sS --max-time 10 -u "admin:$UI_PW" http://192.168.1.1:8080/metrics 2>&1 |
            grep -E '^gatehouse_nat|curl' >&2
    fi
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [ "$rc" != 0 ]; then
        echo "---- gatewayd log ----" >&2
        cat "$WORK"/gatewayd*.log >&2 2>/dev/null
        echo "FAIL $TEST (rc=$rc)" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
need() { for t in "$@"; do command -v "$t" >/dev/null || fail "missing tool $t"; done; }
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# Waits up to $1 tenths of a second for the command to succeed.
wait_for() {
    local n=$1; shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

need nft iptables-nft python3
for ns in "${NAMESPACES[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    inns "$ns" ip link set lo up
done
ip link add $P-c netns $LAN type veth peer name $P-l netns $RTR
ip link add $P-w netns $RTR type veth peer name $P-h netns $WAN
inns $LAN ip addr add 192.168.1.10/24 dev $P-c
inns $LAN ip link set $P-c up
inns $LAN ip route add default via 192.168.1.1
inns $RTR ip addr add 192.168.1.1/24 dev $P-l
inns $RTR ip addr add 203.0.113.2/24 dev $P-w
inns $RTR ip link set $P-l up
inns $RTR ip link set $P-w up
inns $RTR ip route add default via 203.0.113.1
inns $WAN ip addr add 203.0.113.1/24 dev $P-h
inns $WAN ip link set $P-h up
mkdir -p "$WORK/data" "$WORK/run"

# Writes the config: the lab's interfaces plus whatever is on stdin (DNS stays off unless
# stdin has its own [dns] section).
write_config() {
    local extra
    extra=$(cat)
    {
        printf '[lan]\ninterface = "%s-l"\n[wan]\ninterface = "%s-w"\n' "$P" "$P"
        printf '[dhcp]\nenabled = false\n[ui]\nport = 8080\n'
        grep -q '^\[dns\]' <<<"$extra" || printf '[dns]\nenabled = false\n'
        printf '%s\n' "$extra"
    } >"$WORK/gatehouse.toml"
}

# start_gatewayd NAME: runs gatewayd in the router and waits until the NAT is up.
start_gatewayd() {
    local log=$WORK/gatewayd.$1.log
    ip netns exec $RTR "$GATEWAYD" --config "$WORK/gatehouse.toml" --data-dir "$WORK/data" \
        --run-dir "$WORK/run" --no-wan-client >"$log" 2>&1 &
    GW_PID=$!
    GW_LOG=$log
    wait_for 100 grep -q "nat: queue" "$log" || fail "gatewayd did not install the NAT ($log)"
    wait_for 50 grep -q "WAN address 203.0.113.2" "$log" || fail "gatewayd did not find the WAN address"
}

# ui_password: sets the admin password of the running gatewayd, so a failure can show
# its NAT counters (see cleanup).
ui_password() {
    # shellcheck source=ui.sh
    source "$LIB/ui.sh"
    ui_login $LAN http://192.168.1.1:8080 "$WORK/ui.jar" >/dev/null && UI_PW=gatehouse-test-pw
}

stop_gatewayd() {
    [ -n "$GW_PID" ] || return 0
    kill "$GW_PID" 2>/dev/null
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=
}
