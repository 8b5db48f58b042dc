#!/usr/bin/env bash
# Settings changed on the admin UI's network page apply live, against a real DHCP client:
#
#   ghv-cli  busybox udhcpc, curl ── ghv-c ═ ghv-l 192.168.1.1/24 ── ghv-rtr  gatewayd
#
# 1. udhcpc gets a lease with the configured lease time (60 min);
# 2. the LAN form (POST /network/lan, session and CSRF token) sets 5 min: without a
#    restart of gatewayd, the next lease is 5 min, and the file has lease_secs = 300 with
#    the owner's comment kept;
# 3. a static lease added on the page (POST /network/static) is what the client gets next;
# 4. a range outside the subnet is refused with the reason, the file stays as it was and
#    DHCP keeps serving as before;
# 5. the static lease removed on the page: the client is back in the pool.
# Runs against target/debug/gatewayd (or $GATEWAYD). Root only; traffic stays in the two
# namespaces it creates.
set -euo pipefail
TEST=ui-settings
[ "$(id -u)" = 0 ] || { echo "$TEST: must run as root" >&2; exit 1; }
ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
GATEWAYD=${GATEWAYD:-$ROOT/target/debug/gatewayd}
[ -x "$GATEWAYD" ] || { echo "$TEST: $GATEWAYD not built" >&2; exit 1; }
# shellcheck source=lib/ui.sh
source "$ROOT/tests/netns/lib/ui.sh"

RTR=ghv-rtr CLI=ghv-cli
MAC=52:54:00:76:00:01
BASE=http://192.168.1.1:8080
WORK=$(mktemp -d /tmp/ghv-$TEST.XXXXXX)
GW_PID=

cleanup() {
    local rc=$?
    set +e
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null
    wait 2>/dev/null
    ip netns del $RTR 2>/dev/null
    ip netns del $CLI 2>/dev/null
    if [ "$rc" != 0 ]; then
        echo "---- gatewayd log ----" >&2
        cat "$WORK/gatewayd.log" >&2 2>/dev/null
        echo "---- config file ----" >&2
        cat "$WORK/gatehouse.toml" >&2 2>/dev/null
        echo "FAIL $TEST (rc=$rc)" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

for ns in $RTR $CLI; do
    ip netns del $ns 2>/dev/null || true
    ip netns add $ns
    inns $ns ip link set lo up
done
ip link add ghv-c netns $CLI address $MAC type veth peer name ghv-l netns $RTR
inns $RTR ip addr add 192.168.1.1/24 dev ghv-l
inns $RTR ip link set ghv-l up
inns $CLI ip link set ghv-c up
# The UI is reached from the client over the same link; it needs an address on it. A
# second address, outside the DHCP range, keeps the lease checks independent of it.
inns $CLI ip addr add 192.168.1.9/24 dev ghv-c

cat >"$WORK/gatehouse.toml" <<'EOF'
# written by hand: the page must keep this comment
schema = 1
[lan]
interface = "ghv-l"
[wan]
interface = "ghv-w"
[dhcp]
enabled = true
range_start = "192.168.1.100"
range_end = "192.168.1.199"
lease_secs = 3600 # one hour
conflict_check_ms = 0
[dns]
enabled = false
[nat]
enabled = false
[ui]
port = 8080
EOF
mkdir -p "$WORK/data" "$WORK/run"
# ip netns exec directly (inns is a function, run in a subshell): $! is gatewayd's PID.
ip netns exec $RTR "$GATEWAYD" --config "$WORK/gatehouse.toml" --data-dir "$WORK/data" \
    --run-dir "$WORK/run" --no-wan-client >"$WORK/gatewayd.log" 2>&1 &
GW_PID=$!
for _ in $(seq 100); do grep -q "listening on ghv-l port 67" "$WORK/gatewayd.log" && break; sleep 0.1; done
grep -q "listening on ghv-l port 67" "$WORK/gatewayd.log" || fail "DHCP did not start"

# udhcpc's hook records what each lease said; nothing is configured.
cat >"$WORK/hook" <<EOF
#!/bin/sh
[ "\$1" = bound ] && echo "\$ip \$lease" >"$WORK/lease"
exit 0
EOF
chmod +x "$WORK/hook"
# lease: one fresh DORA exchange; prints "IP SECONDS".
lease() {
    rm -f "$WORK/lease"
    inns $CLI busybox udhcpc -i ghv-c -f -q -n -t 5 -T 1 -s "$WORK/hook" >/dev/null 2>&1 ||
        fail "udhcpc got no lease"
    cat "$WORK/lease"
}

read -r ip secs < <(lease)
[ "$secs" = 3600 ] || fail "first lease: $ip for $secs s, wanted 3600"
echo "ok   udhcpc leased $ip for 3600 s"

CSRF=$(ui_login $CLI $BASE "$WORK/jar") || fail "no login"
# post PATH FIELD=VALUE...: the form as a browser sends it; prints the HTTP status.
post() {
    local path=$1
    shift
    local args=(--data-urlencode "csrf=$CSRF")
    for f in "$@"; do args+=(--data-urlencode "$f"); done
    inns $CLI curl -sS --max-time 10 -b "$WORK/jar" -o "$WORK/reply.html" -w '%{http_code}' \
        "${args[@]}" "$BASE$path"
}
LAN=(lan_address=192.168.1.1 lan_prefix=24 dhcp_enabled=on range_start=192.168.1.100 range_end=192.168.1.199)

code=$(post /network/lan "${LAN[@]}" lease_minutes=5)
[ "$code" = 303 ] || fail "LAN form: HTTP $code: $(cat "$WORK/reply.html")"
grep -q "lease_secs = 300" "$WORK/gatehouse.toml" || fail "file not updated"
grep -q "^# written by hand: the page must keep this comment" "$WORK/gatehouse.toml" ||
    fail "the owner's comment was lost"
read -r ip secs < <(lease)
[ "$secs" = 300 ] || fail "after the change: $ip for $secs s, wanted 300"
kill -0 "$GW_PID" || fail "gatewayd is gone"
grep -q "dhcp: settings reloaded" "$WORK/gatewayd.log" || fail "no reload logged"
echo "ok   lease time changed on the page: the next lease is 300 s, same gatewayd (pid $GW_PID)"

code=$(post /network/static static_mac=$MAC static_ip=192.168.1.50 static_name=tv)
[ "$code" = 303 ] || fail "static lease form: HTTP $code: $(cat "$WORK/reply.html")"
read -r ip secs < <(lease)
[ "$ip" = 192.168.1.50 ] || fail "with a static lease the client got $ip"
echo "ok   static lease added on the page: the client now gets 192.168.1.50"

before=$(sha256sum <"$WORK/gatehouse.toml")
code=$(post /network/lan lan_address=192.168.1.1 lan_prefix=24 dhcp_enabled=on \
    range_start=10.0.0.100 range_end=10.0.0.199 lease_minutes=5)
[ "$code" = 400 ] || fail "a range outside the subnet: HTTP $code"
grep -q "outside the LAN subnet" "$WORK/reply.html" || fail "no reason given: $(cat "$WORK/reply.html")"
[ "$(sha256sum <"$WORK/gatehouse.toml")" = "$before" ] || fail "a refused change touched the file"
read -r ip secs < <(lease)
[ "$ip" = 192.168.1.50 ] && [ "$secs" = 300 ] || fail "after a refused change: $ip for $secs s"
echo "ok   a range outside the subnet is refused with the reason; file and DHCP unchanged"

code=$(post /network/static/0/delete mac=$MAC)
[ "$code" = 303 ] || fail "remove static lease: HTTP $code"
read -r ip secs < <(lease)
case $ip in 192.168.1.1[0-9][0-9]) ;; *) fail "after removing the static lease the client got $ip" ;; esac
echo "ok   static lease removed on the page: the client is back in the pool ($ip)"
echo "PASS $TEST"
