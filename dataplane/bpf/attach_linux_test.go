package bpf

import (
	"github.com/xlb/xlb/internal/testutil"

	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/xsk"
)

// vethPair creates namespaces A and B joined by va (10.202.1.1/24, in A)
// and vb (10.202.1.2/24, in B), and returns them with va's ifindex.
func vethPair(t *testing.T) (nsA, nsB string, va int) {
	t.Helper()
	testutil.RequireAFXDP(t)
	nsA, nsB = testutil.NewNetns(t, "a"), testutil.NewNetns(t, "b")
	testutil.IPCmd(t, "-n", nsA, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", nsB)
	testutil.IPCmd(t, "-n", nsA, "addr", "add", "10.202.1.1/24", "dev", "va")
	testutil.IPCmd(t, "-n", nsB, "addr", "add", "10.202.1.2/24", "dev", "vb")
	testutil.IPCmd(t, "-n", nsA, "link", "set", "va", "up")
	testutil.IPCmd(t, "-n", nsB, "link", "set", "vb", "up")
	err := testutil.InNetns(nsA, func() error {
		ifi, err := net.InterfaceByName("va")
		if err != nil {
			return err
		}
		va = ifi.Index
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return nsA, nsB, va
}

// xdpAttached returns what ip(8) says is attached to va: "" or the XDP
// flavour ("xdp" native, "xdpgeneric").
func xdpAttached(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "link", "show", "va").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if f == "xdp" || f == "xdpgeneric" {
			return f
		}
	}
	return ""
}

func TestAttachDetach(t *testing.T) {
	nsA, _, va := vethPair(t)
	s := loadSteering(t)
	for _, tc := range []struct {
		mode   AttachMode
		want   AttachMode
		ipShow string
	}{
		{Native, Native, "xdp"},
		{Generic, Generic, "xdpgeneric"},
		{Auto, Native, "xdp"}, // veth has native XDP
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			err := testutil.InNetns(nsA, func() error {
				a, err := s.Attach(va, tc.mode)
				if err != nil {
					return err
				}
				defer a.Close()
				if a.Mode() != tc.want || a.Ifindex() != va {
					return fmt.Errorf("attached in %v on %d, want %v on %d", a.Mode(), a.Ifindex(), tc.want, va)
				}
				if got := xdpAttached(t, nsA); got != tc.ipShow {
					return fmt.Errorf("ip link shows %q attached, want %q", got, tc.ipShow)
				}
				// The interface takes one program per mode.
				if b, err := s.Attach(va, tc.want); err == nil {
					b.Close()
					return fmt.Errorf("second %v attach on the same interface succeeded", tc.want)
				}
				if err := a.Close(); err != nil {
					return err
				}
				if err := a.Close(); err != nil {
					return fmt.Errorf("second Close: %w", err)
				}
				if got := xdpAttached(t, nsA); got != "" {
					return fmt.Errorf("ip link still shows %q after Close", got)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := s.Attach(va, AttachMode(9)); err == nil {
		t.Error("unknown mode accepted")
	}
	// Outside namespace A the index names no interface (or another one):
	// attach to an index that does not exist fails cleanly.
	err := testutil.InNetns(nsA, func() error {
		if a, err := s.Attach(9999, Auto); err == nil {
			a.Close()
			return fmt.Errorf("attach to ifindex 9999 succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSteeringVeth runs the program live: a UDP datagram from B to a VIP
// reaches the AF_XDP socket in A, while ARP and a datagram to A's own
// address reach A's kernel.
func TestSteeringVeth(t *testing.T) {
	nsA, nsB, va := vethPair(t)
	vip := netip.MustParseAddrPort("10.202.9.9:5000")
	testutil.IPCmd(t, "-n", nsB, "route", "add", vip.Addr().String()+"/32", "via", "10.202.1.1")

	s := loadSteering(t)
	if err := s.AddVIP(vip.Addr(), vip.Port(), ProtoUDP); err != nil {
		t.Fatal(err)
	}
	umem, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { umem.Close() })
	var sock *xsk.Socket
	var kernelConn, toVIP, toA *net.UDPConn
	err = testutil.InNetns(nsA, func() error {
		var err error
		if sock, err = xsk.Open(va, 0, umem, xsk.Options{RxSize: 64, TxSize: 64}); err != nil {
			return err
		}
		t.Cleanup(func() { sock.Close() })
		if err := s.SetSocket(0, sock.FD()); err != nil {
			return err
		}
		a, err := s.Attach(va, Native)
		if err != nil {
			return err
		}
		t.Cleanup(func() { a.Close() })
		kernelConn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.202.1.1:6000")))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kernelConn.Close() })
	err = testutil.InNetns(nsB, func() error {
		var err error
		if toVIP, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(vip)); err != nil {
			return err
		}
		toA, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.202.1.1:6000")))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { toVIP.Close(); toA.Close() })

	addrs := make([]uint64, 64)
	sock.Fill(addrs[:umem.AllocBatch(addrs)])

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			toVIP.Write([]byte("to-vip"))
			toA.Write([]byte("to-kernel"))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stopSending := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopSending()

	// The VIP datagram arrives on the socket.
	descs := make([]xsk.Desc, 16)
	found := false
	for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); {
		if err := sock.Poll(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		n := sock.Receive(descs)
		for _, d := range descs[:n] {
			f := umem.Frame(d.Addr, d.Len)
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0800 &&
				netip.AddrFrom4([4]byte(f[30:34])) == vip.Addr() && binary.BigEndian.Uint16(f[36:]) == vip.Port() {
				if string(f[42:]) != "to-vip" {
					t.Errorf("payload %q", f[42:])
				}
				found = true
			} else {
				t.Errorf("socket got a frame the program should have passed: % x", f[:min(len(f), 42)])
			}
			sock.Fill([]uint64{d.Addr})
		}
	}
	if !found {
		c, _ := s.Counters()
		t.Fatalf("no VIP datagram on the AF_XDP socket; counters %+v", c)
	}

	// The datagram to A's own address reaches A's kernel (after ARP, also
	// passed).
	kernelConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := kernelConn.Read(buf)
	if err != nil || string(buf[:n]) != "to-kernel" {
		t.Fatalf("kernel socket: %q, %v", buf[:n], err)
	}

	stopSending()
	time.Sleep(50 * time.Millisecond) // let frames in flight be counted
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Redirected == 0 || c.MatchVIP != c.Redirected+c.NoSocket+c.Held || c.PassNoMatch == 0 || c.PassNotIP == 0 {
		t.Errorf("counters %+v", c)
	}
	if st, err := sock.Stats(); err != nil || st.RxPackets == 0 {
		t.Errorf("socket stats %+v, %v", st, err)
	}
}

// TestSteeringVethSNAT is the one-address appliance: A's own address is
// also its SNAT address. A datagram from B to a port inside the SNAT port
// range reaches the AF_XDP socket, while a TCP connection the kernel in A
// opens from that address (its local port comes from
// ip_local_port_range, above the SNAT range) gets its replies.
func TestSteeringVethSNAT(t *testing.T) {
	nsA, nsB, va := vethPair(t)
	self := netip.MustParseAddr("10.202.1.1")
	snatPort := uint16(2000)

	s := loadSteering(t)
	if err := s.Replace(RuleSet{Local: []netip.Addr{self}, SNAT: []netip.Addr{self}, SNATPorts: [2]uint16{1024, 32767}}); err != nil {
		t.Fatal(err)
	}
	umem, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { umem.Close() })
	var sock *xsk.Socket
	err = testutil.InNetns(nsA, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("40000 50000"), 0); err != nil {
			return err
		}
		var err error
		if sock, err = xsk.Open(va, 0, umem, xsk.Options{RxSize: 64, TxSize: 64}); err != nil {
			return err
		}
		t.Cleanup(func() { sock.Close() })
		if err := s.SetSocket(0, sock.FD()); err != nil {
			return err
		}
		a, err := s.Attach(va, Native)
		if err != nil {
			return err
		}
		t.Cleanup(func() { a.Close() })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// B: a TCP echo server, and a UDP sender to the SNAT port.
	var ln net.Listener
	var toSNAT *net.UDPConn
	err = testutil.InNetns(nsB, func() error {
		var err error
		if ln, err = net.Listen("tcp4", "10.202.1.2:7000"); err != nil {
			return err
		}
		toSNAT, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(self, snatPort)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); toSNAT.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Write(buf[:n])
	}()

	addrs := make([]uint64, 64)
	sock.Fill(addrs[:umem.AllocBatch(addrs)])
	descs := make([]xsk.Desc, 16)
	found := false
	for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); {
		toSNAT.Write([]byte("to-snat"))
		if err := sock.Poll(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		n := sock.Receive(descs)
		for _, d := range descs[:n] {
			f := umem.Frame(d.Addr, d.Len)
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0800 &&
				netip.AddrFrom4([4]byte(f[30:34])) == self && binary.BigEndian.Uint16(f[36:]) == snatPort {
				found = true
			} else {
				t.Errorf("socket got a frame the program should have passed: % x", f[:min(len(f), 42)])
			}
			sock.Fill([]uint64{d.Addr})
		}
	}
	if !found {
		c, _ := s.Counters()
		t.Fatalf("no datagram to the SNAT port on the AF_XDP socket; counters %+v", c)
	}

	// A's kernel connects from the SNAT address; the SYN-ACK and the echo
	// must reach it.
	var conn net.Conn
	err = testutil.InNetns(nsA, func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(self, 0))}
		var err error
		conn, err = d.Dial("tcp4", "10.202.1.2:7000")
		return err
	})
	if err != nil {
		c, _ := s.Counters()
		t.Fatalf("kernel connection from the SNAT address: %v; counters %+v", err, c)
	}
	defer conn.Close()
	if p := conn.LocalAddr().(*net.TCPAddr).Port; p < 40000 || p > 50000 {
		t.Fatalf("local port %d outside ip_local_port_range", p)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo over the kernel's connection: %q, %v", buf[:n], err)
	}
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.MatchSNAT == 0 || c.Redirected == 0 || c.PassSNATOtherPort == 0 {
		t.Errorf("counters %+v", c)
	}
}
