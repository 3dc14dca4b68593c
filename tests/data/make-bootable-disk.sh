#!/usr/bin/env bash
# Make a whole bootable disk (MBR partition table, GRUB in the MBR gap, ext4 root partition) from
# a perfvm image directory, without mounting anything or a loop device: what
# `--image PATH` without --kernel expects from a cloud image. Used by tests/targets.rs.
#   make-bootable-disk.sh IMAGE_DIR OUT.raw
# Needs qemu-img and grub-pc-bin (GRUB's i386-pc modules and grub-mkimage).
set -euo pipefail
img=$1 out=$2
ver=$(sed -n 's/.*"kernel_version": "\(.*\)".*/\1/p' "$img/manifest.json")
[ -n "$ver" ] || { echo "no kernel_version in $img/manifest.json" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The root filesystem (the image's, with its kernel in /boot) goes into partition 1 at 1 MiB.
root_bytes=$(qemu-img info --output=json "$img/rootfs.qcow2" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
rm -f "$out"
truncate -s $(( (1 << 20) + root_bytes )) "$out"
qemu-img convert -n --target-image-opts "$img/rootfs.qcow2" "driver=raw,offset=1048576,file.driver=file,file.filename=$out"

# GRUB's core image with its configuration built in: load the kernel and boot, no menu.
# GRUB's messages go to the serial console (the cell's console.log).
cat > "$work/early.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_output serial
echo "perfvm test disk: booting $ver"
set root=(hd0,msdos1)
linux /boot/vmlinuz-$ver root=/dev/vda1 rw console=ttyS0
initrd /boot/initrd.img-$ver
boot
CFG
grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/early.cfg" -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 linux boot serial terminal echo

# MBR: GRUB's boot.img code, one bootable Linux partition; core.img in the gap from sector 1.
# What grub-bios-setup does, by hand: boot.img reads sector 1 (its default), and the first
# sector of core.img lists the rest of it (start sector 2, length patched here).
python3 - "$out" "$work/core.img" "$root_bytes" <<'PY'
import struct, sys
out, core_path, root_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
core = bytearray(open(core_path, 'rb').read())
sectors = (len(core) + 511) // 512
assert sectors < 2047, "core.img does not fit before the partition"
core += b'\0' * (sectors * 512 - len(core))
struct.pack_into('<QH', core, 0x1f4, 2, sectors - 1)
mbr = bytearray(open('/usr/lib/grub/i386-pc/boot.img', 'rb').read())
table = struct.pack('<B3sB3sII', 0x80, b'\xfe\xff\xff', 0x83, b'\xfe\xff\xff', 2048, root_bytes // 512)
# boot.img keeps floppy code where entries 2-4 go; a disk has its table there (zeros: unused).
mbr[0x1be:0x1fe] = table + bytes(48)
mbr[0x1fe:0x200] = b'\x55\xaa'
with open(out, 'r+b') as f:
    f.write(mbr[:512])
    f.write(core)
PY
echo "$out: bootable disk, kernel $ver, root /dev/vda1"
