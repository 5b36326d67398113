package xsk

import (
	"github.com/xlb/xlb/internal/testutil"

	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Test topology, all inside namespaces created by the test:
//
//	B: vb 10.201.1.2 ── va1 ─┐
//	                         A: XDP redirect-all on va1, sockets s1 (va1) and s2 (va2) sharing one UMEM
//	C: vc 10.201.2.2 ── va2 ─┘
var (
	macVA1 = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x01}
	macVB  = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x02}
	macVA2 = net.HardwareAddr{0x02, 0, 0, 0, 0x02, 0x01}
	macVC  = net.HardwareAddr{0x02, 0, 0, 0, 0x02, 0x02}
	ipVA1  = netip.MustParseAddr("10.201.1.1")
	ipVB   = netip.MustParseAddr("10.201.1.2")
	ipVA2  = netip.MustParseAddr("10.201.2.1")
	ipVC   = netip.MustParseAddr("10.201.2.2")
)

const (
	portA = 5555 // destination port of B's packets (nobody listens in A)
	portB = 40000
	portC = 6666
)

// redirectAllProgram returns an XDP program that sends every frame to the
// XSKMAP entry of its rx queue, passing it to the kernel if there is none:
//
//	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
func redirectAllProgram(t *testing.T) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		t.Fatalf("create XSKMAP: %v", err)
	}
	t.Cleanup(func() { xsks.Close() })
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 16, asm.Word), // ctx->rx_queue_index
		asm.LoadMapPtr(asm.R1, xsks.FD()),
		asm.Mov.Imm(asm.R3, 2), // XDP_PASS as the fallback action
		asm.FnRedirectMap.Call(),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, Instructions: insns, License: "Dual MIT/GPL"})
	if err != nil {
		t.Fatalf("load XDP program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog, xsks
}

type udpFrame struct {
	dstMAC, srcMAC net.HardwareAddr
	src, dst       netip.AddrPort
	payload        []byte
}

// parseUDP4 decodes an Ethernet/IPv4/UDP frame without options.
func parseUDP4(f []byte) (udpFrame, bool) {
	if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14] != 0x45 || f[23] != unix.IPPROTO_UDP {
		return udpFrame{}, false
	}
	src := netip.AddrFrom4([4]byte(f[26:30]))
	dst := netip.AddrFrom4([4]byte(f[30:34]))
	ulen := int(binary.BigEndian.Uint16(f[38:]))
	if ulen < 8 || 34+ulen > len(f) {
		return udpFrame{}, false
	}
	return udpFrame{
		dstMAC:  net.HardwareAddr(f[0:6]),
		srcMAC:  net.HardwareAddr(f[6:12]),
		src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(f[34:])),
		dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(f[36:])),
		payload: f[42 : 34+ulen],
	}, true
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// xdpEnv is the topology above with both sockets open.
type xdpEnv struct {
	nsA, nsB, nsC string
	umem          *UMEM
	s1, s2        *Socket
	va1, va2      int
	toA           *net.UDPConn // in B, connected to 10.201.1.1:5555
	inC           *net.UDPConn // in C, listening on 10.201.2.2:6666
}

func setupXDPEnv(t *testing.T) *xdpEnv {
	testutil.RequireAFXDP(t)
	e := &xdpEnv{nsA: testutil.NewNetns(t, "a"), nsB: testutil.NewNetns(t, "b"), nsC: testutil.NewNetns(t, "c")}
	testutil.IPCmd(t, "-n", e.nsA, "link", "add", "va1", "address", macVA1.String(), "type", "veth",
		"peer", "name", "vb", "address", macVB.String(), "netns", e.nsB)
	testutil.IPCmd(t, "-n", e.nsA, "link", "add", "va2", "address", macVA2.String(), "type", "veth",
		"peer", "name", "vc", "address", macVC.String(), "netns", e.nsC)
	testutil.IPCmd(t, "-n", e.nsA, "addr", "add", ipVA1.String()+"/24", "dev", "va1")
	testutil.IPCmd(t, "-n", e.nsA, "addr", "add", ipVA2.String()+"/24", "dev", "va2")
	testutil.IPCmd(t, "-n", e.nsB, "addr", "add", ipVB.String()+"/24", "dev", "vb")
	testutil.IPCmd(t, "-n", e.nsC, "addr", "add", ipVC.String()+"/24", "dev", "vc")
	for _, l := range [][2]string{{e.nsA, "va1"}, {e.nsA, "va2"}, {e.nsB, "vb"}, {e.nsC, "vc"}} {
		testutil.IPCmd(t, "-n", l[0], "link", "set", l[1], "up")
	}
	// Every frame on va1 goes to the socket, ARP included, so B gets a
	// static neighbour entry for A.
	testutil.IPCmd(t, "-n", e.nsB, "neigh", "replace", ipVA1.String(), "lladdr", macVA1.String(), "dev", "vb", "nud", "permanent")

	prog, xsks := redirectAllProgram(t)
	var err error
	e.umem, err = NewUMEM(UMEMConfig{FrameSize: 2048, FrameCount: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.umem.Close() })
	opts := Options{RxSize: 256, TxSize: 256}
	err = testutil.InNetns(e.nsA, func() error {
		for _, p := range []struct {
			name string
			idx  *int
		}{{"va1", &e.va1}, {"va2", &e.va2}} {
			ifi, err := net.InterfaceByName(p.name)
			if err != nil {
				return err
			}
			*p.idx = ifi.Index
		}
		if e.s1, err = Open(e.va1, 0, e.umem, opts); err != nil {
			return err
		}
		t.Cleanup(func() { e.s1.Close() })
		if e.s2, err = Open(e.va2, 0, e.umem, opts); err != nil {
			return err
		}
		t.Cleanup(func() { e.s2.Close() })
		if err := xsks.Update(uint32(0), uint32(e.s1.FD()), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("XSKMAP update: %w", err)
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: e.va1, Flags: link.XDPDriverMode})
		if err != nil {
			return fmt.Errorf("attach XDP to va1: %w", err)
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = testutil.InNetns(e.nsB, func() (err error) {
		e.toA, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ipVB, portB)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(ipVA1, portA)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.toA.Close() })
	err = testutil.InNetns(e.nsC, func() (err error) {
		e.inC, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ipVC, portC)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.inC.Close() })

	// Post half the frames for receive.
	addrs := make([]uint64, 512)
	n := e.umem.AllocBatch(addrs)
	if got := e.s1.Fill(addrs[:n]); got != n {
		t.Fatalf("Fill = %d, want %d", got, n)
	}
	return e
}

// sendUntil sends numbered datagrams from B to A every 20ms until stop is
// closed.
func (e *xdpEnv) sendUntil(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		e.toA.Write(fmt.Appendf(nil, "xlb-xsk-test %d", i))
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// receiveTestFrame waits for one of B's datagrams on s1, giving other
// frames (IPv6 noise) back to the fill ring.
func (e *xdpEnv) receiveTestFrame(t *testing.T) (Desc, udpFrame) {
	t.Helper()
	descs := make([]Desc, 64)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := e.s1.Poll(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		n := e.s1.Receive(descs)
		for i, d := range descs[:n] {
			f, ok := parseUDP4(e.umem.Frame(d.Addr, d.Len))
			if !ok || !bytes.HasPrefix(f.payload, []byte("xlb-xsk-test ")) {
				e.s1.Fill([]uint64{d.Addr})
				continue
			}
			for _, rest := range descs[i+1 : n] {
				e.s1.Fill([]uint64{rest.Addr})
			}
			return d, f
		}
	}
	st, _ := e.s1.Stats()
	t.Fatalf("no test datagram arrived on the AF_XDP socket within 10s; stats %+v", st)
	return Desc{}, udpFrame{}
}

// waitComplete polls s's completion ring until addr comes back.
func waitComplete(t *testing.T, s *Socket, addr uint64) {
	t.Helper()
	done := make([]uint64, 16)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		n := s.Complete(done)
		for _, a := range done[:n] {
			if a == addr {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("address %#x never came back on the completion ring", addr)
}

func TestSocketVeth(t *testing.T) {
	e := setupXDPEnv(t)
	for _, s := range []*Socket{e.s1, e.s2} {
		if s.Mode() != Copy {
			t.Errorf("socket on ifindex %d: mode %v, want copy (veth has no zero-copy)", s.Ifindex(), s.Mode())
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go e.sendUntil(stop, &wg)
	defer wg.Wait()
	defer close(stop)

	t.Run("receive", func(t *testing.T) {
		d, f := e.receiveTestFrame(t)
		if !bytes.Equal(f.dstMAC, macVA1) || !bytes.Equal(f.srcMAC, macVB) ||
			f.src != netip.AddrPortFrom(ipVB, portB) || f.dst != netip.AddrPortFrom(ipVA1, portA) {
			t.Errorf("frame %+v", f)
		}
		if h := e.umem.Headroom(d.Addr); uint64(h) != e.umem.DataOffset() {
			t.Errorf("packet starts %d bytes into its frame, want DataOffset %d", h, e.umem.DataOffset())
		}
		e.s1.Fill([]uint64{d.Addr})
	})

	t.Run("reflect", func(t *testing.T) {
		// Swap addresses and ports in place and send the frame back out
		// of va1.
		d, f := e.receiveTestFrame(t)
		b := e.umem.Frame(d.Addr, d.Len)
		var tmp [6]byte
		copy(tmp[:], b[0:6])
		copy(b[0:6], b[6:12])
		copy(b[6:12], tmp[:])
		copy(tmp[:4], b[26:30])
		copy(b[26:30], b[30:34])
		copy(b[30:34], tmp[:4])
		copy(tmp[:2], b[34:36])
		copy(b[34:36], b[36:38])
		copy(b[36:38], tmp[:2])
		// B's kernel left the UDP checksum to the (veth) "hardware"
		// (CHECKSUM_PARTIAL), so the frame carries only the
		// pseudo-header sum: finish it.
		setUDP4Checksum(b)
		want := string(f.payload)
		if n := e.s1.Transmit([]Desc{d}); n != 1 {
			t.Fatalf("Transmit = %d", n)
		}
		e.toA.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 256)
		n, err := e.toA.Read(buf)
		if err != nil {
			t.Fatalf("B did not get the reflected datagram: %v", err)
		}
		if string(buf[:n]) != want {
			t.Fatalf("B got %q, want %q", buf[:n], want)
		}
		waitComplete(t, e.s1, d.Addr)
		e.s1.Fill([]uint64{d.Addr})
	})

	t.Run("forward via shared umem", func(t *testing.T) {
		// Rewrite the frame received on va1 for C and send it on va2
		// through the second socket: same UMEM, no copy.
		d, f := e.receiveTestFrame(t)
		b := e.umem.Frame(d.Addr, d.Len)
		copy(b[0:6], macVC)
		copy(b[6:12], macVA2)
		a2, c := ipVA2.As4(), ipVC.As4()
		copy(b[26:30], a2[:])
		copy(b[30:34], c[:])
		binary.BigEndian.PutUint16(b[24:], 0)
		binary.BigEndian.PutUint16(b[24:], ipv4Checksum(b[14:34]))
		binary.BigEndian.PutUint16(b[36:], portC)
		setUDP4Checksum(b)
		want := string(f.payload)
		if n := e.s2.Transmit([]Desc{d}); n != 1 {
			t.Fatalf("Transmit = %d", n)
		}
		e.inC.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 256)
		n, from, err := e.inC.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("C did not get the forwarded datagram: %v", err)
		}
		if string(buf[:n]) != want || from != netip.AddrPortFrom(ipVA2, portB) {
			t.Fatalf("C got %q from %v, want %q from %v", buf[:n], from, want, netip.AddrPortFrom(ipVA2, portB))
		}
		// The frame completes on the ring of the socket that sent it.
		waitComplete(t, e.s2, d.Addr)
		e.umem.Free(d.Addr)
	})

	t.Run("batch transmit", func(t *testing.T) {
		// One Transmit of more frames than a copy-mode sendto sends by
		// default (32), built in fresh frames from the free stack.
		const count = 200
		if err := e.inC.SetReadBuffer(4 << 20); err != nil {
			t.Fatal(err)
		}
		descs := make([]Desc, count)
		for i := range descs {
			a, ok := e.umem.Alloc()
			if !ok {
				t.Fatal("UMEM exhausted")
			}
			d := Desc{Addr: a + e.umem.DataOffset()}
			d.Len = uint32(buildUDP4(e.umem.Frame(d.Addr, 0)[:128], macVC, macVA2,
				netip.AddrPortFrom(ipVA2, 7000), netip.AddrPortFrom(ipVC, portC), fmt.Appendf(nil, "batch %d", i)))
			descs[i] = d
		}
		if n := e.s2.Transmit(descs); n != count {
			t.Fatalf("Transmit = %d, want %d", n, count)
		}
		got := map[string]bool{}
		buf := make([]byte, 256)
		e.inC.SetReadDeadline(time.Now().Add(5 * time.Second))
		for len(got) < count {
			n, err := e.inC.Read(buf)
			if err != nil {
				st, _ := e.s2.Stats()
				t.Fatalf("C got %d of %d datagrams: %v; stats %+v", len(got), count, err, st)
			}
			got[string(buf[:n])] = true
		}
		done := make([]uint64, count)
		for c, deadline := 0, time.Now().Add(5*time.Second); c < count; {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d completions", c, count)
			}
			n := e.s2.Complete(done[c:])
			e.umem.FreeBatch(done[c : c+n])
			c += n
		}
	})

	t.Run("stats", func(t *testing.T) {
		st, err := e.s1.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.RxPackets < 3 || st.TxPackets != 1 || st.Completed != 1 || st.TxInvalidDescs != 0 || st.RxInvalidDescs != 0 {
			t.Errorf("s1 stats %+v", st)
		}
		// Busy polling is on. Whether the kernel knows the NAPI to poll
		// depends on the driver: veth links no NAPI to its queues, so on
		// veth (up to at least Linux 6.18) the id stays 0 and busy polls
		// run nothing.
		id, err := e.s1.NAPIID()
		if !st.BusyPoll || id != st.NAPIID || err != nil {
			t.Errorf("s1 busy polling: stats %+v, NAPIID() = %d, %v", st, id, err)
		}
		t.Logf("s1 NAPI id %d", id)
		st2, err := e.s2.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st2.TxPackets != 201 || st2.Completed != 201 || st2.TxWakeups == 0 || st2.WakeupErrors != 0 {
			t.Errorf("s2 stats %+v", st2)
		}
	})

	t.Run("busy queue and zerocopy", func(t *testing.T) {
		u, err := NewUMEM(UMEMConfig{FrameCount: 64})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		err = testutil.InNetns(e.nsA, func() error {
			_, err := Open(e.va1, 0, u, Options{RxSize: 64, TxSize: 64, BindRetries: -1})
			if !errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("second umem on a bound queue: got %v, want EBUSY", err)
			}
			_, err = Open(e.va2, 0, e.umem, opts64)
			if !errors.Is(err, ErrInvalidConfig) {
				return fmt.Errorf("second socket on the same queue of a shared umem: got %v, want ErrInvalidConfig", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("reopen", func(t *testing.T) {
		// Close the socket on va1 and bind a fresh one at once, as a
		// restarted process would.
		if err := e.s1.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.s1.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := e.s1.Stats(); !errors.Is(err, ErrClosed) {
			t.Errorf("Stats after Close: %v", err)
		}
		u, err := NewUMEM(UMEMConfig{FrameCount: 64})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		err = testutil.InNetns(e.nsA, func() error {
			_, err := Open(e.va1, 0, u, Options{RxSize: 64, TxSize: 64, Mode: ZeroCopy})
			if !errors.Is(err, ErrNotSupported) {
				return fmt.Errorf("zerocopy on veth: got %v, want ErrNotSupported", err)
			}
			s, err := Open(e.va1, 0, u, Options{RxSize: 64, TxSize: 64})
			if err != nil {
				return err
			}
			return s.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

var opts64 = Options{RxSize: 64, TxSize: 64}

// buildUDP4 writes an Ethernet/IPv4/UDP frame into b and returns its length.
func buildUDP4(b []byte, dstMAC, srcMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) int {
	n := 42 + len(payload)
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	clear(ip)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(n-14))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip))
	binary.BigEndian.PutUint16(b[34:], src.Port())
	binary.BigEndian.PutUint16(b[36:], dst.Port())
	binary.BigEndian.PutUint16(b[38:], uint16(8+len(payload)))
	copy(b[42:], payload)
	setUDP4Checksum(b[:n])
	return n
}

// setUDP4Checksum computes the UDP checksum of an Ethernet/IPv4/UDP frame.
func setUDP4Checksum(f []byte) {
	binary.BigEndian.PutUint16(f[40:], 0)
	c := udp4Sum(f)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(f[40:], c)
}

// udp4Sum returns the complemented ones' complement sum over the UDP
// pseudo-header and datagram: 0 for a frame whose checksum is valid.
func udp4Sum(f []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(f[26:34])
	sum += unix.IPPROTO_UDP
	ulen := int(binary.BigEndian.Uint16(f[38:]))
	sum += uint32(ulen)
	add(f[34 : 34+ulen])
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
