#!/usr/bin/env python3
"""Install GRUB's BIOS boot code into a GPT disk image file, as
grub-bios-setup does for a device: boot.img's code into the protective MBR
(the partition table and disk signature stay), pointing at core.img, and
core.img into the BIOS boot partition with its block list filled in.
Used by image/build.sh, which has no block device to give grub-install.

usage: bios-setup.py DISK BOOT_IMG CORE_IMG CORE_LBA MAX_SECTORS
"""
import struct
import sys

KERNEL_SECTOR = 0x5C   # boot.img: 64-bit LBA of core.img's first sector
MBR_CODE_END = 440     # boot code ends where the disk signature begins
SECTOR = 512
BLOCKLIST = SECTOR - 12  # core.img's first sector ends with {u64 start, u16 len, u16 segment}
SEGMENT = 0x820        # GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20: after diskboot

disk, boot_path, core_path = sys.argv[1:4]
core_lba, max_sectors = int(sys.argv[4]), int(sys.argv[5])
boot = bytearray(open(boot_path, "rb").read())
core = bytearray(open(core_path, "rb").read())
if len(boot) != SECTOR:
    sys.exit("boot.img is not one sector")
nsec = (len(core) + SECTOR - 1) // SECTOR
if nsec > max_sectors or nsec - 1 > 0xFFFF:
    sys.exit(f"core.img ({nsec} sectors) does not fit the BIOS boot partition ({max_sectors})")
core += b"\0" * (nsec * SECTOR - len(core))
struct.pack_into("<Q", boot, KERNEL_SECTOR, core_lba)
start, length, _ = struct.unpack_from("<QHH", core, BLOCKLIST)
if length != 0 and start != 0 and start != 2:
    sys.exit("core.img's block list is not the default one")
struct.pack_into("<QHH", core, BLOCKLIST, core_lba + 1, nsec - 1, SEGMENT)
with open(disk, "r+b") as f:
    mbr = bytearray(f.read(SECTOR))
    if mbr[510:512] != b"\x55\xaa":
        sys.exit("the disk has no (protective) MBR")
    mbr[0:MBR_CODE_END] = boot[0:MBR_CODE_END]
    f.seek(0)
    f.write(mbr)
    f.seek(core_lba * SECTOR)
    f.write(core)
