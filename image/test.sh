#!/usr/bin/env bash
# `make image-test`: boots the appliance image (bin/image/xlb.img, from
# `make image`) under qemu-system-x86_64 with TCG (software emulation),
# through its own BIOS GRUB, with three virtio-net NICs:
#
#   ens3 management: qemu user-mode networking; the API (8080) and SSH (22)
#        forwarded to 127.0.0.1:18080 / :10022 in the test's qemu namespace
#   ens4 client side: tap in the qemu namespace, bridged to a veth into the
#        client namespace (10.10.1.2; the guest is 10.10.1.1)
#   ens5 backend side: tap, bridged to two backend namespaces (10.10.2.11,
#        10.10.2.12, HTTP on port 80; the guest is 10.10.2.1, their gateway)
#
# The data-path NICs are virtio-net with mq=on, iommu_platform=on,
# disable-legacy=on (queue_reset is on by default) on tap netdevs with
# vhost=off: what AF_XDP zero-copy needs on virtio-net (Linux >= 6.13).
#
# It writes the operator's files to the image's XLBCONF partition (xlb.yaml,
# network files, an SSH key) as an operator would before the first boot,
# then checks: the first-boot token on the console; the API; a nat service
# added with xlbctl; real HTTP through the VIP from the client namespace
# reaching both backends; zero-copy sockets; xlb's capabilities; the
# sysctls and the persistent journal; SIGKILL of xlb inside the guest and
# systemd restarting it with its configuration; an A/B upgrade (xlb-update
# install of bin/image/xlb-root.img into slot b, reboot, confirm) that keeps
# the token, the configuration and the state file; a clean power-off.
#
# Everything runs inside network namespaces this script creates; nothing is
# configured on the root namespace. Needs root. Environment:
#   XLB_IMAGE_OUT       where the image is (default bin/image)
#   XLB_IMAGE_TEST_KEEP=1  keep the work directory
#   XLB_IMAGE_UPGRADE=0    skip the A/B upgrade part
#   XLB_IMAGE_TEST_HOLD=1  on failure, keep the guest running for 20 minutes (SSH);
#                          =always: also before the power-off
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
OUT=${XLB_IMAGE_OUT:-$repo/bin/image}
img=$OUT/xlb.img
payload=$OUT/xlb-root.img
"$here/deps.sh"
[ "$(id -u)" = 0 ] || { echo "image-test: FAIL: needs root (network namespaces, tap devices)" >&2; exit 1; }
for f in "$img" "$payload" "$payload.sha256" "$repo/bin/xlbctl"; do
  [ -s "$f" ] || { echo "image-test: FAIL: $f is missing (make image; make build)" >&2; exit 1; }
done

T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
log() { echo "image-test [$(el)s]: $*"; }
work=$(mktemp -d /tmp/xlb-imagetest.XXXXXX)
id=$(basename "$work" | tr -dc 'a-zA-Z0-9' | tail -c 6)
nsq=xlbimg-$id-qemu; nsc=xlbimg-$id-client; nsb1=xlbimg-$id-b1; nsb2=xlbimg-$id-b2
pids=()
qpid=""
ok=0
cleanup() {
  set +e
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill "$qpid"; sleep 1; kill -9 "$qpid" 2>/dev/null; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in "$nsq" "$nsc" "$nsb1" "$nsb2"; do ip netns del "$n" 2>/dev/null; done
  if [ $ok != 1 ]; then
    mkdir -p "$OUT"; cp "$work/console.log" "$OUT/test-console.log" 2>/dev/null
    echo "image-test: the guest's console log: $OUT/test-console.log (last lines below)" >&2
    tail -n 40 "$work/console.log" 2>/dev/null | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' >&2
  fi
  [ "${XLB_IMAGE_TEST_KEEP:-0}" = 1 ] && echo "image-test: kept $work" || rm -rf "$work"
}
trap cleanup EXIT
hold() {
  if [ -n "$qpid" ]; then
    echo "image-test: holding the guest for 20 minutes (rm $work/hold to end): ip netns exec $nsq ssh -p 10022 -i $work/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1" >&2
    touch "$work/hold"
    for _ in $(seq 1 600); do [ -e "$work/hold" ] || break; sleep 2; done
  fi
}
fail() {
  echo "image-test: FAIL [$(el)s]: $*" >&2
  [ "${XLB_IMAGE_TEST_HOLD:-0}" = 0 ] || hold
  exit 1
}

# --- the operator's files on XLBCONF ------------------------------------------
log "preparing the disk (copy of $img) and its XLBCONF partition"
cp --sparse=always "$img" "$work/disk.img"
conf_off=$(( $(sgdisk -i 3 "$work/disk.img" | sed -n 's/^First sector: \([0-9]*\).*/\1/p') * 512 ))
ssh-keygen -q -t ed25519 -N '' -C xlb-image-test -f "$work/id"
mkdir -p "$work/conf/network"
cat > "$work/conf/xlb.yaml" <<'YAML'
# image-test: two-arm, the client side on ens4, the backends on ens5.
interfaces:
  - {name: ens4, xdp: auto, role: client}
  - {name: ens5, xdp: auto, role: backend}
lb:
  workers: auto
  poll: true
  conntrack: {capacity: 65536}
api: {listen: 0.0.0.0:8080, token_file: /etc/xlb/token, state_file: /var/lib/xlb/state.json}
services: []
YAML
cat > "$work/conf/network/20-client.network" <<'NET'
[Match]
MACAddress=52:54:00:00:01:01

[Network]
Address=10.10.1.1/24
LinkLocalAddressing=no
IPv6AcceptRA=no

[Route]
Gateway=10.10.1.2
Metric=10
NET
cat > "$work/conf/network/30-backend.network" <<'NET'
[Match]
MACAddress=52:54:00:00:02:01

[Network]
Address=10.10.2.1/24
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
cp "$work/id.pub" "$work/conf/authorized_keys"
# Kernel notices on the console (the image boots with quiet): the console
# log then shows where a slow boot spends its time.
echo 'set xlb_cmdline="loglevel=6"' > "$work/conf/boot.cfg"
export MTOOLS_SKIP_CHECK=1
mcopy -o -i "$work/disk.img@@$conf_off" "$work/conf/xlb.yaml" "$work/conf/authorized_keys" "$work/conf/boot.cfg" ::/
mcopy -o -i "$work/disk.img@@$conf_off" "$work/conf/network/20-client.network" "$work/conf/network/30-backend.network" ::/network/

# --- namespaces -----------------------------------------------------------------
log "namespaces: $nsq (qemu, taps, bridges), $nsc, $nsb1, $nsb2"
for n in "$nsq" "$nsc" "$nsb1" "$nsb2"; do ip netns add "$n"; ip -n "$n" link set lo up; done
qx() { ip netns exec "$nsq" "$@"; }
qx ip link add brc type bridge
qx ip link add brb type bridge
qx ip tuntap add dev tapc mode tap multi_queue
qx ip tuntap add dev tapb mode tap multi_queue
ip -n "$nsq" link add vc type veth peer name eth0 netns "$nsc"
ip -n "$nsq" link add vb1 type veth peer name eth0 netns "$nsb1"
ip -n "$nsq" link add vb2 type veth peer name eth0 netns "$nsb2"
for l in tapc vc; do qx ip link set "$l" master brc up; done
for l in tapb vb1 vb2; do qx ip link set "$l" master brb up; done
qx ip link set brc up; qx ip link set brb up
addr() { # ns address/len gateway-or-route
  ip -n "$1" link set eth0 up
  ip -n "$1" addr add "$2" dev eth0
  ip netns exec "$1" ethtool -K eth0 tx off >/dev/null 2>&1 || true
}
addr "$nsc" 10.10.1.2/24;   ip -n "$nsc" route add 198.51.100.0/24 via 10.10.1.1
addr "$nsb1" 10.10.2.11/24; ip -n "$nsb1" route add default via 10.10.2.1
addr "$nsb2" 10.10.2.12/24; ip -n "$nsb2" route add default via 10.10.2.1
for b in 1 2; do
  mkdir -p "$work/www$b"; echo "backend b$b" > "$work/www$b/index.html"
  ns=$nsb1; [ $b = 2 ] && ns=$nsb2
  ip netns exec "$ns" python3 -m http.server 80 --bind "10.10.2.1$b" --directory "$work/www$b" > "$work/http$b.log" 2>&1 &
  pids+=($!)
done

# --- boot -------------------------------------------------------------------------
# The console log, each line stamped with the test's clock (seconds).
stamp() { local l now; while IFS= read -r l; do printf -v now '%(%s)T' -1; printf '[t+%03d] %s\n' $((now - T0)) "$l"; done; }
# queues=2 = the vCPUs: with more queue pairs than vCPUs, attaching XDP makes
# virtio-net enable one more queue pair per CPU for XDP transmit, and rx
# queues 2 and 3 appear after xlb counted 2 and bound its sockets: frames
# the device hashes there find no socket (steering no_socket) and half the
# connections fail. With queues = vCPUs XDP transmit shares the queues
# (locked) and the rx queue count does not change.
qemu() {
  local nic='virtio-net-pci,mq=on,vectors=6,iommu_platform=on,disable-legacy=on,romfile='
  ip netns exec "$nsq" qemu-system-x86_64 -M pc -accel tcg -smp 2 -m 1536 \
    -display none -monitor none -chardev stdio,id=ser,signal=off -serial chardev:ser \
    -drive "file=$work/disk.img,format=raw,if=none,id=disk,cache=unsafe" -device virtio-blk-pci,drive=disk,bootindex=1,addr=0x6 \
    -drive "file=$payload,format=raw,if=none,id=upd,readonly=on" -device virtio-blk-pci,drive=upd,serial=xlbupdate,addr=0x7 \
    -netdev user,id=mgmt,hostfwd=tcp:127.0.0.1:18080-:8080,hostfwd=tcp:127.0.0.1:10022-:22 \
    -device virtio-net-pci,netdev=mgmt,mac=52:54:00:00:00:01,addr=0x3,romfile= \
    -netdev tap,id=cl,ifname=tapc,script=no,downscript=no,vhost=off,queues=2 \
    -device "$nic,netdev=cl,mac=52:54:00:00:01:01,addr=0x4" \
    -netdev tap,id=be,ifname=tapb,script=no,downscript=no,vhost=off,queues=2 \
    -device "$nic,netdev=be,mac=52:54:00:00:02:01,addr=0x5" \
    < /dev/null > >(stamp >> "$work/console.log") 2> "$work/qemu.log" &
  qpid=$!
}
api() { qx curl -sS --max-time 10 "$@"; }
gssh() { qx ssh -q -p 10022 -i "$work/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
  -o ConnectTimeout=10 -o BatchMode=yes root@127.0.0.1 "$@"; }
ctl() { qx "$repo/bin/xlbctl" --api http://127.0.0.1:18080 "$@"; }
# has PATTERN CMD...: CMD's output matches (no pipe into grep -q: with
# pipefail, grep closing early can fail the pipeline).
has() { local p=$1 out; shift; out=$("$@") || return 1; grep -q -- "$p" <<< "$out"; }
wait_for() { # seconds description command...
  local t=$1 what=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${t}s waiting for $what"
    kill -0 "$qpid" 2>/dev/null || fail "qemu exited while waiting for $what ($(tail -3 "$work/qemu.log"))"
    sleep 2
  done
}
ready() { [ "$(api -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/readyz)" = 200 ]; }

log "booting (qemu TCG, BIOS, GRUB from the image)"
tboot=$(date +%s)
qemu
wait_for 400 "the first-boot token on the console" grep -aq 'XLB_API_TOKEN=[0-9a-f]\{64\}' "$work/console.log"
ttoken=$(( $(date +%s) - tboot ))
token=$(grep -ao 'XLB_API_TOKEN=[0-9a-f]\{64\}' "$work/console.log" | head -1 | cut -d= -f2)
log "first-boot token read from the console after ${ttoken}s"
wait_for 300 "the API (/readyz)" ready
tapi=$(( $(date +%s) - tboot ))
log "API ready ${tapi}s after qemu started"
export XLB_API_TOKEN=$token

# --- configure a service and send HTTP through the VIP ---------------------------------
ctl service add --name web --vip 198.51.100.10 --port 80 --mode nat --scheduler rr \
  --backend 10.10.2.11 --backend 10.10.2.12 --health-type tcp --health-interval 1s || fail "xlbctl service add"
http_both() { # both backends answer through the VIP
  local seen="" i out
  for i in $(seq 1 12); do
    out=$(ip netns exec "$nsc" curl -sS --max-time 5 http://198.51.100.10/ 2>>"$work/curl.log") || continue
    seen="$seen $out"
  done
  echo "$seen" > "$work/seen"
  grep -q 'backend b1' "$work/seen" && grep -q 'backend b2' "$work/seen"
}
wait_for 120 "HTTP through the VIP to reach both backends" http_both
log "HTTP through 198.51.100.10 from the client namespace reached both backends (b1: $(grep -o 'backend b1' "$work/seen" | wc -l), b2: $(grep -o 'backend b2' "$work/seen" | wc -l) of 12)"

# --- zero-copy ------------------------------------------------------------------------
modes() { api http://127.0.0.1:18080/api/v1/stats | python3 -c '
import json, sys
s = json.load(sys.stdin).get("sockets", {})
m = "mode"
print(" ".join(f"{k}={v.get(m)}" for k, v in sorted(s.items())))'; }
m=$(modes)
log "AF_XDP sockets: $m"
[ -n "$m" ] || fail "no sockets in /api/v1/stats"
if [ -n "$(tr ' ' '\n' <<< "$m" | grep -v '=zero-copy$')" ]; then
  fail "not every data-path socket is zero-copy: $m"
fi

# --- inside the guest: capabilities, sysctls, persistence -----------------------------
wait_for 60 "SSH" gssh true
pid1=$(gssh systemctl show -p MainPID --value xlb.service)
capeff=$(gssh "sed -n 's/^CapEff:\s*//p' /proc/$pid1/status")
# CAP_NET_ADMIN(12) CAP_NET_RAW(13) CAP_PERFMON(38) CAP_BPF(39)
[ "$capeff" = 000000c000003000 ] || fail "xlb runs with CapEff $capeff, want 000000c000003000"
log "xlb (pid $pid1) runs with exactly CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_PERFMON (CapEff $capeff)"
[ "$(gssh sysctl -n net.ipv4.conf.all.arp_ignore kernel.panic | tr '\n' ' ')" = "1 10 " ] || fail "sysctl.d/60-xlb.conf not applied"
has 'vda6\|XLBDATA' gssh findmnt -n -o SOURCE /var/log/journal || fail "/var/log/journal is not on the data partition"
gssh test -s /var/lib/xlb/state.json || fail "no state file /var/lib/xlb/state.json"

# --- SIGKILL: systemd restarts xlb with its configuration ---------------------------
log "kill -9 $pid1 inside the guest"
gssh kill -9 "$pid1"
restarted() {
  local p; p=$(gssh systemctl show -p MainPID --value xlb.service)
  [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$pid1" ] && ready
}
wait_for 120 "systemd to restart xlb" restarted
pid2=$(gssh systemctl show -p MainPID --value xlb.service)
log "xlb restarted by systemd (pid $pid2, NRestarts=$(gssh systemctl show -p NRestarts --value xlb.service))"
has '"198.51.100.10"' ctl -o json service list || fail "the service is gone after the restart"
wait_for 60 "HTTP through the VIP after the restart" http_both
ctl backend weight web 10.10.2.12 50 >/dev/null || fail "the token is not accepted after the restart"
log "after the restart: service web intact, HTTP reaches both backends, the token still works"

# --- A/B upgrade ------------------------------------------------------------------------
if [ "${XLB_IMAGE_UPGRADE:-1}" = 1 ]; then
  sum=$(cut -d' ' -f1 "$payload.sha256")
  mid=$(gssh cat /etc/machine-id)
  log "upgrade: xlb-update install $(basename "$payload") into slot b, reboot"
  tins=$(date +%s)
  gssh "xlb-update install /dev/disk/by-id/virtio-xlbupdate --sha256 $sum" || fail "xlb-update install"
  tup=$(date +%s)
  log "xlb-update install took $((tup - tins))s"
  gssh systemctl reboot || true
  sleep 5
  on_b() { [ "$(gssh 'sed -n "s/.*xlb.slot=\([ab]\).*/\1/p" /proc/cmdline')" = b ]; }
  wait_for 400 "the guest to boot slot b" on_b
  wait_for 300 "the API after the upgrade" ready
  log "slot b booted; API ready $(( $(date +%s) - tup ))s after the reboot"
  confirmed() { has '^default: b' gssh xlb-update status; }
  wait_for 120 "xlb-update-confirm to make slot b the default" confirmed
  [ "$(gssh cat /etc/machine-id)" = "$mid" ] || fail "the machine id changed across the upgrade"
  has '"198.51.100.10"' ctl -o json service list || fail "the service is gone after the upgrade"
  ctl backend weight web 10.10.2.12 100 >/dev/null || fail "the token is not accepted after the upgrade"
  wait_for 180 "HTTP through the VIP after the upgrade" http_both
  m=$(modes)
  [ -z "$(tr ' ' '\n' <<< "$m" | grep -v '=zero-copy$')" ] || fail "after the upgrade, not every socket is zero-copy: $m"
  log "after the upgrade: slot b is the default, token, service and state file kept, HTTP to both backends, $m"
fi

# --- power off ------------------------------------------------------------------------
[ "${XLB_IMAGE_TEST_HOLD:-0}" = always ] && hold
log "systemctl poweroff"
gssh systemctl poweroff || true
end=$(( $(date +%s) + 180 ))
while kill -0 "$qpid" 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || fail "the guest did not power off within 180s"
  sleep 2
done
wait "$qpid" 2>/dev/null || true
qpid=""
sleep 1
grep -aq 'reboot: Power down' "$work/console.log" || fail "no clean power-off on the console"
ok=1
log "PASS: image $(( $(stat -c %s "$img") / 1048576 )) MiB raw; first boot: token after ${ttoken}s, API after ${tapi}s; whole test $(el)s"
echo "1 passed, 0 failed"
