#!/usr/bin/env bash
# The admin UI end to end in a real browser: headless chromium, driven over the DevTools
# protocol (lib/cdp.py, lib/ui-browser.py), against gatewayd in the NAT lab (lib/nat-lab.sh),
# with DHCP on:
#
#   ghf-lan  192.168.1.10, runs chromium ── ghf-rtr (gatewayd, LAN 192.168.1.1) ── ghf-wan 203.0.113.1
#   ghf-tv   macvlan on the LAN, busybox udhcpc as "kitchen-tv" (02:00:00:00:00:b1)
#   ghf-xss  macvlan on the LAN, udhcpc as "<script>alert(1)</script>" (02:00:00:00:00:b2)
#
# In the browser: the first visit lands on /setup, the password is set there, then log out
# and in again through /login (a wrong password refused); kitchen-tv's lease shows on the
# dashboard and /clients; it is renamed through its form (the config file has the name) and
# the other client gets a name with markup, which must show as text; a port forward is added
# on /ports and real traffic from the WAN host reaches a server on kitchen-tv through it; a
# pcap of kitchen-tv's traffic is downloaded through the dashboard's link and read by
# tshark. Last, every page at 360 px (phone, scale 2) and 1280 px: HTTP 200, no sideways
# overflow at 360 px, every form control labelled, dark mode working; screenshots (and the
# pcap) go to ${UI_ARTIFACTS:-<repo>/build/ui-screenshots}, which outlives the lab.
#
# The browser steps after login each report; a failed one does not stop the later ones,
# so one run shows every page's state. The test fails if any failed.
set -euo pipefail
TEST=ui-browser
# shellcheck source=lib/nat-lab.sh
. "$(dirname "$0")/lib/nat-lab.sh"
need chromium curl socat tshark busybox od
# Debian's python3 has python3-websocket (a pyenv or venv python3 first in PATH may not).
PY=${UI_PYTHON:-/usr/bin/python3}
"$PY" -c 'import websocket, tomllib' 2>/dev/null || fail "$PY lacks websocket (python3-websocket) or tomllib"
ART=${UI_ARTIFACTS:-$ROOT/build/ui-screenshots}
mkdir -p "$ART"
rm -f "$ART"/*.png "$ART"/*.pcap
CDP_PORT=9222
PW=gatehouse-test-pw
TV=ghf-tv XS=ghf-xss
TV_MAC=02:00:00:00:00:b1 XS_MAC=02:00:00:00:00:b2
NAMESPACES+=($TV $XS)
FAILED=()
T0=$SECONDS

bad() { echo "FAIL: $*" >&2; return 1; }
# step NAME CMD...: runs a step; a failure is recorded and the test goes on.
step() {
    local name=$1
    shift
    "$@" || { FAILED+=("$name"); echo "FAIL: step '$name'" >&2; }
}
browser() { inns $LAN env CDP_PORT=$CDP_PORT CDP_BLOCK_URLS="${CDP_BLOCK_URLS:-}" "$PY" "$LIB/ui-browser.py" "$@"; }

# ---- 1. gatewayd with DHCP, two DHCP clients on macvlans of the LAN link ----
cat >"$WORK/gatehouse.toml" <<'EOF'
[lan]
interface = "ghf-l"
[wan]
interface = "ghf-w"
[dhcp]
enabled = true
range_start = "192.168.1.100"
range_end = "192.168.1.199"
[ui]
port = 8080
[dns]
enabled = false
EOF
start_gatewayd 1
wait_for 100 grep -q "dhcp: listening on ghf-l" "$GW_LOG" || fail "DHCP server did not start"

# The hook sets the address and default route inside the client's namespace only.
cat >"$WORK/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface" ;;
bound | renew)
    ip addr replace "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "$1 $ip" >>"$OUT" ;;
esac
exit 0
EOF
chmod +x "$WORK/udhcpc.sh"
dhcp_client() { # ns mac hostname
    local ns=$1
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    inns "$ns" ip link set lo up
    ip -n $LAN link add "$ns-0" link ghf-c address "$2" type macvlan mode bridge
    ip -n $LAN link set "$ns-0" netns "$ns"
    inns "$ns" ip link set "$ns-0" up
    ip netns exec "$ns" env OUT="$WORK/$ns.out" busybox udhcpc -f -t 30 -T 1 -i "$ns-0" \
        -x "hostname:$3" -s "$WORK/udhcpc.sh" >"$WORK/udhcpc-$ns.log" 2>&1 &
    PIDS+=($!)
}
lease_of() { wait_for 600 grep -q '^bound ' "$WORK/$1.out" && awk '/^bound /{print $2}' "$WORK/$1.out" | tail -1; }
dhcp_client $TV $TV_MAC kitchen-tv
dhcp_client $XS $XS_MAC '<script>alert(1)</script>'
TV_IP=$(lease_of $TV) || fail "kitchen-tv got no DHCP lease: $(cat "$WORK/udhcpc-$TV.log")"
XS_IP=$(lease_of $XS) || fail "the <script> client got no DHCP lease: $(cat "$WORK/udhcpc-$XS.log")"
echo "ok   DHCP: kitchen-tv ($TV_MAC) got $TV_IP, <script> ($XS_MAC) got $XS_IP"

# ---- 2. chromium in the LAN namespace ----
# It resolves no names (the host's resolver is not in the lab; its lookups would only fill
# the NAT table), so it talks to nothing but 192.168.1.1.
mkdir -p "$WORK/chrome" "$WORK/home" "$WORK/downloads"
ip netns exec $LAN env HOME="$WORK/home" nice -n 10 chromium --headless=new --no-sandbox --disable-gpu \
    --no-first-run --disable-background-networking --disable-component-update --disable-sync \
    --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 192.168.1.1" \
    --remote-debugging-port=$CDP_PORT --user-data-dir="$WORK/chrome" about:blank \
    >"$WORK/chrome.log" 2>&1 &
PIDS+=($!)
ver=$(inns $LAN "$PY" "$LIB/cdp.py" wait $CDP_PORT 60) ||
    fail "chromium's DevTools endpoint did not come up: $(tail -5 "$WORK/chrome.log")"
echo "ok   $ver up in $LAN, DevTools on port $CDP_PORT"

# ---- 3. setup, logout, login ----
# A failure here is recorded; the later steps then run with /favicon.ico blocked, in case
# that is what broke it (the favicon's redirect to /setup or /login replacing the form's
# pre-session cookie), so they still say how the rest of the UI fares.
if ! browser setup "$PW"; then
    FAILED+=("setup, logout and login")
    export CDP_BLOCK_URLS='*/favicon.ico'
    echo "note: carrying on with the browser's /favicon.ico requests blocked" >&2
    browser login "$PW" || fail "cannot log in through the browser even with /favicon.ico blocked"
fi
UI_PW=$PW

# ---- 4. the DHCP client on the dashboard and /clients; renames ----
config_has_name() { # mac name
    "$PY" - "$WORK/gatehouse.toml" "$1" "$2" <<'EOF'
import sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))
sys.exit(0 if any(d.get("mac", "").lower() == sys.argv[2] and d.get("name") == sys.argv[3]
                  for d in cfg.get("devices", [])) else 1)
EOF
}
rename_tv() {
    browser rename $TV_MAC "Living room TV" || return 1
    config_has_name $TV_MAC "Living room TV" ||
        bad "the config file has no [[devices]] entry naming $TV_MAC 'Living room TV': $(grep -A2 devices "$WORK/gatehouse.toml")" ||
        return 1
    echo "ok   $WORK/gatehouse.toml names $TV_MAC \"Living room TV\""
}
step "kitchen-tv on the dashboard and /clients" browser leases $TV_MAC kitchen-tv
step "rename kitchen-tv" rename_tv
step "markup in a device name" browser xss $XS_MAC

# ---- 5. a port forward added on /ports carries real traffic ----
ip netns exec $TV socat TCP4-LISTEN:8000,bind="$TV_IP",fork,reuseaddr \
    SYSTEM:'echo "hello from kitchen-tv $SOCAT_PEERADDR"' >/dev/null 2>&1 &
PIDS+=($!)
wait_for 50 sh -c "ip netns exec $TV ss -ltn | grep -q :8000" || fail "TCP server on kitchen-tv did not start"
through_forward() {
    local got= _
    for _ in 1 2 3; do
        got=$(inns $WAN socat -t 4 - TCP4:203.0.113.2:8081,connect-timeout=3 </dev/null 2>/dev/null || true)
        [ -z "$got" ] || break
    done
    echo "$got"
}
[ -z "$(through_forward)" ] || fail "203.0.113.2:8081 answered before any forward"
forward() {
    browser forward tcp 8081 "$TV_IP" 8000 || return 1
    "$PY" - "$WORK/gatehouse.toml" "$TV_IP:8000" <<'EOF' || bad "the config file has no forward 8081 -> $TV_IP:8000" || return 1
import sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))
fw = cfg.get("nat", {}).get("forwards", [])
sys.exit(0 if any(str(f.get("external")) in ("8081", "8081-8081") and f.get("inside") == sys.argv[2]
                  and f.get("protocol") in ("tcp", "both") for f in fw) else 1)
EOF
    local got
    got=$(through_forward)
    [ "$got" = "hello from kitchen-tv 203.0.113.1" ] ||
        bad "WAN -> 203.0.113.2:8081 should reach kitchen-tv's server, got '$got'" || return 1
    echo "ok   the forward is in the config, and the WAN host reaches kitchen-tv:8000 through 203.0.113.2:8081 (seen from 203.0.113.1)"
}
step "port forward through /ports" forward

# ---- 6. a pcap of kitchen-tv's traffic, downloaded through the browser ----
ip netns exec $WAN socat -u UDP4-RECV:9001,bind=203.0.113.1 OPEN:/dev/null >/dev/null 2>&1 &
PIDS+=($!)
inns $TV "$PY" -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    s.sendto(bytes(200 - 28), ("203.0.113.1", 9001))
    time.sleep(0.01)'
sleep 1
pcap() {
    local out f magic n
    out=$(browser pcap $TV_MAC "$WORK/downloads") || return 1
    printf '%s\n' "$out" | grep '^ok '
    f=$(printf '%s\n' "$out" | tail -1)
    [ -s "$f" ] || bad "downloaded file '$f' missing or empty" || return 1
    cp "$f" "$ART/kitchen-tv.pcap"
    magic=$(od -An -tx1 -N4 "$f" | tr -d ' ')
    case $magic in
    d4c3b2a1 | a1b2c3d4 | 4d3cb2a1 | a1b23c4d) ;;
    *) bad "$(basename "$f") does not start with a pcap magic number: $magic" || return 1 ;;
    esac
    tshark -r "$f" -Y "ip.src == $TV_IP && udp.dstport == 9001 && ip.len == 200" >"$WORK/tshark.out" 2>"$WORK/tshark.err" ||
        bad "tshark -r $(basename "$f"): $(cat "$WORK/tshark.err")" || return 1
    n=$(wc -l <"$WORK/tshark.out")
    [ "$n" = 20 ] || bad "tshark finds $n of the 20 datagrams kitchen-tv sent in $(basename "$f")" || return 1
    echo "ok   $(basename "$f"): pcap magic $magic, tshark reads kitchen-tv's 20 datagrams"
}
step "pcap download" pcap

# ---- 7. every page at 360 and 1280 px ----
step "pages" browser pages "$ART" / /clients "/clients/$TV_MAC" /traffic /ports /dns /network /system \
    /logs /password /update /login

kill -0 "$GW_PID" || fail "gatewayd died"
echo "artifacts: $ART ($(ls "$ART" | wc -l) files)"
echo "time: $((SECONDS - T0)) s"
[ ${#FAILED[@]} = 0 ] || fail "${#FAILED[@]} steps failed: $(printf "'%s' " "${FAILED[@]}")"
echo "PASS $TEST"
