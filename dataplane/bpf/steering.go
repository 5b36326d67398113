package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Sentinel errors callers branch on; returned errors wrap them.
var (
	// ErrNotSupported means the kernel lacks a feature the program needs
	// (BPF, XSKMAP, bpf_link for XDP, or the requested attach mode).
	ErrNotSupported = errors.New("bpf: not supported")
	// ErrInvalidRule means a rule's address, port or protocol is invalid.
	ErrInvalidRule = errors.New("bpf: invalid steering rule")
	// ErrClosed means the Steering was closed.
	ErrClosed = errors.New("bpf: steering closed")
)

// Defaults for SteeringOptions fields left zero.
const (
	DefaultMaxQueues  = 64
	DefaultMaxEntries = 4096
)

// IP protocol numbers accepted in rules.
const (
	ProtoICMP   uint8 = protoICMP
	ProtoTCP    uint8 = protoTCP
	ProtoUDP    uint8 = protoUDP
	ProtoICMPv6 uint8 = protoICMPv6
)

// SteeringOptions sizes the steering maps. The zero value selects the
// defaults.
type SteeringOptions struct {
	// MaxQueues is the XSKMAP size: one more than the highest rx queue
	// index that can get a socket. Default DefaultMaxQueues.
	MaxQueues int
	// MaxEntries is the capacity of each rule map (destinations, backend
	// sources, local addresses, SNAT addresses). Default
	// DefaultMaxEntries.
	MaxEntries int
}

// Steering is the loaded steering program and its maps. Its methods may be
// called concurrently, except Close.
type Steering struct {
	prog     *ebpf.Program
	xsks     *ebpf.Map
	dsts     *ebpf.Map
	srcs     *ebpf.Map
	locals   *ebpf.Map
	snat     *ebpf.Map
	hold     *ebpf.Map
	counters *ebpf.Map
	opts     SteeringOptions
	// shadow is what the last Replace wrote into dsts, srcs, locals and
	// snat (nil after any single-rule change): the next Replace then
	// writes only the difference instead of every key.
	shadow    *[4]map[ruleKey]bool
	shadowNAT [2]uint16
}

// Rule is one steering map entry: an address, a port (0 = every port) and
// an IP protocol (ProtoTCP, ProtoUDP, ProtoICMP for IPv4 or ProtoICMPv6 for
// IPv6; ICMP rules have port 0).
type Rule struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

func (r Rule) String() string {
	return fmt.Sprintf("%s port %d proto %d", r.Addr, r.Port, r.Proto)
}

// ruleKey is the map key; see the package documentation for the layout.
type ruleKey struct {
	Family uint8
	Proto  uint8
	Port   [2]byte // network byte order
	Addr   [16]byte
}

func (r Rule) key() (ruleKey, error) {
	a := r.Addr.Unmap()
	if !a.IsValid() {
		return ruleKey{}, fmt.Errorf("%w: invalid address", ErrInvalidRule)
	}
	switch r.Proto {
	case ProtoTCP, ProtoUDP:
	case ProtoICMP, ProtoICMPv6:
		if r.Port != 0 {
			return ruleKey{}, fmt.Errorf("%w: %s: ICMP rules have port 0", ErrInvalidRule, r)
		}
		if (r.Proto == ProtoICMP) != a.Is4() {
			return ruleKey{}, fmt.Errorf("%w: %s: use protocol 1 (ICMP) for IPv4 and 58 (ICMPv6) for IPv6", ErrInvalidRule, r)
		}
	default:
		return ruleKey{}, fmt.Errorf("%w: %s: protocol must be TCP, UDP, ICMP or ICMPv6", ErrInvalidRule, r)
	}
	k := ruleKey{Proto: r.Proto, Port: [2]byte{byte(r.Port >> 8), byte(r.Port)}}
	if a.Is4() {
		k.Family = 4
		a4 := a.As4()
		copy(k.Addr[:], a4[:])
	} else {
		k.Family = 6
		k.Addr = a.As16()
	}
	return k, nil
}

// localKey is the key of a local or SNAT address: {family, 0, 0, addr}.
func localKey(addr netip.Addr) (ruleKey, error) {
	a := addr.Unmap()
	if !a.IsValid() {
		return ruleKey{}, fmt.Errorf("%w: invalid address", ErrInvalidRule)
	}
	k, _ := Rule{Addr: a, Proto: ProtoTCP}.key()
	k.Proto = 0
	return k, nil
}

func (k ruleKey) rule() Rule {
	r := Rule{Port: uint16(k.Port[0])<<8 | uint16(k.Port[1]), Proto: k.Proto}
	if k.Family == 4 {
		r.Addr = netip.AddrFrom4([4]byte(k.Addr[:4]))
	} else {
		r.Addr = netip.AddrFrom16(k.Addr)
	}
	return r
}

// snatPorts is the value of an SNAT address entry: the inclusive SNAT
// port range {lo, hi}, in host byte order.
type snatPorts [2]uint16

// checkSNATPorts validates an SNAT port range: 1 <= lo <= hi.
func checkSNATPorts(p [2]uint16) error {
	if p[0] == 0 || p[0] > p[1] {
		return fmt.Errorf("%w: SNAT port range %d-%d: want 1 <= low <= high", ErrInvalidRule, p[0], p[1])
	}
	return nil
}

// LoadSteering creates the maps (XSKMAP, destination, backend-source,
// local-address and SNAT-address hash maps, the hold deadline, per-CPU
// counters) and loads the steering program. Until SetHold, a matched frame
// whose queue has no socket is passed to the kernel. On kernels before 5.11 the caller must raise
// RLIMIT_MEMLOCK first (see github.com/cilium/ebpf/rlimit).
func LoadSteering(opts SteeringOptions) (*Steering, error) {
	if opts.MaxQueues == 0 {
		opts.MaxQueues = DefaultMaxQueues
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxQueues < 0 || opts.MaxEntries < 0 {
		return nil, fmt.Errorf("bpf: steering options %+v: negative size", opts)
	}
	s := &Steering{opts: opts}
	var err error
	mk := func(name string, spec *ebpf.MapSpec) *ebpf.Map {
		if err != nil {
			return nil
		}
		spec.Name = name
		var m *ebpf.Map
		if m, err = ebpf.NewMap(spec); err != nil {
			err = wrapNotSupported(fmt.Errorf("bpf: create map %s: %w", name, err))
		}
		return m
	}
	s.xsks = mk("xlb_xsks", &ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(opts.MaxQueues)})
	s.dsts = mk("xlb_dsts", &ebpf.MapSpec{Type: ebpf.Hash, KeySize: keySize, ValueSize: 4, MaxEntries: uint32(opts.MaxEntries)})
	s.srcs = mk("xlb_srcs", &ebpf.MapSpec{Type: ebpf.Hash, KeySize: keySize, ValueSize: 4, MaxEntries: uint32(opts.MaxEntries)})
	s.locals = mk("xlb_locals", &ebpf.MapSpec{Type: ebpf.Hash, KeySize: keySize, ValueSize: 4, MaxEntries: uint32(opts.MaxEntries)})
	s.snat = mk("xlb_snat", &ebpf.MapSpec{Type: ebpf.Hash, KeySize: keySize, ValueSize: 4, MaxEntries: uint32(opts.MaxEntries)})
	s.hold = mk("xlb_hold", &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: holdSize, MaxEntries: 1})
	s.counters = mk("xlb_counters", &ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: numCounters})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "xlb_steer",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: steeringProgram(s.xsks, s.dsts, s.srcs, s.locals, s.snat, s.hold, s.counters),
	})
	if err != nil {
		s.Close()
		return nil, wrapNotSupported(fmt.Errorf("bpf: load steering program: %w", err))
	}
	return s, nil
}

func wrapNotSupported(err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}

// Program returns the XDP program, for callers that attach it themselves.
func (s *Steering) Program() *ebpf.Program { return s.prog }

// SetSocket stores an AF_XDP socket for an rx queue in the XSKMAP. The
// socket must be bound to that queue of the interface the program is
// attached to.
func (s *Steering) SetSocket(queue int, fd int) error {
	if s.prog == nil {
		return ErrClosed
	}
	if queue < 0 || queue >= s.opts.MaxQueues {
		return fmt.Errorf("bpf: set socket for queue %d: outside XSKMAP of %d queues", queue, s.opts.MaxQueues)
	}
	if err := s.xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: set socket fd %d for queue %d: %w", fd, queue, err)
	}
	return nil
}

// ClearSocket removes the socket of an rx queue; its matching frames are
// then held (dropped) until the hold deadline, passed after it (see
// SetHold).
func (s *Steering) ClearSocket(queue int) error {
	if s.prog == nil {
		return ErrClosed
	}
	err := s.xsks.Delete(uint32(queue))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: clear socket for queue %d: %w", queue, err)
	}
	return nil
}

// SetHold makes the program drop, for d from now, the frames it matches
// (VIPs, SNAT ports, backend replies) whose rx queue has no socket, and
// pass them to the kernel after that; d <= 0 passes them at once (a new
// program's default). A queue loses its socket when the process that
// owned it ends, however it ends: a program still attached through a
// pinned link (AttachPinned) then holds its traffic until the next xlb
// takes it over, so that the peers' retransmissions find it instead of a
// kernel that answers them with resets (an SNAT address or a VIP the
// kernel owns) or forwards them untranslated (backend replies). The
// calling process is recorded as the hold's owner.
func (s *Steering) SetHold(d time.Duration) error {
	if s.prog == nil {
		return ErrClosed
	}
	return setHold(s.hold, d)
}

// setHold writes the hold value into m.
func setHold(m *ebpf.Map, d time.Duration) error {
	var v [holdSize]byte
	if d > 0 {
		binary.NativeEndian.PutUint64(v[holdDeadline:], uint64(monotonic()+int64(d)))
	}
	binary.NativeEndian.PutUint32(v[holdPid:], uint32(os.Getpid()))
	if err := m.Update(uint32(0), v[:], ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: set hold: %w", err)
	}
	return nil
}

// monotonic is CLOCK_MONOTONIC in nanoseconds, bpf_ktime_get_ns's clock.
func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// AddVIP steers frames to addr:port/proto to user space; port 0 means every
// port. ICMP to a VIP is added with ProtoICMP or ProtoICMPv6 and port 0.
// Fullnat SNAT addresses belong in AddSNAT instead: a port-0 destination
// rule would also steer the replies to the kernel's own connections from
// that address.
func (s *Steering) AddVIP(addr netip.Addr, port uint16, proto uint8) error {
	return s.add(s.dsts, "destination", Rule{addr, port, proto})
}

// RemoveVIP removes a destination rule. Removing a missing rule is not an
// error.
func (s *Steering) RemoveVIP(addr netip.Addr, port uint16, proto uint8) error {
	return s.remove(s.dsts, "destination", Rule{addr, port, proto})
}

// AddBackendSource steers frames whose source is addr:port/proto (a
// backend's replies in half-NAT mode); port 0 means every source port.
func (s *Steering) AddBackendSource(addr netip.Addr, port uint16, proto uint8) error {
	return s.add(s.srcs, "backend source", Rule{addr, port, proto})
}

// RemoveBackendSource removes a backend-source rule. Removing a missing rule
// is not an error.
func (s *Steering) RemoveBackendSource(addr netip.Addr, port uint16, proto uint8) error {
	return s.remove(s.srcs, "backend source", Rule{addr, port, proto})
}

// AddLocal declares addr one of the balancer's own addresses. Frames to it
// are steered only by destination rules, never by backend-source rules, so
// the kernel keeps getting replies to its own connections (health checks,
// SSH, BGP) from backends.
func (s *Steering) AddLocal(addr netip.Addr) error {
	k, err := localKey(addr)
	if err != nil {
		return err
	}
	return s.update(s.locals, "local address", k)
}

// RemoveLocal removes a local address. Removing a missing address is not an
// error.
func (s *Steering) RemoveLocal(addr netip.Addr) error {
	k, err := localKey(addr)
	if err != nil {
		return err
	}
	return s.delete(s.locals, "local address", k)
}

// AddSNAT declares addr a fullnat SNAT address whose SNAT ports are
// allocated from the inclusive range ports ({low, high}, 1 <= low <=
// high). TCP and UDP frames to addr are steered when their destination
// port lies in that range and passed to the kernel (counted as
// PassSNATOtherPort) otherwise, even if addr is also a local address, so
// the kernel's own connections from addr keep working as long as their
// local ports are outside the range. Non-first fragments to addr are
// passed (PassSNATFragment). Destination rules are looked up first and
// still win. Adding an existing address updates its range.
func (s *Steering) AddSNAT(addr netip.Addr, ports [2]uint16) error {
	k, err := localKey(addr)
	if err != nil {
		return err
	}
	if err := checkSNATPorts(ports); err != nil {
		return err
	}
	if s.prog == nil {
		return ErrClosed
	}
	s.shadow = nil
	if err := s.snat.Update(&k, snatPorts(ports), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: add SNAT address %s: %w", k, err)
	}
	return nil
}

// RemoveSNAT removes an SNAT address. Removing a missing address is not an
// error.
func (s *Steering) RemoveSNAT(addr netip.Addr) error {
	k, err := localKey(addr)
	if err != nil {
		return err
	}
	return s.delete(s.snat, "SNAT address", k)
}

func (s *Steering) add(m *ebpf.Map, kind string, r Rule) error {
	k, err := r.key()
	if err != nil {
		return err
	}
	return s.update(m, kind+" rule", k)
}

func (s *Steering) remove(m *ebpf.Map, kind string, r Rule) error {
	k, err := r.key()
	if err != nil {
		return err
	}
	return s.delete(m, kind+" rule", k)
}

func (s *Steering) update(m *ebpf.Map, what string, k ruleKey) error {
	s.shadow = nil
	if s.prog == nil {
		return ErrClosed
	}
	if err := m.Update(&k, uint32(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: add %s %s: %w", what, k, err)
	}
	return nil
}

func (s *Steering) delete(m *ebpf.Map, what string, k ruleKey) error {
	s.shadow = nil
	if s.prog == nil {
		return ErrClosed
	}
	if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: remove %s %s: %w", what, k, err)
	}
	return nil
}

func (k ruleKey) String() string {
	if k.Proto == 0 {
		return k.rule().Addr.String()
	}
	return k.rule().String()
}

// RuleSet is the complete steering configuration.
type RuleSet struct {
	// Destinations are VIPs (port 0 = every port) and ICMP rules for
	// VIPs. A port-0 rule for a fullnat SNAT address still works but
	// steers every port of it; use SNAT instead.
	Destinations []Rule
	// BackendSources are backends whose replies are steered (half-NAT).
	BackendSources []Rule
	// Local are the balancer's own addresses; see AddLocal.
	Local []netip.Addr
	// SNAT are the fullnat SNAT addresses; see AddSNAT. An address may
	// also be in Local.
	SNAT []netip.Addr
	// SNATPorts is the inclusive range {low, high} the dataplane
	// allocates SNAT ports from, e.g. {1024, 32767}; TCP and UDP frames
	// to an SNAT address are steered only when their destination port
	// lies in it. Required (1 <= low <= high) when SNAT is not empty,
	// ignored when it is; Rules reports it as zero when SNAT is empty.
	SNATPorts [2]uint16
}

// Replace makes the maps hold exactly rs. New entries are inserted (or,
// for SNAT addresses, given the new port range) before stale ones are
// deleted, so an entry present in both the old and the new set is never
// missing. Everything is validated before any map changes.
func (s *Steering) Replace(rs RuleSet) error {
	if s.prog == nil {
		return ErrClosed
	}
	want := [4]map[ruleKey]bool{{}, {}, {}, {}}
	for i, rules := range [][]Rule{rs.Destinations, rs.BackendSources} {
		for _, r := range rules {
			k, err := r.key()
			if err != nil {
				return err
			}
			want[i][k] = true
		}
	}
	for i, addrs := range [][]netip.Addr{rs.Local, rs.SNAT} {
		for _, a := range addrs {
			k, err := localKey(a)
			if err != nil {
				return err
			}
			want[2+i][k] = true
		}
	}
	if len(rs.SNAT) > 0 {
		if err := checkSNATPorts(rs.SNATPorts); err != nil {
			return err
		}
	}
	shadow := s.shadow
	s.shadow = nil // until this Replace has fully succeeded
	for i, m := range []*ebpf.Map{s.dsts, s.srcs, s.locals, s.snat} {
		var v any = uint32(1)
		var had map[ruleKey]bool
		if shadow != nil && (m != s.snat || s.shadowNAT == rs.SNATPorts) {
			had = shadow[i]
		}
		if m == s.snat {
			v = snatPorts(rs.SNATPorts)
		}
		for k := range want[i] {
			if had[k] {
				continue
			}
			if err := m.Update(&k, v, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("bpf: replace rules: add %s: %w", k, err)
			}
		}
		var keys []ruleKey
		if shadow != nil {
			for k := range shadow[i] {
				keys = append(keys, k)
			}
		} else {
			var err error
			if keys, err = listKeys(m); err != nil {
				return fmt.Errorf("bpf: replace rules: %w", err)
			}
		}
		for _, k := range keys {
			if want[i][k] {
				continue
			}
			if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("bpf: replace rules: remove %s: %w", k, err)
			}
		}
	}
	s.shadow, s.shadowNAT = &want, rs.SNATPorts
	return nil
}

func listKeys(m *ebpf.Map) ([]ruleKey, error) {
	keys, _, err := listEntries[uint32](m)
	return keys, err
}

// listEntries returns the keys of m and their values.
func listEntries[V any](m *ebpf.Map) ([]ruleKey, []V, error) {
	var keys []ruleKey
	var vals []V
	var k ruleKey
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", m, err)
	}
	return keys, vals, nil
}

// Rules returns the current configuration, in map order. SNATPorts is
// zero when there is no SNAT address.
func (s *Steering) Rules() (RuleSet, error) {
	if s.prog == nil {
		return RuleSet{}, ErrClosed
	}
	var rs RuleSet
	for i, m := range []*ebpf.Map{s.dsts, s.srcs, s.locals} {
		keys, err := listKeys(m)
		if err != nil {
			return RuleSet{}, fmt.Errorf("bpf: rules: %w", err)
		}
		for _, k := range keys {
			switch i {
			case 0:
				rs.Destinations = append(rs.Destinations, k.rule())
			case 1:
				rs.BackendSources = append(rs.BackendSources, k.rule())
			case 2:
				rs.Local = append(rs.Local, k.rule().Addr)
			}
		}
	}
	keys, ranges, err := listEntries[snatPorts](s.snat)
	if err != nil {
		return RuleSet{}, fmt.Errorf("bpf: rules: %w", err)
	}
	for i, k := range keys {
		rs.SNAT = append(rs.SNAT, k.rule().Addr)
		// Replace gives every address the same range; after AddSNAT
		// with different ranges, report one range covering them all.
		p := ranges[i]
		if i == 0 || p[0] < rs.SNATPorts[0] {
			rs.SNATPorts[0] = p[0]
		}
		if p[1] > rs.SNATPorts[1] {
			rs.SNATPorts[1] = p[1]
		}
	}
	return rs, nil
}

// Counters are the steering program's counters summed over CPUs. Every
// frame counts exactly one of the Match* or Pass* reasons; every matched
// frame also counts Redirected, Held or NoSocket.
type Counters struct {
	MatchVIP      uint64 // destination rule with the exact port
	MatchAnyPort  uint64 // destination rule with port 0 (VIP all ports, ICMP)
	MatchBackend  uint64 // backend-source rule
	MatchFragment uint64 // non-first fragment matching a port-0 rule
	MatchSNAT     uint64 // TCP/UDP to an SNAT address, port in the SNAT range
	Redirected    uint64 // matched and redirected to the queue's socket
	NoSocket      uint64 // matched, but the queue has no socket and the hold is over: passed
	Held          uint64 // matched, but the queue has no socket: dropped until the hold deadline (see SetHold)

	PassNoMatch       uint64 // TCP/UDP/ICMP matching no rule
	PassLocal         uint64 // to a local address, matching no destination rule
	PassSNATOtherPort uint64 // TCP/UDP to an SNAT address, port outside the SNAT range
	PassSNATFragment  uint64 // non-first TCP/UDP fragment to an SNAT address
	PassNotIP         uint64 // ARP and other non-IP ethertypes
	PassNeighbor      uint64 // ICMPv6 router/neighbour discovery and redirect
	PassUnsupported   uint64 // other IP protocols, IPv6 extension headers
	PassTruncated     uint64 // frame shorter than its headers or IP length
	PassMalformed     uint64 // bad IP version or header length
}

// Matched returns the number of frames that matched a rule.
func (c Counters) Matched() uint64 {
	return c.MatchVIP + c.MatchAnyPort + c.MatchBackend + c.MatchFragment + c.MatchSNAT
}

// Passed returns the number of frames that matched no rule.
func (c Counters) Passed() uint64 {
	return c.PassNoMatch + c.PassLocal + c.PassSNATOtherPort + c.PassSNATFragment + c.PassNotIP + c.PassNeighbor + c.PassUnsupported + c.PassTruncated + c.PassMalformed
}

// Map returns the counters by name, for metrics.
func (c Counters) Map() map[string]uint64 {
	return map[string]uint64{
		"match_vip":            c.MatchVIP,
		"match_any_port":       c.MatchAnyPort,
		"match_backend":        c.MatchBackend,
		"match_fragment":       c.MatchFragment,
		"match_snat":           c.MatchSNAT,
		"redirected":           c.Redirected,
		"no_socket":            c.NoSocket,
		"held":                 c.Held,
		"pass_no_match":        c.PassNoMatch,
		"pass_local":           c.PassLocal,
		"pass_snat_other_port": c.PassSNATOtherPort,
		"pass_snat_fragment":   c.PassSNATFragment,
		"pass_not_ip":          c.PassNotIP,
		"pass_neighbor":        c.PassNeighbor,
		"pass_unsupported":     c.PassUnsupported,
		"pass_truncated":       c.PassTruncated,
		"pass_malformed":       c.PassMalformed,
	}
}

// Counters reads and sums the per-CPU counters.
func (s *Steering) Counters() (Counters, error) {
	if s.prog == nil {
		return Counters{}, ErrClosed
	}
	var c Counters
	fields := [numCounters]*uint64{
		cntMatchVIP:          &c.MatchVIP,
		cntMatchAnyPort:      &c.MatchAnyPort,
		cntMatchBackend:      &c.MatchBackend,
		cntMatchFragment:     &c.MatchFragment,
		cntMatchSNAT:         &c.MatchSNAT,
		cntRedirected:        &c.Redirected,
		cntNoSocket:          &c.NoSocket,
		cntHeld:              &c.Held,
		cntPassNoMatch:       &c.PassNoMatch,
		cntPassLocal:         &c.PassLocal,
		cntPassSNATOtherPort: &c.PassSNATOtherPort,
		cntPassSNATFragment:  &c.PassSNATFragment,
		cntPassNotIP:         &c.PassNotIP,
		cntPassNeighbor:      &c.PassNeighbor,
		cntPassUnsupported:   &c.PassUnsupported,
		cntPassTruncated:     &c.PassTruncated,
		cntPassMalformed:     &c.PassMalformed,
	}
	var perCPU []uint64
	for i, f := range fields {
		if err := s.counters.Lookup(uint32(i), &perCPU); err != nil {
			return Counters{}, fmt.Errorf("bpf: read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			*f += v
		}
	}
	return c, nil
}

// Close releases the program and maps. Attachments hold their own
// reference to the program and stay until closed. Close is idempotent.
func (s *Steering) Close() error {
	var errs []error
	if s.prog != nil {
		errs = append(errs, s.prog.Close())
		s.prog = nil
	}
	for _, m := range []**ebpf.Map{&s.xsks, &s.dsts, &s.srcs, &s.locals, &s.snat, &s.hold, &s.counters} {
		if *m != nil {
			errs = append(errs, (*m).Close())
			*m = nil
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bpf: close steering: %w", err)
	}
	return nil
}
