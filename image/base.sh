#!/usr/bin/env bash
# Stage 1 of `make image`: the Debian part of the appliance's root file
# system, from Debian's packages only. Writes a tarball (argument 1) of a
# root tree: debootstrap of trixie (minbase), the packages of
# image/packages.txt, the kernel from trixie-backports, an initramfs with
# the storage drivers a server boots from, and nothing a load balancer does
# not need (documentation, locales, drivers for graphics, sound, wireless).
# image/build.sh caches the tarball under the hash of this script and of
# packages.txt. Runs as root in a private mount namespace (unshare), so no
# mount outlives it.
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
MIRROR=${XLB_IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY=${XLB_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=trixie
CACHE=${XLB_IMAGE_CACHE:-/var/cache/xlb-image}
work=$(mktemp -d "$CACHE/base.XXXXXX")
root=$work/root
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

pkgs=$(grep -v '^\s*#' "$here/packages.txt" | grep -v '^kernel:' | tr -s ' \n' ' ')
kernel=$(sed -n 's/^kernel:\s*//p' "$here/packages.txt")

echo "image/base: debootstrap $SUITE (minbase) from $MIRROR"
mkdir -p "$CACHE/debs"
# No documentation, manuals or translations, now and in every later install.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat > "$root/etc/dpkg/dpkg.cfg.d/01-xlb-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
NODOC
debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include=systemd,systemd-sysv,udev \
  "$SUITE" "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2; echo "image/base: debootstrap failed" >&2; exit 1; }

cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
deb $MIRROR $SUITE-backports main
SOURCES
# Services must not start inside the build chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

# A small initramfs: only the drivers to find the root file system on the
# disks a server or a VM boots from (MODULES=dep would look at the build
# machine, not the appliance), zstd-compressed.
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' > "$root/etc/initramfs-tools/conf.d/xlb.conf"
cat >> "$root/etc/initramfs-tools/modules" <<'MODS'
# xlb appliance: disks the root file system may live on
virtio_pci
virtio_blk
virtio_scsi
sd_mod
ahci
ata_piix
nvme
xhci_pci
ehci_pci
usb_storage
uas
megaraid_sas
mpt3sas
hpsa
ext4
MODS

# Downloaded packages are kept in the cache for the next base build.
export XLB_ARCHIVES="$CACHE/archives"
mkdir -p "$XLB_ARCHIVES/partial"
inchroot() {
  unshare --mount --propagation private -- bash -c '
    set -e; r=$1; shift
    mount -t proc proc "$r/proc"; mount -t sysfs sys "$r/sys"
    mount --rbind /dev "$r/dev"
    mount --bind "$XLB_ARCHIVES" "$r/var/cache/apt/archives"
    exec chroot "$r" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"' _ "$root" "$@"
}
echo "image/base: apt-get install $pkgs + $kernel from $SUITE-backports"
inchroot apt-get update -qq > "$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
inchroot apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 $pkgs >> "$work/apt.log" 2>&1 || {
  tail -30 "$work/apt.log" >&2; echo "image/base: apt-get install failed" >&2; exit 1; }
inchroot apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 -t "$SUITE-backports" "$kernel" >> "$work/apt.log" 2>&1 || {
  tail -30 "$work/apt.log" >&2; echo "image/base: kernel install failed" >&2; exit 1; }

# Kernel modules a load balancer never loads: graphics, sound, wireless,
# media, Bluetooth, staging, sensors, InfiniBand. Wired NIC drivers,
# storage and file systems stay.
for kdir in "$root"/usr/lib/modules/*/; do
  for d in drivers/gpu drivers/media drivers/net/wireless drivers/staging drivers/bluetooth \
           drivers/iio drivers/infiniband drivers/isdn drivers/input/touchscreen drivers/input/joystick \
           drivers/nfc drivers/net/wwan drivers/net/ieee802154 drivers/net/can drivers/comedi \
           drivers/soundwire sound net/wireless net/mac80211 net/bluetooth net/nfc \
           net/ieee802154 net/mac802154; do
    rm -rf "$kdir/kernel/$d"
  done
done
inchroot sh -c 'for k in /usr/lib/modules/*; do depmod -a "$(basename "$k")"; done; update-initramfs -u -k all' >> "$work/apt.log" 2>&1 || {
  tail -30 "$work/apt.log" >&2; echo "image/base: depmod/update-initramfs failed" >&2; exit 1; }

# The package list of record, then everything that is per machine or a
# cache: apt lists and archives, logs, host keys, machine id.
inchroot dpkg-query -W -f '${Package} ${Version}\n' > "$work/manifest.txt"
cp "$work/manifest.txt" "$root/usr/share/xlb-packages.txt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
       "$root"/var/lib/dpkg/*-old "$root"/etc/ssh/ssh_host_* "$root"/tmp/* "$root"/var/tmp/* \
       "$root"/usr/sbin/policy-rc.d "$root"/var/log/bootstrap.log
find "$root/var/log" -type f -exec truncate -s 0 {} +
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

echo "image/base: packing $(du -sh "$root" | cut -f1) into $out"
tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -cf - . | zstd -q -T0 -6 -o "$out.tmp"
mv "$out.tmp" "$out"
