# xlb — build, test, benchmark, lint, fuzz.
# `make test` is what CI runs (.ci/run); it installs what it needs first.

GO        ?= go
# Go's default install place, for shells that do not have it on PATH.
export PATH := $(PATH):/usr/local/go/bin
STATICCHECK_VERSION := v0.8.2
PKGS      := ./...
FUZZTIME  ?= 10s
BIN       := bin

.PHONY: all gocheck build test unit race benchsmoke bench lint fuzz golden deps demo clean

all: build

deps:
	@./scripts/deps.sh

# Say clearly what is missing rather than "go: command not found".
gocheck:
	@command -v $(GO) >/dev/null 2>&1 || { echo "make: Go is not installed (looked for '$(GO)' on PATH and in /usr/local/go/bin); install Go 1.26 from https://go.dev/dl/ into /usr/local/go" >&2; exit 1; }

build: gocheck
	$(GO) build -o $(BIN)/xlb ./cmd/xlb
	$(GO) build -o $(BIN)/xlbctl ./cmd/xlbctl
	$(GO) build -o $(BIN)/xlb-demo ./cmd/xlb-demo
	$(GO) build -o $(BIN)/xlb-bench ./cmd/xlb-bench

# Every test: unit + golden + fuzz seed corpora + integration (root) tests,
# the race detector over the concurrent packages, one iteration of every
# benchmark so none can rot, and last the appliance image booted under qemu
# (image-test: about 3.5 minutes with the Debian base cached in
# /var/cache/xlb-image, 2.5 more to build that base on a fresh machine).
test: deps build unit race benchsmoke image-test

# XLB_DASHBOARD_E2E makes the dashboard's browser test fail, not skip,
# when chromium or playwright-core is missing (deps installs them).
unit:
	XLB_DASHBOARD_E2E=1 $(GO) test -count=1 -timeout 20m $(PKGS)

race:
	$(GO) test -race -count=1 ./conntrack/ ./dataplane/... ./mgmt/...

benchsmoke:
	$(GO) test -count=1 -run='^$$' -bench=. -benchtime=1x $(PKGS) > /dev/null

bench:
	./scripts/bench.sh

bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

# A short run of every fuzz target (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; done

# Regenerate the golden rewrite fixtures from their descriptions.
golden:
	rm -rf testdata/golden
	$(GO) run ./internal/tools/goldengen -out testdata/golden

demo: deps build
	./scripts/demo.sh

clean:
	rm -rf $(BIN)

# The web dashboard (mgmt/web, served by xlb at / on the API listener).
# `dashboard` rebuilds the committed bundle mgmt/web/dist from its
# TypeScript sources with esbuild (needs npm; a plain go build does not).
# `dashboard-test` runs its Go tests and the browser test: Debian's
# chromium driven by playwright-core against a real `xlb run` in network
# namespaces (root; installs chromium and playwright-core when missing;
# screenshots to docs/screenshots).
.PHONY: dashboard dashboard-test
dashboard:
	cd mgmt/web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check && npm run --silent build

dashboard-test:
	$(GO) test -count=1 ./mgmt/web/
	./mgmt/web/e2e/run.sh

# End-to-end benchmark over veth against baselines (root; about 10
# minutes; not part of `make test`): `xlb bench e2e`, see
# docs/BENCHMARKS.md. Installs wrk, haproxy, nginx and nftables when
# missing (their services are not started: RUNLEVEL=1). E2EFLAGS passes
# flags, e.g. E2EFLAGS="--reps 1 --only dsr".
.PHONY: bench-e2e
bench-e2e: build
	@missing=""; for t in wrk:wrk haproxy:haproxy nginx:nginx nft:nftables; do \
	  command -v $${t%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${t%%:*} ] || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then echo "bench-e2e: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1; apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	$(BIN)/xlb-bench $(E2EFLAGS)

# The appliance image (docs/appliance.md): a bootable x86-64 GPT disk image
# (BIOS and UEFI GRUB, A/B root slots, a persistent data partition, the
# XLBCONF partition for the operator) built with debootstrap from Debian's
# packages only, into bin/image/. Root; caches the Debian base in
# /var/cache/xlb-image (XLB_IMAGE_REFRESH=1 rebuilds it).
# `image-test` (part of `make test`) boots it under qemu-system-x86_64
# (TCG) with three virtio-net NICs and checks first boot, HTTP through the
# VIP, zero-copy AF_XDP, a SIGKILL restart, an A/B upgrade and a clean
# power-off; it fails (exit 1) with the guest's console, qemu's stderr and
# diagnostics in bin/image/test-*.log, and removes its namespaces, taps and
# qemu whatever happens. XLB_IMAGE_TEST_TIMEOUT (seconds, default 660)
# bounds it.
.PHONY: image image-test
image:
	GO=$(GO) ./image/build.sh

image-test: image build
	./image/test.sh
