package health

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/testutil"
)

// TestKernelNetInNamespaces runs the raw prober over real raw sockets
// between two namespaces ("lb" and "backend", one veth): an l3dsr probe
// whose VIP is the backend's own address passes (SYN out with the DSCP,
// SYN-ACK back through the raw TCP socket, RST after it); one for another
// VIP is answered by the backend's address, which the prober names; a
// tunnel probe to a backend that cannot decapsulate gets no answer.
func TestKernelNetInNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces and raw sockets")
	}
	lb, be := testutil.NewNetns(t, "lb"), testutil.NewNetns(t, "be")
	testutil.IPCmd(t, "-n", lb, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", be)
	for _, c := range []struct{ ns, a4, a6 string }{{lb, "10.99.0.1/24", "fd00:99::1/64"}, {be, "10.99.0.2/24", "fd00:99::2/64"}} {
		testutil.IPCmd(t, "-n", c.ns, "addr", "add", c.a4, "dev", "veth0")
		testutil.IPCmd(t, "-n", c.ns, "addr", "add", c.a6, "dev", "veth0", "nodad")
		testutil.IPCmd(t, "-n", c.ns, "link", "set", "veth0", "up")
	}
	var lns []net.Listener
	if err := testutil.InNetns(be, func() error {
		for _, a := range [][2]string{{"tcp4", "0.0.0.0:80"}, {"tcp6", "[::]:80"}} {
			ln, err := net.Listen(a[0], a[1])
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, ln := range lns {
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	// A fresh veth drops frames until the kernel's link watch activates
	// its queues (up to a second): connect once each way first.
	if err := testutil.InNetns(lb, func() error {
		for _, a := range []string{"10.99.0.2:80", "[fd00:99::2]:80"} {
			c, err := net.DialTimeout("tcp", a, 5*time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := NewRawProber()
	defer r.Close()
	probe := func(backend string, d Datapath) (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		// The sockets the probe opens stay in the namespace it runs in.
		if e := testutil.InNetns(lb, func() error {
			err = r.Probe(ctx, netip.MustParseAddr(backend), 80, d)
			return nil
		}); e != nil {
			t.Fatal(e)
		}
		return err
	}
	for _, fam := range []struct{ backend, other, outer string }{{"10.99.0.2", "198.51.100.10", "10.99.0.1"}, {"fd00:99::2", "2001:db8:100::10", "fd00:99::1"}} {
		if err := probe(fam.backend, Datapath{Mode: DatapathL3DSR, VIP: netip.MustParseAddr(fam.backend), DSCP: 10}); err != nil {
			t.Errorf("l3dsr probe of %s answered by itself: %v", fam.backend, err)
		}
		err := probe(fam.backend, Datapath{Mode: DatapathL3DSR, VIP: netip.MustParseAddr(fam.other), DSCP: 10})
		if err == nil || !strings.Contains(err.Error(), "does not map DSCP 10") {
			t.Errorf("l3dsr probe without the DSCP mapping: %v", err)
		}
		err = probe(fam.backend, Datapath{Mode: DatapathTunnel, VIP: netip.MustParseAddr(fam.other), Outer: netip.MustParseAddr(fam.outer)})
		if err == nil || !strings.Contains(err.Error(), "no SYN-ACK") {
			t.Errorf("tunnel probe without decapsulation: %v", err)
		}
	}
}
