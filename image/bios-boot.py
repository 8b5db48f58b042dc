#!/usr/bin/env python3
"""Makes a GPT disk image bootable by legacy BIOS with GRUB's i386-pc images.

grub-install/grub-bios-setup refuse to work on an image file (they probe the
host's devices), so this does their two small jobs directly:
  1. core.img goes into the BIOS-boot partition, and the blocklist at the end of
     its first sector (diskboot) is patched to say where the rest of it lies;
  2. boot.img's code goes into the protective MBR (the partition table and disk
     signature stay), patched with the LBA of core.img's first sector.
Offsets are those of GRUB 2.06's boot.S and diskboot.S.

usage: bios-boot.py DISK BOOT_IMG CORE_IMG CORE_START_LBA CORE_PART_SECTORS
"""
import struct
import sys

SECTOR = 512
MBR_CODE_END = 440          # boot code; disk signature and partition table follow
KERNEL_SECTOR_OFF = 0x5C    # boot.img: 8-byte LBA of core.img's first sector
BOOT_DRIVE_OFF = 0x64       # boot.img: 0xff = use the drive the BIOS booted from
BLOCKLIST_OFF = SECTOR - 12  # diskboot: first entry {u64 start, u16 len, u16 segment}
CORE_SEGMENT = 0x820        # where diskboot loads the rest (0x8000 + one sector)


def main():
    disk, boot_img, core_img, core_lba, part_sectors = sys.argv[1:6]
    core_lba, part_sectors = int(core_lba), int(part_sectors)
    boot = bytearray(open(boot_img, "rb").read())
    core = bytearray(open(core_img, "rb").read())
    if len(boot) != SECTOR or boot[510:512] != b"\x55\xaa":
        sys.exit(f"{boot_img}: not a GRUB boot.img")
    core += b"\0" * (-len(core) % SECTOR)
    sectors = len(core) // SECTOR
    if sectors > part_sectors:
        sys.exit(f"core.img needs {sectors} sectors; the BIOS boot partition has {part_sectors}")
    # The rest of core.img (after diskboot's own sector) as one contiguous run.
    struct.pack_into("<QHH", core, BLOCKLIST_OFF, core_lba + 1, sectors - 1, CORE_SEGMENT)
    struct.pack_into("<Q", boot, KERNEL_SECTOR_OFF, core_lba)
    boot[BOOT_DRIVE_OFF] = 0xFF
    with open(disk, "r+b") as f:
        f.seek(core_lba * SECTOR)
        f.write(core)
        f.seek(0)
        mbr = bytearray(f.read(SECTOR))
        if mbr[510:512] != b"\x55\xaa" or mbr[0x1C2] != 0xEE:
            sys.exit(f"{disk}: no protective MBR (write the GPT first)")
        mbr[:MBR_CODE_END] = boot[:MBR_CODE_END]
        f.seek(0)
        f.write(mbr)
    print(f"legacy BIOS boot: core.img ({sectors} sectors) at LBA {core_lba}")


if __name__ == "__main__":
    main()
