#!/usr/bin/env bash
# make bundle: for each ARCH given (default x86_64), builds the bundle from the
# image build in OUT (default build/) and checks that rauc accepts it and
# rejects it damaged: a flipped byte in the payload (found by `rauc extract`,
# which reads the payload through its verity hashes, as an install does), a
# truncated file, and a keyring that did not sign it. Needs root (extract).
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$REPO/build}
KEYS=${GATEHOUSE_KEYS:-$HOME/.gatehouse-keys}
WORK=$(mktemp -d /tmp/gh-bundle-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
passed=0 failed=0
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then echo "ok   - $what"; passed=$((passed + 1))
    else echo "FAIL - $what"; failed=$((failed + 1)); fi
}
info() { rauc info --keyring="${2:-$KEYS/dev-ca.cert.pem}" "$1"; }

# A CA that signed nothing of ours.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=stranger" \
    -keyout "$WORK/other.key" -out "$WORK/other-ca.pem" 2>/dev/null

for arch in "${@:-x86_64}"; do
    log=$WORK/bundle-$arch.log
    "$REPO/scripts/bundle" "$arch" "$OUT" >"$log" 2>&1
    check "$arch: make bundle builds and verifies a bundle" test $? = 0
    b=$(sed -n 's/^bundle: \(.*\.raucb\) (.*/\1/p' "$log")
    [ -f "$b" ] || { echo "FAIL - $arch: no bundle ($(cat "$log"))"; failed=$((failed + 1)); continue; }
    check "$arch: rauc info names compatible gatehouse-$arch" sh -c "rauc info --keyring='$KEYS/dev-ca.cert.pem' '$b' | grep -q \"Compatible:[[:space:]]*'gatehouse-$arch'\""
    size=$(stat -c %s "$b")
    cp "$b" "$WORK/flipped.raucb"
    # One byte in the middle of the squashfs payload.
    printf '\xff' | dd of="$WORK/flipped.raucb" bs=1 seek=$((size / 2)) conv=notrunc status=none
    check "$arch: the intact payload extracts and matches the image's root" sh -c "rauc extract --keyring='$KEYS/dev-ca.cert.pem' '$b' '$WORK/x-good' && cmp '$WORK/x-good/rootfs.squashfs' '$(
        [ "$arch" = x86_64 ] && echo "$OUT/rootfs.squashfs" || echo "$OUT/aarch64/rootfs.squashfs")'"
    check "$arch: a flipped payload byte is rejected" sh -c "! rauc extract --keyring='$KEYS/dev-ca.cert.pem' '$WORK/flipped.raucb' '$WORK/x-bad'"
    head -c $((size - 4096)) "$b" >"$WORK/short.raucb"
    check "$arch: a truncated bundle is rejected" sh -c "! rauc info --keyring='$KEYS/dev-ca.cert.pem' '$WORK/short.raucb'"
    check "$arch: a bundle signed by someone else's CA is rejected" sh -c "! rauc info --keyring='$WORK/other-ca.pem' '$b'"
    echo "  $arch bundle: $(basename "$b"), $((size / 1024 / 1024)) MiB"
    rm -rf "$b" "$WORK/x-good" "$WORK/x-bad"
done
echo "bundle: $passed passed, $failed failed"
[ "$failed" = 0 ]
