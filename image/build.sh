#!/usr/bin/env bash
# Composes the Gatehouse disk image (x86_64 or aarch64) from Debian bookworm
# binary packages and our release binaries. No loop mounts, no root-only block
# devices: every filesystem is built from a directory (mksquashfs, mkfs.vfat +
# mtools) and placed into the GPT image with dd at the offsets sfdisk chose.
#
# usage: image/build.sh BIN_DIR OUT_DIR [ARCH]
#   BIN_DIR holds gatewayd and gatehouse-init (static, release) for ARCH
#   OUT_DIR receives gatehouse-ARCH.img; work files (rootfs, ESP, ...) go to
#           OUT_DIR itself for x86_64 and OUT_DIR/aarch64 for aarch64
#   ARCH    x86_64 (default) or aarch64
set -euo pipefail

BIN_DIR=$(realpath "$1")
OUT=$(realpath -m "$2")
ARCH=${3:-x86_64}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE="$OUT/cache"

# Partition sizes in MiB. The layout is fixed for the life of a device: A/B
# updates rewrite slots in place, so changing these later would strand users.
# Both architectures share it, so init and the update tooling see one layout.
BIOS_MIB=1
ESP_MIB=32
SLOT_MIB=384
DATA_MIB=128
# Partition numbers (GPT order): 1 bios-boot, 2 ESP, 3 slot A, 4 slot B, 5 data.
SLOT_A_PART=3
SLOT_B_PART=4
ESP_TYPE=C12A7328-F81F-11D2-BA4B-00A0C93EC93B

case "$ARCH" in
x86_64)
    DEB_ARCH=amd64
    WORK=$OUT
    CMDLINE="console=tty0 console=ttyS0,115200 loglevel=6 panic=5"
    EFI_TARGET=x86_64-efi
    EFI_NAME=BOOTX64.EFI
    # gzip, not xz: every page of every program is inflated from the slot when
    # first touched, and xz made that the largest part of the time from PID 1
    # to DHCP (3.4 s to read gatewayd cold under TCG). GRUB reads only xz,
    # gzip and lzo from squashfs, so zstd and lz4 are out.
    SQUASH_OPTS=(-comp gzip)
    ESP_ATTRS=
    GRUB_TERMINAL='serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console'
    ;;
aarch64)
    DEB_ARCH=arm64
    WORK=$OUT/aarch64
    # No console=: the kernel then uses the port the firmware names (ACPI SPCR
    # on QEMU virt and UEFI servers, the device tree's stdout-path on the Pi:
    # ttyAMA0 and ttyS1 respectively), and init follows /dev/console.
    CMDLINE="loglevel=6 panic=5"
    EFI_TARGET=arm64-efi
    EFI_NAME=BOOTAA64.EFI
    # gzip: the arm64 kernel is a 33 MB uncompressed Image, and GRUB inflates
    # it from a gzip slot in half the time it takes from xz (5 s less under
    # TCG), for 6 MB more per slot.
    SQUASH_OPTS=(-comp gzip)
    # U-Boot's distro boot only scans partitions flagged bootable.
    ESP_ATTRS=', attrs="LegacyBIOSBootable"'
    GRUB_TERMINAL='# The firmware console (AAVMF, U-Boot) already is the serial port.
terminal_input console
terminal_output console'
    ;;
*)
    echo "unknown ARCH '$ARCH' (x86_64 or aarch64)" >&2
    exit 1
    ;;
esac
mkdir -p "$OUT" "$WORK" "$CACHE"

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
size() { du -sh --apparent-size "$1" | cut -f1; }
# Concatenates a list and, if present, its per-architecture addition.
list_for_arch() { cat "$HERE/$1"; [ ! -f "$HERE/$DEB_ARCH/$1" ] || cat "$HERE/$DEB_ARCH/$1"; }

# Derive an apt sources file from the host's, so no mirror name lives in the repo.
host_sources() {
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
        [ -s "$f" ] && grep -q '^[^#]' "$f" && { echo "$f"; return; }
    done
    echo "no apt sources on this host" >&2
    exit 1
}

# cached_deb PKG: prints the cached .deb of PKG (name_version_arch.deb) for DEB_ARCH or all.
cached_deb() { ls "$CACHE/$1"_*_{"$DEB_ARCH",all}.deb 2>/dev/null | head -1 || true; }

# fetch_deb PKG: downloads PKG for DEB_ARCH into the cache once; prints its path.
fetch_deb() {
    [ -n "$(cached_deb "$1")" ] || (cd "$CACHE" && apt-get download -q "$1:$DEB_ARCH" >&2)
    cached_deb "$1"
}

# fetch_nonfree_deb PKG: the same for a package in non-free-firmware (the Pi
# boot firmware), through a private apt state whose sources are the host's
# with only that component, so the host's apt configuration is never touched.
fetch_nonfree_deb() {
    local src apt_dir="$CACHE/apt-non-free-firmware" list opts
    if [ -z "$(cached_deb "$1")" ]; then
        src=$(host_sources)
        mkdir -p "$apt_dir/lists/partial"
        case "$src" in
        *.sources)
            list="$apt_dir/sources.sources"
            sed 's/^Components:.*/Components: non-free-firmware/' "$src" >"$list"
            ;;
        *)
            list="$apt_dir/sources.list"
            sed -nE 's/^(deb(\s+\[[^]]*\])?\s+\S+\s+\S+)\s.*/\1 non-free-firmware/p' "$src" >"$list"
            ;;
        esac
        opts=(-o "Dir::Etc::SourceList=$list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
        apt-get "${opts[@]}" update -q >&2
        (cd "$CACHE" && apt-get "${opts[@]}" download -q "$1" >&2)
    fi
    cached_deb "$1"
}

# unpack_deb DEB: extracts DEB once into the cache; prints the tree.
unpack_deb() {
    local dir
    dir="$CACHE/$(basename "$1" .deb)"
    if [ ! -f "$dir/.done" ]; then
        rm -rf "$dir" && dpkg -x "$1" "$dir" && touch "$dir/.done"
    fi
    echo "$dir"
}

# busybox_applets BINARY: the applet names of a busybox binary of any
# architecture, read from the NUL-separated sorted name table it carries
# (the same list `busybox --list` prints, without running the binary).
busybox_applets() {
    python3 - "$1" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"[\0[[\0")
names = []
if start >= 0:
    for n in data[start:].split(b"\0"):
        if not n:
            break
        names.append(n.decode())
if "sh" not in names or "udhcpc" not in names:
    sys.exit("busybox applet table not found in " + sys.argv[1])
print("\n".join(names))
EOF
}

# --- kernel and modules ----------------------------------------------------
kernel_pkg_name() {
    apt-cache depends "linux-image-$DEB_ARCH:$DEB_ARCH" |
        awk '/Depends: linux-image-[0-9]/{sub(/:.*/, "", $2); print $2; exit}'
}
fetch_kernel() {
    [ -n "$kernel_pkg" ] || return 1
    ls "$CACHE/${kernel_pkg}"_*.deb >/dev/null 2>&1 && return 0
    (cd "$CACHE" && apt-get download -q "$kernel_pkg:$DEB_ARCH")
}
kernel_pkg=$(kernel_pkg_name)
# Stale package lists name a kernel the mirror has dropped: refresh and ask again.
if ! fetch_kernel; then
    apt-get update -q
    kernel_pkg=$(kernel_pkg_name)
    fetch_kernel
fi
KVER=${kernel_pkg#linux-image-}
kdir="$CACHE/kernel-$KVER"
if [ ! -f "$kdir/.done" ]; then
    say "unpacking kernel $kernel_pkg"
    rm -rf "$kdir" && mkdir -p "$kdir"
    dpkg -x "$CACHE/${kernel_pkg}"_*.deb "$kdir/tree"
    depmod -b "$kdir/tree" "$KVER"
    touch "$kdir/.done"
fi
KTREE="$kdir/tree"
# Debian bookworm kernels are in /boot; newer layouts use /usr/lib/modules.
MODROOT="$KTREE/lib/modules/$KVER"
[ -d "$MODROOT" ] || MODROOT="$KTREE/usr/lib/modules/$KVER"

# Copies the dependency closure of the listed modules into DEST (a root tree).
copy_modules() {
    local list=$1 dest=$2 m
    mkdir -p "$dest/lib/modules/$KVER"
    cp "$MODROOT"/modules.{order,builtin,builtin.modinfo} "$dest/lib/modules/$KVER/" 2>/dev/null || true
    for m in $(sed 's/#.*//' "$list"); do
        modprobe -d "$KTREE" -S "$KVER" --show-depends "$m" 2>/dev/null |
            awk '$1 == "insmod" {print $2}' || true
        if ! modprobe -d "$KTREE" -S "$KVER" --show-depends "$m" >/dev/null 2>&1; then
            echo "warning: module $m not in kernel $KVER" >&2
        fi
    done | sort -u | while read -r ko; do
        rel=${ko#"$KTREE"}
        rel=${rel#/usr}
        mkdir -p "$dest$(dirname "$rel")"
        cp "$ko" "$dest$rel"
    done
    depmod -b "$dest" "$KVER"
}

# --- root filesystem -----------------------------------------------------
pkgs=$(sed 's/#.*//' "$HERE/packages.txt" | xargs | tr ' ' ',')
base_key=$(printf '%s %s' "$pkgs" "$(sha256sum "$HERE/packages.txt")" | sha256sum | cut -c1-12)
base_tar="$CACHE/base-$DEB_ARCH-$base_key.tar"
if [ ! -f "$base_tar" ]; then
    say "extracting Debian $DEB_ARCH packages: $pkgs"
    mmdebstrap --quiet --variant=extract --architectures=$DEB_ARCH --include="$pkgs" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        bookworm "${base_tar%.tar}.tmp.tar" "$(host_sources)"
    mv "${base_tar%.tar}.tmp.tar" "$base_tar"
fi

ROOT="$WORK/rootfs"
rm -rf "$ROOT" && mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$base_tar"
say "pruning"
rm -rf "$ROOT"/etc/apt/sources.list* "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* \
    "$ROOT"/usr/share/{doc,man,info,locale,lintian,bash-completion,zsh} \
    "$ROOT"/usr/lib/*-linux-gnu/gconv "$ROOT"/var/lib/dpkg/info/*.md5sums \
    "$ROOT"/usr/share/common-licenses
# The admin UI reads vendor names from oui.csv only; the other IEEE registries are 10 MiB.
find "$ROOT/usr/share/ieee-data" -type f ! -name oui.csv -delete 2>/dev/null || true
# The system bus serves RAUC only: systemd's bus policies (pulled in as
# dependencies) name users this system does not have, which dbus-daemon refuses.
find "$ROOT/usr/share/dbus-1/system.d" -name 'org.freedesktop.*.conf' -delete
# /var/run is where D-Bus clients look for the system bus socket.
mkdir -p "$ROOT/var"
ln -sfn /run "$ROOT/var/run"
# busybox provides the userland; link every applet the tree does not already have.
for applet in $(busybox_applets "$ROOT/usr/bin/busybox"); do
    [ -e "$ROOT/usr/bin/$applet" ] || [ -e "$ROOT/usr/sbin/$applet" ] || ln -s busybox "$ROOT/usr/bin/$applet"
done
# busybox's mke2fs makes ext2 only; make sure e2fsprogs' one wins.
for t in mke2fs e2fsck; do
    [ -x "$ROOT/usr/sbin/$t" ] || { echo "missing /usr/sbin/$t" >&2; exit 1; }
    rm -f "$ROOT/usr/bin/$t"
done
# The kernel runs /sbin/modprobe for what it loads on demand (the WLAN ciphers
# mac80211 asks the crypto API for); busybox's modprobe serves.
[ -e "$ROOT/usr/sbin/modprobe" ] || ln -s ../bin/busybox "$ROOT/usr/sbin/modprobe"
# wireless-regdb's maintainer script would point the kernel's regulatory.db at
# the copy signed with Debian's key, which Debian's kernel trusts; no script runs here.
for f in regulatory.db regulatory.db.p7s; do
    [ -f "$ROOT/lib/firmware/$f-debian" ] || { echo "missing /lib/firmware/$f-debian" >&2; exit 1; }
    ln -sfn "$f-debian" "$ROOT/lib/firmware/$f"
done
{
    list_for_arch modules.list
    list_for_arch modules-hw.list
    list_for_arch modules-extra.list
} >"$WORK/modules-all.list"
copy_modules "$WORK/modules-all.list" "$ROOT"
mkdir -p "$ROOT/etc/gatehouse"
list_for_arch modules.list | sed 's/#.*//;/^\s*$/d' > "$ROOT/etc/gatehouse/modules"
# Refuse binaries built for the other architecture: the image would not boot.
want_machine=$([ "$ARCH" = aarch64 ] && echo AArch64 || echo X86-64)
for b in gatewayd gatehouse-init gatehouse-console; do
    machine=$(readelf -h "$BIN_DIR/$b" | sed -n 's/^ *Machine: *//p')
    case "$machine" in
    *"$want_machine"*) ;;
    *) echo "$BIN_DIR/$b is built for '$machine', not $ARCH" >&2; exit 1 ;;
    esac
done
install -D -m 0755 "$BIN_DIR/gatewayd" "$ROOT/usr/sbin/gatewayd"
install -D -m 0755 "$BIN_DIR/gatehouse-init" "$ROOT/usr/sbin/gatehouse-init"
install -D -m 0755 "$BIN_DIR/gatehouse-console" "$ROOT/usr/sbin/gatehouse-console"
ln -sf gatehouse-init "$ROOT/usr/sbin/init"
# `logs` reads init's log rings (gatehouse-console knows the name). Not
# "logread": busybox's shell runs its own applet of that name whatever PATH says.
ln -sf gatehouse-console "$ROOT/usr/sbin/logs"
cp -a "$REPO/overlays/." "$ROOT/"
mkdir -p "$ROOT"/{proc,sys,dev,run,tmp,data,boot/efi,mnt,root}
# The version this image (and the bundle made from it) reports everywhere.
# shellcheck source=../scripts/signing-keys
. "$REPO/scripts/signing-keys"
VERSION=${VERSION:-$(build_version "$REPO")}
echo "$VERSION" >"$ROOT/etc/gatehouse/version"

# --- RAUC: system.conf, the keyring that verifies bundles, grub-editenv ------------
signing_keys
install -D -m 0644 "$KEYRING" "$ROOT/etc/rauc/keyring.pem"
sed "s/@ARCH@/$ARCH/" "$HERE/rauc/system.conf" >"$ROOT/etc/rauc/system.conf"
editenv="$(unpack_deb "$(fetch_deb grub-common)")/usr/bin/grub-editenv"
install -m 0755 "$editenv" "$ROOT/usr/bin/grub-editenv"

# --- initramfs -------------------------------------------------------------
say "initramfs"
IRD="$WORK/initramfs"
rm -rf "$IRD" && mkdir -p "$IRD"/{bin,etc}
cp "$ROOT/usr/bin/busybox" "$IRD/bin/busybox"
for a in sh mount umount mkdir cat grep sed sleep modprobe switch_root; do ln -s busybox "$IRD/bin/$a"; done
# The per-architecture list goes first: it holds what the common drivers need.
{
    [ ! -f "$HERE/$DEB_ARCH/initramfs-modules.list" ] || cat "$HERE/$DEB_ARCH/initramfs-modules.list"
    cat "$HERE/initramfs-modules.list"
} >"$WORK/initramfs-modules.list"
copy_modules "$WORK/initramfs-modules.list" "$IRD"
sed 's/#.*//;/^\s*$/d' "$WORK/initramfs-modules.list" > "$IRD/etc/modules"
install -m 0755 "$HERE/initramfs-init.sh" "$IRD/init"
(cd "$IRD" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$ROOT/boot/initrd.img"
cp "$KTREE/boot/vmlinuz-$KVER" "$ROOT/boot/vmlinuz"

# --- squashfs slot image ----------------------------------------------------
say "squashfs"
# xz or gzip, because GRUB 2.06 reads the kernel out of the slot and cannot read zstd squashfs.
rm -f "$WORK/rootfs.squashfs"
# Our own programs are stored uncompressed: their pages are read when first
# touched, and inflating them was most of gatewayd's start at boot under TCG.
# It costs the slot 12-16 MB; a bundle (gzip-compressed again by RAUC) grows
# by 5-10 MB, to 55 MB.
SQUASH_OPTS+=(-action 'uncompressed@name(gatewayd) || name(gatehouse-init) || name(gatehouse-console)')
mksquashfs "$ROOT" "$WORK/rootfs.squashfs" "${SQUASH_OPTS[@]}" -all-root -noappend -quiet -no-progress
sq_bytes=$(stat -c %s "$WORK/rootfs.squashfs")
if [ "$sq_bytes" -gt $((SLOT_MIB * 1024 * 1024)) ]; then
    echo "rootfs.squashfs ($sq_bytes bytes) does not fit a $SLOT_MIB MiB slot" >&2
    exit 1
fi

# --- ESP: GRUB for UEFI, plus the Raspberry Pi's boot chain on aarch64 --------
say "ESP"
ESP="$WORK/esp.vfat"
T="$GRUB_TERMINAL" awk '$0 == "@TERMINAL@" { print ENVIRON["T"]; next } { print }' "$HERE/grub.cfg" |
    sed -e "s/@SLOT_A_PART@/$SLOT_A_PART/g" -e "s/@SLOT_B_PART@/$SLOT_B_PART/g" -e "s|@CMDLINE@|$CMDLINE|g" \
        > "$WORK/grub.cfg"
grub_dir=/usr/lib/grub/$EFI_TARGET
if [ "$ARCH" = aarch64 ]; then
    # The host's grub-mkimage assembles the arm64 modules of the Debian package.
    grub_dir="$(unpack_deb "$(fetch_deb grub-efi-arm64-bin)")/usr/lib/grub/arm64-efi"
fi
grub-mkimage -O "$EFI_TARGET" -d "$grub_dir" -p /EFI/BOOT -o "$WORK/$EFI_NAME" \
    part_gpt fat squash4 xzio gzio normal linux echo test loadenv regexp search configfile \
    serial terminal sleep cat ls boot efi_gop all_video
rm -f "$WORK/grubenv"
grub-editenv "$WORK/grubenv" create
grub-editenv "$WORK/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=1 B_TRY=0
rm -f "$ESP"
mkfs.vfat -C -F 16 -n GATEHOUSE "$ESP" $((ESP_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/EFI ::/EFI/BOOT
mcopy -i "$ESP" "$WORK/$EFI_NAME" "$WORK/grub.cfg" "$WORK/grubenv" ::/EFI/BOOT/
if [ "$ARCH" = aarch64 ]; then
    # Raspberry Pi 4/400/CM4: the firmware (start4.elf) reads config.txt, loads
    # the board's device tree and U-Boot; U-Boot runs EFI/BOOT/BOOTAA64.EFI.
    fw="$(unpack_deb "$(fetch_nonfree_deb raspi-firmware)")/usr/lib/raspi-firmware"
    uboot="$(unpack_deb "$(fetch_deb u-boot-rpi)")/usr/lib/u-boot/rpi_arm64/u-boot.bin"
    dtbs="$KTREE/usr/lib/linux-image-$KVER/broadcom"
    rpi=(
        "$HERE/arm64/config.txt" "$fw/start4.elf" "$fw/fixup4.dat" "$uboot"
        "$dtbs/bcm2711-rpi-4-b.dtb" "$dtbs/bcm2711-rpi-400.dtb" "$dtbs/bcm2711-rpi-cm4-io.dtb"
    )
    for f in "${rpi[@]}"; do
        [ -s "$f" ] || { echo "Raspberry Pi boot file missing: $f" >&2; exit 1; }
    done
    mcopy -i "$ESP" "${rpi[@]}" ::/
fi

# --- data partition: left empty, init formats it on first boot -----------------

# --- GPT disk image ------------------------------------------------------------
say "disk image"
IMG="$OUT/gatehouse-$ARCH.img"
total_mib=$((1 + BIOS_MIB + ESP_MIB + 2 * SLOT_MIB + DATA_MIB + 1))
rm -f "$IMG"
truncate -s "${total_mib}M" "$IMG"
sfdisk --quiet "$IMG" <<EOF
label: gpt
size=${BIOS_MIB}MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios
size=${ESP_MIB}MiB, type=$ESP_TYPE, name=esp$ESP_ATTRS
size=${SLOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs.A
size=${SLOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs.B
size=${DATA_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
EOF
start_of() { sfdisk -J "$IMG" | python3 -c "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$1 - 1]['start'])"; }
put() { dd if="$1" of="$IMG" bs=512 seek="$(start_of "$2")" conv=notrunc,sparse status=none; }
put "$ESP" 2
put "$WORK/rootfs.squashfs" $SLOT_A_PART
put "$WORK/rootfs.squashfs" $SLOT_B_PART

# --- legacy BIOS: GRUB i386-pc in the bios partition, reading the same ESP config --
# (x86 only; on aarch64 the 1 MiB partition stays empty so the layouts match.)
if [ "$ARCH" = x86_64 ]; then
    grub-mkimage -O i386-pc -p "(hd0,gpt2)/EFI/BOOT" -o "$WORK/core.img" \
        biosdisk part_gpt fat squash4 xzio gzio normal linux echo test loadenv regexp search configfile \
        serial terminal sleep cat ls boot
    bios_part=$(sfdisk -J "$IMG" | python3 -c "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][0]; print(p['start'], p['size'])")
    python3 "$HERE/bios-boot.py" "$IMG" /usr/lib/grub/i386-pc/boot.img "$WORK/core.img" $bios_part
fi

say "sizes"
{
    printf '  %-28s %s\n' \
        "kernel (vmlinuz $KVER)" "$(size "$ROOT/boot/vmlinuz")" \
        "modules in root" "$(size "$ROOT/lib/modules" 2>/dev/null || size "$ROOT/usr/lib/modules")" \
        "initramfs" "$(size "$ROOT/boot/initrd.img")" \
        "gatewayd" "$(size "$ROOT/usr/sbin/gatewayd")" \
        "gatehouse-init" "$(size "$ROOT/usr/sbin/gatehouse-init")" \
        "root tree (uncompressed)" "$(size "$ROOT")" \
        "rootfs.squashfs (one slot)" "$(size "$WORK/rootfs.squashfs")" \
        "GRUB (UEFI)" "$(size "$WORK/$EFI_NAME")"
    [ "$ARCH" != x86_64 ] || printf '  %-28s %s\n' "GRUB (BIOS core.img)" "$(size "$WORK/core.img")"
    printf '  %-28s %s\n' "disk image (sparse)" "$(du -sh "$IMG" | cut -f1) used of ${total_mib} MiB"
}
echo "version $VERSION"
echo "$IMG"
