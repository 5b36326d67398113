// Package e2e is the dashboard's browser test: TestDashboard (e2e_test.go)
// builds the real xlb, runs `xlb run --poll` in the lb namespace of an
// internal/netns topology with three HTTP backends and a loop of client
// requests through the VIP, and drives Debian's chromium with
// playwright-core (dashboard.mjs, run inside the lb namespace so the
// page's 127.0.0.1 is xlb's API listener).
//
// `make dashboard-test` (run.sh) installs chromium (apt) and
// playwright-core (npm ci here) when they are missing, runs the test and
// writes the screenshots to docs/screenshots/. Without root the test
// skips; without chromium, node or playwright-core it skips unless
// XLB_DASHBOARD_E2E=1 (set by run.sh), when it fails instead.
package e2e
