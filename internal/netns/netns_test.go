package netns_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/netns"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustRun(t *testing.T, h *netns.Host, name string, args ...string) string {
	t.Helper()
	out, err := h.Run(ctxT(t, 5*time.Second), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestLayouts builds each layout in two modes, checks reachability,
// addressing and settings, and that Close removes every namespace.
func TestLayouts(t *testing.T) {
	for _, tc := range []struct {
		layout netns.Layout
		mode   string
	}{
		{netns.OneArm, netns.ModeDSR},
		{netns.OneArm, netns.ModeNAT},
		{netns.TwoArm, netns.ModeDSR},
		{netns.TwoArm, netns.ModeNAT},
	} {
		t.Run(fmt.Sprintf("%v/%s", tc.layout, tc.mode), func(t *testing.T) {
			t.Parallel()
			tp := netns.New(t, netns.Options{Layout: tc.layout, Mode: tc.mode})
			checkTopology(t, tp, tc.layout, tc.mode)

			if err := tp.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if out := ipNetnsList(t); strings.Contains(out, tp.Prefix) {
				t.Errorf("namespaces left after Close:\n%s", out)
			}
			if err := tp.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func checkTopology(t *testing.T, tp *netns.Topology, layout netns.Layout, mode string) {
	ctx := ctxT(t, 10*time.Second)
	if got := len(tp.Backends); got != 2 {
		t.Fatalf("%d backends, want 2", got)
	}
	wantLB := map[netns.Layout]string{netns.OneArm: "10.30.0.2", netns.TwoArm: "10.20.0.2"}[layout]
	for h, want := range map[*netns.Host]string{
		tp.Client: "10.10.0.2", tp.Router: "10.10.0.1", tp.LB: wantLB,
		tp.Backends[0]: "10.30.0.11", tp.Backends[1]: "10.30.0.12",
	} {
		if h.Addr != addr(want) {
			t.Errorf("%s: Addr %v, want %s", h.Name, h.Addr, want)
		}
	}
	wantIfaces := map[netns.Layout][2]string{netns.OneArm: {"eth0", "eth0"}, netns.TwoArm: {"eth0", "eth1"}}[layout]
	if tp.LBClientIface != wantIfaces[0] || tp.LBBackendIface != wantIfaces[1] {
		t.Errorf("lb interfaces %s/%s, want %v", tp.LBClientIface, tp.LBBackendIface, wantIfaces)
	}

	// Reachability: client to router, router to the lb and every backend.
	pings := []struct {
		from *netns.Host
		to   string
	}{
		{tp.Client, "10.10.0.1"},
		{tp.Client, "10.30.0.1"},
		{tp.Router, "10.30.0.2"},
		{tp.Router, "10.30.0.11"},
		{tp.Router, "10.30.0.12"},
		{tp.Client, wantLB},
	}
	if layout == netns.TwoArm {
		pings = append(pings, struct {
			from *netns.Host
			to   string
		}{tp.Router, "10.20.0.2"})
	}
	if mode != netns.ModeNAT { // in nat the backends answer via the lb
		pings = append(pings, struct {
			from *netns.Host
			to   string
		}{tp.Client, "10.30.0.11"})
	}
	for _, p := range pings {
		if err := p.from.Ping(ctx, addr(p.to)); err != nil {
			t.Errorf("%s -> %s: %v", p.from.Name, p.to, err)
		}
	}

	// The router sends the VIP to the lb, which does not own it.
	if got := mustRun(t, tp.Router, "ip", "route", "get", tp.VIP.String()); !strings.Contains(got, "via "+wantLB+" ") {
		t.Errorf("router route to VIP: %q, want via %s", got, wantLB)
	}
	if got := mustRun(t, tp.LB, "ip", "-4", "addr"); strings.Contains(got, tp.VIP.String()) {
		t.Errorf("VIP configured on the lb:\n%s", got)
	}

	// Backends: default route and VIP on lo depend on the mode.
	wantGW, wantVIP := "10.30.0.1", true
	if mode == netns.ModeNAT {
		wantGW, wantVIP = "10.30.0.2", false
	}
	for _, b := range tp.Backends {
		if got := mustRun(t, b, "ip", "route", "show", "default"); !strings.Contains(got, "via "+wantGW+" ") {
			t.Errorf("%s default route %q, want via %s", b.Name, got, wantGW)
		}
		lo := mustRun(t, b, "ip", "-4", "addr", "show", "dev", "lo")
		if strings.Contains(lo, tp.VIP.String()+"/32") != wantVIP {
			t.Errorf("%s: VIP on lo = %v, want %v:\n%s", b.Name, !wantVIP, wantVIP, lo)
		}
		if wantVIP {
			for _, key := range []string{"net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.eth0.arp_ignore"} {
				if got := mustRun(t, b, "sysctl", "-n", key); got != "1" {
					t.Errorf("%s: %s = %s, want 1", b.Name, key, got)
				}
			}
			for _, key := range []string{"net.ipv4.conf.all.arp_announce", "net.ipv4.conf.eth0.arp_announce"} {
				if got := mustRun(t, b, "sysctl", "-n", key); got != "2" {
					t.Errorf("%s: %s = %s, want 2", b.Name, key, got)
				}
			}
		}
		if got := mustRun(t, b, "sysctl", "-n", "net.ipv4.conf.eth0.rp_filter"); got != "0" {
			t.Errorf("%s: eth0 rp_filter %s, want 0", b.Name, got)
		}
	}
	// Sysctls written from Go landed in the right namespaces.
	if got := mustRun(t, tp.Router, "sysctl", "-n", "net.ipv4.ip_forward"); got != "1" {
		t.Errorf("router ip_forward %s, want 1", got)
	}
	if got := mustRun(t, tp.LB, "sysctl", "-n", "net.ipv4.ip_forward"); got != "0" {
		t.Errorf("lb ip_forward %s, want 0", got)
	}

	// Offloads are off and the MTU is 1500 on every veth.
	for _, h := range tp.Hosts() {
		for name := range h.Ifaces {
			k := mustRun(t, h, "ethtool", "-k", name)
			for _, want := range []string{"tx-checksumming: off", "generic-segmentation-offload: off",
				"tcp-segmentation-offload: off", "generic-receive-offload: off"} {
				if !strings.Contains(k, want) {
					t.Errorf("%s/%s: ethtool -k lacks %q", h.Name, name, want)
				}
			}
			if l := mustRun(t, h, "ip", "link", "show", name); !strings.Contains(l, "mtu 1500 ") {
				t.Errorf("%s/%s: %s, want mtu 1500", h.Name, name, l)
			}
		}
	}

	// Ifindex and MAC agree with the kernel.
	idx, err := tp.LB.Ifindex(tp.LBBackendIface)
	if err != nil || idx <= 0 {
		t.Errorf("lb Ifindex(%s) = %d, %v", tp.LBBackendIface, idx, err)
	}
	mac, err := tp.Backends[0].MAC("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if l := mustRun(t, tp.Backends[0], "ip", "link", "show", "eth0"); !strings.Contains(l, mac.String()) {
		t.Errorf("b1 MAC %s not in %s", mac, l)
	}
	if _, err := tp.LB.MAC("nope0"); err == nil {
		t.Error("MAC of a missing interface: no error")
	}
}

func ipNetnsList(t *testing.T) string {
	t.Helper()
	out, err := osexec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	return string(out)
}

// TestDSRAndHTTP checks a backend accepts connections to the VIP on lo,
// does not answer ARP for it, and that the test HTTP servers and client
// work across the router.
func TestDSRAndHTTP(t *testing.T) {
	tp := netns.New(t, netns.Options{})
	tp.StartHTTPBackends(t)
	ctx := ctxT(t, 15*time.Second)
	b1 := tp.Backends[0]
	vip := tp.VIP.String()

	t.Run("VIPOnLo", func(t *testing.T) {
		mustRun(t, tp.Router, "ip", "route", "replace", vip+"/32", "via", b1.Addr.String())
		defer mustRun(t, tp.Router, "ip", "route", "replace", vip+"/32", "via", tp.LB.Addr.String())
		rep := getJSON(t, tp.Router.HTTPClient(5*time.Second), "http://"+vip+"/")
		if rep.Backend != "b1" {
			t.Errorf("answered by %q, want b1", rep.Backend)
		}
		if host := hostOf(t, rep.Remote); host != "10.30.0.1" {
			t.Errorf("b1 saw the router as %s, want 10.30.0.1", rep.Remote)
		}
		if rep.Local != vip+":80" {
			t.Errorf("local %s, want %s:80", rep.Local, vip)
		}
	})

	t.Run("NoARPForVIP", func(t *testing.T) {
		// Make the VIP on-link on the backend segment: the router now ARPs
		// for it, and no backend may answer.
		mustRun(t, tp.Router, "ip", "route", "replace", vip+"/32", "dev", "br0")
		defer mustRun(t, tp.Router, "ip", "route", "replace", vip+"/32", "via", tp.LB.Addr.String())
		pctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
		defer cancel()
		if err := tp.Router.Ping(pctx, tp.VIP); err == nil {
			t.Error("a backend answered for the VIP on the segment")
		}
		// Control: with arp_ignore=0 b1 answers, so the check above can fail.
		for _, key := range []string{"net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.eth0.arp_ignore"} {
			if err := b1.Sysctl(key, "0"); err != nil {
				t.Fatal(err)
			}
			defer b1.Sysctl(key, "1")
		}
		mustRun(t, tp.Router, "ip", "neigh", "flush", "dev", "br0")
		if err := tp.Router.Ping(ctx, tp.VIP); err != nil {
			t.Errorf("with arp_ignore=0 on b1: %v", err)
		}
	})

	t.Run("ClientToBackends", func(t *testing.T) {
		c := tp.HTTPClient(5 * time.Second)
		for _, b := range tp.Backends {
			for _, port := range netns.HTTPPorts {
				url := fmt.Sprintf("http://%s:%d/hello", b.Addr, port)
				rep := getJSON(t, c, url)
				if rep.Backend != b.Name || hostOf(t, rep.Remote) != "10.10.0.2" ||
					rep.Local != fmt.Sprintf("%s:%d", b.Addr, port) {
					t.Errorf("GET %s: %+v", url, rep)
				}
			}
		}
		resp, err := c.Get("http://10.30.0.11/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok\n" {
			t.Errorf("healthz: %d %q", resp.StatusCode, body)
		}

		const n = 300_000
		resp, err = c.Get(fmt.Sprintf("http://10.30.0.12:8080/stream?bytes=%d&chunk=7000", n))
		if err != nil {
			t.Fatal(err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(body) != n {
			t.Fatalf("stream: %d bytes, %v; want %d", len(body), err, n)
		}
		for k, b := range body {
			if b != netns.StreamByte(int64(k)) {
				t.Fatalf("stream byte %d = %d, want %d", k, b, netns.StreamByte(int64(k)))
			}
		}
	})

	t.Run("DialRefusesNames", func(t *testing.T) {
		if _, err := tp.Client.DialContext(ctx, "tcp", "localhost:80"); err == nil {
			t.Error("dialing a host name: no error")
		}
	})
}

// TestChecksumsComplete captures, on the router, a UDP datagram a client
// socket sent through the veth, and checks its checksum is complete: the
// point of turning tx checksum offload off. With offload back on the same
// capture must show an unfinished checksum, proving the check can fail.
func TestChecksumsComplete(t *testing.T) {
	tp := netns.New(t, netns.Options{Backends: 1})
	if !udpChecksumOK(t, tp) {
		t.Fatal("client datagram arrived with a bad UDP checksum although tx offload is off")
	}
	mustRun(t, tp.Client, "ethtool", "-K", "c0", "tx", "on")
	if udpChecksumOK(t, tp) {
		t.Error("with tx offload on the checksum was still complete; the check proves nothing")
	}
}

// TestBackendDropsBadChecksum sends a UDP datagram with a wrong checksum
// and then a good one from the router to a backend: the backend's kernel
// must deliver only the good one. So a load balancer that corrupts
// checksums fails tests instead of passing unnoticed.
func TestBackendDropsBadChecksum(t *testing.T) {
	tp := netns.New(t, netns.Options{Backends: 1})
	b1 := tp.Backends[0]
	var pc net.PacketConn
	if err := b1.Do(func() (err error) { pc, err = net.ListenPacket("udp4", "0.0.0.0:7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	src, dst := addr("10.30.0.1").As4(), b1.Addr.As4()
	datagram := func(payload string, corrupt bool) []byte {
		u := make([]byte, 8, 8+len(payload))
		binary.BigEndian.PutUint16(u[0:], 40000)
		binary.BigEndian.PutUint16(u[2:], 7000)
		binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
		u = append(u, payload...)
		var sum uint32
		for _, b := range [][]byte{src[:], dst[:], u} {
			for i := 0; i < len(b); i += 2 {
				w := uint32(b[i]) << 8
				if i+1 < len(b) {
					w |= uint32(b[i+1])
				}
				sum += w
			}
		}
		sum += unix.IPPROTO_UDP + uint32(len(u))
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		c := ^uint16(sum)
		if corrupt {
			c ^= 0x0101
		}
		binary.BigEndian.PutUint16(u[6:], c)
		return u
	}
	err := tp.Router.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: dst}
		if err := unix.Sendto(fd, datagram("bad", true), 0, to); err != nil {
			return err
		}
		return unix.Sendto(fd, datagram("good", false), 0, to)
	})
	if err != nil {
		t.Fatalf("raw send: %v", err)
	}
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("backend received nothing: %v", err)
	}
	if got := string(buf[:n]); got != "good" {
		t.Errorf("backend delivered %q first, want only the good datagram", got)
	}
}

func udpChecksumOK(t *testing.T, tp *netns.Topology) bool {
	t.Helper()
	ifindex, err := tp.Router.Ifindex("r0")
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	err = tp.Router.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex})
	})
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	payload := []byte(fmt.Sprintf("xlb-checksum-%d", time.Now().UnixNano()))
	conn, err := tp.Client.DialContext(ctxT(t, 5*time.Second), "udp", "10.10.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			t.Fatalf("capture on r0: %v", err)
		}
		p := buf[:n]
		if n < 28 || p[9] != unix.IPPROTO_UDP {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		udp := p[ihl:]
		if !bytes.Equal(udp[8:], payload) {
			continue
		}
		return udpChecksumValid(p[12:16], p[16:20], udp)
	}
}

func udpChecksumValid(src, dst, udp []byte) bool {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	sum += unix.IPPROTO_UDP + uint32(len(udp))
	add(udp)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum == 0xffff
}

func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}

// TestIPv6 builds a two-arm fullnat topology with IPv6 and reaches a
// backend over IPv6 through the router.
func TestIPv6(t *testing.T) {
	tp := netns.New(t, netns.Options{Layout: netns.TwoArm, Mode: netns.ModeFullNAT, Backends: 1, IPv6: true})
	tp.StartHTTPBackends(t)
	ctx := ctxT(t, 10*time.Second)
	b1 := tp.Backends[0]
	if b1.Addr6 != addr("fd00:30::11") || tp.Client.Addr6 != addr("fd00:10::2") || tp.LB.Addr6 != addr("fd00:20::2") {
		t.Fatalf("addresses: b1 %v client %v lb %v", b1.Addr6, tp.Client.Addr6, tp.LB.Addr6)
	}
	for _, p := range []struct {
		from *netns.Host
		to   netip.Addr
	}{{tp.Client, addr("fd00:10::1")}, {tp.Router, addr("fd00:20::2")}, {tp.Router, addr("fd00:30::2")}, {tp.Client, b1.Addr6}} {
		if err := p.from.Ping(ctx, p.to); err != nil {
			t.Errorf("%s -> %s: %v", p.from.Name, p.to, err)
		}
	}
	rep := getJSON(t, tp.HTTPClient(5*time.Second), "http://[fd00:30::11]:8080/")
	if rep.Backend != "b1" || hostOf(t, rep.Remote) != "fd00:10::2" {
		t.Errorf("GET over IPv6: %+v", rep)
	}
	lbAddrs := mustRun(t, tp.LB, "ip", "addr", "show", "dev", tp.LBBackendIface)
	for _, want := range []string{"10.30.0.200/32", "fd00:30::200/128"} {
		if !strings.Contains(lbAddrs, want) {
			t.Errorf("lb %s lacks SNAT %s:\n%s", tp.LBBackendIface, want, lbAddrs)
		}
	}
	if got := mustRun(t, tp.Router, "ip", "-6", "route", "get", tp.VIP6.String()); !strings.Contains(got, "via fd00:20::2 ") {
		t.Errorf("router route to VIP6: %q", got)
	}
}

// TestReapAfterCrash builds a topology in a child process that dies
// without cleaning up, and checks the next Build deletes its namespaces.
func TestReapAfterCrash(t *testing.T) {
	if os.Getenv("XLB_NETNS_CRASH_CHILD") == "1" {
		tp, err := netns.Build(context.Background(), netns.Options{Backends: 1})
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(4)
		}
		fmt.Println("PREFIX=" + tp.Prefix)
		os.Exit(3) // no Close, no t.Cleanup: as after a panic
	}
	if err := netns.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^TestReapAfterCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), "XLB_NETNS_CRASH_CHILD=1")
	out, _ := cmd.CombinedOutput()
	var prefix string
	for _, line := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(line, "PREFIX="); ok {
			prefix = p
		}
	}
	if prefix == "" {
		t.Fatalf("child built no topology:\n%s", out)
	}
	if !strings.Contains(ipNetnsList(t), prefix) {
		t.Fatalf("child's namespaces %s* missing before the reap", prefix)
	}
	netns.New(t, netns.Options{Backends: 1})
	if list := ipNetnsList(t); strings.Contains(list, prefix) {
		t.Errorf("namespaces of the dead child left after Build:\n%s", list)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []netns.Options{
		{Mode: "bogus"},
		{Backends: -1},
		{Backends: netns.MaxBackends + 1},
		{Layout: 7},
		{VIP: addr("2001:db8::1")},
	} {
		if _, err := netns.Build(context.Background(), o); err == nil {
			t.Errorf("Build(%+v): no error", o)
		}
	}
}

func getJSON(t *testing.T, c *http.Client, url string) netns.HTTPReply {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var rep netns.HTTPReply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
	return rep
}

func hostOf(t *testing.T, hostport string) string {
	t.Helper()
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return host
}
