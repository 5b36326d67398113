#!/usr/bin/env bash
# The dashboard's browser test (make dashboard-test): installs Debian's
# chromium and playwright-core when they are missing (never a downloaded
# browser), then runs TestDashboard against a real `xlb run` in network
# namespaces. Needs root. Screenshots go to docs/screenshots/ unless
# XLB_SCREENSHOTS names another directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -d "$here/node_modules/axe-core" ]; then
  echo "== installing playwright-core and axe-core (npm ci)"
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

export XLB_DASHBOARD_E2E=1
export XLB_SCREENSHOTS="${XLB_SCREENSHOTS:-$root/docs/screenshots}"
cd "$root"
exec go test -count=1 -v -run '^TestDashboard$' ./mgmt/web/e2e/
