package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/packet"
)

// fakeBackend is how a fake backend treats what the balancer sends it.
type fakeBackend struct {
	decap  bool  // tunnel: strips the outer header (xlb realserver runs)
	dscp   uint8 // l3dsr: the code it maps back to the VIP (0: none)
	listen bool  // something listens on VIP:port
}

// fakeNet is a RawNet whose "network" is a set of fake backends: it checks
// every packet the prober writes (addresses, checksums, encapsulation) and
// answers as a Linux backend would.
type fakeNet struct {
	t        *testing.T
	vip      netip.Addr
	port     uint16
	outer    map[bool]netip.Addr // tunnel source by family
	local    map[bool]netip.Addr // the balancer's address by family
	backends map[netip.Addr]*fakeBackend

	mu         sync.Mutex
	in         [2]chan fakeSeg
	nextPort   uint16
	listened   [2]bool
	rsts       map[netip.Addr]int // RSTs that reached a backend's VIP socket
	closed     bool
	reserveErr error
}

type fakeSeg struct {
	b   []byte
	src netip.Addr
}

func newFakeNet(t *testing.T, vip netip.Addr) *fakeNet {
	return &fakeNet{t: t, vip: vip, port: 80,
		outer:    map[bool]netip.Addr{false: netip.MustParseAddr("10.0.0.1"), true: netip.MustParseAddr("fd00::1")},
		local:    map[bool]netip.Addr{false: netip.MustParseAddr("10.0.0.2"), true: netip.MustParseAddr("fd00::2")},
		backends: map[netip.Addr]*fakeBackend{},
		in:       [2]chan fakeSeg{make(chan fakeSeg, 64), make(chan fakeSeg, 64)},
		nextPort: 40000, rsts: map[netip.Addr]int{}}
}

func (f *fakeNet) Listen(v6 bool) error {
	f.mu.Lock()
	f.listened[famIndex(v6)] = true
	f.mu.Unlock()
	return nil
}

func (f *fakeNet) Reserve(v6 bool) (uint16, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reserveErr != nil {
		return 0, nil, f.reserveErr
	}
	f.nextPort++
	return f.nextPort, func() {}, nil
}

func (f *fakeNet) Source(dst netip.Addr) (netip.Addr, error) { return f.local[dst.Is6()], nil }

func (f *fakeNet) ReadTCP(v6 bool, b []byte) (int, netip.Addr, error) {
	s, ok := <-f.in[famIndex(v6)]
	if !ok {
		return 0, netip.Addr{}, net.ErrClosed
	}
	return copy(b, s.b), s.src, nil
}

func (f *fakeNet) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.in[0])
		close(f.in[1])
	}
	return nil
}

// ip parses an IP packet, checking its header checksum (IPv4) and length.
func (f *fakeNet) ip(b []byte) (src, dst netip.Addr, tos, proto uint8, payload []byte, err error) {
	if len(b) < 1 {
		return src, dst, 0, 0, nil, errors.New("empty")
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 || int(binary.BigEndian.Uint16(b[2:4])) != len(b) || packet.Checksum(b[:20], 0) != 0 || b[6]&0x40 == 0 {
			return src, dst, 0, 0, nil, fmt.Errorf("bad IPv4 header % x", b[:min(20, len(b))])
		}
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		return src, dst, b[1], b[9], b[20:], nil
	case 6:
		if len(b) < 40 || int(binary.BigEndian.Uint16(b[4:6])) != len(b)-40 {
			return src, dst, 0, 0, nil, errors.New("bad IPv6 header")
		}
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		return src, dst, uint8(binary.BigEndian.Uint32(b[0:4]) >> 20), b[6], b[40:], nil
	}
	return src, dst, 0, 0, nil, errors.New("not IP")
}

func tcpOK(src, dst netip.Addr, seg []byte) bool {
	var pseudo uint16
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		pseudo = packet.PseudoSum4(s[:], d[:], packet.ProtoTCP, uint16(len(seg)))
	} else {
		s, d := src.As16(), dst.As16()
		pseudo = packet.PseudoSum6(s[:], d[:], packet.ProtoTCP, uint32(len(seg)))
	}
	return packet.Checksum(seg, pseudo) == 0
}

func (f *fakeNet) WriteIP(v6 bool, to netip.Addr, pkt []byte) error {
	src, dst, tos, proto, payload, err := f.ip(pkt)
	if err != nil || dst.Is6() != v6 || dst != to {
		f.t.Errorf("prober wrote a bad packet (%v, to %s): % x", err, to, pkt)
		return nil
	}
	be := f.backends[dst]
	if be == nil {
		f.t.Errorf("probe to %s, not a backend", dst)
		return nil
	}
	switch proto {
	case packet.ProtoIPIP, packet.ProtoIPv6: // tunnel
		if src != f.outer[dst.Is6()] {
			f.t.Errorf("outer source %s, want the tunnel source %s", src, f.outer[dst.Is6()])
		}
		if !be.decap {
			return nil // no decapsulation: the kernel drops it
		}
		isrc, idst, _, iproto, seg, err := f.ip(payload)
		if err != nil || iproto != packet.ProtoTCP || (proto == packet.ProtoIPIP) != idst.Is4() {
			f.t.Errorf("bad inner packet: %v % x", err, payload)
			return nil
		}
		f.kernel(be, isrc, idst, seg, true)
	case packet.ProtoTCP: // l3dsr
		if !tcpOK(src, dst, payload) {
			f.t.Errorf("bad TCP checksum % x", payload)
			return nil
		}
		if be.dscp != 0 && tos>>2 == be.dscp {
			dst = f.vip
		}
		f.kernel(be, src, dst, payload, false)
	default:
		f.t.Errorf("protocol %d", proto)
	}
	return nil
}

// kernel is the backend's TCP stack receiving seg from src to dst (check:
// verify its checksum; l3dsr's was verified before the DSCP mapping).
func (f *fakeNet) kernel(be *fakeBackend, src, dst netip.Addr, seg []byte, check bool) {
	if len(seg) < 20 || check && !tcpOK(src, dst, seg) {
		f.t.Errorf("bad TCP segment % x", seg)
		return
	}
	t := packet.TCP(seg)
	flags := t.Flags()
	if flags&packet.TCPRst != 0 {
		f.mu.Lock()
		if dst == f.vip {
			for a, b := range f.backends {
				if b == be {
					f.rsts[a]++
				}
			}
		}
		f.mu.Unlock()
		return
	}
	if flags != packet.TCPSyn || t.DataOffset() != 24 || seg[20] != 2 {
		f.t.Errorf("not a SYN with an MSS option: % x", seg)
		return
	}
	if dst == f.vip && t.DstPort() != f.port {
		return
	}
	ans := uint8(packet.TCPSyn | packet.TCPAck)
	if dst == f.vip && !be.listen {
		ans = packet.TCPRst | packet.TCPAck
	}
	// The answer: from dst:dport to src:sport, ack = seq+1.
	r := tcpSegment(dst, src, t.DstPort(), t.SrcPort(), ans, 777)
	binary.BigEndian.PutUint32(r[8:12], binary.BigEndian.Uint32(seg[4:8])+1)
	binary.BigEndian.PutUint16(r[16:18], 0)
	var pseudo uint16
	if dst.Is4() {
		s, d := dst.As4(), src.As4()
		pseudo = packet.PseudoSum4(s[:], d[:], packet.ProtoTCP, uint16(len(r)))
	} else {
		s, d := dst.As16(), src.As16()
		pseudo = packet.PseudoSum6(s[:], d[:], packet.ProtoTCP, uint32(len(r)))
	}
	binary.BigEndian.PutUint16(r[16:18], packet.Checksum(r, pseudo))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if src != f.local[src.Is6()] {
		f.t.Errorf("inner source %s, want the balancer's %s", src, f.local[src.Is6()])
	}
	if !f.listened[famIndex(src.Is6())] {
		f.t.Errorf("SYN sent before the prober listened for its answer")
	}
	f.in[famIndex(src.Is6())] <- fakeSeg{b: r, src: dst}
}

func (f *fakeNet) rstCount(a netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rsts[a]
}

func probeCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func TestDatapathProbe(t *testing.T) {
	vip4, vip6 := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8:100::10")
	b4, b6 := netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("fd00::11")
	for _, c := range []struct {
		name    string
		vip     netip.Addr
		backend netip.Addr
		mode    string
		be      fakeBackend
		want    string // "" = passes; else a substring of the error
	}{
		{"ipip", vip4, b4, DatapathTunnel, fakeBackend{decap: true, listen: true}, ""},
		{"ip6ip6", vip6, b6, DatapathTunnel, fakeBackend{decap: true, listen: true}, ""},
		{"4in6", vip4, b6, DatapathTunnel, fakeBackend{decap: true, listen: true}, ""},
		{"6in4", vip6, b4, DatapathTunnel, fakeBackend{decap: true, listen: true}, ""},
		{"ipip, no decapsulation", vip4, b4, DatapathTunnel, fakeBackend{listen: true}, "no SYN-ACK from 198.51.100.10:80"},
		{"ip6ip6, no decapsulation", vip6, b6, DatapathTunnel, fakeBackend{listen: true}, "no SYN-ACK from [2001:db8:100::10]:80"},
		{"ipip, nothing listens on the VIP", vip4, b4, DatapathTunnel, fakeBackend{decap: true}, "reset by 198.51.100.10:80"},
		{"l3dsr ipv4", vip4, b4, DatapathL3DSR, fakeBackend{dscp: 10, listen: true}, ""},
		{"l3dsr ipv6", vip6, b6, DatapathL3DSR, fakeBackend{dscp: 10, listen: true}, ""},
		{"l3dsr, DSCP not mapped", vip4, b4, DatapathL3DSR, fakeBackend{listen: true}, "answered by 10.0.0.11:80, not the VIP: the backend does not map DSCP 10 back to 198.51.100.10"},
		{"l3dsr, another code mapped", vip4, b4, DatapathL3DSR, fakeBackend{dscp: 11, listen: true}, "does not map DSCP 10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fn := newFakeNet(t, c.vip)
			be := c.be
			fn.backends[c.backend] = &be
			r := NewRawProberWith(fn)
			defer r.Close()
			d := Datapath{Mode: c.mode, VIP: c.vip, DSCP: 10}
			if c.mode == DatapathTunnel {
				d.Outer = fn.outer[c.backend.Is6()]
			}
			ctx, cancel := probeCtx(100 * time.Millisecond)
			defer cancel()
			err := r.Probe(ctx, c.backend, 80, d)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if fn.rstCount(c.backend) != 1 {
					t.Fatalf("the backend's half-open connection got %d RSTs, want 1", fn.rstCount(c.backend))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestDatapathProbesConcurrently: answers reach the probe they belong to.
func TestDatapathProbesConcurrently(t *testing.T) {
	vip := netip.MustParseAddr("198.51.100.10")
	fn := newFakeNet(t, vip)
	var addrs []netip.Addr
	for i := range 40 {
		a := netip.AddrFrom4([4]byte{10, 0, 1, byte(i)})
		fn.backends[a] = &fakeBackend{decap: i%2 == 0, listen: true}
		addrs = append(addrs, a)
	}
	r := NewRawProberWith(fn)
	defer r.Close()
	var wg sync.WaitGroup
	errs := make([]error, len(addrs))
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := probeCtx(200 * time.Millisecond)
			defer cancel()
			errs[i] = r.Probe(ctx, a, 80, Datapath{Mode: DatapathTunnel, VIP: vip, Outer: fn.outer[false]})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err == nil) != (i%2 == 0) {
			t.Errorf("backend %s (decap %v): %v", addrs[i], i%2 == 0, err)
		}
	}
}

func TestDatapathProbeUnavailable(t *testing.T) {
	vip := netip.MustParseAddr("198.51.100.10")
	fn := newFakeNet(t, vip)
	fn.reserveErr = errors.New("operation not permitted")
	r := NewRawProberWith(fn)
	defer r.Close()
	ctx, cancel := probeCtx(100 * time.Millisecond)
	defer cancel()
	if err := r.Probe(ctx, netip.MustParseAddr("10.0.0.11"), 80, Datapath{Mode: DatapathTunnel, VIP: vip, Outer: fn.outer[false]}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
	r.Close()
	if err := r.Probe(ctx, netip.MustParseAddr("10.0.0.11"), 80, Datapath{Mode: DatapathTunnel, VIP: vip, Outer: fn.outer[false]}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after Close: %v, want ErrUnavailable", err)
	}
}

func TestDatapathSpecValidate(t *testing.T) {
	vip := netip.MustParseAddr("198.51.100.10")
	for _, c := range []struct {
		d     Datapath
		field string
	}{
		{Datapath{Mode: DatapathTunnel, VIP: vip, Outer: netip.MustParseAddr("10.0.0.1")}, ""},
		{Datapath{Mode: DatapathL3DSR, VIP: vip, DSCP: 63}, ""},
		{Datapath{Mode: DatapathTunnel, VIP: vip}, "datapath.outer"},
		{Datapath{Mode: DatapathL3DSR, VIP: vip}, "datapath.dscp"},
		{Datapath{Mode: DatapathL3DSR, VIP: vip, DSCP: 64}, "datapath.dscp"},
		{Datapath{Mode: "dsr", VIP: vip}, "datapath.mode"},
		{Datapath{Mode: DatapathL3DSR, DSCP: 1}, "datapath.vip"},
		{Datapath{Mode: DatapathL3DSR, VIP: vip, DSCP: 1, Source: netip.MustParseAddr("fd00::2")}, "datapath.source"},
	} {
		err := Spec{Type: TypeDatapath, Datapath: c.d}.Validate()
		var fe *FieldError
		if c.field == "" && err != nil || c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field) {
			t.Errorf("%+v: %v, want field %q", c.d, err, c.field)
		}
	}
}

// fakeProber answers from a table the test changes.
type fakeProber struct {
	mu  sync.Mutex
	res map[netip.Addr]error
	n   int
}

func (p *fakeProber) set(a netip.Addr, err error) {
	p.mu.Lock()
	p.res[a] = err
	p.mu.Unlock()
}

func (p *fakeProber) Probe(_ context.Context, backend netip.Addr, _ uint16, _ Datapath) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return p.res[backend]
}

// TestManagerRunsDatapathProbes: datapath targets rise and fall like any
// other, and a probe that cannot be made decides nothing.
func TestManagerRunsDatapathProbes(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("10.0.0.12")
	fp := &fakeProber{res: map[netip.Addr]error{}}
	m := newManager(t, Options{Prober: fp, Jitter: func(time.Duration) time.Duration { return 0 }})
	spec := fast(TypeDatapath)
	spec.Datapath = Datapath{Mode: DatapathTunnel, VIP: netip.MustParseAddr("198.51.100.10"), Outer: netip.MustParseAddr("10.0.0.1")}
	fp.set(b, fmt.Errorf("%w: no raw sockets", ErrUnavailable))
	m.Set([]Target{{Key: "web/a#datapath", Addr: netip.AddrPortFrom(a, 80), Spec: spec},
		{Key: "web/b#datapath", Addr: netip.AddrPortFrom(b, 80), Spec: spec}})
	waitState(t, m, "web/a#datapath", Up)
	fp.set(a, errors.New("no SYN-ACK"))
	st := waitState(t, m, "web/a#datapath", Down)
	if st.LastError != "no SYN-ACK" {
		t.Fatalf("status %+v", st)
	}
	waitFor(t, "an unavailable probe to be recorded", func() bool {
		st, _ := m.Status("web/b#datapath")
		return strings.Contains(st.LastResult, "no raw sockets")
	})
	if st, _ := m.Status("web/b#datapath"); st.State != Unknown || st.Transitions != 0 {
		t.Fatalf("an unavailable probe decided: %+v", st)
	}
}

// TestRawProberCloseEndsReaders: Close leaves no goroutine behind.
func TestRawProberCloseEndsReaders(t *testing.T) {
	base := runtime.NumGoroutine()
	vip := netip.MustParseAddr("198.51.100.10")
	fn := newFakeNet(t, vip)
	fn.backends[netip.MustParseAddr("10.0.0.11")] = &fakeBackend{decap: true, listen: true}
	r := NewRawProberWith(fn)
	ctx, cancel := probeCtx(time.Second)
	defer cancel()
	if err := r.Probe(ctx, netip.MustParseAddr("10.0.0.11"), 80, Datapath{Mode: DatapathTunnel, VIP: vip, Outer: fn.outer[false]}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	waitFor(t, "readers to end", func() bool { return runtime.NumGoroutine() <= base })
}
