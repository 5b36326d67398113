#!/usr/bin/env bash
# Installs the host tools `make image` and `make image-test` use, from
# Debian's packages. Idempotent: only what is missing is installed. Fails
# (never skips) when a tool cannot be installed.
set -euo pipefail

declare -A want=(
  [debootstrap]=debootstrap
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-img]=qemu-utils
  [mkfs.vfat]=dosfstools
  [mcopy]=mtools
  [sgdisk]=gdisk
  [mkfs.ext4]=e2fsprogs
  [zstd]=zstd
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [ip]=iproute2
  [curl]=curl
  [python3]=python3
  [flock]=util-linux
)
need=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || need+=("${want[$cmd]}")
done
# UEFI firmware for the optional UEFI boot check.
if [ "${XLB_IMAGE_UEFI:-0}" = 1 ] && [ ! -e /usr/share/OVMF/OVMF_CODE.fd ] && [ ! -e /usr/share/OVMF/OVMF_CODE_4M.fd ]; then
  need+=(ovmf)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "image/deps.sh: missing ${need[*]}; run as root or install them" >&2
  exit 1
fi
echo "image/deps.sh: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
  echo "image/deps.sh: FAILED to install ${need[*]} with apt-get; the appliance image cannot be built or tested" >&2
  exit 1
fi
