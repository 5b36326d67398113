#!/usr/bin/env bash
# `make image`: the xlb appliance disk image, from this repository and
# Debian's packages only.
#
# Output (bin/image/, or $XLB_IMAGE_OUT):
#   xlb.img            raw GPT disk image: BIOS and UEFI GRUB, XLBBOOT (ESP),
#                      XLBCONF (FAT, for the operator), root slots a and b,
#                      XLBDATA (persistent). Write it to a disk or boot it.
#   xlb.img.zst        the same, compressed
#   xlb-root.img(.zst) the root file system alone: the upgrade payload for
#                      `xlb-update install` (A/B), with .sha256 files
#   packages.txt       the Debian packages and versions inside
#   SHA256SUMS
#
# Stage 1 (image/base.sh: debootstrap + packages + kernel) is cached in
# $XLB_IMAGE_CACHE (default /var/cache/xlb-image) under the hash of
# base.sh, packages.txt and the mirror; XLB_IMAGE_REFRESH=1 rebuilds it
# (new security updates). Stage 2 (xlb, the overlay in image/rootfs, the
# file systems, the disk) runs every time, in about a minute.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
CACHE=${XLB_IMAGE_CACHE:-/var/cache/xlb-image}
OUT=${XLB_IMAGE_OUT:-$repo/bin/image}
MIRROR=${XLB_IMAGE_MIRROR:-http://deb.debian.org/debian}
GO=${GO:-go}
command -v "$GO" >/dev/null 2>&1 || GO=/usr/local/go/bin/go
export XLB_IMAGE_CACHE=$CACHE XLB_IMAGE_MIRROR=$MIRROR

# Partition sizes (MiB).
ESP_MB=64
CONF_MB=16
SLOT_MB=${XLB_IMAGE_SLOT_MB:-1024}
DATA_MB=${XLB_IMAGE_DATA_MB:-512}

[ "$(id -u)" = 0 ] || { echo "image/build.sh: run as root (debootstrap, chroot)" >&2; exit 1; }
"$here/deps.sh"
mkdir -p "$CACHE" "$OUT"
# One build at a time on this machine: they share the cache.
exec 9>"$CACHE/build.lock"
flock 9

t0=$(date +%s)
cd "$repo"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)}
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
export MTOOLS_SKIP_CHECK=1
ver=${XLB_VERSION:-$(git describe --always --dirty --tags 2>/dev/null || echo dev)}
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)

# --- stage 1: the Debian base (cached) ---------------------------------------
key=$(cat "$here/base.sh" "$here/packages.txt" <(echo "$MIRROR") | sha256sum | cut -c1-16)
base=$CACHE/base-$key.tar.zst
if [ ! -s "$base" ] || [ "${XLB_IMAGE_REFRESH:-0}" = 1 ]; then
  echo "image: building the Debian base (stage 1, cached as $base)"
  "$here/base.sh" "$base"
  find "$CACHE" -maxdepth 1 -name 'base-*.tar.zst' ! -name "base-$key.tar.zst" -delete
else
  echo "image: Debian base from the cache ($base)"
fi

# --- stage 2 ------------------------------------------------------------------
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"

echo "image: building xlb $ver (static)"
ldflags="-s -w -buildid= -X github.com/xlb/xlb/internal/version.Version=$ver"
CGO_ENABLED=0 "$GO" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$work/xlb" ./cmd/xlb
CGO_ENABLED=0 "$GO" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$work/xlbctl" ./cmd/xlbctl

zstd -dcq "$base" | tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xf -
cp -r --no-preserve=ownership "$here/rootfs/." "$root/"
install -m 0755 "$work/xlb" "$work/xlbctl" "$root/usr/bin/"
install -d "$root/usr/share/doc/xlb"
install -m 0644 docs/appliance.md docs/api.md docs/xlbctl.md docs/xlb.example.yaml "$root/usr/share/doc/xlb/" 2>/dev/null ||
  install -m 0644 docs/api.md docs/xlbctl.md docs/xlb.example.yaml "$root/usr/share/doc/xlb/"
install -d -m 0755 "$root/data" "$root/etc/xlb" "$root/var/lib/xlb" "$root/var/log/journal"
rm -f "$root/etc/resolv.conf"
# The watchdog, once xlb speaks sd_notify (internal/sdnotify).
if "$GO" list -deps ./cmd/xlb | grep -qx 'github.com/xlb/xlb/internal/sdnotify'; then
  install -D -m 0644 "$here/units/xlb-watchdog.conf" "$root/etc/systemd/system/xlb.service.d/watchdog.conf"
  echo "image: xlb uses sd_notify: Type=notify, WatchdogSec=30s"
fi
kver=$(basename "$(ls -d "$root"/usr/lib/modules/* | head -1)")
ln -sfn "vmlinuz-$kver" "$root/boot/vmlinuz"
ln -sfn "initrd.img-$kver" "$root/boot/initrd.img"
cat > "$root/etc/xlb-release" <<REL
XLB_IMAGE_VERSION=$ver
XLB_IMAGE_COMMIT=$commit
XLB_IMAGE_DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ)
XLB_IMAGE_KERNEL=$kver
XLB_IMAGE_DEBIAN=$(cat "$root/etc/debian_version")
REL
systemctl --root="$root" enable -q xlb-setup.service xlb.service xlb-update-confirm.service \
  systemd-networkd.service systemd-networkd-wait-online.service systemd-timesyncd.service ssh.service
# Keys are made at first boot on the data partition, not in /etc/ssh; an
# appliance upgrades by image, not by apt.
systemctl --root="$root" mask -q sshd-keygen.service apt-daily.timer apt-daily-upgrade.timer getty-static.service

# GRUB: a UEFI image, a BIOS core image and the boot menu, from the
# (grub/early.cfg is embedded in both and run by the rescue parser: no comments there)
# image's own grub packages.
mods="part_gpt part_msdos fat ext2 search search_label normal configfile linux loadenv test echo serial terminal sleep reboot halt boot true"
mkdir -p "$root/tmp/grub"
cp "$here/grub/early.cfg" "$root/tmp/grub/early.cfg"
chroot "$root" /usr/bin/grub-mkimage -O x86_64-efi -o /tmp/grub/BOOTX64.EFI -c /tmp/grub/early.cfg -p /grub $mods all_video efi_gop
chroot "$root" /usr/bin/grub-mkimage -O i386-pc -o /tmp/grub/core.img -c /tmp/grub/early.cfg -p /grub $mods biosdisk
cp "$root/usr/lib/grub/i386-pc/boot.img" "$root/tmp/grub/boot.img"
chroot "$root" /usr/bin/grub-editenv /tmp/grub/grubenv create
chroot "$root" /usr/bin/grub-editenv /tmp/grub/grubenv set xlb_slot=a
mv "$root/tmp/grub" "$work/grub"

# Reproducible file times.
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

# --- file systems ---------------------------------------------------------------
echo "image: file systems"
used=$(du -sm "$root" | cut -f1)
root_mb=$(( (used * 130 / 100 + 64 + 15) / 16 * 16 ))
[ $root_mb -le $SLOT_MB ] || { echo "image: the root file system ($root_mb MiB) does not fit a slot ($SLOT_MB MiB)" >&2; exit 1; }
mkext4() { # file size_mb label uuid [dir]
  local f=$1 mb=$2 label=$3 uuid=$4 dir=${5:-}
  rm -f "$f"; truncate -s "${mb}M" "$f"
  mkfs.ext4 -F -q -b 4096 -m 1 -L "$label" -U "$uuid" -E "hash_seed=$uuid,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0" \
    ${dir:+-d "$dir"} "$f"
}
# mke2fs -d copies each file's ctime and atime, which are when this build
# made or read it: set them to SOURCE_DATE_EPOCH, so that the same inputs
# give the same bytes.
fixctime() { # image dir
  local e; e=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S)
  { echo /; find "$2" -mindepth 1 -printf '/%P\n' | grep -v '["\\]'; } |
    sed "s|.*|sif \"&\" ctime $e\nsif \"&\" atime $e|" > "$work/ctime.cmds"
  debugfs -w -f "$work/ctime.cmds" "$1" >/dev/null 2>&1
}
mkext4 "$work/root.img" "$root_mb" xlb-root-new 8a1b7a35-5e0f-4b7e-9d7e-7a0b00000001 "$root"
fixctime "$work/root.img" "$root"
mkdir -p "$work/dataskel/xlb/etc" "$work/dataskel/xlb/lib" "$work/dataskel/journal" "$work/dataskel/ssh"
chmod 0700 "$work/dataskel/ssh"; chmod 2755 "$work/dataskel/journal"
find "$work/dataskel" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkext4 "$work/data.img" "$DATA_MB" XLBDATA 8a1b7a35-5e0f-4b7e-9d7e-7a0b00000003 "$work/dataskel"
fixctime "$work/data.img" "$work/dataskel"
# Slot a: the root file system as an upgrade writes it (not grown to the
# slot: the same bytes but the label); slot b: empty.
cp --sparse=always "$work/root.img" "$work/slota.img"
e2label "$work/slota.img" xlb-root-a
truncate -s "${SLOT_MB}M" "$work/slotb.img"
mkfs.ext4 -F -q -b 4096 -m 1 -L xlb-root-b -U 8a1b7a35-5e0f-4b7e-9d7e-7a0b00000002 \
  -E hash_seed=8a1b7a35-5e0f-4b7e-9d7e-7a0b00000002 "$work/slotb.img"

mkvfat() { # file size_mb label volid fat_bits
  rm -f "$1"; mkfs.vfat -C --invariant -F "$5" -n "$3" -i "$4" "$1" $(( $2 * 1024 )) >/dev/null
}
put() { # fatimg src dst (dirs are created)
  local img=$1 src=$2 dst=$3 d="" part
  IFS=/ read -ra parts <<< "$(dirname "$dst")"
  for part in "${parts[@]}"; do
    [ -n "$part" ] || continue
    d="$d/$part"; mmd -D s -i "$img" "::$d" 2>/dev/null || true
  done
  touch -d "@$SOURCE_DATE_EPOCH" "$src"
  mcopy -o -m -i "$img" "$src" "::$dst"
}
mkvfat "$work/esp.img" $ESP_MB XLBBOOT 584c4201 32
put "$work/esp.img" "$work/grub/BOOTX64.EFI" /EFI/BOOT/BOOTX64.EFI
cp "$here/grub/grub.cfg" "$work/grub/grub.cfg"
put "$work/esp.img" "$work/grub/grub.cfg" /grub/grub.cfg
put "$work/esp.img" "$work/grub/grubenv" /grub/grubenv
mkvfat "$work/conf.img" $CONF_MB XLBCONF 584c4202 16
for f in README.txt xlb.yaml.example boot.cfg.example authorized_keys network/README.txt; do
  cp "$here/xlbconf/$f" "$work/conf-$(basename "$f")"
  put "$work/conf.img" "$work/conf-$(basename "$f")" "/$f"
done

# --- the disk ------------------------------------------------------------------
echo "image: assembling the disk"
disk=$work/xlb.img
s_bios=1; s_esp=2; s_conf=$((s_esp + ESP_MB)); s_a=$((s_conf + CONF_MB)); s_b=$((s_a + SLOT_MB)); s_data=$((s_b + SLOT_MB))
total=$((s_data + DATA_MB + 1))
truncate -s "${total}M" "$disk"
sgdisk -o "$disk" >/dev/null
# (sgdisk orders its operations itself: partition GUIDs in a second call.)
sgdisk -U 8a1b7a35-5e0f-4b7e-9d7e-7a0b000000d0 \
  -n 1:${s_bios}M:+1M          -t 1:EF02 -c 1:bios-boot \
  -n 2:${s_esp}M:+${ESP_MB}M   -t 2:EF00 -c 2:XLBBOOT \
  -n 3:${s_conf}M:+${CONF_MB}M -t 3:0700 -c 3:XLBCONF \
  -n 4:${s_a}M:+${SLOT_MB}M    -t 4:8300 -c 4:xlb-root-a \
  -n 5:${s_b}M:+${SLOT_MB}M    -t 5:8300 -c 5:xlb-root-b \
  -n 6:${s_data}M:+${DATA_MB}M -t 6:8300 -c 6:XLBDATA \
  "$disk" >/dev/null
sgdisk $(for i in 1 2 3 4 5 6; do echo "-u $i:8a1b7a35-5e0f-4b7e-9d7e-7a0b000000d$i"; done) "$disk" >/dev/null
for p in "esp:$s_esp" "conf:$s_conf" "slota:$s_a" "slotb:$s_b" "data:$s_data"; do
  dd if="$work/${p%%:*}.img" of="$disk" bs=1M seek="${p##*:}" conv=notrunc,sparse status=none
done
# BIOS: boot.img in the protective MBR, core.img in the BIOS boot partition.
python3 "$here/grub/bios-setup.py" "$disk" "$work/grub/boot.img" "$work/grub/core.img" $((s_bios * 2048)) 2048
sgdisk -v "$disk" | grep -q 'No problems found' || { sgdisk -v "$disk" >&2; exit 1; }

# --- outputs -------------------------------------------------------------------
echo "image: writing $OUT"
rm -f "$OUT"/xlb.img "$OUT"/xlb.img.zst "$OUT"/xlb-root.img* "$OUT"/packages.txt "$OUT"/SHA256SUMS
mv "$disk" "$OUT/xlb.img"
mv "$work/root.img" "$OUT/xlb-root.img"
cp "$root/usr/share/xlb-packages.txt" "$OUT/packages.txt"
zstd -q -T0 -3 "$OUT/xlb.img" -o "$OUT/xlb.img.zst"
zstd -q -T0 -3 "$OUT/xlb-root.img" -o "$OUT/xlb-root.img.zst"
(cd "$OUT" && sha256sum xlb-root.img > xlb-root.img.sha256 &&
  sha256sum xlb.img xlb.img.zst xlb-root.img xlb-root.img.zst packages.txt > SHA256SUMS)
mib() { echo $(( $(stat -c %s "$1") / 1048576 )); }
alloc() { echo $(( $(du -k "$1" | cut -f1) / 1024 )); }
echo "image: done in $(( $(date +%s) - t0 ))s: $OUT/xlb.img $(mib "$OUT/xlb.img") MiB (allocated $(alloc "$OUT/xlb.img") MiB," \
  "zstd $(mib "$OUT/xlb.img.zst") MiB); root file system $root_mb MiB (upgrade payload zstd $(mib "$OUT/xlb-root.img.zst") MiB);" \
  "kernel $kver; xlb $ver"
