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
# They have 4 queue pairs for 2 vCPUs, which xlb-setup puts all in use
# (with 2 in use, attaching XDP makes virtio-net enable the other 2 for XDP
# transmit and spread received frames over them, where AF_XDP cannot
# transmit): xlb has a zero-copy socket and a worker on each of the 4.
#
# qemu runs the two vCPUs on one host thread (-accel tcg,thread=single):
# with a thread per vCPU (MTTCG) a host short of CPU time stalls the boot
# (a vCPU spins on a lock or waits for an IPI while the other's thread is
# not scheduled: measured, 2 vCPU threads sharing one host core did not
# reach the first-boot token in 600 s; one thread: 45 s). qemu exits when
# the guest reboots (-no-reboot) and the test starts it again: a warm reset
# under TCG makes GRUB take 30-70 s to load the next kernel (its memmove
# into pages that held the previous kernel's translated code goes through
# TCG's slow write path), a cold start 5 s.
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
#   XLB_IMAGE_TEST_TIMEOUT the whole test's deadline in seconds (default 660);
#                          every wait is bounded by it as well as its own
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
TIMEOUT=${XLB_IMAGE_TEST_TIMEOUT:-660}
deadline=$((T0 + TIMEOUT))
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
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
    kill "$qpid"
    for _ in 1 2 3 4 5; do kill -0 "$qpid" 2>/dev/null || break; sleep 1; done
    kill -9 "$qpid" 2>/dev/null
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in "$nsq" "$nsc" "$nsb1" "$nsb2"; do ip netns del "$n" 2>/dev/null; done
  if [ $ok != 1 ]; then
    mkdir -p "$OUT"
    for f in console.log qemu.log diag.log; do
      [ -e "$work/$f" ] && cp "$work/$f" "$OUT/test-$f"
    done
    echo "image-test: the guest's console: $OUT/test-console.log, qemu's stderr: $OUT/test-qemu.log, diagnostics: $OUT/test-diag.log; the console's last lines:" >&2
    tail -n 40 "$work/console.log" 2>/dev/null | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' >&2
  fi
  [ "${XLB_IMAGE_TEST_KEEP:-0}" = 1 ] && echo "image-test: kept $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
hold() {
  if [ -n "$qpid" ]; then
    echo "image-test: holding the guest for 20 minutes (rm $work/hold to end): ip netns exec $nsq ssh -p 10022 -i $work/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1" >&2
    touch "$work/hold"
    for _ in $(seq 1 600); do [ -e "$work/hold" ] || break; sleep 2; done
  fi
}
# qemu's CPU time against the wall clock since it started: a starved qemu
# (a loaded host) shows as a small share.
qcpu() {
  [ -n "$qpid" ] && [ -r "/proc/$qpid/stat" ] || { echo "qemu not running"; return; }
  local tck st
  tck=$(getconf CLK_TCK)
  st=$(sed 's/.*) //' "/proc/$qpid/stat")
  set -- $st
  echo "qemu pid $qpid: $(( (${12} + ${13}) / tck )) s of CPU in the $(( $(date +%s) - qstart )) s since it started"
}
# What a failure leaves for the reader (diag.log): the host's load, qemu's
# CPU time and stderr, and, when SSH answers, the guest's view.
diag() {
  {
    echo "== host: load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs; $(qcpu)"
    echo "== qemu stderr"; tail -n 20 "$work/qemu.log" 2>/dev/null
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
      echo "== guest (over SSH)"
      timeout 60 ip netns exec "$nsq" ssh -q -p 10022 -i "$work/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=10 -o BatchMode=yes root@127.0.0.1 \
        'uptime; systemctl --failed --no-pager; systemctl status --no-pager -n 0 xlb xlb-setup systemd-networkd-wait-online;
         ip -br addr; ip route; for i in /sys/class/net/ens*; do echo "$i: $(ls $i/queues | tr "\n" " ")"; done;
         ip neigh; ip -br link; ip -s link show ens5; ethtool -S ens5 | grep -v ": 0\$";
         journalctl -b -u xlb --no-pager -o cat | grep "next hop";
         journalctl -b --no-pager -n 120 -o short-monotonic' 2>&1 || echo "(no SSH)"
      # The host side of the backend NIC: did the guest's frames reach the
      # tap, the bridge and the backends (MACs, counters, the backends' drops)?
      echo "== host: brb's fdb, tapb and the backends"
      ip netns exec "$nsq" bridge fdb show br brb | grep -v permanent
      ip -n "$nsq" -s link show tapb
      for n in "$nsb1" "$nsb2"; do ip -n "$n" -s link show eth0; ip netns exec "$n" nstat -asz 2>/dev/null | grep -iE 'InErr|CsumErr|Drop|ListenOverflow|OtherHost' | grep -v ' 0 '; done
      echo "== xlb stats"; timeout 15 ip netns exec "$nsq" curl -sS --max-time 10 -H "Authorization: Bearer ${XLB_API_TOKEN:-}" http://127.0.0.1:18080/api/v1/stats 2>&1 | head -c 6000; echo
    fi
  } > "$work/diag.log" 2>&1
  sed -n '1,3p' "$work/diag.log" >&2
}
fail() {
  trap - ERR
  set +e
  echo "image-test: FAIL [$(el)s]: $*" >&2
  diag
  [ "${XLB_IMAGE_TEST_HOLD:-0}" = 0 ] || hold
  exit 1
}
# A command that fails outside a check (set -e) fails the test with the same diagnostics.
trap 'trap - ERR; fail "unexpected failure of the command at line $LINENO of image/test.sh"' ERR

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
# 4 queue pairs for 2 vCPUs (see the top): xlb must have a socket on each
# of the 4 rx queues, and every connection must be answered (checked below).
QUEUES=4
qemu() {
  local nic="virtio-net-pci,mq=on,vectors=$((2 * QUEUES + 2)),iommu_platform=on,disable-legacy=on,romfile="
  ip netns exec "$nsq" qemu-system-x86_64 -M pc -accel tcg,thread=single -smp 2 -m 1536 -nodefaults -no-reboot \
    -display none -monitor none -chardev stdio,id=ser,signal=off -serial chardev:ser \
    -device virtio-rng-pci,addr=0x8 \
    -drive "file=$work/disk.img,format=raw,if=none,id=disk,cache=unsafe" -device virtio-blk-pci,drive=disk,bootindex=1,addr=0x6 \
    -drive "file=$payload,format=raw,if=none,id=upd,readonly=on" -device virtio-blk-pci,drive=upd,serial=xlbupdate,addr=0x7 \
    -netdev user,id=mgmt,hostfwd=tcp:127.0.0.1:18080-:8080,hostfwd=tcp:127.0.0.1:10022-:22 \
    -device virtio-net-pci,netdev=mgmt,mac=52:54:00:00:00:01,addr=0x3,romfile= \
    -netdev tap,id=cl,ifname=tapc,script=no,downscript=no,vhost=off,queues=$QUEUES \
    -device "$nic,netdev=cl,mac=52:54:00:00:01:01,addr=0x4" \
    -netdev tap,id=be,ifname=tapb,script=no,downscript=no,vhost=off,queues=$QUEUES \
    -device "$nic,netdev=be,mac=52:54:00:00:02:01,addr=0x5" \
    < /dev/null > >(stamp >> "$work/console.log") 2>> "$work/qemu.log" &
  qpid=$!
  qstart=$(date +%s)
}
api() { qx curl -sS --max-time 10 "$@"; }
gssh() { qx ssh -q -p 10022 -i "$work/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
  -o ConnectTimeout=10 -o BatchMode=yes root@127.0.0.1 "$@"; }
ctl() { qx "$repo/bin/xlbctl" --api http://127.0.0.1:18080 "$@"; }
# has PATTERN CMD...: CMD's output matches (no pipe into grep -q: with
# pipefail, grep closing early can fail the pipeline).
has() { local p=$1 out; shift; out=$("$@") || return 1; grep -q -- "$p" <<< "$out"; }
# wait_for SECONDS DESCRIPTION CMD...: polls CMD every 2 s until it
# succeeds, for at most SECONDS and never past the test's deadline.
wait_for() {
  local t=$1 what=$2; shift 2
  local end=$(( $(date +%s) + t )) why="timed out after ${t}s"
  if [ $end -gt $deadline ]; then end=$deadline; why="the test's deadline (${TIMEOUT}s, XLB_IMAGE_TEST_TIMEOUT) passed"; fi
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "$why waiting for $what ($(qcpu))"
    kill -0 "$qpid" 2>/dev/null || fail "qemu exited while waiting for $what ($(tail -3 "$work/qemu.log"))"
    sleep 2
  done
}
ready() { [ "$(api -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/readyz)" = 200 ]; }
# Boot (first boot, and again after the upgrade's reboot) up to the API.
# Sets tfirst (the console's first kernel line), ttoken, tapi: seconds since qemu started.
boot() { # what
  local tb what=$1
  log "booting $what (qemu TCG, BIOS, GRUB from the image)"
  qemu
  tb=$qstart
  kline=$(( $(grep -ac 'Linux version' "$work/console.log" 2>/dev/null || true) + 1 ))
  kernel_started() { [ "$(grep -ac 'Linux version' "$work/console.log")" -ge $kline ]; }
  wait_for 180 "GRUB to start the kernel ($what)" kernel_started
  tfirst=$(( $(date +%s) - tb ))
  if [ "$what" = "the first time" ]; then
    wait_for 360 "the first-boot token on the console" grep -aq 'XLB_API_TOKEN=[0-9a-f]\{64\}' "$work/console.log"
    ttoken=$(( $(date +%s) - tb ))
  fi
  wait_for 300 "the API (/readyz) ($what)" ready
  tapi=$(( $(date +%s) - tb ))
}

boot "the first time"
token=$(grep -ao 'XLB_API_TOKEN=[0-9a-f]\{64\}' "$work/console.log" | head -1 | cut -d= -f2)
log "first boot: kernel after ${tfirst}s, the token on the console after ${ttoken}s, API ready after ${tapi}s"
boot1="kernel ${tfirst}s, token ${ttoken}s, API ${tapi}s"
export XLB_API_TOKEN=$token

# --- configure a service and send HTTP through the VIP ---------------------------------
ctl service add --name web --vip 198.51.100.10 --port 80 --mode nat --scheduler rr \
  --backend 10.10.2.11 --backend 10.10.2.12 --health-type tcp --health-interval 1s || fail "xlbctl service add"
# http N: N requests through the VIP from the client namespace, each a new
# connection (a new source port: the device spreads them over the rx
# queues); hok/hfail count them, $work/seen has the answers.
http() {
  local i out
  hok=0; hfail=0; : > "$work/seen"
  for i in $(seq 1 "$1"); do
    if out=$(ip netns exec "$nsc" curl -sS --max-time 5 http://198.51.100.10/ 2>>"$work/curl.log"); then
      hok=$((hok + 1)); echo "$out" >> "$work/seen"
    else
      hfail=$((hfail + 1))
    fi
  done
}
http_both() { http 12; grep -q 'backend b1' "$work/seen" && grep -q 'backend b2' "$work/seen"; }
# steering NAME...: the sum of these steering counters over the data-path NICs.
steering() {
  api http://127.0.0.1:18080/api/v1/stats | python3 -c '
import json, sys
st = json.load(sys.stdin).get("steering", {})
print(sum(c.get(k, 0) for c in st.values() for k in sys.argv[1:]))' "$@"
}
# Once both backends answer: every one of 24 new connections is answered,
# and the steering program lost no frame to a queue without a socket.
http_all() { # when
  local lost0 lost
  lost0=$(steering no_socket held) || fail "no steering counters in /api/v1/stats ($1)"
  http 24
  lost=$(steering no_socket held) || fail "no steering counters in /api/v1/stats ($1)"
  [ "$hfail" = 0 ] || fail "$1: $hfail of 24 HTTP requests through the VIP failed (steering no_socket+held went from $lost0 to $lost)"
  [ "$lost" = "$lost0" ] || fail "$1: the steering program passed or held $((lost - lost0)) frames for lack of a socket (no_socket+held $lost0 -> $lost)"
  log "$1: 24 of 24 HTTP requests answered (b1: $(grep -c 'backend b1' "$work/seen"), b2: $(grep -c 'backend b2' "$work/seen")), no frame without a socket"
}
wait_for 120 "HTTP through the VIP to reach both backends" http_both
http_all "first boot"

# --- zero-copy, a socket on every rx queue ------------------------------------------------
modes() { api http://127.0.0.1:18080/api/v1/stats | python3 -c '
import json, sys
s = json.load(sys.stdin).get("sockets", {})
m = "mode"
print(" ".join(f"{k}={v.get(m)}" for k, v in sorted(s.items())))'; }
# every data-path socket is zero-copy, and every rx queue of ens4 and ens5
# (4) has one
check_sockets() { # when
  local m n want
  m=$(modes)
  [ -n "$m" ] || fail "$1: no sockets in /api/v1/stats"
  [ -z "$(tr ' ' '\n' <<< "$m" | grep -v '=zero-copy$')" ] || fail "$1: not every data-path socket is zero-copy: $m"
  for nic in ens4 ens5; do
    want=$(gssh "ls -d /sys/class/net/$nic/queues/rx-* | wc -l") || fail "$1: cannot count $nic's rx queues"
    n=$(tr ' ' '\n' <<< "$m" | grep -c "^$nic/")
    [ "$n" = "$want" ] || fail "$1: $nic has $want rx queues and xlb $n sockets on it: $m"
  done
  log "$1: AF_XDP sockets on every rx queue, all zero-copy: $m"
}
wait_for 60 "SSH" gssh true
check_sockets "first boot"

# --- inside the guest: capabilities, sysctls, persistence -----------------------------
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
  # The guest reboots; qemu (-no-reboot) exits at the reset and is started
  # again: a cold start (see the top).
  gssh systemctl reboot 2>>"$work/ssh.log" || true
  qexited() { ! kill -0 "$qpid" 2>/dev/null; }
  end=$(( $(date +%s) + 180 )); [ $end -le $deadline ] || end=$deadline
  until qexited; do
    [ "$(date +%s)" -lt "$end" ] || fail "the guest did not reboot within 180s of systemctl reboot ($(qcpu))"
    sleep 1
  done
  wait "$qpid" 2>/dev/null || true
  qpid=""
  grep -aq 'reboot: Restarting system' "$work/console.log" || fail "qemu exited without the guest's 'reboot: Restarting system' on the console"
  log "the guest rebooted ($(( $(date +%s) - tup ))s after the install); starting qemu again"
  boot "slot b"
  on_b() { [ "$(gssh 'sed -n "s/.*xlb.slot=\([ab]\).*/\1/p" /proc/cmdline')" = b ]; }
  wait_for 60 "SSH on slot b" on_b
  boot2="kernel ${tfirst}s, API ${tapi}s"
  log "slot b booted: kernel after ${tfirst}s, API ready after ${tapi}s"
  confirmed() { has '^default: b' gssh xlb-update status; }
  wait_for 120 "xlb-update-confirm to make slot b the default" confirmed
  [ "$(gssh cat /etc/machine-id)" = "$mid" ] || fail "the machine id changed across the upgrade"
  has '"198.51.100.10"' ctl -o json service list || fail "the service is gone after the upgrade"
  ctl backend weight web 10.10.2.12 100 >/dev/null || fail "the token is not accepted after the upgrade"
  wait_for 120 "HTTP through the VIP after the upgrade" http_both
  http_all "after the upgrade"
  check_sockets "after the upgrade"
  log "after the upgrade: slot b is the default, token, service and state file kept"
fi

# --- power off ------------------------------------------------------------------------
[ "${XLB_IMAGE_TEST_HOLD:-0}" = always ] && hold
log "systemctl poweroff"
gssh systemctl poweroff 2>>"$work/ssh.log" || true
end=$(( $(date +%s) + 180 )); [ $end -le $deadline ] || end=$deadline
while kill -0 "$qpid" 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || fail "the guest did not power off within 180s ($(qcpu))"
  sleep 1
done
wait "$qpid" 2>/dev/null || true
qpid=""
sleep 1
grep -aq 'reboot: Power down' "$work/console.log" || fail "no clean power-off on the console"
ok=1
log "PASS in $(el)s: image $(( $(stat -c %s "$img") / 1048576 )) MiB raw; first boot: $boot1${boot2:+; upgraded boot: $boot2}"
echo "1 passed, 0 failed"
