#!/usr/bin/env bash
# Tests scripts/flash against plain files and loop devices on files, never a
# real disk. A stub lsblk (first in PATH) dresses a loop device up as a USB
# stick, a partition, or a disk with mounted or stacked children, so the
# safety rules run on a real block device.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
FLASH="$REPO/scripts/flash"
T=$(mktemp -d /tmp/gha-flash.XXXXXX)
loops=()
mnt=
passed=0
failed=0
skipped=0

cleanup() {
    local l
    [ -z "$mnt" ] || umount "$mnt" 2>/dev/null || true
    for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok   - $what"
        passed=$((passed + 1))
    else
        echo "FAIL - $what"
        failed=$((failed + 1))
    fi
}
skip() {
    echo "skip - $1"
    skipped=$((skipped + 1))
}

# flash ARGS...: runs the tool, output in $T/out, exit code in $rc.
flash() {
    rc=0
    "$FLASH" "$@" >"$T/out" 2>&1 </dev/null || rc=$?
}
said() { grep -q -- "$1" "$T/out"; }
refused() { [ "$rc" -ne 0 ] && said "$1"; }
same_start() { cmp -s -n "$(stat -c %s "$1")" "$1" "$2"; }

# An image with holes and data, 9 MiB, and one whose size is not a whole number of 4 KiB blocks.
truncate -s 9M "$T/img"
for off in 0 3 8; do head -c 512K /dev/urandom | dd of="$T/img" bs=1M seek=$off conv=notrunc status=none; done
head -c $((9 * 1048576 + 1000)) /dev/urandom >"$T/odd.img"

# --- arguments and plain files ----------------------------------------------------
flash "$T/img"
check "usage error without a target" test "$rc" -eq 2
flash "$T/img" "$T/nonexistent"
check "refuses a path that does not exist, and creates nothing" \
    sh -c "[ $rc -ne 0 ] && grep -q 'does not exist' '$T/out' && [ ! -e '$T/nonexistent' ]"
flash --force --yes "$T/missing.img" "$T/img"
check "refuses a missing image" refused "no such image"

head -c 16M /dev/urandom >"$T/card"
cp "$T/card" "$T/card.before"
flash --yes "$T/img" "$T/card"
check "refuses a plain file without --force" refused "not a removable or USB disk"
check "  ... and leaves it untouched" cmp -s "$T/card" "$T/card.before"
flash --force "$T/img" "$T/card"
check "asks for confirmation, and refuses to ask without a terminal" refused "add --yes"
check "  ... after showing the target" sh -c "grep -q 'model: *plain file' '$T/out' && grep -q 'size: *16.0MiB' '$T/out'"
check "  ... and leaves it untouched" cmp -s "$T/card" "$T/card.before"
if command -v script >/dev/null; then
    rc=0
    printf 'no\n' | script -qec "'$FLASH' --force '$T/img' '$T/card'" /dev/null >"$T/out" 2>&1 || rc=$?
    check "answering anything but yes at the prompt writes nothing" \
        sh -c "[ $rc -ne 0 ] && grep -q 'nothing written' '$T/out' && cmp -s '$T/card' '$T/card.before'"
    rc=0
    printf 'yes\n' | script -qec "'$FLASH' --force '$T/img' '$T/card'" /dev/null >"$T/out" 2>&1 || rc=$?
    check "answering yes at the prompt writes and verifies, with a progress bar" \
        sh -c "[ $rc -eq 0 ] && grep -q 'Verified' '$T/out' && grep -q '\[#####' '$T/out'"
    check "  ... the image is on the target" same_start "$T/img" "$T/card"
    cp "$T/card.before" "$T/card"
else
    skip "prompt tests (no script(1))"
fi
truncate -s 4M "$T/small"
flash --force --yes "$T/img" "$T/small"
check "refuses a target smaller than the image" refused "the image needs"

flash --force --yes "$T/img" "$T/card"
check "--force --yes writes a plain file and verifies it" sh -c "[ $rc -eq 0 ] && grep -q '^Verified: SHA-256' '$T/out'"
check "  ... the target starts with the image" same_start "$T/img" "$T/card"
check "  ... the space after the image is untouched" \
    cmp -s -i $((9 * 1048576)) -n $((6 * 1048576)) "$T/card" "$T/card.before"
check "  ... the last MiB (an old backup GPT) is zeroed" \
    sh -c "tail -c 1048576 '$T/card' | cmp -s -n 1048576 - /dev/zero"
check "  ... the file keeps its size" test "$(stat -c %s "$T/card")" -eq $((16 * 1048576))
check "  ... progress is reported without a terminal" grep -q 'writing 100%' "$T/out"

# --- loop devices ----------------------------------------------------------------------
# attach FILE: a loop device on FILE, in $LOOP (not via $(...), so cleanup knows it).
attach() {
    LOOP=$(losetup -f --show "$1" 2>/dev/null) || return 1
    loops+=("$LOOP")
}
truncate -s 24M "$T/disk"
if ! attach "$T/disk"; then
    skip "loop device tests (losetup cannot attach here)"
else
    loop=$LOOP
    flash --yes "$T/img" "$loop"
    check "refuses a loop device (not removable) without --force" refused "not a removable or USB disk"
    flash --yes --force "$T/img" "$loop"
    check "--force writes a loop device and verifies it" sh -c "[ $rc -eq 0 ] && grep -q '^Verified' '$T/out'"
    check "  ... the backing file starts with the image" same_start "$T/img" "$T/disk"
    flash --yes --force "$T/odd.img" "$loop"
    check "an image of an odd size (no direct I/O) is written and verified" \
        sh -c "[ $rc -eq 0 ] && grep -q '^Verified' '$T/out'"
    flash --yes --force "$T/img" "$T/disk"
    check "refuses a file that backs a loop device" refused "attached to"
    truncate -s 4M "$T/tiny"
    if attach "$T/tiny"; then
        flash --yes --force "$T/img" "$LOOP"
        check "refuses a device smaller than the image" refused "the image needs"
    fi

    # A filesystem on the loop device, mounted: refused even with --force.
    mkfs.ext4 -q -F "$loop" >/dev/null 2>&1
    mnt="$T/mnt"
    mkdir -p "$mnt"
    if mount "$loop" "$mnt" 2>/dev/null; then
        flash --yes --force "$T/img" "$loop"
        check "refuses a mounted disk, even with --force" refused "in use"
        check "  ... and names the mount point" said "on $mnt"
        umount "$mnt"
    else
        skip "mounted-disk test (cannot mount here)"
    fi
    mnt=

    # The same loop device as lsblk would show a USB stick, a partition, and disks in use.
    mkdir -p "$T/bin"
    cat >"$T/bin/lsblk" <<'EOF'
#!/bin/sh
cat "$LSBLK_FIXTURE"
EOF
    chmod +x "$T/bin/lsblk"
    stub() { printf '%s\n' "$@" >"$T/fixture"; }
    with_stub() { PATH="$T/bin:$PATH" LSBLK_FIXTURE="$T/fixture" flash "$@"; }
    usb='NAME="sdz" TYPE="disk" SIZE="25165824" RM="1" HOTPLUG="1" TRAN="usb" VENDOR="SanDisk " MODEL="Ultra Fit" RO="0" MOUNTPOINT="" FSTYPE="" LABEL=""'
    part1='NAME="sdz1" TYPE="part" SIZE="16777216" RM="1" HOTPLUG="1" TRAN="" VENDOR="" MODEL="" RO="0" MOUNTPOINT="" FSTYPE="vfat" LABEL="PHOTOS"'
    stub "$usb" "$part1"
    with_stub --yes "$T/img" "$loop"
    check "a removable USB disk needs no --force" sh -c "[ $rc -eq 0 ] && grep -q '^Verified' '$T/out'"
    check "  ... the model, size and current partitions are shown" \
        sh -c "grep -q 'model: *SanDisk Ultra Fit' '$T/out' && grep -q 'connection: usb' '$T/out' && grep -q 'sdz1 .*vfat *PHOTOS' '$T/out'"
    stub "${part1/sdz1/sdz}"
    with_stub --yes --force "$T/img" "$loop"
    check "refuses a partition, even with --force" refused "is a partition"
    stub "$usb" "${part1/MOUNTPOINT=\"\"/MOUNTPOINT=\"/media/me/PHOTOS\"}"
    with_stub --yes --force "$T/img" "$loop"
    check "refuses a disk with a mounted partition, even with --force" refused "sdz1 on /media/me/PHOTOS"
    stub "$usb" "${part1/MOUNTPOINT=\"\"/MOUNTPOINT=\"[SWAP]\"}"
    with_stub --yes --force "$T/img" "$loop"
    check "refuses a disk with swap on it" refused "SWAP"
    stub "$usb" "$part1" 'NAME="vg-data" TYPE="lvm" SIZE="16777216" RM="0" HOTPLUG="0" TRAN="" VENDOR="" MODEL="" RO="0" MOUNTPOINT="" FSTYPE="" LABEL=""'
    with_stub --yes --force "$T/img" "$loop"
    check "refuses a disk with LVM on it, even unmounted" refused "(lvm) is built on it"
    stub "${usb/RO=\"0\"/RO=\"1\"}"
    with_stub --yes "$T/img" "$loop"
    check "refuses a read-only disk" refused "read-only"
    stub "${usb/TYPE=\"disk\"/TYPE=\"rom\"}"
    with_stub --yes --force "$T/img" "$loop"
    check "refuses a device that is not a disk" refused "not a disk"
    # A fake-capacity stick: it claims more than it has, so writes fail.
    if attach "$T/tiny"; then
        stub "${usb/SIZE=\"25165824\"/SIZE=\"67108864\"}"
        with_stub --yes "$T/img" "$LOOP"
        check "a medium smaller than it claims fails loudly, never 'Verified'" \
            sh -c "[ $rc -ne 0 ] && ! grep -q Verified '$T/out'"
    fi
fi

echo "flash: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
