#!/usr/bin/env bash
# Composes the Gatehouse x86_64 disk image from Debian bookworm binary packages
# and our release binaries. No loop mounts, no root-only block devices: every
# filesystem is built from a directory (mksquashfs, mkfs.vfat + mtools) and placed
# into the GPT image with dd at the offsets sfdisk chose.
#
# usage: image/build.sh BIN_DIR OUT_DIR
#   BIN_DIR holds gatewayd and gatehouse-init (static, release)
#   OUT_DIR receives gatehouse-x86_64.img, rootfs.squashfs, the ESP and logs
set -euo pipefail

BIN_DIR=$(realpath "$1")
OUT=$(realpath -m "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE="$OUT/cache"
ARCH=amd64
mkdir -p "$OUT" "$CACHE"

# Partition sizes in MiB. The layout is fixed for the life of a device: A/B
# updates rewrite slots in place, so changing these later would strand users.
BIOS_MIB=1
ESP_MIB=32
SLOT_MIB=384
DATA_MIB=128
# Partition numbers (GPT order): 1 bios-boot, 2 ESP, 3 slot A, 4 slot B, 5 data.
SLOT_A_PART=3
SLOT_B_PART=4
CMDLINE="console=tty0 console=ttyS0,115200 loglevel=6"

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
size() { du -sh --apparent-size "$1" | cut -f1; }

# Derive an apt sources file from the host's, so no mirror name lives in the repo.
host_sources() {
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
        [ -s "$f" ] && grep -q '^[^#]' "$f" && { echo "$f"; return; }
    done
    echo "no apt sources on this host" >&2
    exit 1
}

# --- kernel and modules ----------------------------------------------------
kernel_pkg_name() { apt-cache depends "linux-image-$ARCH" | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
fetch_kernel() {
    [ -n "$kernel_pkg" ] || return 1
    ls "$CACHE/${kernel_pkg}"_*.deb >/dev/null 2>&1 && return 0
    (cd "$CACHE" && apt-get download -q "$kernel_pkg")
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
base_tar="$CACHE/base-$base_key.tar"
if [ ! -f "$base_tar" ]; then
    say "extracting Debian packages: $pkgs"
    mmdebstrap --quiet --variant=extract --architectures=$ARCH --include="$pkgs" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        bookworm "$CACHE/base-$base_key.tmp.tar" "$(host_sources)"
    mv "$CACHE/base-$base_key.tmp.tar" "$base_tar"
fi

ROOT="$OUT/rootfs"
rm -rf "$ROOT" && mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$base_tar"
say "pruning"
rm -rf "$ROOT"/etc/apt/sources.list* "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* \
    "$ROOT"/usr/share/{doc,man,info,locale,lintian,bash-completion,zsh} \
    "$ROOT"/usr/lib/x86_64-linux-gnu/gconv "$ROOT"/var/lib/dpkg/info/*.md5sums \
    "$ROOT"/usr/share/common-licenses
# busybox provides the userland; link every applet the tree does not already have.
for applet in $("$ROOT/usr/bin/busybox" --list); do
    [ -e "$ROOT/usr/bin/$applet" ] || [ -e "$ROOT/usr/sbin/$applet" ] || ln -s busybox "$ROOT/usr/bin/$applet"
done
# busybox's mke2fs makes ext2 only; make sure e2fsprogs' one wins.
for t in mke2fs e2fsck; do
    [ -x "$ROOT/usr/sbin/$t" ] || { echo "missing /usr/sbin/$t" >&2; exit 1; }
    rm -f "$ROOT/usr/bin/$t"
done
cat "$HERE/modules.list" "$HERE/modules-hw.list" "$HERE/modules-extra.list" >"$OUT/modules-all.list"
copy_modules "$OUT/modules-all.list" "$ROOT"
mkdir -p "$ROOT/etc/gatehouse"
sed 's/#.*//;/^\s*$/d' "$HERE/modules.list" > "$ROOT/etc/gatehouse/modules"
install -D -m 0755 "$BIN_DIR/gatewayd" "$ROOT/usr/sbin/gatewayd"
install -D -m 0755 "$BIN_DIR/gatehouse-init" "$ROOT/usr/sbin/gatehouse-init"
install -D -m 0755 "$BIN_DIR/gatehouse-console" "$ROOT/usr/sbin/gatehouse-console"
ln -sf gatehouse-init "$ROOT/usr/sbin/init"
cp -a "$REPO/overlays/." "$ROOT/"
mkdir -p "$ROOT"/{proc,sys,dev,run,tmp,data,boot,mnt,root}
git -C "$REPO" describe --always --dirty 2>/dev/null > "$ROOT/etc/gatehouse/version" || echo unknown > "$ROOT/etc/gatehouse/version"

# --- initramfs -------------------------------------------------------------
say "initramfs"
IRD="$OUT/initramfs"
rm -rf "$IRD" && mkdir -p "$IRD"/{bin,etc}
cp "$ROOT/usr/bin/busybox" "$IRD/bin/busybox"
for a in sh mount umount mkdir cat grep sed sleep modprobe switch_root; do ln -s busybox "$IRD/bin/$a"; done
copy_modules "$HERE/initramfs-modules.list" "$IRD"
sed 's/#.*//;/^\s*$/d' "$HERE/initramfs-modules.list" > "$IRD/etc/modules"
install -m 0755 "$HERE/initramfs-init.sh" "$IRD/init"
(cd "$IRD" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$ROOT/boot/initrd.img"
cp "$KTREE/boot/vmlinuz-$KVER" "$ROOT/boot/vmlinuz"

# --- squashfs slot image ----------------------------------------------------
say "squashfs"
# xz, because GRUB 2.06 reads the kernel out of the slot and cannot read zstd squashfs.
rm -f "$OUT/rootfs.squashfs"
mksquashfs "$ROOT" "$OUT/rootfs.squashfs" -comp xz -Xbcj x86 -all-root -noappend -quiet -no-progress
sq_bytes=$(stat -c %s "$OUT/rootfs.squashfs")
if [ "$sq_bytes" -gt $((SLOT_MIB * 1024 * 1024)) ]; then
    echo "rootfs.squashfs ($sq_bytes bytes) does not fit a $SLOT_MIB MiB slot" >&2
    exit 1
fi

# --- ESP: GRUB for x86_64-efi ------------------------------------------------
say "ESP"
ESP="$OUT/esp.vfat"
sed -e "s/@SLOT_A_PART@/$SLOT_A_PART/g" -e "s/@SLOT_B_PART@/$SLOT_B_PART/g" -e "s|@CMDLINE@|$CMDLINE|g" \
    "$HERE/grub.cfg" > "$OUT/grub.cfg"
grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$OUT/BOOTX64.EFI" \
    part_gpt fat squash4 xzio gzio normal linux echo test loadenv regexp search configfile \
    serial terminal sleep cat ls boot efi_gop all_video
rm -f "$OUT/grubenv"
grub-editenv "$OUT/grubenv" create
grub-editenv "$OUT/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=1 B_TRY=0
rm -f "$ESP"
mkfs.vfat -C -F 16 -n GATEHOUSE "$ESP" $((ESP_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/EFI ::/EFI/BOOT
mcopy -i "$ESP" "$OUT/BOOTX64.EFI" "$OUT/grub.cfg" "$OUT/grubenv" ::/EFI/BOOT/

# --- data partition: left empty, init formats it on first boot -----------------

# --- GPT disk image ------------------------------------------------------------
say "disk image"
IMG="$OUT/gatehouse-x86_64.img"
total_mib=$((1 + BIOS_MIB + ESP_MIB + 2 * SLOT_MIB + DATA_MIB + 1))
rm -f "$IMG"
truncate -s "${total_mib}M" "$IMG"
sfdisk --quiet "$IMG" <<EOF
label: gpt
size=${BIOS_MIB}MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios
size=${ESP_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
size=${SLOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs.A
size=${SLOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs.B
size=${DATA_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
EOF
start_of() { sfdisk -J "$IMG" | python3 -c "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$1 - 1]['start'])"; }
put() { dd if="$1" of="$IMG" bs=512 seek="$(start_of "$2")" conv=notrunc,sparse status=none; }
put "$ESP" 2
put "$OUT/rootfs.squashfs" $SLOT_A_PART
put "$OUT/rootfs.squashfs" $SLOT_B_PART

# --- legacy BIOS: GRUB i386-pc in the bios partition, reading the same ESP config --
grub-mkimage -O i386-pc -p "(hd0,gpt2)/EFI/BOOT" -o "$OUT/core.img" \
    biosdisk part_gpt fat squash4 xzio gzio normal linux echo test loadenv regexp search configfile \
    serial terminal sleep cat ls boot
bios_part=$(sfdisk -J "$IMG" | python3 -c "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][0]; print(p['start'], p['size'])")
python3 "$HERE/bios-boot.py" "$IMG" /usr/lib/grub/i386-pc/boot.img "$OUT/core.img" $bios_part

say "sizes"
printf '  %-28s %s\n' \
    "kernel (vmlinuz $KVER)" "$(size "$ROOT/boot/vmlinuz")" \
    "modules in root" "$(size "$ROOT/lib/modules" 2>/dev/null || size "$ROOT/usr/lib/modules")" \
    "initramfs" "$(size "$ROOT/boot/initrd.img")" \
    "gatewayd" "$(size "$ROOT/usr/sbin/gatewayd")" \
    "gatehouse-init" "$(size "$ROOT/usr/sbin/gatehouse-init")" \
    "root tree (uncompressed)" "$(size "$ROOT")" \
    "rootfs.squashfs (one slot)" "$(size "$OUT/rootfs.squashfs")" \
    "GRUB (UEFI)" "$(size "$OUT/BOOTX64.EFI")" \
    "GRUB (BIOS core.img)" "$(size "$OUT/core.img")" \
    "disk image (sparse)" "$(du -sh "$IMG" | cut -f1) used of ${total_mib} MiB"
echo "$IMG"
