package realserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/internal/rtnl"
	"github.com/xlb/xlb/internal/testutil"
)

// These tests run the host setup in a fresh pair of namespaces: "be" is
// the backend (eth0, 10.41.0.11/24 and fd00:41::11/64) and "peer" its
// neighbour on the link (peer0, 10.41.0.1 and fd00:41::1).

var (
	tVIP4    = netip.MustParseAddr("198.51.100.10")
	tVIP6    = netip.MustParseAddr("2001:db8:100::10")
	tVIPKept = netip.MustParseAddr("198.51.100.20") // already on lo: must stay
	tBackend = netip.MustParseAddr("10.41.0.11")
	tBack6   = netip.MustParseAddr("fd00:41::11")
)

type pair struct{ be, peer string }

func newPair(t *testing.T) pair {
	t.Helper()
	testutil.RequireAFXDP(t)
	p := pair{testutil.NewNetns(t, "be"), testutil.NewNetns(t, "peer")}
	for _, ns := range []string{p.be, p.peer} {
		for _, kv := range [][2]string{{"net.ipv6.conf.all.accept_dad", "0"}, {"net.ipv6.conf.default.accept_dad", "0"},
			{"net.ipv6.conf.all.disable_ipv6", "0"}, {"net.ipv6.conf.default.disable_ipv6", "0"}} {
			sysctlIn(t, ns, kv[0], kv[1])
		}
	}
	testutil.IPCmd(t, "-n", p.be, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0", "netns", p.peer)
	testutil.IPCmd(t, "-n", p.be, "addr", "add", "10.41.0.11/24", "dev", "eth0")
	testutil.IPCmd(t, "-n", p.be, "addr", "add", "fd00:41::11/64", "dev", "eth0", "nodad")
	testutil.IPCmd(t, "-n", p.peer, "addr", "add", "10.41.0.1/24", "dev", "peer0")
	testutil.IPCmd(t, "-n", p.peer, "addr", "add", "fd00:41::1/64", "dev", "peer0", "nodad")
	testutil.IPCmd(t, "-n", p.be, "link", "set", "eth0", "up")
	testutil.IPCmd(t, "-n", p.peer, "link", "set", "peer0", "up")
	return p
}

func sysctlIn(t *testing.T, ns, key, value string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", key+"="+value).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v\n%s", key, value, ns, err, out)
	}
}

func in(t *testing.T, ns string, fn func() error) {
	t.Helper()
	if err := testutil.InNetns(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// hostState is everything the realserver may touch.
type hostState struct {
	LoAddrs []string
	Sysctls map[string]string
	XDPProg uint32
}

var watched = []string{
	"net/ipv4/conf/all/arp_ignore", "net/ipv4/conf/eth0/arp_ignore",
	"net/ipv4/conf/all/arp_announce", "net/ipv4/conf/eth0/arp_announce",
	"net/ipv4/conf/all/rp_filter", "net/ipv4/conf/eth0/rp_filter",
}

func snapshot(t *testing.T, ns string) hostState {
	t.Helper()
	var hs hostState
	in(t, ns, func() error {
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		addrs, err := rtnl.ListAddrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.Ifindex == lo.Index {
				hs.LoAddrs = append(hs.LoAddrs, a.Prefix.String())
			}
		}
		slices.Sort(hs.LoAddrs)
		hs.Sysctls = map[string]string{}
		for _, k := range watched {
			if hs.Sysctls[k], err = readSysctl(k); err != nil {
				return err
			}
		}
		eth0, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		hs.XDPProg, _, err = rtnl.LinkXDP(eth0.Index)
		return err
	})
	return hs
}

func testConfig(t *testing.T, mode Mode, vips ...VIP) Config {
	return Config{Interface: "eth0", Mode: mode, VIPs: vips, StateFile: filepath.Join(t.TempDir(), "rs.json")}
}

func quiet() zerolog.Logger { return zerolog.Nop() }

func TestStartStopRestoresHost(t *testing.T) {
	p := newPair(t)
	// A starting point that is not the kernel default: strict rp_filter
	// everywhere, a stricter arp_ignore on eth0 (kept), a VIP already on lo.
	sysctlIn(t, p.be, "net.ipv4.conf.all.rp_filter", "1")
	sysctlIn(t, p.be, "net.ipv4.conf.eth0.rp_filter", "1")
	sysctlIn(t, p.be, "net.ipv4.conf.eth0.arp_ignore", "2")
	testutil.IPCmd(t, "-n", p.be, "addr", "add", tVIPKept.String()+"/32", "dev", "lo")
	before := snapshot(t, p.be)

	for _, mode := range []Mode{ModeTunnel, ModeL3DSR, ModeDSR} {
		t.Run(string(mode), func(t *testing.T) {
			var vips []VIP
			for i, a := range []netip.Addr{tVIP4, tVIP6, tVIPKept} {
				v := VIP{Addr: a}
				if mode == ModeL3DSR {
					v.DSCP = uint8(10 + i)
				}
				vips = append(vips, v)
			}
			cfg := testConfig(t, mode, vips...)
			var s *Server
			in(t, p.be, func() (err error) { s, err = Start(cfg, quiet()); return err })
			during := snapshot(t, p.be)
			want := []string{tVIP4.String() + "/32", tVIPKept.String() + "/32", tVIP6.String() + "/128", "127.0.0.1/8", "::1/128"}
			slices.Sort(want)
			if !reflect.DeepEqual(during.LoAddrs, want) {
				t.Errorf("lo while running: %v, want %v", during.LoAddrs, want)
			}
			for k, v := range map[string]string{
				"net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/eth0/arp_ignore": "2",
				"net/ipv4/conf/all/arp_announce": "2", "net/ipv4/conf/eth0/arp_announce": "2",
				"net/ipv4/conf/all/rp_filter": "2", "net/ipv4/conf/eth0/rp_filter": "2",
			} {
				if during.Sysctls[k] != v {
					t.Errorf("%s = %s while running, want %s", k, during.Sysctls[k], v)
				}
			}
			if (during.XDPProg != 0) != mode.needsProgram() {
				t.Errorf("XDP program %d on eth0 in %s mode", during.XDPProg, mode)
			}
			if _, err := os.Stat(cfg.StateFile); err != nil {
				t.Errorf("no state file while running: %v", err)
			}
			// --check agrees.
			var rs []CheckResult
			in(t, p.be, func() error { rs = Check(&cfg); return nil })
			var sb strings.Builder
			if PrintChecks(&sb, &cfg, rs) {
				t.Errorf("--check fails while running:\n%s", sb.String())
			}
			// A second realserver on the same state is refused.
			in(t, p.be, func() error {
				if _, err := Start(cfg, quiet()); !errors.Is(err, ErrRunning) {
					return fmt.Errorf("second start: %v, want ErrRunning", err)
				}
				return nil
			})
			in(t, p.be, s.Stop)
			if after := snapshot(t, p.be); !reflect.DeepEqual(after, before) {
				t.Fatalf("after stop:\n%+v\nwant\n%+v", after, before)
			}
			if _, err := os.Stat(cfg.StateFile); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("state file left behind: %v", err)
			}
		})
	}

	// Settings an operator changes while it runs are theirs afterwards.
	t.Run("operator changes survive", func(t *testing.T) {
		cfg := testConfig(t, ModeDSR, VIP{Addr: tVIP4})
		var s *Server
		in(t, p.be, func() (err error) { s, err = Start(cfg, quiet()); return err })
		sysctlIn(t, p.be, "net.ipv4.conf.all.arp_announce", "1")
		in(t, p.be, s.Stop)
		after := snapshot(t, p.be)
		if after.Sysctls["net/ipv4/conf/all/arp_announce"] != "1" {
			t.Fatalf("the operator's arp_announce=1 was overwritten: %v", after.Sysctls)
		}
		sysctlIn(t, p.be, "net.ipv4.conf.all.arp_announce", before.Sysctls["net/ipv4/conf/all/arp_announce"])
	})
}

// A state file left by a run that died is undone by the next start, which
// then stops cleanly: the host ends as it began.
func TestStartRecoversCrashedRun(t *testing.T) {
	p := newPair(t)
	before := snapshot(t, p.be)
	cfg := testConfig(t, ModeTunnel, VIP{Addr: tVIP4}, VIP{Addr: tVIP6})
	var s *Server
	in(t, p.be, func() (err error) { s, err = Start(cfg, quiet()); return err })
	crashed, err := os.ReadFile(cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	// "Crash": the kernel drops the link with the process; the host
	// changes and the state file stay.
	s.att.Close()
	s.rs.Close()
	s.lock.Close()
	if hs := snapshot(t, p.be); hs.XDPProg != 0 || len(hs.LoAddrs) != 4 {
		t.Fatalf("after the crash: %+v", hs)
	}
	var logs strings.Builder
	log := zerolog.New(&logs)
	in(t, p.be, func() (err error) { s, err = Start(cfg, log); return err })
	if !strings.Contains(logs.String(), "recovering from a crash") {
		t.Errorf("no crash recovery logged:\n%s", logs.String())
	}
	in(t, p.be, s.Stop)
	if after := snapshot(t, p.be); !reflect.DeepEqual(after, before) {
		t.Fatalf("after recover + stop:\n%+v\nwant\n%+v\n(crashed state: %s)", after, before, crashed)
	}
}

func TestStartRefusesVIPOnInterface(t *testing.T) {
	p := newPair(t)
	testutil.IPCmd(t, "-n", p.be, "addr", "add", tVIP4.String()+"/32", "dev", "eth0")
	before := snapshot(t, p.be)
	cfg := testConfig(t, ModeTunnel, VIP{Addr: tVIP4})
	in(t, p.be, func() error {
		if _, err := Start(cfg, quiet()); !errors.Is(err, ErrVIPElsewhere) {
			return fmt.Errorf("start: %v, want ErrVIPElsewhere", err)
		}
		return nil
	})
	if after := snapshot(t, p.be); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused start changed the host:\n%+v\nwant\n%+v", after, before)
	}
	if _, err := os.Stat(cfg.StateFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file after a refused start: %v", err)
	}
}

// neighbour resolves addr from the peer over peer0 (an on-link route
// makes the peer ARP or solicit for it) and reports the link-layer
// address it learned, "" if none.
func neighbour(t *testing.T, p pair, addr netip.Addr) string {
	t.Helper()
	plen := "/32"
	if addr.Is6() {
		plen = "/128"
	}
	_ = exec.Command("ip", "-n", p.peer, "route", "replace", addr.String()+plen, "dev", "peer0").Run()
	_ = testutil.InNetns(p.peer, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		var d net.Dialer
		if c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr.String(), "9")); err == nil {
			c.Close()
		}
		return nil
	})
	out, _ := exec.Command("ip", "-n", p.peer, "neigh", "show", addr.String(), "dev", "peer0").CombinedOutput()
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}

// With the realserver running, the backend answers neither ARP nor
// neighbour discovery for its VIPs on eth0, while it still does for its
// own addresses; without it (VIP on lo, default sysctls) ARP is answered.
func TestVIPsNotAnsweredOnTheLink(t *testing.T) {
	p := newPair(t)
	var mac string
	in(t, p.be, func() error {
		ifi, err := net.InterfaceByName("eth0")
		mac = ifi.HardwareAddr.String()
		return err
	})
	// Control: a VIP on lo with arp_ignore=0 is answered.
	other := netip.MustParseAddr("198.51.100.30")
	testutil.IPCmd(t, "-n", p.be, "addr", "add", other.String()+"/32", "dev", "lo")
	if got := neighbour(t, p, other); got != mac {
		t.Fatalf("control: ARP for a VIP on lo with default sysctls learned %q, want %s", got, mac)
	}
	testutil.IPCmd(t, "-n", p.be, "addr", "del", other.String()+"/32", "dev", "lo")

	cfg := testConfig(t, ModeTunnel, VIP{Addr: tVIP4}, VIP{Addr: tVIP6})
	var s *Server
	in(t, p.be, func() (err error) { s, err = Start(cfg, quiet()); return err })
	defer in(t, p.be, s.Stop)
	for _, a := range []netip.Addr{tBackend, tBack6} {
		if got := neighbour(t, p, a); got != mac {
			t.Errorf("the backend's own %s resolved to %q, want %s", a, got, mac)
		}
	}
	for _, a := range []netip.Addr{tVIP4, tVIP6} {
		if got := neighbour(t, p, a); got != "" {
			t.Errorf("the VIP %s was answered on the link: %s", a, got)
		}
	}
}
