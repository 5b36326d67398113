package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/netns"
)

// Path MTU through a tunnel service (issue 10, item 2). The topology is
// the one-arm routed one of tunnel_test.go with a 1400-byte link between
// the router and the balancer (the lb's eth0, the router's rlb and br0),
// so every tunnel packet of a full-size client segment is too big for the
// balancer's egress, and a 1400-byte MTU on the router's route towards the
// clients (a smaller hop on the way back, which the backends do not know
// about). The backends and their links keep 1500.
//
//	client ─1500─ router ─1400─ lb          (br0, rlb, lb eth0)
//	          │      └──1500── b1, b2       (br1: routed backends, xlb realserver)
//	          └ route to the clients: mtu 1400
//
// Uploads cross the balancer: PMTU discovery needs the router's
// fragmentation-needed (1400) and then the balancer's own (1380 = 1400 −
// the IPIP header, TooBigReply). Downloads go from the backend straight to
// the client: the router's fragmentation-needed goes to the VIP, which the
// router routes to the balancer, whose dataplane sends it on, encapsulated,
// to the backend that owns the flow (dataplane/icmp.go). With tunnel_mss
// the SYN's MSS is clamped so the backend's segments fit without ICMP;
// the client's own segments are set by the backend's SYN-ACK, which does
// not pass the balancer, so the backends advertise a lower MSS too
// (route advmss) — and without that the upload still needs the
// balancer's too-big replies, which the last step shows.

const (
	xferPort  = 9000
	xferBytes = 20 << 20
	pathMTU   = 1400
)

// xferReply is what the transfer server answers an upload with.
type xferReply struct {
	Backend string `json:"backend"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
	SndMSS  uint32 `json:"snd_mss"` // the server's send MSS at the end (what the client's SYN allowed, PMTU)
	RcvMSS  uint32 `json:"rcv_mss"` // the largest segment it received
}

type connKey struct{}

// startXferServer runs an HTTP server on port xferPort of every backend
// (all addresses, so the VIP on lo too): POST /upload reads the body and
// answers an xferReply; GET /download?bytes=N sends N bytes of the
// netns.StreamByte pattern with X-Backend naming the backend.
func startXferServer(t *testing.T, tp *netns.Topology) {
	t.Helper()
	for _, bk := range tp.Backends {
		var ls []net.Listener
		err := bk.Do(func() error {
			nets := [][2]string{{"tcp4", "0.0.0.0"}}
			if bk.Addr6.IsValid() {
				nets = append(nets, [2]string{"tcp6", "::"})
			}
			for _, n := range nets {
				ln, err := net.Listen(n[0], net.JoinHostPort(n[1], strconv.Itoa(xferPort)))
				if err != nil {
					return err
				}
				ls = append(ls, ln)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", bk.Name, err)
		}
		name := bk.Name
		mux := http.NewServeMux()
		mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			rep := xferReply{Backend: name, Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}
			if c, ok := r.Context().Value(connKey{}).(*net.TCPConn); ok {
				if ti := tcpInfo(c); ti != nil {
					rep.SndMSS, rep.RcvMSS = ti.Snd_mss, ti.Rcv_mss
				}
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(rep)
		})
		mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
			w.Header().Set("X-Backend", name)
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			buf := make([]byte, 64<<10)
			for off := int64(0); off < n; {
				m := min(int64(len(buf)), n-off)
				for i := range m {
					buf[i] = netns.StreamByte(off + i)
				}
				if _, err := w.Write(buf[:m]); err != nil {
					return
				}
				off += m
			}
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) }}
		var wg sync.WaitGroup
		for _, ln := range ls {
			wg.Add(1)
			go func() { defer wg.Done(); srv.Serve(ln) }()
		}
		t.Cleanup(func() { srv.Close(); wg.Wait() })
	}
}

func tcpInfo(c *net.TCPConn) *unix.TCPInfo {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var ti *unix.TCPInfo
	_ = rc.Control(func(fd uintptr) { ti, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	return ti
}

// patternReader yields n bytes of the netns.StreamByte pattern.
type patternReader struct{ off, n int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	m := min(int64(len(b)), p.n-p.off)
	for i := range m {
		b[i] = netns.StreamByte(p.off + i)
	}
	p.off += m
	return int(m), nil
}

func patternSHA(n int64) string {
	h := sha256.New()
	io.Copy(h, &patternReader{n: n})
	return hex.EncodeToString(h.Sum(nil))
}

// xferUpload sends n pattern bytes to the VIP and checks what the backend got.
func xferUpload(t *testing.T, tp *netns.Topology, vip netip.Addr, n int64) xferReply {
	t.Helper()
	url := "http://" + net.JoinHostPort(vip.String(), strconv.Itoa(xferPort)) + "/upload"
	resp, err := tp.HTTPClient(20*time.Second).Post(url, "application/octet-stream", &patternReader{n: n})
	if err != nil {
		t.Fatalf("upload of %d bytes: %v", n, err)
	}
	defer resp.Body.Close()
	var rep xferReply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: status %d, %v", resp.StatusCode, err)
	}
	if rep.Bytes != n || rep.SHA256 != patternSHA(n) {
		t.Fatalf("upload: the backend got %d bytes (sha256 %s), want %d (%s)", rep.Bytes, rep.SHA256, n, patternSHA(n))
	}
	return rep
}

// xferDownload fetches n pattern bytes from the VIP, checks them byte by byte
// and returns the backend that sent them.
func xferDownload(t *testing.T, tp *netns.Topology, vip netip.Addr, n int64) string {
	t.Helper()
	url := fmt.Sprintf("http://%s/download?bytes=%d", net.JoinHostPort(vip.String(), strconv.Itoa(xferPort)), n)
	resp, err := tp.HTTPClient(20 * time.Second).Get(url)
	if err != nil {
		t.Fatalf("download of %d bytes: %v", n, err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64<<10)
	want := make([]byte, len(buf))
	var off int64
	for {
		k, err := io.ReadFull(resp.Body, buf)
		for i := range k {
			want[i] = netns.StreamByte(off + int64(i))
		}
		if !bytes.Equal(buf[:k], want[:k]) {
			t.Fatalf("download: corrupted within bytes %d..%d", off, off+int64(k))
		}
		off += int64(k)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("download: after %d bytes: %v", off, err)
		}
	}
	if off != n {
		t.Fatalf("download: %d of %d bytes", off, n)
	}
	return resp.Header.Get("X-Backend")
}

// pmtuFamily is one address family of the PMTU tests: IPIP with an IPv4
// VIP and backends, IP6IP6 with IPv6 ones.
type pmtuFamily struct {
	name    string
	v6      bool
	hdr     int // outer header bytes
	vip     netip.Addr
	client  netip.Addr
	gateway string // the backends' default gateway
}

func pmtuFamilies(tp *netns.Topology) []pmtuFamily {
	return []pmtuFamily{
		{name: "ipip", hdr: 20, vip: tp.VIP, client: tp.Client.Addr, gateway: "10.40.0.1"},
		{name: "ip6ip6", v6: true, hdr: 40, vip: tp.VIP6, client: tp.Client.Addr6, gateway: "fd00:40::1"},
	}
}

func (f pmtuFamily) ip(args ...string) []string {
	if f.v6 {
		return append([]string{"-6"}, args...)
	}
	return append([]string{"-4"}, args...)
}

// pmtuTopology builds the topology above (IPv4 and IPv6) and starts the
// transfer servers and realservers.
func pmtuTopology(t *testing.T) *netns.Topology {
	t.Helper()
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeTunnel, Backends: 2, IPv6: true,
		RoutedBackends: true, BareBackends: true})
	ctx := context.Background()
	mtu := strconv.Itoa(pathMTU)
	for _, c := range []struct {
		h    *netns.Host
		args []string
	}{
		{tp.LB, []string{"link", "set", "dev", "eth0", "mtu", mtu}},
		{tp.Router, []string{"link", "set", "dev", "rlb", "mtu", mtu}},
		{tp.Router, []string{"link", "set", "dev", "br0", "mtu", mtu}},
		{tp.Router, []string{"-4", "route", "replace", "10.10.0.0/24", "dev", "r0", "src", "10.10.0.1", "mtu", mtu}},
		// IPv6 forwarding honours a route's MTU only when it is locked.
		{tp.Router, []string{"-6", "route", "replace", "fd00:10::/64", "dev", "r0", "proto", "kernel", "metric", "256", "mtu", "lock", mtu}},
	} {
		if out, err := c.h.Run(ctx, "ip", c.args...); err != nil {
			t.Fatalf("%s: ip %v: %v %s", c.h.Name, c.args, err, out)
		}
	}
	startXferServer(t, tp)
	dir := t.TempDir()
	for _, bk := range tp.Backends {
		startRealserver(t, bk, filepath.Join(dir, bk.Name+".json"), "--mode", "tunnel", "--vip", tp.VIP.String()+","+tp.VIP6.String())
	}
	return tp
}

func pmtuConfig(t *testing.T, tp *netns.Topology, tunnelMSS string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: eth0, xdp: native}\n")
	fmt.Fprintf(&b, "lb:\n  workers: 1\n  conntrack: {capacity: 65536}\n  tunnel_source: %s\n  tunnel_source6: \"%s\"\n", tp.LB.Addr, tp.LB.Addr6)
	fmt.Fprintf(&b, "api: {listen: %s}\nservices:\n", apiAddr)
	for _, f := range pmtuFamilies(tp) {
		fmt.Fprintf(&b, "  - name: %s\n    vip: \"%s\"\n    port: %d\n    mode: tunnel\n", f.name, f.vip, xferPort)
		if tunnelMSS != "" {
			fmt.Fprintf(&b, "    tunnel_mss: %s\n", tunnelMSS)
		}
		b.WriteString("    health: {datapath: \"off\"}\n    backends:\n")
		for _, be := range tp.Backends {
			a := be.Addr
			if f.v6 {
				a = be.Addr6
			}
			fmt.Fprintf(&b, "      - {address: \"%s\"}\n", a)
		}
	}
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// routeCacheMTU returns the path MTU h's kernel has learned towards dst
// (0: none).
func routeCacheMTU(t *testing.T, h *netns.Host, dst netip.Addr) int {
	t.Helper()
	fam := "-4"
	if dst.Is6() {
		fam = "-6"
	}
	out, err := h.Run(context.Background(), "ip", fam, "route", "show", "cache", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "mtu" && i+1 < len(f) {
			n, _ := strconv.Atoi(f[i+1])
			return n
		}
	}
	return 0
}

func flushRouteCaches(t *testing.T, tp *netns.Topology) {
	t.Helper()
	for _, h := range tp.Hosts() {
		for _, fam := range []string{"-4", "-6"} {
			if out, err := h.Run(context.Background(), "ip", fam, "route", "flush", "cache"); err != nil {
				t.Fatalf("%s: %v %s", h.Name, err, out)
			}
		}
	}
}

func pmtuStats(t *testing.T, lb *balancer) (tooBig, relayed uint64) {
	t.Helper()
	st, err := lb.stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.Totals.TooBigSent, st.Totals.ICMPForwarded
}

// TestTunnelPMTUDiscovery: 20 MB up and 20 MB down through a tunnel
// service with 1400-byte links on the path, byte-exact, by PMTU discovery
// alone, IPIP and IP6IP6: the balancer answers too-big uploads with
// fragmentation-needed / packet-too-big for 1400 − the outer header, and
// relays the router's errors about the download (addressed to the VIP) to
// the backend that owns the flow, inside the tunnel.
func TestTunnelPMTUDiscovery(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := pmtuTopology(t)
	lb := startXLB(t, tp, pmtuConfig(t, tp, ""))
	for _, f := range pmtuFamilies(tp) {
		t.Run(f.name, func(t *testing.T) {
			flushRouteCaches(t, tp)
			tb0, rl0 := pmtuStats(t, lb)
			start := time.Now()
			rep := xferUpload(t, tp, f.vip, xferBytes)
			up := time.Since(start)
			tb1, _ := pmtuStats(t, lb)
			if tb1 == tb0 {
				t.Fatal("the upload needed no too-big reply from the balancer")
			}
			if got := routeCacheMTU(t, tp.Client, f.vip); got != pathMTU-f.hdr {
				t.Fatalf("the client's path MTU towards the VIP is %d, want %d (the balancer's too-big reply)", got, pathMTU-f.hdr)
			}
			t.Logf("upload: %d bytes byte-exact in %v (%.0f MB/s) to %s; the balancer sent %d too-big replies; backend rcv_mss %d",
				rep.Bytes, up.Round(time.Millisecond), float64(rep.Bytes)/up.Seconds()/1e6, rep.Backend, tb1-tb0, rep.RcvMSS)

			// Forget the upload's path MTU, or the client's SYN would
			// advertise an MSS that already fits.
			flushRouteCaches(t, tp)
			start = time.Now()
			owner := xferDownload(t, tp, f.vip, xferBytes)
			down := time.Since(start)
			_, rl1 := pmtuStats(t, lb)
			if rl1 == rl0 {
				t.Fatal("no ICMP error reached a backend through the balancer")
			}
			// The router's error reached the owner of the flow, and only it.
			for _, bk := range tp.Backends {
				got := routeCacheMTU(t, bk, f.client)
				if bk.Name == owner && got != pathMTU {
					t.Fatalf("%s sent the download, but its path MTU towards the client is %d, want %d", bk.Name, got, pathMTU)
				}
				if bk.Name != owner && got != 0 {
					t.Fatalf("%s did not send the download, yet learned a path MTU %d towards the client", bk.Name, got)
				}
			}
			t.Logf("download: %d bytes byte-exact in %v (%.0f MB/s) from %s; the balancer forwarded %d ICMP errors to it",
				xferBytes, down.Round(time.Millisecond), float64(xferBytes)/down.Seconds()/1e6, owner, rl1-rl0)
		})
	}
	lb.stop(t)
}

// TestTunnelMSSClamping: the same transfers with tunnel_mss: auto (and
// the backends advertising the same MSS) need no ICMP at all: the
// balancer's too-big counter and its ICMP relay stay where they were, with
// DF set on every packet as before. Without the backends' advmss, an
// upload still needs the balancer's too-big replies: the clamp reaches
// only the backend's side of the connection.
func TestTunnelMSSClamping(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := pmtuTopology(t)
	lb := startXLB(t, tp, pmtuConfig(t, tp, "auto"))
	ctx := context.Background()
	for _, f := range pmtuFamilies(tp) {
		t.Run(f.name, func(t *testing.T) {
			hdrs := 20 + 20
			if f.v6 {
				hdrs = 40 + 20
			}
			auto := pathMTU - f.hdr - hdrs // tunnel_mss: auto on a 1400-byte egress
			advmss := func(on bool) {
				args := f.ip("route", "replace", "default", "via", f.gateway, "dev", "eth0")
				if on {
					args = append(args, "advmss", strconv.Itoa(auto))
				}
				for _, bk := range tp.Backends {
					if out, err := bk.Run(ctx, "ip", args...); err != nil {
						t.Fatalf("%s: %v %s", bk.Name, err, out)
					}
				}
			}
			advmss(true)
			flushRouteCaches(t, tp)
			tb0, rl0 := pmtuStats(t, lb)
			start := time.Now()
			rep := xferUpload(t, tp, f.vip, xferBytes)
			up := time.Since(start)
			// The backend saw the clamped MSS (less the 12 bytes of timestamps).
			if rep.SndMSS > uint32(auto) || rep.SndMSS < uint32(auto-12) {
				t.Fatalf("the backend's send MSS is %d, want the clamp %d (less TCP options)", rep.SndMSS, auto)
			}
			start = time.Now()
			owner := xferDownload(t, tp, f.vip, xferBytes)
			down := time.Since(start)
			tb1, rl1 := pmtuStats(t, lb)
			if tb1 != tb0 || rl1 != rl0 {
				t.Fatalf("with tunnel_mss the transfers still needed ICMP: %d too-big replies, %d relayed errors", tb1-tb0, rl1-rl0)
			}
			if got := routeCacheMTU(t, tp.Client, f.vip); got != 0 {
				t.Fatalf("the client learned a path MTU %d towards the VIP", got)
			}
			t.Logf("tunnel_mss auto (%d): upload %d bytes in %v (%.0f MB/s, backend snd_mss %d, rcv_mss %d), download from %s in %v (%.0f MB/s); no ICMP",
				auto, rep.Bytes, up.Round(time.Millisecond), float64(rep.Bytes)/up.Seconds()/1e6, rep.SndMSS, rep.RcvMSS,
				owner, down.Round(time.Millisecond), float64(xferBytes)/down.Seconds()/1e6)

			// The clamp alone: the backends advertise their full MSS
			// again, and the client's segments no longer fit the tunnel.
			advmss(false)
			flushRouteCaches(t, tp)
			xferUpload(t, tp, f.vip, 2<<20)
			tb2, _ := pmtuStats(t, lb)
			if tb2 == tb1 {
				t.Fatal("without the backends' advmss an upload needed no too-big reply: the SYN clamp cannot reach the client's segments")
			}
			t.Logf("tunnel_mss alone: a 2 MB upload needed %d too-big replies from the balancer", tb2-tb1)
		})
	}
	lb.stop(t)
}
