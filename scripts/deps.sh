#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a bare Debian machine.
# Idempotent: it only installs what is missing.
set -euo pipefail

need=()
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || {
  echo "deps: Go is not installed (expected /usr/local/go); install Go 1.26 first" >&2
  exit 1
}
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ethtool >/dev/null 2>&1 || [ -x /usr/sbin/ethtool ] || need+=(ethtool)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
