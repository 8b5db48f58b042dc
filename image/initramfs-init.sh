#!/bin/sh
# Gatehouse initramfs: load storage drivers, mount this boot's root slot
# (rauc.slot=A|B names the GPT partition rootfs.A|rootfs.B), switch_root.
# Any failure drops to a shell on the console instead of a kernel panic.
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

rescue() {
    echo "initramfs: $*; dropping to a shell" >/dev/console
    exec sh </dev/console >/dev/console 2>&1
}

for m in $(cat /etc/modules); do modprobe "$m" 2>/dev/null; done

slot=
for word in $(cat /proc/cmdline); do
    case "$word" in rauc.slot=*) slot=${word#rauc.slot=} ;; esac
done
[ -n "$slot" ] || rescue "no rauc.slot= on the kernel command line"

# The partition may take a moment to appear (USB, NVMe).
dev=
i=0
while [ $i -lt 100 ] && [ -z "$dev" ]; do
    for u in /sys/class/block/*/uevent; do
        if grep -qx "PARTNAME=rootfs.$slot" "$u"; then
            dev=/dev/$(sed -n 's/^DEVNAME=//p' "$u")
        fi
    done
    [ -n "$dev" ] || { sleep 0.1; i=$((i + 1)); }
done
[ -n "$dev" ] || rescue "partition rootfs.$slot not found"

mount -t squashfs -o ro "$dev" /newroot || rescue "cannot mount $dev"
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
