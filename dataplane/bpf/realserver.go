package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// RealserverProgName is the kernel name of the realserver XDP program;
// RealserverProgName + map suffixes name its maps, so another process can
// find them from the program attached to an interface.
const RealserverProgName = "xlb_rs"

// Map names of the realserver program.
const (
	rsMapVIPs     = "xlb_rs_vips"
	rsMapLocals   = "xlb_rs_locals"
	rsMapDSCP     = "xlb_rs_dscp"
	rsMapCounters = "xlb_rs_counters"
)

// DefaultRealserverEntries is the capacity of the VIP and local-address
// maps when RealserverOptions leaves it zero.
const DefaultRealserverEntries = 1024

// RealserverOptions sizes the realserver maps. The zero value selects the
// defaults.
type RealserverOptions struct {
	// MaxEntries is the capacity of the VIP map and of the local-address
	// map. Default DefaultRealserverEntries.
	MaxEntries int
}

// Realserver is the backend-side XDP program (see realserver_prog.go):
// it decapsulates tunnelled packets whose inner destination is a VIP and
// maps l3dsr DSCP codes back to their VIPs. What it does is decided by
// its maps: SetTunnelVIPs, SetDSCPs and SetLocals.
type Realserver struct {
	prog     *ebpf.Program
	vips     *ebpf.Map
	locals   *ebpf.Map
	dscps    *ebpf.Map
	counters *ebpf.Map
}

// DSCPMapping maps an l3dsr code of the VIP's family to the VIP.
type DSCPMapping struct {
	VIP  netip.Addr
	DSCP uint8 // 1..63
}

func (m DSCPMapping) String() string { return fmt.Sprintf("%s=%d", m.VIP, m.DSCP) }

// dscpValue is a DSCP array slot: family 0 means no VIP.
type dscpValue struct {
	Family uint8
	_      [3]uint8
	Addr   [16]byte
}

// LoadRealserver creates the maps and loads the realserver program.
func LoadRealserver(opts RealserverOptions) (*Realserver, error) {
	if opts.MaxEntries == 0 {
		opts.MaxEntries = DefaultRealserverEntries
	}
	if opts.MaxEntries < 0 {
		return nil, fmt.Errorf("bpf: realserver options %+v: negative size", opts)
	}
	r := &Realserver{}
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
	n := uint32(opts.MaxEntries)
	r.vips = mk(rsMapVIPs, &ebpf.MapSpec{Type: ebpf.Hash, KeySize: keySize, ValueSize: 4, MaxEntries: n})
	r.locals = mk(rsMapLocals, &ebpf.MapSpec{Type: ebpf.Hash, KeySize: keySize, ValueSize: 4, MaxEntries: n})
	r.dscps = mk(rsMapDSCP, &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: rsDSCPValSize, MaxEntries: rsDSCPSlots})
	r.counters = mk(rsMapCounters, &ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: numRSCounters})
	if err != nil {
		r.Close()
		return nil, err
	}
	r.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         RealserverProgName,
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: realserverProgram(r.vips, r.locals, r.dscps, r.counters),
	})
	if err != nil {
		r.Close()
		return nil, wrapNotSupported(fmt.Errorf("bpf: load realserver program: %w", err))
	}
	return r, nil
}

// ErrNotRealserver means a program found by ID is not the realserver
// program.
var ErrNotRealserver = errors.New("bpf: not the xlb realserver program")

// OpenRealserver opens the realserver program with the given ID, loaded by
// another process (for `xlb realserver --stats` and `--check`), and its
// maps. Closing the result releases only this process's references.
func OpenRealserver(id ebpf.ProgramID) (*Realserver, error) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil, fmt.Errorf("bpf: open program %d: %w", id, err)
	}
	r := &Realserver{prog: prog}
	info, err := prog.Info()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("bpf: program %d info: %w", id, err)
	}
	if info.Name != RealserverProgName {
		r.Close()
		return nil, fmt.Errorf("%w: program %d is %q", ErrNotRealserver, id, info.Name)
	}
	ids, _ := info.MapIDs()
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("bpf: open map %d of program %d: %w", mid, id, err)
		}
		mi, err := m.Info()
		if err != nil {
			m.Close()
			r.Close()
			return nil, fmt.Errorf("bpf: map %d info: %w", mid, err)
		}
		var slot **ebpf.Map
		switch mi.Name {
		case rsMapVIPs:
			slot = &r.vips
		case rsMapLocals:
			slot = &r.locals
		case rsMapDSCP:
			slot = &r.dscps
		case rsMapCounters:
			slot = &r.counters
		}
		if slot == nil || *slot != nil {
			m.Close()
			continue
		}
		*slot = m
	}
	if r.vips == nil || r.locals == nil || r.dscps == nil || r.counters == nil {
		r.Close()
		return nil, fmt.Errorf("%w: program %d lacks its maps", ErrNotRealserver, id)
	}
	return r, nil
}

// Program returns the XDP program.
func (r *Realserver) Program() *ebpf.Program { return r.prog }

// Attach attaches the program to an interface with a bpf_link, like
// Steering.Attach (Auto tries Native, then Generic). The interface index is
// resolved in the network namespace of the calling OS thread.
func (r *Realserver) Attach(ifindex int, mode AttachMode) (*Attachment, error) {
	if r.prog == nil {
		return nil, ErrClosed
	}
	return attachXDP(r.prog, ifindex, mode)
}

// addrKeyOf is the VIP / local-address map key of a.
func addrKeyOf(a netip.Addr) (ruleKey, error) {
	return localKey(a)
}

// replaceSet makes the hash map m hold exactly addrs (added first, then
// stale keys deleted, so a kept key is never missing).
func replaceSet(m *ebpf.Map, what string, addrs []netip.Addr) error {
	want := map[ruleKey]bool{}
	for _, a := range addrs {
		k, err := addrKeyOf(a)
		if err != nil {
			return fmt.Errorf("bpf: %s %v: %w", what, a, err)
		}
		want[k] = true
	}
	if len(want) > int(m.MaxEntries()) {
		return fmt.Errorf("bpf: %d %s addresses, the map holds %d", len(want), what, m.MaxEntries())
	}
	for k := range want {
		if err := m.Update(&k, uint32(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("bpf: add %s %s: %w", what, k, err)
		}
	}
	keys, err := listKeys(m)
	if err != nil {
		return fmt.Errorf("bpf: %s: %w", what, err)
	}
	for _, k := range keys {
		if !want[k] {
			if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("bpf: remove %s %s: %w", what, k, err)
			}
		}
	}
	return nil
}

func setOf(m *ebpf.Map) ([]netip.Addr, error) {
	keys, err := listKeys(m)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.rule().Addr)
	}
	return out, nil
}

// SetTunnelVIPs makes addrs the VIPs whose tunnelled packets are
// decapsulated. IPv4-mapped IPv6 addresses count as IPv4.
func (r *Realserver) SetTunnelVIPs(addrs []netip.Addr) error {
	if r.prog == nil {
		return ErrClosed
	}
	return replaceSet(r.vips, "tunnel VIP", addrs)
}

// SetLocals makes addrs this host's addresses: only tunnelled and DSCP
// packets addressed to one of them are rewritten.
func (r *Realserver) SetLocals(addrs []netip.Addr) error {
	if r.prog == nil {
		return ErrClosed
	}
	return replaceSet(r.locals, "local", addrs)
}

// dscpSlot is the DSCP array index of a code for a family.
func dscpSlot(v6 bool, dscp uint8) uint32 {
	if v6 {
		return 64 + uint32(dscp)
	}
	return uint32(dscp)
}

// SetDSCPs makes ms the l3dsr mapping; every other slot is cleared. Codes
// are 1..63 and unique per family.
func (r *Realserver) SetDSCPs(ms []DSCPMapping) error {
	if r.prog == nil {
		return ErrClosed
	}
	var slots [rsDSCPSlots]dscpValue
	for _, m := range ms {
		a := m.VIP.Unmap()
		if !a.IsValid() || m.DSCP == 0 || m.DSCP > 63 {
			return fmt.Errorf("bpf: DSCP mapping %s: want a VIP and a code 1..63", m)
		}
		s := &slots[dscpSlot(a.Is6(), m.DSCP)]
		if s.Family != 0 {
			return fmt.Errorf("bpf: DSCP mapping %s: code %d already maps to another VIP of that family", m, m.DSCP)
		}
		if a.Is4() {
			s.Family = 4
			a4 := a.As4()
			copy(s.Addr[:], a4[:])
		} else {
			s.Family = 6
			s.Addr = a.As16()
		}
	}
	for i := range slots {
		if err := r.dscps.Update(uint32(i), &slots[i], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("bpf: set DSCP slot %d: %w", i, err)
		}
	}
	return nil
}

// RealserverConfig is what the realserver maps hold.
type RealserverConfig struct {
	TunnelVIPs []netip.Addr
	DSCPs      []DSCPMapping
	Locals     []netip.Addr
}

// Config reads the maps back.
func (r *Realserver) Config() (RealserverConfig, error) {
	if r.prog == nil {
		return RealserverConfig{}, ErrClosed
	}
	var c RealserverConfig
	var err error
	if c.TunnelVIPs, err = setOf(r.vips); err != nil {
		return c, fmt.Errorf("bpf: realserver VIPs: %w", err)
	}
	if c.Locals, err = setOf(r.locals); err != nil {
		return c, fmt.Errorf("bpf: realserver locals: %w", err)
	}
	for i := uint32(0); i < rsDSCPSlots; i++ {
		var v dscpValue
		if err := r.dscps.Lookup(i, &v); err != nil {
			return c, fmt.Errorf("bpf: realserver DSCP slot %d: %w", i, err)
		}
		switch v.Family {
		case 4:
			c.DSCPs = append(c.DSCPs, DSCPMapping{netip.AddrFrom4([4]byte(v.Addr[:4])), uint8(i % 64)})
		case 6:
			c.DSCPs = append(c.DSCPs, DSCPMapping{netip.AddrFrom16(v.Addr), uint8(i % 64)})
		}
	}
	return c, nil
}

// RealserverCounters are the realserver program's counters summed over
// CPUs. Every frame counts exactly one of them.
type RealserverCounters struct {
	Decap4in4 uint64 // IPIP decapsulated
	Decap6in6 uint64 // IP6IP6 decapsulated
	Decap4in6 uint64 // IPv4 in IPv6 decapsulated
	Decap6in4 uint64 // IPv6 in IPv4 decapsulated
	Rewrite4  uint64 // l3dsr IPv4: DSCP mapped to the VIP
	Rewrite6  uint64 // l3dsr IPv6

	PassNotIP        uint64 // ARP and other non-IP frames
	PassPlain        uint64 // IP, neither tunnelled nor DSCP-marked
	PassDSCPUnknown  uint64 // DSCP-marked, but the code maps to no VIP of the family
	PassNotLocal     uint64 // tunnel or mapped DSCP, but not to one of this host's addresses
	PassInnerNotVIP  uint64 // tunnelled to this host, but the inner destination is no VIP
	PassFragment     uint64 // a fragmented tunnel packet (the kernel must reassemble it)
	PassUnsupported  uint64 // IPv4 options on a tunnel header, IPv6 extension headers before L4
	PassTruncated    uint64 // shorter than its headers or IP length
	PassMalformed    uint64 // bad IP version or header length
	DropAdjustFailed uint64 // bpf_xdp_adjust_head refused the decap (never expected)
}

// Handled is the number of frames decapsulated or rewritten.
func (c RealserverCounters) Handled() uint64 {
	return c.Decap4in4 + c.Decap6in6 + c.Decap4in6 + c.Decap6in4 + c.Rewrite4 + c.Rewrite6
}

func (c *RealserverCounters) fields() [numRSCounters]*uint64 {
	return [numRSCounters]*uint64{
		rsDecap4in4:       &c.Decap4in4,
		rsDecap6in6:       &c.Decap6in6,
		rsDecap4in6:       &c.Decap4in6,
		rsDecap6in4:       &c.Decap6in4,
		rsRewrite4:        &c.Rewrite4,
		rsRewrite6:        &c.Rewrite6,
		rsPassNotIP:       &c.PassNotIP,
		rsPassPlain:       &c.PassPlain,
		rsPassDSCPUnknown: &c.PassDSCPUnknown,
		rsPassNotLocal:    &c.PassNotLocal,
		rsPassInnerNotVIP: &c.PassInnerNotVIP,
		rsPassFragment:    &c.PassFragment,
		rsPassUnsupported: &c.PassUnsupported,
		rsPassTruncated:   &c.PassTruncated,
		rsPassMalformed:   &c.PassMalformed,
		rsDropAdjust:      &c.DropAdjustFailed,
	}
}

// rsCounterNames are the Map keys, by counter index.
var rsCounterNames = [numRSCounters]string{
	rsDecap4in4:       "decap_4in4",
	rsDecap6in6:       "decap_6in6",
	rsDecap4in6:       "decap_4in6",
	rsDecap6in4:       "decap_6in4",
	rsRewrite4:        "rewrite_v4",
	rsRewrite6:        "rewrite_v6",
	rsPassNotIP:       "pass_not_ip",
	rsPassPlain:       "pass_plain",
	rsPassDSCPUnknown: "pass_dscp_unknown",
	rsPassNotLocal:    "pass_not_local",
	rsPassInnerNotVIP: "pass_inner_not_vip",
	rsPassFragment:    "pass_fragment",
	rsPassUnsupported: "pass_unsupported",
	rsPassTruncated:   "pass_truncated",
	rsPassMalformed:   "pass_malformed",
	rsDropAdjust:      "drop_adjust_failed",
}

// Map returns the counters by name, for logs and metrics.
func (c RealserverCounters) Map() map[string]uint64 {
	m := make(map[string]uint64, numRSCounters)
	for i, f := range c.fields() {
		m[rsCounterNames[i]] = *f
	}
	return m
}

// String lists the non-zero counters in a fixed order, "name=n ...", or
// "no packets".
func (c RealserverCounters) String() string {
	var sb strings.Builder
	for i, f := range c.fields() {
		if *f == 0 {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%s=%d", rsCounterNames[i], *f)
	}
	if sb.Len() == 0 {
		return "no packets"
	}
	return sb.String()
}

// Counters reads and sums the per-CPU counters.
func (r *Realserver) Counters() (RealserverCounters, error) {
	if r.prog == nil {
		return RealserverCounters{}, ErrClosed
	}
	var c RealserverCounters
	var perCPU []uint64
	for i, f := range c.fields() {
		if err := r.counters.Lookup(uint32(i), &perCPU); err != nil {
			return RealserverCounters{}, fmt.Errorf("bpf: read realserver counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			*f += v
		}
	}
	return c, nil
}

// Close releases the program and maps (an attachment keeps the program
// running until it is closed). Close is idempotent.
func (r *Realserver) Close() error {
	var errs []error
	if r.prog != nil {
		errs = append(errs, r.prog.Close())
		r.prog = nil
	}
	for _, m := range []**ebpf.Map{&r.vips, &r.locals, &r.dscps, &r.counters} {
		if *m != nil {
			errs = append(errs, (*m).Close())
			*m = nil
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bpf: close realserver: %w", err)
	}
	return nil
}

// RealserverID returns the kernel ID of the loaded program.
func (r *Realserver) RealserverID() (ebpf.ProgramID, error) {
	if r.prog == nil {
		return 0, ErrClosed
	}
	info, err := r.prog.Info()
	if err != nil {
		return 0, fmt.Errorf("bpf: realserver program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, fmt.Errorf("%w: program IDs", ErrNotSupported)
	}
	return id, nil
}

// DetachRealserver detaches the realserver program with the given ID
// from wherever a bpf_link attached it, for a process cleaning up after
// one that died with a link another reference kept alive (a link dies with
// its last file descriptor, so usually there is nothing left to do). It
// returns whether a link was found.
func DetachRealserver(id ebpf.ProgramID) (bool, error) {
	prog, err := ebpf.NewProgramFromID(id)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bpf: open program %d: %w", id, err)
	}
	info, err := prog.Info()
	prog.Close()
	if err != nil {
		return false, fmt.Errorf("bpf: program %d info: %w", id, err)
	}
	if info.Name != RealserverProgName {
		return false, fmt.Errorf("%w: program %d is %q", ErrNotRealserver, id, info.Name)
	}
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		li, err := it.Link.Info()
		if err != nil || li.Program != id {
			continue
		}
		if err := it.Link.Detach(); err != nil {
			return true, fmt.Errorf("bpf: detach link %d of program %d: %w", it.ID, id, err)
		}
		return true, nil
	}
	if err := it.Err(); err != nil {
		return false, fmt.Errorf("bpf: list links: %w", err)
	}
	return false, nil
}
