package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/maglev"
)

// Mode is a service's forwarding mode.
type Mode uint8

// Forwarding modes (see DESIGN.md).
const (
	ModeDSR Mode = iota
	ModeTunnel
	ModeL3DSR
	ModeNAT
	ModeFullNAT
	numModes
)

var modeNames = [numModes]string{"dsr", "tunnel", "l3dsr", "nat", "fullnat"}

func (m Mode) String() string {
	if m < numModes {
		return modeNames[m]
	}
	return "unknown"
}

// ParseMode parses a mode name as written in configuration.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if s == n {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q (want one of %s)", s, strings.Join(modeNames[:], ", "))
}

// Scheduler picks a backend for a new flow.
type Scheduler uint8

// Schedulers. maglev and sh are consistent hashes (every worker and every
// instance agrees); rr, wrr, lc and wlc keep per-worker state.
const (
	SchedMaglev Scheduler = iota // Maglev over the 5-tuple hash
	SchedRR                      // round robin
	SchedWRR                     // smooth weighted round robin
	SchedLC                      // least connections (per worker)
	SchedWLC                     // weighted least connections (per worker)
	SchedSH                      // Maglev over the client address only
	numScheds
)

var schedNames = [numScheds]string{"maglev", "rr", "wrr", "lc", "wlc", "sh"}

func (s Scheduler) String() string {
	if s < numScheds {
		return schedNames[s]
	}
	return "unknown"
}

// ParseScheduler parses a scheduler name.
func ParseScheduler(s string) (Scheduler, error) {
	for i, n := range schedNames {
		if s == n {
			return Scheduler(i), nil
		}
	}
	return 0, fmt.Errorf("unknown scheduler %q (want one of %s)", s, strings.Join(schedNames[:], ", "))
}

// BackendState is the administrative/health state of a backend.
type BackendState uint8

// Backend states: active backends get new flows; draining ones keep their
// flows but get no new ones; down ones get nothing (their flows are
// rescheduled).
const (
	StateActive BackendState = iota
	StateDraining
	StateDown
	numStates
)

var stateNames = [numStates]string{"active", "draining", "down"}

func (s BackendState) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "unknown"
}

// ParseBackendState parses a backend state name.
func ParseBackendState(s string) (BackendState, error) {
	for i, n := range stateNames {
		if s == n {
			return BackendState(i), nil
		}
	}
	return 0, fmt.Errorf("unknown backend state %q (want active, draining or down)", s)
}

// BackendSpec describes one backend of a service.
type BackendSpec struct {
	Address netip.Addr
	Port    uint16 // nat/fullnat: destination port; 0 = the packet's port
	Weight  uint32
	State   BackendState
	MAC     [6]byte // static next-hop MAC; zero = resolve
	Iface   int     // index into Spec.Ifaces of the egress interface
}

// ServiceSpec describes one service (a VIP, port and protocol).
type ServiceSpec struct {
	Name      string
	VIP       netip.Addr
	Port      uint16 // 0 = every port
	Proto     uint8  // packet.ProtoTCP or packet.ProtoUDP
	Mode      Mode
	Scheduler Scheduler
	DSCP      uint8 // l3dsr only
	// FragHash makes the service hash on addresses only (no ports, no
	// conntrack), so that IP fragments of a datagram reach the same backend
	// as its first fragment. Only for dsr, tunnel and l3dsr.
	FragHash bool
	// TunnelMSS clamps the MSS option of TCP SYNs a tunnel service sends
	// to its backends (config tunnel_mss): 0 leaves SYNs alone,
	// TunnelMSSAuto clamps to what fits the backend's egress MTU through
	// the tunnel (encap.TunnelMSS), any other value to that value.
	TunnelMSS uint16
	Backends  []BackendSpec
}

// TunnelMSSAuto is ServiceSpec.TunnelMSS "auto".
const TunnelMSSAuto = 0xffff

// Iface is an interface the dataplane receives and transmits on.
type Iface struct {
	MAC [6]byte
	MTU int // IP MTU
	// Checksum is what the pipeline does with the TCP/UDP checksums of
	// frames received on the interface.
	Checksum ChecksumMode
}

// ChecksumMode is interfaces[].checksum.
type ChecksumMode uint8

// Checksum modes. A sender that leaves TCP/UDP checksums to offload
// (CHECKSUM_PARTIAL: veth, containers, some VMs) hands xlb frames whose
// checksum field holds only the pseudo-header sum; forwarded as they are,
// every receiver drops them.
const (
	// ChecksumVerify checks the first packet of every new flow (off the
	// established path) and drops it, counted as bad_checksum, when wrong.
	ChecksumVerify ChecksumMode = iota
	// ChecksumFix recomputes the full checksum of every TCP/UDP frame from
	// the interface before it is rewritten.
	ChecksumFix
	// ChecksumTrust forwards what arrives.
	ChecksumTrust
)

// Spec is the whole configuration the dataplane needs. It is plain data;
// Build checks it and compiles it into a Snapshot.
type Spec struct {
	Services []ServiceSpec
	Ifaces   []Iface // at least one; Ifaces[0] is the default egress
	// Router is the next-hop MAC for traffic towards clients (nat and
	// fullnat replies) and for backends without a MAC of their own.
	Router      [6]byte
	RouterIface int
	// TunnelSource4/6 are the outer source addresses of tunnel mode.
	TunnelSource4, TunnelSource6 netip.Addr
	// SNAT addresses of fullnat, in the order conntrack indexes them.
	SNAT4 []netip.Addr
	SNAT6 []netip.Addr
	// MaglevSize is the Maglev table size (a prime; 0 = maglev.DefaultSize)
	// and HashSeed the seed of the flow hash and of Maglev: instances of a
	// fleet must share both to agree on backends.
	MaglevSize uint32
	HashSeed   uint64
	// Neighbor resolves a backend address to a MAC when the backend has no
	// static MAC; nil or a false result leaves Router as the next hop.
	Neighbor func(netip.Addr) ([6]byte, bool)
}

// Service is a compiled service.
type Service struct {
	Present   bool
	ID        uint32
	Name      string
	VIP       encap.Addr
	Port      uint16
	Proto     uint8
	Mode      Mode
	Scheduler Scheduler
	DSCP      uint8
	FragHash  bool
	// Backends are the IDs of every backend of the service; Schedulable
	// those that may get new flows (active, weight > 0).
	Backends    []uint32
	Schedulable []uint32
	Maglev      *maglev.Table
	spec        ServiceSpec
	maglevIn    []maglev.Backend // what Maglev was built from, to reuse it

}

// Backend is a compiled backend.
type Backend struct {
	Present bool
	ID      uint32
	Service uint32
	Key     string // "service/address:port"
	Addr    encap.Addr
	Port    uint16
	Weight  uint32
	State   BackendState
	Egress  encap.Egress
	Iface   uint8
	// Endpoint is Addr:Port, ready for the nat rewrites; TunnelSrc the
	// outer source of tunnel mode (of the backend's family).
	Endpoint  encap.Endpoint
	TunnelSrc encap.Addr
	// MSS is the clamp for TCP SYNs to this backend (tunnel_mss); 0 = none.
	MSS uint16
}

// Snapshot is an immutable compiled configuration. Workers read it without
// locks; a new configuration is a new Snapshot.
type Snapshot struct {
	Gen      uint64
	Services []Service // indexed by service ID
	Backends []Backend // indexed by backend ID
	Ifaces   []Iface
	// Reply is the egress towards clients (nat/fullnat replies, ICMP).
	Reply      encap.Egress
	ReplyIface uint8
	SNAT       []encap.Addr // indexed like conntrack's SNAT addresses
	Seed       uint64
	vips       vipIndex
	nextSvc    uint32
	nextBe     uint32
	svcIDs     map[string]uint32 // name → ID, for the next Build
	beIDs      map[string]uint32 // key → ID
	spec       Spec
}

// Spec returns the Spec the snapshot was built from.
func (s *Snapshot) Spec() Spec { return s.spec }

// Service returns the service with the given ID, or nil.
func (s *Snapshot) Service(id uint32) *Service {
	if int(id) < len(s.Services) && s.Services[id].Present {
		return &s.Services[id]
	}
	return nil
}

// Backend returns the backend with the given ID, or nil.
func (s *Snapshot) Backend(id uint32) *Backend {
	if int(id) < len(s.Backends) && s.Backends[id].Present {
		return &s.Backends[id]
	}
	return nil
}

// BackendByKey returns the backend of service svc at address:port (the key
// Build gives it), or nil.
func (s *Snapshot) BackendByKey(svc string, addr netip.AddrPort) *Backend {
	if id, ok := s.beIDs[fmt.Sprintf("%s/%s", svc, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()))]; ok {
		return s.Backend(id)
	}
	return nil
}

// ServiceByName returns the service with that name, or nil.
func (s *Snapshot) ServiceByName(name string) *Service {
	if id, ok := s.svcIDs[name]; ok {
		return s.Service(id)
	}
	return nil
}

// ErrInvalid wraps every Build error.
var ErrInvalid = errors.New("invalid configuration")

// SpecError is a Build error. It names the offending Spec field by its Go
// name and position (service, backend and SNAT index); the config package
// turns that into the configuration file's key path, so key names live in
// one place.
type SpecError struct {
	Service int    // index into Spec.Services, or -1
	Backend int    // index into that service's Backends, or -1
	Field   string // Go field name: "VIP", "Address", "SNAT4", "TunnelSource4", ...
	Index   int    // index into a slice field (SNAT4, SNAT6), or -1
	Reason  string
}

func (e *SpecError) Error() string {
	var b strings.Builder
	b.WriteString("dataplane: ")
	if e.Service >= 0 {
		fmt.Fprintf(&b, "Services[%d].", e.Service)
		if e.Backend >= 0 {
			fmt.Fprintf(&b, "Backends[%d].", e.Backend)
		}
	}
	b.WriteString(e.Field)
	if e.Index >= 0 {
		fmt.Fprintf(&b, "[%d]", e.Index)
	}
	return b.String() + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *SpecError) Unwrap() error { return ErrInvalid }

// specErr builds a SpecError about a service (svc ≥ 0), one of its backends
// (be ≥ 0) or a top-level field (both -1).
func specErr(svc, be int, field string, format string, args ...any) error {
	return &SpecError{Service: svc, Backend: be, Field: field, Index: -1, Reason: fmt.Sprintf(format, args...)}
}

// Build checks spec and compiles it into a Snapshot. When prev is not nil,
// services and backends that exist in both keep their IDs, so flows in
// conntrack keep their backend. Build never modifies prev.
func Build(spec Spec, prev *Snapshot) (*Snapshot, error) { return build(spec, prev, true) }

// Validate runs every check of Build without building Maglev tables: the
// cheap way to know whether Build would accept spec.
func Validate(spec Spec) error {
	_, err := build(spec, nil, false)
	return err
}

func build(spec Spec, prev *Snapshot, tables bool) (*Snapshot, error) {
	// The snapshot keeps spec; it must not share memory the caller may
	// change later (a later Build compares against it).
	spec.Services = append([]ServiceSpec(nil), spec.Services...)
	for i := range spec.Services {
		spec.Services[i].Backends = append([]BackendSpec(nil), spec.Services[i].Backends...)
	}
	spec.Ifaces = append([]Iface(nil), spec.Ifaces...)
	if len(spec.Ifaces) == 0 {
		return nil, specErr(-1, -1, "Ifaces", "at least one interface is required")
	}
	if len(spec.Ifaces) > MaxIfaces {
		return nil, specErr(-1, -1, "Ifaces", "%d interfaces; at most %d", len(spec.Ifaces), MaxIfaces)
	}
	if spec.RouterIface < 0 || spec.RouterIface >= len(spec.Ifaces) {
		return nil, specErr(-1, -1, "RouterIface", "index %d out of range", spec.RouterIface)
	}
	s := &Snapshot{
		Ifaces: append([]Iface(nil), spec.Ifaces...),
		Seed:   spec.HashSeed,
		svcIDs: map[string]uint32{},
		beIDs:  map[string]uint32{},
		spec:   spec,
	}
	s.Reply = encap.Egress{Dst: spec.Router, Src: spec.Ifaces[spec.RouterIface].MAC, MTU: spec.Ifaces[spec.RouterIface].MTU}
	s.ReplyIface = uint8(spec.RouterIface)
	if prev != nil {
		s.Gen = prev.Gen + 1
		s.nextSvc, s.nextBe = prev.nextSvc, prev.nextBe
	}
	for i, a := range spec.SNAT4 {
		if !a.Unmap().Is4() {
			return nil, &SpecError{Service: -1, Backend: -1, Field: "SNAT4", Index: i, Reason: fmt.Sprintf("%s is not IPv4", a)}
		}
		s.SNAT = append(s.SNAT, encap.AddrFrom(a))
	}
	for i, a := range spec.SNAT6 {
		if !a.Is6() || a.Is4In6() {
			return nil, &SpecError{Service: -1, Backend: -1, Field: "SNAT6", Index: i, Reason: fmt.Sprintf("%s is not IPv6", a)}
		}
		s.SNAT = append(s.SNAT, encap.AddrFrom(a))
	}
	seen := map[svcKey]string{}
	globalsSame := prev.sameGlobals(&spec)
	type dscpKey struct {
		v4   bool
		dscp uint8
	}
	type dscpUse struct {
		vip  netip.Addr
		name string
	}
	dscps := map[dscpKey]dscpUse{}
	var entries []vipEntry
	var kb []byte // backend key scratch
	if prev != nil {
		s.Services = make([]Service, 0, len(prev.Services))
		s.Backends = make([]Backend, 0, len(prev.Backends))
	}
	for i := range spec.Services {
		ss := &spec.Services[i]
		if err := checkService(&spec, ss, i); err != nil {
			return nil, err
		}
		if _, dup := s.svcIDs[ss.Name]; dup {
			return nil, specErr(i, -1, "Name", "duplicate service name %q", ss.Name)
		}
		k := svcKey{ss.VIP.Unmap(), ss.Port, ss.Proto}
		if other, dup := seen[k]; dup {
			return nil, specErr(i, -1, "VIP", "same vip, port and protocol as service %q", other)
		}
		seen[k] = ss.Name
		if ss.Mode == ModeL3DSR {
			// The backend maps the DSCP code back to the VIP: one code, one VIP.
			dk := dscpKey{ss.VIP.Unmap().Is4(), ss.DSCP}
			if o, dup := dscps[dk]; dup && o.vip != ss.VIP.Unmap() {
				return nil, specErr(i, -1, "DSCP", "code %d is already used by l3dsr service %q for vip %s", ss.DSCP, o.name, o.vip)
			}
			dscps[dk] = dscpUse{ss.VIP.Unmap(), ss.Name}
		}
		id := s.assignID(prev, true, ss.Name)
		s.svcIDs[ss.Name] = id
		if old := prev.unchanged(id, ss, globalsSame); old != nil {
			// Nothing of this service or what it depends on changed:
			// take its compiled form as it is.
			for _, bid := range old.Backends {
				be := prev.Backends[bid]
				s.beIDs[be.Key] = bid
				s.putBackend(be)
			}
			s.putService(*old)
			s.vipEntries(&entries, old, ss)
			if err := s.fragEntry(&entries, seen, old, ss, i); err != nil {
				return nil, err
			}
			continue
		}
		svc := Service{Present: true, ID: id, Name: ss.Name, VIP: encap.AddrFrom(ss.VIP), Port: ss.Port, Proto: ss.Proto,
			Mode: ss.Mode, Scheduler: ss.Scheduler, DSCP: ss.DSCP, FragHash: ss.FragHash, spec: *ss}
		var mb []maglev.Backend
		for j := range ss.Backends {
			bs := &ss.Backends[j]
			kb = append(append(append(kb[:0], ss.Name...), '/'), netip.AddrPortFrom(bs.Address.Unmap(), bs.Port).AppendTo(nil)...)
			key := string(kb)
			if _, dup := s.beIDs[key]; dup {
				return nil, specErr(i, j, "Address", "duplicate backend %s", key)
			}
			if bs.Iface < 0 || bs.Iface >= len(spec.Ifaces) {
				return nil, specErr(i, j, "Iface", "index %d out of range", bs.Iface)
			}
			bid := s.assignID(prev, false, key)
			s.beIDs[key] = bid
			be := Backend{Present: true, ID: bid, Service: id, Key: key, Addr: encap.AddrFrom(bs.Address), Port: bs.Port,
				Weight: bs.Weight, State: bs.State, Iface: uint8(bs.Iface)}
			be.Endpoint = encap.Endpoint{Addr: be.Addr, Port: bs.Port}
			if bs.Address.Unmap().Is4() && spec.TunnelSource4.IsValid() {
				be.TunnelSrc = encap.AddrFrom(spec.TunnelSource4)
			} else if !bs.Address.Unmap().Is4() && spec.TunnelSource6.IsValid() {
				be.TunnelSrc = encap.AddrFrom(spec.TunnelSource6)
			}
			be.Egress = encap.Egress{Dst: spec.Router, Src: spec.Ifaces[bs.Iface].MAC, MTU: spec.Ifaces[bs.Iface].MTU}
			if bs.MAC != ([6]byte{}) {
				be.Egress.Dst = bs.MAC
			} else if spec.Neighbor != nil {
				if m, ok := spec.Neighbor(bs.Address); ok {
					be.Egress.Dst = m
				}
			}
			be.MSS = backendMSS(ss, &be)
			s.putBackend(be)
			svc.Backends = append(svc.Backends, bid)
			if bs.State == StateActive && bs.Weight > 0 {
				svc.Schedulable = append(svc.Schedulable, bid)
				mb = append(mb, maglev.Backend{ID: bid, Key: key[len(ss.Name)+1:], Weight: bs.Weight})
			}
		}
		// A service whose schedulable backends did not change keeps its
		// table (same IDs, keys and weights; size and seed are per
		// snapshot): a change to one service does not rebuild them all.
		var t *maglev.Table
		var err error
		if old := prev.reusable(id, mb, spec); old != nil {
			t = old
		} else if tables {
			t, err = maglev.Build(mb, maglev.Config{Size: spec.MaglevSize, Seed: spec.HashSeed})
		} else {
			err = maglev.Check(mb, maglev.Config{Size: spec.MaglevSize, Seed: spec.HashSeed})
		}
		svc.maglevIn = mb
		if err != nil {
			return nil, specErr(i, -1, "Backends", "maglev: %v", err)
		}
		svc.Maglev = t
		s.putService(svc)
		s.vipEntries(&entries, &svc, ss)
		if err := s.fragEntry(&entries, seen, &svc, ss, i); err != nil {
			return nil, err
		}
	}
	s.vips = newVIPIndex(entries, spec.HashSeed)
	return s, nil
}

func checkService(spec *Spec, ss *ServiceSpec, i int) error {
	if ss.Name == "" {
		return specErr(i, -1, "Name", "must not be empty")
	}
	if !ss.VIP.IsValid() {
		return specErr(i, -1, "VIP", "missing or invalid address")
	}
	if !ss.VIP.Unmap().Is4() && ss.VIP.Is4In6() {
		return specErr(i, -1, "VIP", "IPv4-mapped IPv6 address %s: write it as IPv4", ss.VIP)
	}
	if ss.Proto != 6 && ss.Proto != 17 {
		return specErr(i, -1, "Proto", "must be tcp or udp")
	}
	if ss.Mode >= numModes {
		return specErr(i, -1, "Mode", "unknown mode %d", ss.Mode)
	}
	if ss.Scheduler >= numScheds {
		return specErr(i, -1, "Scheduler", "unknown scheduler %d", ss.Scheduler)
	}
	if ss.DSCP > 63 {
		return specErr(i, -1, "DSCP", "%d is not a 6-bit DSCP", ss.DSCP)
	}
	if ss.Mode == ModeL3DSR && ss.DSCP == 0 {
		return specErr(i, -1, "DSCP", "l3dsr needs a non-zero DSCP code")
	}
	if ss.TunnelMSS != 0 && (ss.Mode != ModeTunnel || ss.Proto != 6) {
		return specErr(i, -1, "TunnelMSS", "MSS clamping is for tcp services in tunnel mode, not %s %s", protoName(ss.Proto), ss.Mode)
	}
	if ss.FragHash && (ss.Mode == ModeNAT || ss.Mode == ModeFullNAT) {
		return specErr(i, -1, "FragHash", "fragments cannot be translated in %s mode", ss.Mode)
	}
	if ss.FragHash && ss.Scheduler != SchedMaglev && ss.Scheduler != SchedSH {
		// Without conntrack only a hash keeps a flow's packets together.
		return specErr(i, -1, "FragHash", "needs the maglev or sh scheduler, not %s", ss.Scheduler)
	}
	for k, a := range spec.SNAT4 {
		if a.Unmap() == ss.VIP.Unmap() {
			return &SpecError{Service: -1, Backend: -1, Field: "SNAT4", Index: k, Reason: fmt.Sprintf("%s is also the vip of service %q", a, ss.Name)}
		}
	}
	for k, a := range spec.SNAT6 {
		if a == ss.VIP {
			return &SpecError{Service: -1, Backend: -1, Field: "SNAT6", Index: k, Reason: fmt.Sprintf("%s is also the vip of service %q", a, ss.Name)}
		}
	}
	v4 := ss.VIP.Unmap().Is4()
	if ss.Mode == ModeFullNAT {
		if v4 && len(spec.SNAT4) == 0 || !v4 && len(spec.SNAT6) == 0 {
			return specErr(i, -1, "Mode", "fullnat needs an SNAT address of the VIP's family (lb.snat.addresses)")
		}
	}
	for j := range ss.Backends {
		bs := &ss.Backends[j]
		if !bs.Address.IsValid() {
			return specErr(i, j, "Address", "missing or invalid address")
		}
		bv4 := bs.Address.Unmap().Is4()
		switch ss.Mode {
		case ModeL3DSR, ModeNAT, ModeFullNAT:
			if bv4 != v4 {
				return specErr(i, j, "Address", "%s mode needs a backend of the VIP's address family", ss.Mode)
			}
		case ModeTunnel:
			if bv4 && !spec.TunnelSource4.IsValid() || !bv4 && !spec.TunnelSource6.IsValid() {
				return specErr(-1, -1, tunnelField(bv4), "tunnel backend %s (service %q) needs a tunnel source of its family", bs.Address, ss.Name)
			}
		}
		if bs.Port != 0 && bs.Port != ss.Port && ss.Mode != ModeNAT && ss.Mode != ModeFullNAT {
			return specErr(i, j, "Port", "port translation (%d→%d) needs nat or fullnat mode", ss.Port, bs.Port)
		}
		if ss.Port == 0 && bs.Port != 0 {
			return specErr(i, j, "Port", "a service on every port (port 0) cannot translate ports")
		}
		if bs.State >= numStates {
			return specErr(i, j, "State", "unknown state %d", bs.State)
		}
	}
	return nil
}

// assignID reuses prev's ID for name or hands out a fresh one.
func (s *Snapshot) assignID(prev *Snapshot, svc bool, name string) uint32 {
	if prev != nil {
		m := prev.beIDs
		if svc {
			m = prev.svcIDs
		}
		if id, ok := m[name]; ok {
			return id
		}
	}
	if svc {
		s.nextSvc++
		return s.nextSvc - 1
	}
	s.nextBe++
	return s.nextBe - 1
}

func (s *Snapshot) putService(svc Service) {
	for uint32(len(s.Services)) <= svc.ID {
		s.Services = append(s.Services, Service{})
	}
	s.Services[svc.ID] = svc
}

func (s *Snapshot) putBackend(b Backend) {
	for uint32(len(s.Backends)) <= b.ID {
		s.Backends = append(s.Backends, Backend{})
	}
	s.Backends[b.ID] = b
}

func tunnelField(v4 bool) string {
	if v4 {
		return "TunnelSource4"
	}
	return "TunnelSource6"
}

// reusable returns the Maglev table of service id in s when it was built
// from exactly mb with spec's size and seed.
func (s *Snapshot) reusable(id uint32, mb []maglev.Backend, spec Spec) *maglev.Table {
	if s == nil || s.spec.MaglevSize != spec.MaglevSize || s.spec.HashSeed != spec.HashSeed {
		return nil
	}
	old := s.Service(id)
	if old == nil || old.Maglev == nil || len(old.maglevIn) != len(mb) {
		return nil
	}
	for i := range mb {
		if old.maglevIn[i] != mb[i] {
			return nil
		}
	}
	return old.Maglev
}

// svcKey identifies a service by what the packet carries.
type svcKey struct {
	vip   netip.Addr
	port  uint16
	proto uint8
}

func (s *Snapshot) vipEntries(entries *[]vipEntry, svc *Service, ss *ServiceSpec) {
	*entries = append(*entries, vipEntry{addr: svc.VIP, port: ss.Port, proto: ss.Proto, svc: svc.ID})
}

// fragEntry adds the port-less entry of a frag_hash service.
func (s *Snapshot) fragEntry(entries *[]vipEntry, seen map[svcKey]string, svc *Service, ss *ServiceSpec, i int) error {
	if !ss.FragHash {
		return nil
	}
	fk := svcKey{ss.VIP.Unmap(), 0, ss.Proto + 128}
	if other, dup := seen[fk]; dup {
		return specErr(i, -1, "FragHash", "service %q already hashes fragments for this vip and protocol", other)
	}
	seen[fk] = ss.Name
	*entries = append(*entries, vipEntry{addr: svc.VIP, proto: ss.Proto, frag: true, svc: svc.ID})
	return nil
}

// sameGlobals reports whether spec's snapshot-wide inputs to a compiled
// service (interfaces, next hop towards clients, tunnel sources, Maglev
// size and seed) are those s was built from.
func (s *Snapshot) sameGlobals(spec *Spec) bool {
	if s == nil || s.spec.Neighbor != nil || spec.Neighbor != nil {
		return false
	}
	o := &s.spec
	if o.Router != spec.Router || o.RouterIface != spec.RouterIface || o.TunnelSource4 != spec.TunnelSource4 ||
		o.TunnelSource6 != spec.TunnelSource6 || o.MaglevSize != spec.MaglevSize || o.HashSeed != spec.HashSeed ||
		len(o.Ifaces) != len(spec.Ifaces) {
		return false
	}
	for i := range o.Ifaces {
		if o.Ifaces[i] != spec.Ifaces[i] {
			return false
		}
	}
	return true
}

// unchanged returns s's compiled service id when it was compiled from a
// spec equal to ss under the same globals.
func (s *Snapshot) unchanged(id uint32, ss *ServiceSpec, globalsSame bool) *Service {
	if !globalsSame {
		return nil
	}
	old := s.Service(id)
	if old == nil || old.Maglev == nil {
		return nil
	}
	o := &old.spec
	if o.Name != ss.Name || o.VIP != ss.VIP || o.Port != ss.Port || o.Proto != ss.Proto || o.Mode != ss.Mode ||
		o.Scheduler != ss.Scheduler || o.DSCP != ss.DSCP || o.FragHash != ss.FragHash || o.TunnelMSS != ss.TunnelMSS ||
		len(o.Backends) != len(ss.Backends) {
		return nil
	}
	for i := range o.Backends {
		if o.Backends[i] != ss.Backends[i] {
			return nil
		}
	}
	return old
}
