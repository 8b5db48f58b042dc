#!/usr/bin/env bash
# A/B updates with RAUC, in QEMU: each test starts from a freshly flashed disk
# of IMAGE (x86_64), boots slot A in the e2e lab, installs a bundle through the
# admin UI or the serial console, and watches what the next boots do.
#
#   tests/update/update-qemu.sh IMAGE [TEST...]
#
# TEST: happy broken-gatewayd power-cut kernel-panic bad-bundles schema init-panic
# init-panic-early (default: all).
# The bundles are made from the image build's root tree (OUT/rootfs) with
# scripts/bundle and the same signing keys as the image; the WAN namespace
# serves them over HTTP. Prints the figures (bundle size, install time, time
# to marked good, time to roll back) and "N passed, N failed".
set -euo pipefail
IMAGE=$(realpath "${1:?usage: update-qemu.sh IMAGE [TEST...]}")
shift
TESTS=("${@:-happy broken-gatewayd power-cut kernel-panic bad-bundles schema init-panic init-panic-early}")
read -ra TESTS <<<"${TESTS[*]}"
HERE=$(cd "$(dirname "$0")/../../scripts" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LAB=ghu
. "$HERE/qemu-common"
. "$HERE/lab"
. "$HERE/qemu-lab"
[ "$arch" = x86_64 ] || { echo "update tests run on the x86_64 image" >&2; exit 2; }
UI=http://192.168.1.1
JAR=$LAB_DIR/cookies
BUNDLES=$LAB_DIR/bundles
SRV=http://$WAN_NET.1:8080
FIGURES=()

# --- bundles -------------------------------------------------------------------
mkdir -p "$BUNDLES"
ROOT=$OUT/rootfs
BASE=$(cat "$ROOT/etc/gatehouse/version")
# The same build id with a higher patch number: "newer" to the version check.
ver() { python3 -c "import sys; b=sys.argv[1]; core, _, build = b.partition('+'); m, n, p = core.split('.'); print(f'{m}.{n}.{int(p) + int(sys.argv[2])}' + ('+' + build if build else ''))" "$BASE" "$1"; }
GOOD=$(ver 1)
BROKEN_GW=$(ver 2)
BROKEN_INIT=$(ver 3)

# variant NAME VERSION [MUTATION]: a copy of the image's root with VERSION in
# /etc/gatehouse/version and MUTATION (a shell snippet run in the copy) applied,
# squashed and bundled as $BUNDLES/NAME.raucb.
variant() {
    local name=$1 version=$2 mutation=${3:-} tree=$LAB_DIR/root-$1
    rm -rf "$tree"
    cp -a "$ROOT" "$tree"
    echo "$version" >"$tree/etc/gatehouse/version"
    [ -z "$mutation" ] || (cd "$tree" && sh -c "$mutation")
    mksquashfs "$tree" "$LAB_DIR/$name.squashfs" -comp gzip -all-root -noappend -quiet -no-progress
    rm -rf "$tree"
    ROOTFS=$LAB_DIR/$name.squashfs VERSION=$version BUNDLE=$BUNDLES/$name.raucb \
        "$REPO/scripts/bundle" x86_64 "$OUT" >"$LAB_DIR/bundle-$name.log" 2>&1 ||
        { cat "$LAB_DIR/bundle-$name.log"; exit 1; }
}
echo "building test bundles from $ROOT ($BASE)"
variant good "$GOOD"
FIGURES+=("bundle size: $(du -m "$BUNDLES/good.raucb" | cut -f1) MiB ($GOOD)")
variant broken-gatewayd "$BROKEN_GW" \
    "printf '#!/bin/sh\necho \"gatewayd: broken on purpose\" >&2\nexit 1\n' >usr/sbin/gatewayd"
# init exits at once: the kernel panics ("Attempted to kill init"), panic=5 reboots.
variant broken-init "$BROKEN_INIT" "printf '#!/bin/sh\nexit 1\n' >usr/sbin/gatehouse-init"
# A release one config schema ahead: gatewayd built with the next-schema feature.
if [[ " ${TESTS[*]} " == *" schema "* ]]; then
    echo "building gatewayd with config schema 2 (feature next-schema)"
    (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release --locked \
        --target x86_64-unknown-linux-gnu -p gateway --features next-schema)
    cp "$REPO/target/x86_64-unknown-linux-gnu/release/gatewayd" "$LAB_DIR/gatewayd-next"
    NEXT_SCHEMA=$(ver 4)
    variant next-schema "$NEXT_SCHEMA" "cp '$LAB_DIR/gatewayd-next' usr/sbin/gatewayd"
fi
# Bad ones, from the good squashfs: another architecture's compatible, a
# stranger's signature, a truncated file, a flipped payload byte, an older version.
ROOTFS=$LAB_DIR/good.squashfs VERSION=$GOOD COMPATIBLE=gatehouse-aarch64 BUNDLE=$BUNDLES/wrong-compatible.raucb \
    "$REPO/scripts/bundle" x86_64 "$OUT" >/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=stranger" \
    -keyout "$LAB_DIR/stranger.key" -out "$LAB_DIR/stranger.pem" 2>/dev/null
ROOTFS=$LAB_DIR/good.squashfs VERSION=$GOOD BUNDLE=$BUNDLES/wrong-signature.raucb \
    SIGNING_CERT=$LAB_DIR/stranger.pem SIGNING_KEY=$LAB_DIR/stranger.key KEYRING=$LAB_DIR/stranger.pem \
    "$REPO/scripts/bundle" x86_64 "$OUT" >/dev/null
ROOTFS=$LAB_DIR/good.squashfs VERSION=0.0.1+g0000000.20200101T0000 BUNDLE=$BUNDLES/older.raucb \
    "$REPO/scripts/bundle" x86_64 "$OUT" >/dev/null
size=$(stat -c %s "$BUNDLES/good.raucb")
head -c $((size - 4096)) "$BUNDLES/good.raucb" >"$BUNDLES/truncated.raucb"
cp "$BUNDLES/good.raucb" "$BUNDLES/corrupt.raucb"
# Invert one payload byte. (Writing a fixed 0xff once left the bundle unchanged: the byte
# there already was 0xff.)
byte=$(od -An -tu1 -j $((size / 3)) -N1 "$BUNDLES/good.raucb" | tr -d ' ')
printf "\\x$(printf %02x $((byte ^ 0xff)))" |
    dd of="$BUNDLES/corrupt.raucb" bs=1 seek=$((size / 3)) conv=notrunc status=none
! cmp -s "$BUNDLES/good.raucb" "$BUNDLES/corrupt.raucb" || { echo "corrupt.raucb is not corrupt" >&2; exit 1; }
lab_bg bundles lab_in wan python3 -m http.server 8080 --bind $WAN_NET.1 --directory "$BUNDLES"

# --- helpers -------------------------------------------------------------------
CSRF=
# up N: boots the router (boot N), waits for its LAN and gatewayd, gives lan1
# a lease and logs in to the admin UI (setting the password on a new disk).
up() {
    boot_ready "$1" || return 1
    lan1_lease "$1" || true
    # Under TCG on a busy host the first requests can be slow: a few tries.
    local try
    for try in 1 2 3 4; do
        CSRF=$(ui_login "$LAB-lan1" $UI "$JAR") && return 0
        sleep 5
    done
    return 1
}
api() { ui_get "$LAB-lan1" $UI "$JAR" /api/update; }
# post PATH CURL-ARGS...: a POST with the session and its CSRF token; prints the status code.
post() {
    local path=$1
    shift
    lab_in lan1 curl -sS -X POST --max-time 300 -b "$JAR" -H "X-CSRF-Token: $CSRF" -o "$LAB_DIR/post.out" \
        -w '%{http_code}' "$@" "$UI$path" 2>/dev/null || true
}
# wait_install LIMIT: until RAUC is idle again after an install; prints the API state.
wait_install() {
    local t=0 state
    sleep 2
    while :; do
        state=$(api 2>/dev/null || true)
        if [ -n "$state" ] && jq -e '.operation == "idle" and .activity.phase == "idle"' <<<"$state" >/dev/null 2>&1; then
            echo "$state"
            return 0
        fi
        sleep 2
        t=$((t + 2))
        [ $t -lt "$1" ] || { echo "$state"; return 1; }
    done
}
# grubenv_has KEY=VALUE...: the grubenv in the disk image holds all of them.
grubenv_has() {
    local env kv
    env=$(grubenv_get)
    for kv in "$@"; do grep -qx "$kv" <<<"$env" || return 1; done
}
reboot_router() {
    local code
    code=$(post /update/reboot)
    echo "  reboot requested: HTTP $code" >&2
    wait_qemu_exit 90 && return 0
    stop_router
    return 1
}
stop_router() {
    kill -9 "$QEMU_PID" 2>/dev/null || true
    wait_qemu_exit 20 || true
}

# rauc_answers: waits until A is confirmed good, which init does once RAUC answers on
# D-Bus: gatewayd is ready before dbus, so a bundle posted at once could find no RAUC.
rauc_answers() { wait_serial 'slot A confirmed good' 120 || true; }

# --- 1. happy path ----------------------------------------------------------------
test_happy() {
    echo "=== 1. happy path: A installs $GOOD, reboots into B, B proves healthy"
    fresh_disk
    up 1 || { check "router boots slot A" false; return; }
    # An owner's config: it must be there after the update.
    console_do 7 'Leave the shell' 20 || true
    console_do "printf '[system]\\nhostname = \"updtest\"\\n' >/data/gatehouse.toml; sync; exit" 'Choice' 20 || true
    ip1=$(lease_ip lan1)
    local t0 code state
    rauc_answers
    t0=$(now)
    code=$(post /update/url --data-urlencode "url=$SRV/good.raucb")
    check "the UI accepts the bundle URL (HTTP $code)" test "$code" = 303 -o "$code" = 200
    state=$(wait_install 600) || true
    FIGURES+=("install time (download + install, TCG): $(since "$t0") s")
    check "the install completes with no error" jq -e '.last_error == "" and .pending.to_slot == "B"' <<<"$state"
    check "RAUC made slot B the next boot; A is the confirmed slot" grubenv_has 'ORDER=B A' 'CONFIRMED=A'
    t0=$(now)
    check "the owner's reboot restarts the machine" reboot_router
    up 2 || { check "router boots after the update" false; return; }
    check "the next boot is slot B, flagged by GRUB as a trial" grep -q 'rauc.slot=B gatehouse.trial' "$SERIAL"
    check "B passes its health gate (DHCP, DNS, UI, WAN)" wait_serial 'health: slot B healthy' 300
    FIGURES+=("reboot to marked good: $(since "$t0") s (QEMU restart and TCG boot included)")
    check "B is marked good" wait_serial 'slot B confirmed good through RAUC' 30
    state=$(api || true)
    check "the UI shows the new version ($GOOD) running in B" \
        jq -e --arg v "$GOOD" '.version == $v and .boot_slot == "B"' <<<"$state"
    check "the UI reports the update as good" jq -e '.last.result == "good" and .pending == null' <<<"$state"
    check "the admin password survived (login, no setup)" test -n "$CSRF"
    check "the lease survived: lan1 got $ip1 back" test -n "$ip1" -a "$(lease_ip lan1)" = "$ip1"
    check "the config survived: hostname updtest, version $GOOD, slot B" \
        console_do 1 "updtest: version $GOOD, booted from slot B" 20
    stop_router
    check "grubenv: B good, out of trial, first, confirmed" grubenv_has 'B_OK=1' 'B_TRY=0' 'ORDER=B A' 'CONFIRMED=B'
}

# rolled_back_checks WHAT REASON-PATTERN: after a failed update, A is back and says why.
rolled_back_checks() {
    local state page
    check "$1: A boots again with no input" grep -q 'rauc.slot=A' "$SERIAL"
    check "$1: A is confirmed good" wait_serial 'slot A confirmed good' 120
    state=$(api || true)
    check "$1: the UI reports the rollback with its reason" \
        jq -e --arg r "$2" '.last.result == "rolled-back" and (.last.reason | test($r)) and .version != .last.to_version' <<<"$state"
    page=$(ui_get "$LAB-lan1" $UI "$JAR" /update || true)
    check "$1: the update page says it failed and rolled back" grep -qi 'failed, rolled back' <<<"$page"
}

# --- 2. broken update: gatewayd exits at start ----------------------------------------
test_broken_gatewayd() {
    echo "=== 2. broken update: $BROKEN_GW, whose gatewayd exits at start (uploaded)"
    fresh_disk
    up 1 || { check "router boots slot A" false; return; }
    local code state t0
    rauc_answers
    code=$(post /update/upload -F "bundle=@$BUNDLES/broken-gatewayd.raucb")
    check "the UI takes the uploaded bundle (HTTP $code)" test "$code" = 303 -o "$code" = 200
    state=$(wait_install 600) || true
    check "the broken bundle installs (it is validly signed)" jq -e '.pending.to_slot == "B"' <<<"$state"
    t0=$(now)
    reboot_router || true
    boot_router 2
    check "the trial boot is slot B" wait_serial 'rauc.slot=B' "$BOOT_TIMEOUT"
    check "B's health gate sees the crash loop and rolls back" wait_serial 'failed its trial: gatewayd crash-looped' 240
    check "B reboots by itself" wait_qemu_exit 60
    up 3 || { check "router comes back" false; return; }
    FIGURES+=("roll back (broken gatewayd), reboot to A serving: $(since "$t0") s")
    rolled_back_checks "broken gatewayd" "gatewayd crash-looped"
    stop_router
}

# --- 3. power cut in the middle of an install ---------------------------------------------
test_power_cut() {
    echo "=== 3. power cut during the install"
    fresh_disk
    up 1 || { check "router boots slot A" false; return; }
    local state pct=0 t=0
    rauc_answers
    post /update/url --data-urlencode "url=$SRV/good.raucb" >/dev/null
    # Wait until RAUC is writing the slot, then pull the plug.
    while [ $t -lt 600 ]; do
        state=$(api 2>/dev/null || true)
        pct=$(jq -r '.progress.percent // 0' <<<"$state" 2>/dev/null || echo 0)
        jq -e '.operation == "installing"' <<<"$state" >/dev/null 2>&1 && [ "${pct:-0}" -ge 40 ] && break
        sleep 0.5
        t=$((t + 1))
    done
    kill -9 "$QEMU_PID"
    wait_qemu_exit 20 || true
    echo "  power cut at ${pct}% ($(jq -r '.progress.message' <<<"$state" 2>/dev/null))"
    check "the plug was pulled mid-install (at ${pct}%)" test "${pct:-0}" -ge 40 -a "${pct:-0}" -lt 100
    check "grubenv still boots A first; B is marked bad" grubenv_has 'ORDER=A B' 'B_OK=0'
    up 2 || { check "router boots after the power cut" false; return; }
    check "the next boot is A" grep -q 'rauc.slot=A' "$SERIAL"
    check "/data was left unclean by the power cut: e2fsck -p runs" \
        grep -q 'data: checking /dev/[a-z0-9]* (e2fsck -p): the journal needs recovery' "$SERIAL"
    check "A is healthy and confirmed" wait_serial 'slot A confirmed good' 120
    state=$(api || true)
    check "no half-done update is pending" jq -e '.pending == null' <<<"$state"
    # The retry, from the recovery console this time.
    wait_serial 'Power off' 60 || true
    console_do 10 'path or http' 20 || true
    console_do "$SRV/good.raucb" 'Type yes' 120 || true
    check "a retried install (from the serial console) succeeds" console_do yes 'Installed. Reboot' 600
    sleep 1
    check "the retry made B the next boot" grubenv_has 'ORDER=B A'
    stop_router
}

# install_on_fresh_disk BUNDLE WHAT: flashes a fresh disk, boots A and installs
# BUNDLE from the lab's server; checks WHAT (slot B pending). Fails if A did not boot.
install_on_fresh_disk() {
    local state
    fresh_disk
    up 1 || { check "router boots slot A" false; return 1; }
    rauc_answers
    post /update/url --data-urlencode "url=$SRV/$1.raucb" >/dev/null
    state=$(wait_install 600) || true
    check "$2" jq -e '.pending.to_slot == "B"' <<<"$state"
}

# --- 4. kernel panic in B: GRUB's try counter ------------------------------------------------
test_kernel_panic() {
    echo "=== 4. B's init dies, the kernel panics: GRUB's try counter brings A back"
    local t0
    install_on_fresh_disk broken-init "the bundle with a broken init installs" || return
    t0=$(now)
    reboot_router || true
    boot_router 2
    check "B's kernel panics (init exits)" wait_serial 'Kernel panic' "$BOOT_TIMEOUT"
    check "the panic reboots the machine" wait_qemu_exit 60
    check "grubenv: B was tried once (B_TRY=1)" grubenv_has 'B_TRY=1'
    up 3 || { check "router comes back" false; return; }
    FIGURES+=("roll back (kernel panic), reboot to A serving: $(since "$t0") s")
    rolled_back_checks "kernel panic" "never reported healthy"
    check "A marks B bad after the rollback" wait_serial 'slot B marked bad' 30
    stop_router
}

# --- 5. bad bundles ---------------------------------------------------------------------------
test_bad_bundles() {
    echo "=== 5. bad bundles are refused and change no slot state"
    fresh_disk
    up 1 || { check "router boots slot A" false; return; }
    rauc_answers
    local before state name
    before=$(grubenv_get)
    for name in wrong-signature wrong-compatible truncated older; do
        post /update/url --data-urlencode "url=$SRV/$name.raucb" >/dev/null
        state=$(wait_install 300) || true
        echo "  $name: $(jq -r '.last_error' <<<"$state" 2>/dev/null | head -c 200)"
        check "$name: refused with an error, nothing pending" \
            jq -e '.last_error != "" and .pending == null' <<<"$state"
        check "$name: grubenv untouched" test "$(grubenv_get)" = "$before"
    done
    check "older: the error asks for the downgrade confirmation" \
        jq -e '.last_error | test("older|downgrade"; "i")' <<<"$state"
    # A flipped payload byte passes the signature check; dm-verity stops the
    # copy at the bad block. A and the boot order stay as they were.
    post /update/url --data-urlencode "url=$SRV/corrupt.raucb" >/dev/null
    state=$(wait_install 600) || true
    echo "  corrupt: $(jq -r '.last_error' <<<"$state" 2>/dev/null | head -c 200)"
    check "corrupt payload: the install fails with an error, nothing pending" \
        jq -e '.last_error != "" and .pending == null' <<<"$state"
    check "corrupt payload: A stays first and good" grubenv_has 'ORDER=A B' 'A_OK=1'
    state=$(api || true)
    check "the rejections are counted" jq -e '.counters.rejected >= 4' <<<"$state"
    stop_router
}

# --- 6. config migration across a schema change, and back ---------------------------------
test_schema() {
    echo "=== 6. config migration: schema 1 (A) -> schema 2 ($NEXT_SCHEMA in B) -> manual rollback to A"
    fresh_disk
    up 1 || { check "router boots slot A" false; return; }
    # The config as this release writes it: schema 1.
    console_do 7 'Leave the shell' 20 || true
    console_do "printf 'schema = 1\n\n[system]\nhostname = \"schematest\"\n' >/data/gatehouse.toml; sync; exit" 'Choice' 20 || true
    local state page
    rauc_answers
    post /update/url --data-urlencode "url=$SRV/next-schema.raucb" >/dev/null
    state=$(wait_install 600) || true
    check "the schema-2 release installs" jq -e '.pending.to_slot == "B"' <<<"$state"
    reboot_router || true
    up 2 || { check "router boots B" false; return; }
    check "B (schema 2) passes its health gate" wait_serial 'health: slot B healthy' 300
    check "B migrated the config and says so" wait_serial 'config: .*schema 1.*2\|migrated' 5
    console_do 7 'Leave the shell' 20 || true
    check "B wrote schema 2 and archived the schema-1 file" console_do \
        'grep -q "^schema = 2" /data/gatehouse.toml && grep -q "^schema = 1" /data/config-archive/gatehouse.schema1.toml && echo MIGRATED-$((6*7)); exit' 'MIGRATED-42' 20
    check "B runs with the owner's config (hostname schematest)" console_do 1 "schematest: version $NEXT_SCHEMA, booted from slot B" 20
    # Manual rollback from the UI: A is good, so the switch is offered.
    state=$(api || true)
    check "the UI offers the switch back to A" jq -e '.switch_to == "A"' <<<"$state"
    local code
    code=$(post /update/switch)
    echo "  switch requested: HTTP $code"
    check "the switch reboots" wait_qemu_exit 90
    up 3 || { check "router comes back on A" false; return; }
    check "the old release (A) boots" grep -q 'rauc.slot=A' "$SERIAL"
    check "A reads its archived schema-1 config, not the newer file" wait_serial 'config-archive/gatehouse.schema1.toml' 60
    check "A still has the owner's config (hostname schematest)" \
        console_do 1 "schematest: version $BASE, booted from slot A" 20
    check "A serves DHCP on the LAN" test -n "$(lease_ip lan1)"
    stop_router
}

# init_fatal_on_trial KNOB REASON LABEL: a good bundle whose trial boot has a fatal error in
# init (gatehouse.inject=KNOB in grubenv's extra_cmdline, set while the machine is off; the
# knobs are inert except in a trial boot, so A boots normally afterwards with the same command
# line). B's init marks B bad and reboots; A comes back and gives REASON for the rollback.
init_fatal_on_trial() {
    local knob=$1 reason=$2 label=$3 t0
    install_on_fresh_disk good "the bundle installs" || return
    check "A is the confirmed slot" grubenv_has 'CONFIRMED=A'
    reboot_router || true
    grubenv_set "extra_cmdline=gatehouse.inject=$knob"
    t0=$(now)
    boot_router 2
    check "the trial boot is slot B, flagged by GRUB" \
        wait_serial "rauc.slot=B gatehouse.trial gatehouse.inject=$knob" "$BOOT_TIMEOUT"
    check "B's PID 1 catches the fatal error" \
        wait_serial "init: fatal error: gatehouse.inject=$knob" "$BOOT_TIMEOUT"
    if [ "$knob" = panic-before-data ]; then
        check "it came before /data was mounted" bash -c "! grep -q 'data partition .* mounted on' '$SERIAL'"
    fi
    check "init knows it is a trial boot and reboots" \
        wait_serial 'this is a trial boot; rebooting so the bootloader falls back' 30
    check "B reboots by itself (services stopped, no kernel panic)" wait_qemu_exit 90
    check "no kernel panic on the way" bash -c "! grep -q 'Kernel panic' '$SERIAL'"
    check "grubenv: B marked bad by its own init (B_OK=0), A still confirmed" grubenv_has 'B_OK=0' 'CONFIRMED=A'
    up 3 || { check "router comes back" false; return; }
    FIGURES+=("roll back ($label), reboot to A serving: $(since "$t0") s")
    rolled_back_checks "$label" "$reason"
    check "A boots unflagged with the knob on its command line and stays up" \
        bash -c "grep -q 'rauc.slot=A gatehouse.inject=$knob' '$SERIAL' && ! grep -q 'init: fatal error' '$SERIAL'"
    stop_router
    grubenv_set extra_cmdline=
}

# --- 7. fatal error in B's PID 1: init reboots to A itself ---------------------------------
test_init_panic() {
    echo "=== 7. B's init hits a fatal error in its trial boot: it marks B bad and reboots to A"
    init_fatal_on_trial panic-on-trial "init hit a fatal error: gatehouse.inject=panic-on-trial" \
        "init fatal error"
}

# --- 8. the same before /data (and its update record) is mounted: GRUB's flag says "trial" --
test_init_panic_early() {
    echo "=== 8. B's init fails before /data is mounted: GRUB's trial flag makes it fall back"
    init_fatal_on_trial panic-before-data "slot B never reported healthy" \
        "init fatal error before /data"
}

for t in "${TESTS[@]}"; do
    # A test that gave up early may have left its QEMU running on the lab's taps.
    [ -z "${QEMU_PID:-}" ] || stop_router
    case "$t" in
    happy) test_happy ;;
    broken-gatewayd) test_broken_gatewayd ;;
    power-cut) test_power_cut ;;
    kernel-panic) test_kernel_panic ;;
    bad-bundles) test_bad_bundles ;;
    schema) test_schema ;;
    init-panic) test_init_panic ;;
    init-panic-early) test_init_panic_early ;;
    *) echo "unknown test $t" >&2; exit 2 ;;
    esac
done
echo
echo "figures (x86_64 under $accel):"
for f in "${FIGURES[@]}"; do echo "  $f"; done
finish
