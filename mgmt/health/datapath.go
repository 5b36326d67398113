package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"

	"github.com/xlb/xlb/internal/packet"
)

// TypeDatapath is the datapath probe of a tunnel or l3dsr backend: a TCP
// SYN to the VIP sent the way the balancer forwards a client's packets
// (encapsulated, or addressed to the backend with the service's DSCP), which
// passes only when the SYN-ACK comes back from the VIP. The configuration
// never names it; the management plane adds one per backend of such a
// service. See the package documentation.
const TypeDatapath = "datapath"

// Datapath modes.
const (
	DatapathTunnel = "tunnel"
	DatapathL3DSR  = "l3dsr"
)

// Datapath is how a datapath probe reaches a backend. It is part of Spec, so
// it is a plain comparable value.
type Datapath struct {
	Mode string     // DatapathTunnel or DatapathL3DSR
	VIP  netip.Addr // the service's VIP: inner destination, and the source of the answer
	// Outer is the outer source of a tunnel probe (lb.tunnel_source or
	// tunnel_source6, of the backend's family), as the balancer sends it.
	Outer netip.Addr
	// Source is the balancer's own address the SYN comes from and the
	// SYN-ACK goes back to; zero lets the kernel pick it by route (towards
	// the backend, or towards the VIP when the VIP's family differs from
	// the backend's).
	Source netip.Addr
	DSCP   uint8 // l3dsr: the service's code, 1..63
}

func (d Datapath) validate() error {
	switch d.Mode {
	case DatapathTunnel:
		if !d.Outer.IsValid() {
			return fieldErr("datapath.outer", "a tunnel probe needs the tunnel source address")
		}
	case DatapathL3DSR:
		if d.DSCP == 0 || d.DSCP > 63 {
			return fieldErr("datapath.dscp", "%d is not a DSCP code 1..63", d.DSCP)
		}
	default:
		return fieldErr("datapath.mode", "%q is not tunnel or l3dsr", d.Mode)
	}
	if !d.VIP.IsValid() {
		return fieldErr("datapath.vip", "no VIP")
	}
	if d.Source.IsValid() && d.Source.Unmap().Is4() != d.VIP.Unmap().Is4() {
		return fieldErr("datapath.source", "%s is not of the VIP's family", d.Source)
	}
	return nil
}

// Prober sends datapath probes. Probe sends one SYN to d.VIP:port the way
// the balancer forwards client traffic to backend, and returns nil once the
// SYN-ACK from d.VIP:port arrives, or the reason it did not before ctx
// ends. An error wrapping ErrUnavailable means no probe could be sent at
// all (no raw sockets): the result then counts neither way.
type Prober interface {
	Probe(ctx context.Context, backend netip.Addr, port uint16, d Datapath) error
}

// ErrUnavailable is wrapped by a Prober's error when it cannot probe at all.
var ErrUnavailable = errors.New("datapath probes unavailable")

// prober returns the Prober of m: Options.Prober or the raw-socket one.
func (m *Manager) prober() Prober {
	if m.o.Prober != nil {
		return m.o.Prober
	}
	m.rawOnce.Do(func() { m.raw = NewRawProber() })
	if m.raw == nil {
		return closedProber{}
	}
	return m.raw
}

type closedProber struct{}

func (closedProber) Probe(context.Context, netip.Addr, uint16, Datapath) error {
	return fmt.Errorf("%w: the checker is closed", ErrUnavailable)
}

// RawNet is what the raw prober needs from the kernel: raw IP sockets.
// Tests fake it.
type RawNet interface {
	// Listen prepares the receipt of TCP segments of family v6 (ReadTCP
	// sees every segment that arrives after it returns).
	Listen(v6 bool) error
	// WriteIP sends pkt, a complete IP packet of family v6 (header
	// included), to dst.
	WriteIP(v6 bool, dst netip.Addr, pkt []byte) error
	// ReadTCP blocks for the next TCP segment of family v6 that reaches
	// this host, copies it (from its TCP header on) into b and returns its
	// length and source address. It returns an error once Close was called.
	ReadTCP(v6 bool, b []byte) (int, netip.Addr, error)
	// Reserve returns a TCP port of family v6 that no socket of this host
	// uses until release is called, so a probe's answer cannot belong to a
	// real connection.
	Reserve(v6 bool) (port uint16, release func(), err error)
	// Source returns the local address the kernel sends from towards dst.
	Source(dst netip.Addr) (netip.Addr, error)
	Close() error
}

// RawProber is the Prober over raw sockets (CAP_NET_RAW). It writes the
// whole packet itself (outer header included) and reads the answers from a
// packet socket per family (before the IP layer; see kernelNet), one
// reader goroutine each, started at the first probe of that family. Each probe reserves its source port with an
// unconnected bound TCP socket, so the answer cannot collide with a real
// connection; the kernel, which has no connection for the SYN-ACK, answers
// it with a RST of its own (towards the VIP, so it crosses the balancer's
// dataplane like any client packet and lands on a backend that drops it),
// and the prober sends the probed backend a RST the same way as the SYN,
// so the backend's half-open connection ends at once.
type RawProber struct {
	net RawNet

	mu      sync.Mutex
	readers [2]bool // reader started, by family (IPv6 = 1)
	waiters map[waitKey]chan segment
	closed  bool
	wg      sync.WaitGroup
}

type waitKey struct {
	v6   bool
	port uint16
}

// segment is what a reader hands a waiting probe.
type segment struct {
	src       netip.Addr
	sport     uint16
	flags     uint8
	seq, ack  uint32
	truncated bool
}

// NewRawProber returns a Prober over the kernel's raw sockets.
func NewRawProber() *RawProber { return NewRawProberWith(newKernelNet()) }

// NewRawProberWith returns a RawProber over n (tests).
func NewRawProberWith(n RawNet) *RawProber {
	return &RawProber{net: n, waiters: map[waitKey]chan segment{}}
}

// Close closes the sockets and waits for the readers.
func (r *RawProber) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	err := r.net.Close()
	r.wg.Wait()
	return err
}

// Probe implements Prober.
func (r *RawProber) Probe(ctx context.Context, backend netip.Addr, port uint16, d Datapath) error {
	backend = backend.Unmap()
	vip := d.VIP.Unmap()
	v6 := vip.Is6() // the family of the SYN and its answer
	src := d.Source.Unmap()
	if !src.IsValid() {
		towards := backend
		if backend.Is6() != v6 {
			towards = vip
		}
		var err error
		if src, err = r.net.Source(towards); err != nil {
			return fmt.Errorf("no source address towards %s: %w", towards, err)
		}
		if src == vip {
			return fmt.Errorf("no source address: the route towards %s leads to the VIP itself", towards)
		}
	}
	sport, release, err := r.net.Reserve(v6)
	if err != nil {
		return fmt.Errorf("%w: reserve a port: %v", ErrUnavailable, err)
	}
	defer release()
	ch := make(chan segment, 8)
	key := waitKey{v6, sport}
	if err := r.wait(key, ch); err != nil {
		return err
	}
	defer r.unwait(key)

	p := probePacket{mode: d.Mode, backend: backend, outer: d.Outer.Unmap(), src: src, vip: vip,
		sport: sport, dport: port, dscp: d.DSCP, isn: rand.Uint32()}
	pkt, dst := p.build(packet.TCPSyn, p.isn)
	if err := r.net.WriteIP(dst.Is6(), dst, pkt); err != nil {
		return fmt.Errorf("send the probe to %s: %w", dst, err)
	}
	var other string // an answer that did not come from the VIP
	for {
		select {
		case <-ctx.Done():
			if other != "" {
				return errors.New(other)
			}
			return fmt.Errorf("no SYN-ACK from %s within the timeout (%s)", netip.AddrPortFrom(vip, port), p.what())
		case s := <-ch:
			if s.truncated || s.ack != p.isn+1 || s.flags&packet.TCPAck == 0 {
				continue
			}
			from := netip.AddrPortFrom(s.src, s.sport)
			if s.src != vip || s.sport != port {
				if s.src == backend && d.Mode == DatapathL3DSR {
					other = fmt.Sprintf("answered by %s, not the VIP: the backend does not map DSCP %d back to %s", from, d.DSCP, vip)
				} else {
					other = fmt.Sprintf("answered by %s, not %s", from, netip.AddrPortFrom(vip, port))
				}
				continue
			}
			if s.flags&packet.TCPRst != 0 {
				return fmt.Errorf("reset by %s: the packet arrived, but nothing listens on the VIP at that port", from)
			}
			if s.flags&packet.TCPSyn == 0 {
				continue
			}
			// End the backend's half-open connection the way the SYN went.
			rst, dst := p.build(packet.TCPRst, p.isn+1)
			_ = r.net.WriteIP(dst.Is6(), dst, rst)
			return nil
		}
	}
}

func (r *RawProber) wait(k waitKey, ch chan segment) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("%w: the prober is closed", ErrUnavailable)
	}
	fam := famIndex(k.v6)
	if !r.readers[fam] {
		// Listen before the SYN goes out, or its answer could come first.
		if err := r.net.Listen(k.v6); err != nil {
			return err
		}
		r.readers[fam] = true
		r.wg.Add(1)
		go r.read(k.v6)
	}
	r.waiters[k] = ch
	return nil
}

func (r *RawProber) unwait(k waitKey) {
	r.mu.Lock()
	delete(r.waiters, k)
	r.mu.Unlock()
}

// read hands every TCP segment of family v6 to the probe waiting for its
// destination port, until the socket is closed.
func (r *RawProber) read(v6 bool) {
	defer r.wg.Done()
	buf := make([]byte, 256)
	for {
		n, src, err := r.net.ReadTCP(v6, buf)
		if err != nil {
			// Closed, or broken: the next probe of the family starts
			// another reader.
			r.mu.Lock()
			r.readers[famIndex(v6)] = false
			r.mu.Unlock()
			return
		}
		if n < packet.TCPMinLen {
			continue
		}
		t := packet.TCP(buf[:n])
		k := waitKey{v6, t.DstPort()}
		r.mu.Lock()
		ch := r.waiters[k]
		r.mu.Unlock()
		if ch == nil {
			continue
		}
		s := segment{src: src.Unmap(), sport: t.SrcPort(), flags: t.Flags(),
			seq: binary.BigEndian.Uint32(buf[4:8]), ack: binary.BigEndian.Uint32(buf[8:12])}
		select {
		case ch <- s:
		default: // the probe has what it needs
		}
	}
}

// probePacket is one probe's addresses and ports.
type probePacket struct {
	mode         string
	backend      netip.Addr
	outer        netip.Addr // tunnel outer source
	src, vip     netip.Addr // inner source (the balancer) and destination
	sport, dport uint16
	dscp         uint8
	isn          uint32
}

func (p *probePacket) what() string {
	if p.mode == DatapathTunnel {
		return fmt.Sprintf("SYN encapsulated %s → %s", p.outer, p.backend)
	}
	return fmt.Sprintf("SYN to %s with DSCP %d", netip.AddrPortFrom(p.backend, p.dport), p.dscp)
}

// build returns a segment with flags and sequence number seq, as the
// balancer would forward it to the backend, and where to send it: for
// tunnel, src → VIP:dport inside an outer header outer → backend; for
// l3dsr, src → backend:dport with the DSCP.
func (p *probePacket) build(flags uint8, seq uint32) ([]byte, netip.Addr) {
	dst := p.vip
	tos := uint8(0)
	if p.mode == DatapathL3DSR {
		dst, tos = p.backend, p.dscp<<2
	}
	inner := ipPacket(p.src, dst, tos, packet.ProtoTCP, tcpSegment(p.src, dst, p.sport, p.dport, flags, seq))
	if p.mode != DatapathTunnel {
		return inner, p.backend
	}
	proto := uint8(packet.ProtoIPIP)
	if p.vip.Is6() {
		proto = packet.ProtoIPv6
	}
	return ipPacket(p.outer, p.backend, 0, proto, inner), p.backend
}

// tcpSegment is a TCP header (with an MSS option of 1220 on a SYN) with its
// checksum.
func tcpSegment(src, dst netip.Addr, sport, dport uint16, flags uint8, seq uint32) []byte {
	hl := packet.TCPMinLen
	if flags&packet.TCPSyn != 0 {
		hl += 4
	}
	t := make([]byte, hl)
	binary.BigEndian.PutUint16(t[0:2], sport)
	binary.BigEndian.PutUint16(t[2:4], dport)
	binary.BigEndian.PutUint32(t[4:8], seq)
	t[12] = byte(hl/4) << 4
	t[13] = flags
	if flags&packet.TCPRst == 0 {
		binary.BigEndian.PutUint16(t[14:16], 64240)
	}
	if flags&packet.TCPSyn != 0 {
		t[20], t[21] = 2, 4
		binary.BigEndian.PutUint16(t[22:24], 1220)
	}
	var pseudo uint16
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		pseudo = packet.PseudoSum4(s[:], d[:], packet.ProtoTCP, uint16(hl))
	} else {
		s, d := src.As16(), dst.As16()
		pseudo = packet.PseudoSum6(s[:], d[:], packet.ProtoTCP, uint32(hl))
	}
	binary.BigEndian.PutUint16(t[16:18], packet.Checksum(t, pseudo))
	return t
}

// ipPacket puts payload in an IPv4 (DF, TTL 64, with its header checksum)
// or IPv6 (hop limit 64) header from src to dst.
func ipPacket(src, dst netip.Addr, tos, proto uint8, payload []byte) []byte {
	if src.Is4() {
		b := make([]byte, packet.IPv4MinLen+len(payload))
		b[0], b[1] = 0x45, tos
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		binary.BigEndian.PutUint16(b[6:8], 0x4000)
		b[8], b[9] = 64, proto
		s, d := src.As4(), dst.As4()
		copy(b[12:16], s[:])
		copy(b[16:20], d[:])
		binary.BigEndian.PutUint16(b[10:12], packet.Checksum(b[:packet.IPv4MinLen], 0))
		copy(b[packet.IPv4MinLen:], payload)
		return b
	}
	b := make([]byte, packet.IPv6Len+len(payload))
	binary.BigEndian.PutUint32(b[0:4], 6<<28|uint32(tos)<<20)
	binary.BigEndian.PutUint16(b[4:6], uint16(len(payload)))
	b[6], b[7] = proto, 64
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	copy(b[packet.IPv6Len:], payload)
	return b
}
