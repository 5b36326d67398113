#!/usr/bin/env bash
# The README's first command (make demo): a client, a router, xlb and three
# backends in network namespaces; real HTTP requests through the VIP in
# dsr, nat and fullnat; which backend answered each; xlb's counters. Then a
# pcap replay of generated traffic through the same pipeline. Everything is
# cleaned up afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bin/xlb-demo --xlb bin/xlb
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo
echo "=== pcap replay: 2000 generated TCP connections (20% IPv6, 1% junk) through the pipeline, mode fullnat"
bin/xlb bench gen-pcap --out "$tmp/traffic.pcap" --flows 2000 --packets 40000 --seed 7
bin/xlb bench replay --config testdata/replay/fullnat.yaml --pcap "$tmp/traffic.pcap" --loops 5
