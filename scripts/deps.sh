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
command -v python3 >/dev/null 2>&1 || need+=(python3)          # docs/quickstart.md's web servers
[ -x /usr/bin/chromium ] || need+=(chromium)                    # the dashboard's browser test
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need+=(nodejs npm)

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

# The dashboard's browser test drives Debian's chromium with playwright-core
# from npm (never a downloaded browser).
e2e="$(dirname "$0")/../mgmt/web/e2e"
if [ ! -d "$e2e/node_modules/playwright-core" ] || [ ! -d "$e2e/node_modules/axe-core" ]; then
  echo "deps: installing playwright-core and axe-core (npm ci in mgmt/web/e2e)"
  (cd "$e2e" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
