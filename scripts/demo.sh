#!/usr/bin/env bash
# The README's first command (make demo): generate realistic traffic and
# replay it through the real pipeline in every forwarding mode, printing
# what happened. Run by `make demo` after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== generating traffic: 2000 TCP connections, 20% IPv6, 1% junk"
bin/xlb bench gen-pcap --out "$tmp/traffic.pcap" --flows 2000 --packets 40000 --seed 7
for mode in dsr tunnel l3dsr nat fullnat; do
  echo
  echo "== replaying through mode $mode (testdata/replay/$mode.yaml), 5 passes"
  bin/xlb bench replay --config "testdata/replay/$mode.yaml" --pcap "$tmp/traffic.pcap" --loops 5
done
