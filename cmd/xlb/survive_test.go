package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/netns"
)

// These tests run the real binary through namespaces to show that the
// connection table outlives the process (kill -9, restart, upgrade) and
// that a SYN flood against a small table stops neither nat nor fullnat.

// surviveConfig is lbConfig with the connection table in dir (a tmpfs
// when there is one) and capacity entries.
func surviveConfig(t *testing.T, tp *netns.Topology, mode, dir string, capacity int) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\n", tp.LBClientIface)
	fmt.Fprintf(&b, "lb:\n  workers: 1\n  conntrack: {capacity: %d, state_dir: %s}\n", capacity, dir)
	if mode == "fullnat" {
		fmt.Fprintf(&b, "  snat: {addresses: [%s], ports: 10000-30000}\n", tp.SNAT)
	}
	fmt.Fprintf(&b, "api: {listen: %s}\n", apiAddr)
	fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    protocol: tcp\n    mode: %s\n    backends:\n", tp.VIP, mode)
	for _, be := range tp.Backends {
		fmt.Fprintf(&b, "      - {address: %s, port: 8080}\n", be.Addr)
	}
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// stateDir is a directory for the connection table, on tmpfs if possible.
func stateDir(t *testing.T) string {
	if d, err := os.MkdirTemp("/dev/shm", "xlb-state-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	return t.TempDir()
}

// survivorFS mounts a BPF filesystem for xlb to pin its steering links
// in (XLB_BPFFS), outside /sys: `ip netns exec` mounts the namespace's own
// sysfs on /sys. Each xlb's mount namespace gets a copy of the mount, the
// same filesystem, so one xlb finds what the last one pinned. Unmounted
// when the test ends (which drops what is still pinned: the program
// detaches).
func survivorFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount a BPF filesystem: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// startSurvivor starts bin (xlb, or an "upgraded" copy) with its steering
// links pinned in the BPF filesystem fs.
func startSurvivor(t testing.TB, tp *netns.Topology, bin, cfg, fs string) *balancer {
	t.Helper()
	old := xlbBin
	xlbBin = bin
	defer func() { xlbBin = old }()
	return startXLBEnv(t, tp, cfg, []string{"XLB_BPFFS=" + fs}, "--poll")
}

// term stops the balancer with SIGTERM and requires exit 0; unlike stop it
// expects the pinned steering program to stay attached.
func (lb *balancer) term(t testing.TB) {
	t.Helper()
	_ = lb.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-lb.done:
		if err != nil {
			t.Fatalf("xlb exit: %v\n%s", err, lb.logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("xlb did not stop on SIGTERM")
	}
}

// guard describes the steering program pinned for the balancer's
// interface: the link's ID and its program's ID; and it requires that the
// interface shows exactly one XDP program, that one.
func guard(t testing.TB, tp *netns.Topology, fs string) (link.ID, ebpf.ProgramID) {
	t.Helper()
	pin := filepath.Join(fs, "xlb", tp.LB.NS, tp.LBClientIface)
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatalf("no pinned steering link: %v", err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	out, err := tp.LB.Run(context.Background(), "ip", "-d", "link", "show", tp.LBClientIface)
	if err != nil {
		t.Fatal(err)
	}
	ids := regexp.MustCompile(`prog/xdp id (\d+)`).FindAllStringSubmatch(string(out), -1)
	if len(ids) != 1 || ids[0][1] != strconv.Itoa(int(info.Program)) {
		t.Fatalf("%s shows XDP programs %v, want only the pinned link's program %d:\n%s", tp.LBClientIface, ids, info.Program, out)
	}
	return info.ID, info.Program
}

// takenOver requires the new balancer to have replaced the program of the
// pinned link (the same link, another program, one XDP program on the
// interface) and returns the new program's ID.
func takenOver(t testing.TB, lb *balancer, fs string, linkID link.ID, prog ebpf.ProgramID) ebpf.ProgramID {
	t.Helper()
	if !strings.Contains(lb.logs.String(), "previous=replaced") {
		t.Fatalf("the new xlb did not take over the pinned steering link:\n%s", lb.logs.String())
	}
	id, p := guard(t, lb.tp, fs)
	if id != linkID || p == prog {
		t.Fatalf("after the restart: link %d with program %d; want link %d with a program other than %d", id, p, linkID, prog)
	}
	return p
}

// kill9 kills the balancer with SIGKILL and waits for it to be gone.
func (lb *balancer) kill9(t testing.TB) {
	t.Helper()
	_ = lb.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-lb.done:
	case <-time.After(10 * time.Second):
		t.Fatal("xlb did not die on SIGKILL")
	}
}

// download is a /stream request whose every byte is checked.
type download struct {
	got     atomic.Int64
	lastAt  atomic.Int64 // unix nanos of the last byte
	maxGap  atomic.Int64 // longest pause between reads, ns
	err     chan error
	started time.Time
}

func startDownload(tp *netns.Topology, total int64, delay time.Duration) *download {
	d := &download{err: make(chan error, 1), started: time.Now()}
	d.lastAt.Store(time.Now().UnixNano())
	go func() {
		url := fmt.Sprintf("http://%s/stream?bytes=%d&chunk=65536&delay=%s", tp.VIP, total, delay)
		resp, err := tp.HTTPClient(3 * time.Minute).Get(url)
		if err != nil {
			d.err <- err
			return
		}
		defer resp.Body.Close()
		br := bufio.NewReaderSize(resp.Body, 1<<16)
		buf := make([]byte, 1<<16)
		var k int64
		for {
			n, err := br.Read(buf)
			now := time.Now().UnixNano()
			if gap := now - d.lastAt.Swap(now); gap > d.maxGap.Load() {
				d.maxGap.Store(gap)
			}
			for i := range n {
				if buf[i] != netns.StreamByte(k) {
					d.err <- fmt.Errorf("byte %d corrupted", k)
					return
				}
				k++
			}
			d.got.Store(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				d.err <- fmt.Errorf("after %d bytes: %w", k, err)
				return
			}
		}
		if k != total {
			d.err <- fmt.Errorf("stream ended after %d of %d bytes", k, total)
			return
		}
		d.err <- nil
	}()
	return d
}

// waitBytes waits until n bytes arrived.
func (d *download) waitBytes(t testing.TB, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for d.got.Load() < n {
		select {
		case err := <-d.err:
			t.Fatalf("download ended early (%d bytes): %v", d.got.Load(), err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("download stuck at %d bytes", d.got.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wait waits for the end and requires every byte.
func (d *download) wait(t testing.TB, what string) {
	t.Helper()
	select {
	case err := <-d.err:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("%s: stuck at %d bytes", what, d.got.Load())
	}
}

const streamBytes = 40 << 20 // 41943040

// TestFlowsSurviveRestart: a 40 MB download through nat and through
// fullnat keeps going, byte-exact, across a kill -9 of xlb and a new start,
// and across a clean stop and the start of an upgraded binary (another
// path). Nothing but xlb keeps the lb's kernel away from the flows while no
// xlb runs: its steering program, pinned, stays attached and drops what it
// would have steered (the backends' packets to the SNAT address, which the
// kernel owns and would answer with resets; the clients' packets to the
// VIP; nat replies), and the next xlb replaces it in the same link.
func TestFlowsSurviveRestart(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	upgraded := filepath.Join(t.TempDir(), "xlb-upgraded")
	if b, err := os.ReadFile(xlbBin); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(upgraded, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"nat", "fullnat"} {
		t.Run(mode, func(t *testing.T) {
			tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: mode, Backends: 2})
			tp.StartHTTPBackends(t)
			fs := survivorFS(t)
			cfg := surviveConfig(t, tp, mode, stateDir(t), 65536)
			lb := startSurvivor(t, tp, xlbBin, cfg, fs)
			linkID, prog := guard(t, tp, fs)

			// kill -9 in the middle of a download, then the same binary again.
			d := startDownload(tp, streamBytes, 8*time.Millisecond)
			d.waitBytes(t, 4<<20)
			at := d.got.Load()
			killed := time.Now()
			lb.kill9(t)
			if id, p := guard(t, tp, fs); id != linkID || p != prog {
				t.Fatalf("after kill -9: link %d program %d, want the same link %d and program %d", id, p, linkID, prog)
			}
			lb = startSurvivor(t, tp, xlbBin, cfg, fs)
			up := time.Since(killed)
			if !strings.Contains(lb.logs.String(), "connection table reused") {
				t.Fatalf("the new xlb did not reuse the table:\n%s", lb.logs.String())
			}
			prog = takenOver(t, lb, fs, linkID, prog)
			d.waitBytes(t, at+1<<20)
			resumed := time.Since(killed)
			d.wait(t, "download across kill -9")
			t.Logf("%s kill -9 at %d MB: new xlb up after %v, stream moving again after %v (longest stall %v), %d MB byte-exact in %v",
				mode, at>>20, up.Round(time.Millisecond), resumed.Round(time.Millisecond),
				time.Duration(d.maxGap.Load()).Round(time.Millisecond), int64(streamBytes)>>20, time.Since(d.started).Round(time.Millisecond))

			// A clean stop and an upgraded binary.
			d = startDownload(tp, streamBytes, 8*time.Millisecond)
			d.waitBytes(t, 4<<20)
			at = d.got.Load()
			stopped := time.Now()
			lb.term(t)
			if id, p := guard(t, tp, fs); id != linkID || p != prog {
				t.Fatalf("after SIGTERM: link %d program %d, want the same link %d and program %d", id, p, linkID, prog)
			}
			if !strings.Contains(lb.logs.String(), "steering program left attached") {
				t.Fatalf("SIGTERM did not leave the steering program attached:\n%s", lb.logs.String())
			}
			lb = startSurvivor(t, tp, upgraded, cfg, fs)
			up = time.Since(stopped)
			takenOver(t, lb, fs, linkID, prog)
			d.waitBytes(t, at+1<<20)
			resumed = time.Since(stopped)
			d.wait(t, "download across an upgrade")
			t.Logf("%s upgrade at %d MB: new xlb up after %v, stream moving again after %v (longest stall %v)",
				mode, at>>20, up.Round(time.Millisecond), resumed.Round(time.Millisecond), time.Duration(d.maxGap.Load()).Round(time.Millisecond))
			if _, err := get(t, tp, "/"); err != nil {
				t.Fatalf("new connection after the upgrade: %v", err)
			}

			// Stopping for good: SIGTERM, then the documented cleanup
			// (docs/deployment.md) removes the pin, which detaches the
			// program.
			lb.term(t)
			guard(t, tp, fs)
			if err := os.RemoveAll(filepath.Join(fs, "xlb")); err != nil {
				t.Fatal(err)
			}
			// The pin's reference goes after an RCU grace period.
			waitFor(t, 5*time.Second, "the program detached once its pin is removed", func() bool {
				out, err := tp.LB.Run(context.Background(), "ip", "link", "show", tp.LBClientIface)
				return err == nil && !strings.Contains(string(out), "xdp")
			})
		})
	}
}

// floodSeconds is how long the 1000 SYN/s flood of TestSynFloodSmallTable
// lasts: 10 s by default (make test), XLB_FLOOD_SECONDS=30 for the full
// scenario.
func floodSeconds() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("XLB_FLOOD_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 10 * time.Second
}

// synFlooder writes spoofed SYNs to the VIP onto the lb's segment from the
// router's bridge, with random sources in 10.77.0.0/16, a network the
// router blackholes (the replies die there).
type synFlooder struct {
	fd    int
	sa    *unix.SockaddrLinklayer
	frame []byte
	rng   *rand.Rand
	sent  int
}

var floodNet = netip.MustParsePrefix("10.77.0.0/16")

func newSynFlooder(t *testing.T, tp *netns.Topology) *synFlooder {
	t.Helper()
	lbMAC, err := tp.LB.MAC(tp.LBClientIface)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Router.Run(context.Background(), "ip", "route", "add", "blackhole", floodNet.String()); err != nil {
		t.Fatalf("blackhole route: %v\n%s", err, out)
	}
	f := &synFlooder{frame: make([]byte, 14+20+20), rng: rand.New(rand.NewPCG(1, 2))}
	err = tp.Router.Do(func() error {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		f.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		f.sa = &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		copy(f.sa.Addr[:], lbMAC)
		copy(f.frame[0:6], lbMAC)
		copy(f.frame[6:12], ifi.HardwareAddr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(f.fd) })
	binary.BigEndian.PutUint16(f.frame[12:14], 0x0800)
	ip := f.frame[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:4], 40)
	copy(ip[16:20], tp.VIP.AsSlice())
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[2:4], 80)
	tcp[12], tcp[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(tcp[14:16], 64240)
	return f
}

// send writes n SYNs, each from a new random source address and port.
func (f *synFlooder) send(n int) error {
	ip := f.frame[14:]
	tcp := ip[20:]
	for range n {
		src := floodNet.Addr().As4()
		src[2], src[3] = byte(f.rng.IntN(256)), byte(1+f.rng.IntN(254))
		copy(ip[12:16], src[:])
		binary.BigEndian.PutUint16(ip[4:6], uint16(f.rng.Uint32()))
		binary.BigEndian.PutUint16(tcp[0:2], uint16(1024+f.rng.IntN(60000)))
		binary.BigEndian.PutUint32(tcp[4:8], f.rng.Uint32())
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], ^csum(0, ip[:20]))
		tcp[16], tcp[17] = 0, 0
		pseudo := uint32(csum(0, ip[12:20])) + 6 + 20
		binary.BigEndian.PutUint16(tcp[16:18], ^csum(pseudo, tcp[:20]))
		if err := unix.Sendto(f.fd, f.frame, 0, f.sa); err != nil {
			if err == unix.ENOBUFS {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			return err
		}
		f.sent++
	}
	return nil
}

func csum(s uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TestSynFloodSmallTable: with capacity 1000, a burst of 20 000 spoofed
// SYNs and then 1 000 SYN/s (10 s here, see floodSeconds) against a nat
// and a fullnat VIP: at least 99% of the real connections made meanwhile
// succeed, and downloads streaming since before the flood finish
// byte-exact.
func TestSynFloodSmallTable(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	flood := floodSeconds()
	for _, mode := range []string{"nat", "fullnat"} {
		t.Run(mode, func(t *testing.T) {
			tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: mode, Backends: 2})
			tp.StartHTTPBackends(t)
			lb := startXLB(t, tp, surviveConfig(t, tp, mode, stateDir(t), 1000))
			f := newSynFlooder(t, tp)

			// Downloads streaming through the whole flood.
			delay := (flood + 8*time.Second) / (streamBytes / 65536)
			var streams []*download
			for range 2 {
				d := startDownload(tp, streamBytes, delay)
				d.waitBytes(t, 1<<20)
				streams = append(streams, d)
			}
			before, _ := lb.stats()

			// Real clients: one new connection after another.
			var tried, failed, slowest atomic.Int64
			var firstErr atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					tried.Add(1)
					t0 := time.Now()
					if _, err := get(t, tp, "/"); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					if d := int64(time.Since(t0)); d > slowest.Load() {
						slowest.Store(d)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()

			start := time.Now()
			if err := f.send(20000); err != nil {
				t.Fatal(err)
			}
			burst := time.Since(start)
			// 1000 SYN/s, paced by the clock (a ticker loses ticks on a busy machine).
			rate0, sent0 := time.Now(), f.sent
			for time.Since(rate0) < flood {
				time.Sleep(5 * time.Millisecond)
				if err := f.send(sent0 + int(time.Since(rate0)/time.Millisecond) - f.sent); err != nil {
					t.Fatal(err)
				}
			}
			close(stop)
			wg.Wait()
			for i, d := range streams {
				d.wait(t, fmt.Sprintf("download %d", i))
			}
			st, _ := lb.stats()
			n, bad := tried.Load(), failed.Load()
			t.Logf("%s: %d spoofed SYNs (20000 in %v, then 1000/s for %v); real connections %d tried, %d failed (%v), slowest %v; "+
				"2 downloads of %d MB byte-exact; stateless new flows %d, conntrack_full drops %d, table %d/%d entries",
				mode, f.sent, burst.Round(time.Millisecond), flood, n, bad, firstErr.Load(), time.Duration(slowest.Load()).Round(time.Millisecond), streamBytes>>20,
				st.Totals.Stateless-before.Totals.Stateless, st.Drops["conntrack_full"]-before.Drops["conntrack_full"],
				st.Conntrack.Entries, st.Conntrack.Capacity)
			if n < 50 || float64(bad) > 0.01*float64(n) {
				t.Fatalf("%d of %d real connections failed during the flood (first: %v)", bad, n, firstErr.Load())
			}
			lb.stop(t)
		})
	}
}
