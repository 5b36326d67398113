#!/usr/bin/env bash
# Prints the figures docs/BENCHMARKS.md quotes: per-packet Go benchmarks,
# a pcap replay per mode, and the veth forwarding benchmark (root).
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run='^$' -bench=. -benchmem ./internal/packet ./encap ./maglev ./conntrack ./dataplane ./bench
go build -o bin/xlb ./cmd/xlb
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bin/xlb bench gen-pcap --out "$tmp/t.pcap" --flows 10000 --packets 200000 --seed 1
for m in dsr tunnel l3dsr nat fullnat; do
  echo "== replay $m"; bin/xlb bench replay --config testdata/replay/$m.yaml --pcap "$tmp/t.pcap" --loops 5
done
go test -run='^$' -bench=Veth -benchtime=2000000x ./cmd/xlb
