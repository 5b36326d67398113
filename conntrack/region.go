package conntrack

import (
	"encoding/binary"
	"hash/fnv"
	"sort"
	"sync"
	"unsafe"
)

// This file lays a table over one block of memory and finds it again: the
// memory is the Go heap for New, or a shared mapping of a file (package
// conntrack/shm) that a restarted, upgraded or crashed process attaches
// to again. Everything in the block is pointer-free (slots, index words,
// shard headers with their lock words), so the same bytes mean the same
// table in any process built from the same layout; the header says which
// layout and geometry that is.

const (
	// headerSize is the space reserved for the header in front of the
	// table (4 pages).
	headerSize = 16 << 10
	// FormatVersion is the version of the table's memory format. Bump it
	// whenever the meaning of stored bytes changes in a way the layout
	// checksum cannot see (a new state, a different hash).
	FormatVersion = 2
	pageSize      = 4096
)

// rebaseSlack is how far (in ticks) the boot clock may be behind the
// newest stored entry before Attach moves the table's clock: the previous
// owner read its own clock and the boot clock a few microseconds apart.
const rebaseSlack = 100

var headerMagic = [8]byte{'x', 'l', 'b', '-', 'c', 't', 0, 1}

// header is the start of a table's memory. It identifies the format and
// geometry of the table behind it and carries what a process attaching to
// it needs: the clock origin, the SNAT addresses the entries' indices
// refer to and the pid of the last owner. Sum covers everything before it;
// a header whose Sum does not match (a crash while it was written, or
// while an attach was recovering the table) is not reused.
type header struct {
	Magic      [8]byte
	Version    uint32
	HeaderSize uint32
	Layout     uint64 // layoutSum: sizes and offsets of every stored type
	Size       uint64 // bytes of the whole table
	Slots4     uint64
	Slots6     uint64
	Shards     uint64
	Seed       uint64 // hashSeed(Config.Seed)
	Instance   uint64 // chosen when the table was made (Persist.Instance)
	BootID     [16]byte
	BootBase   int64 // boot clock (Persist.Boot) at tick 0
	Pid        int64 // last process that attached
	Attaches   uint64
	PortMin    uint16 // SNAT port range of the stored entries
	PortMax    uint16
	NSNAT4     uint16 // SNAT addresses: SNAT[:NSNAT4] IPv4 (first 4 bytes), then IPv6
	NSNAT6     uint16
	SNAT       [MaxSNATAddrs][16]byte
	Sum        uint64
}

// familyLayout holds the byte offsets of one family's arrays.
type familyLayout struct{ shards, slots, buckets, links int }

// layout is where everything of a table lives in its memory.
type layout struct {
	size     int
	shards   int
	ps4, ps6 int // slots per shard
	f4, f6   familyLayout
}

func newLayout(cfg Config) layout {
	cap6 := cfg.Capacity6
	if cap6 == 0 {
		cap6 = cfg.Capacity
	}
	l := layout{shards: cfg.Shards, ps4: perShard(cfg.Capacity, cfg.Shards), ps6: perShard(cap6, cfg.Shards)}
	off := headerSize
	place := func(n int, size uintptr) int {
		off = (off + 2*cacheLine - 1) &^ (2*cacheLine - 1)
		o := off
		off += n * int(size)
		return o
	}
	n4, n6 := l.ps4*l.shards, l.ps6*l.shards
	l.f4 = familyLayout{place(l.shards, unsafe.Sizeof(shard{})), place(n4, unsafe.Sizeof(slot[key4, Entry4]{})), place(n4, 4), place(n4, 4)}
	l.f6 = familyLayout{place(l.shards, unsafe.Sizeof(shard{})), place(n6, unsafe.Sizeof(slot[key6, entry6]{})), place(n6, 4), place(n6, 4)}
	l.size = (off + pageSize - 1) &^ (pageSize - 1)
	return l
}

// layoutSum is a checksum of everything the stored bytes depend on: the
// size and field offsets of every type kept in the table's memory, the
// constants stored in it, and the hash function (its value for fixed
// keys), which decides where an entry lives. A binary whose sum differs
// cannot read a table another binary left.
func layoutSum() uint64 {
	var s4 slot[key4, Entry4]
	var s6 slot[key6, entry6]
	var e4 Entry4
	var e6 entry6
	var k4 key4
	var k6 key6
	var sh shard
	var h header
	v := []uintptr{
		FormatVersion, headerSize, cacheLine, lruShift, uintptr(Tick),
		uintptr(numStates), uintptr(StateSynSent), uintptr(StateEstablished), uintptr(StateClosing),
		uintptr(StateClosed), uintptr(StateUDP), uintptr(StateOther),
		uintptr(FlagReverse), uintptr(FlagNAT), uintptr(FlagFullNAT), uintptr(markUsed), uintptr(markPaired),
		unsafe.Sizeof(s4), unsafe.Offsetof(s4.prev), unsafe.Offsetof(s4.after), unsafe.Offsetof(s4.seen),
		unsafe.Offsetof(s4.e), unsafe.Offsetof(s4.k), unsafe.Offsetof(s4.state), unsafe.Offsetof(s4.mark),
		unsafe.Sizeof(s6), unsafe.Offsetof(s6.e), unsafe.Offsetof(s6.k), unsafe.Offsetof(s6.state), unsafe.Offsetof(s6.mark),
		unsafe.Sizeof(e4), unsafe.Offsetof(e4.Backend), unsafe.Offsetof(e4.Service), unsafe.Offsetof(e4.PeerIP),
		unsafe.Offsetof(e4.VIP), unsafe.Offsetof(e4.PeerPort), unsafe.Offsetof(e4.VPort), unsafe.Offsetof(e4.SNATPort),
		unsafe.Offsetof(e4.SNATAddr), unsafe.Offsetof(e4.State), unsafe.Offsetof(e4.Flags),
		unsafe.Sizeof(e6), unsafe.Offsetof(e6.PeerIP), unsafe.Offsetof(e6.VIP), unsafe.Offsetof(e6.PeerPort),
		unsafe.Offsetof(e6.SNATAddr), unsafe.Offsetof(e6.Flags),
		unsafe.Sizeof(k4), unsafe.Offsetof(k4.DstIP), unsafe.Offsetof(k4.SrcPort), unsafe.Offsetof(k4.DstPort), unsafe.Offsetof(k4.Proto),
		unsafe.Sizeof(k6), unsafe.Offsetof(k6.DstIP), unsafe.Offsetof(k6.SrcPort), unsafe.Offsetof(k6.DstPort), unsafe.Offsetof(k6.Proto),
		unsafe.Sizeof(sh), uintptr(8) /* was sync.Mutex */, unsafe.Offsetof(sh.free), unsafe.Offsetof(sh.head), unsafe.Offsetof(sh.tail),
		unsafe.Offsetof(sh.n), unsafe.Offsetof(sh.next), unsafe.Offsetof(sh.synHead), unsafe.Offsetof(sh.synTail),
		unsafe.Offsetof(sh.synN), unsafe.Offsetof(sh.inserts), unsafe.Offsetof(sh.pairRemovals),
		unsafe.Sizeof(h), unsafe.Offsetof(h.Seed), unsafe.Offsetof(h.BootBase), unsafe.Offsetof(h.SNAT), unsafe.Offsetof(h.Sum),
	}
	k4 = key4{SrcIP: [4]byte{192, 0, 2, 1}, DstIP: [4]byte{198, 51, 100, 1}, SrcPort: 1234, DstPort: 80, Proto: protoTCP}
	k6 = key6{SrcIP: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}, DstIP: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2}, SrcPort: 1234, DstPort: 443, Proto: protoUDP}
	hf := fnv.New64a()
	var b [8]byte
	for _, x := range v {
		binary.LittleEndian.PutUint64(b[:], uint64(x))
		hf.Write(b[:])
	}
	for _, x := range []uint64{hash4(&k4, hashSeed(0)), hash6(&k6, hashSeed(0))} {
		binary.LittleEndian.PutUint64(b[:], x)
		hf.Write(b[:])
	}
	return hf.Sum64()
}

var layoutSumOnce = sync.OnceValue(layoutSum)

func (h *header) sum() uint64 {
	b := unsafe.Slice((*byte)(unsafe.Pointer(h)), unsafe.Offsetof(h.Sum))
	hf := fnv.New64a()
	hf.Write(b)
	return hf.Sum64()
}

// Size returns the bytes of memory a table configured by cfg takes (a
// multiple of 4096): what the caller of Attach maps.
func Size(cfg Config) (int, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	return newLayout(cfg).size, nil
}

// Persist describes the process attaching to a table's memory.
type Persist struct {
	// Now is the caller's clock (as for New) and Boot a clock shared by
	// every process of the machine (CLOCK_BOOTTIME) read at the same
	// moment; BootID names the boot Boot counts from. Entries are stamped
	// on the boot clock, so a table attached again in the same boot finds
	// every entry exactly as old as it is. From another boot (or with a
	// zero BootID) the table's clock is moved so that its newest entry is
	// as old as it was when the table was left: a clock that runs behind
	// the stored entries neither expires them all nor keeps them forever.
	Now, Boot int64
	BootID    [16]byte
	// Pid is recorded in the header as its owner (see HeaderPid).
	Pid int64
	// Instance is stored in a new table's header (e.g. a random number), so
	// that files that belong with one table can name it (Table.Instance).
	Instance uint64
	// Fresh says that the memory is all zeros (a new file, or one just
	// truncated to zero and back): nothing to reuse and nothing to clear.
	Fresh bool
}

// AttachInfo says what Attach found.
type AttachInfo struct {
	// Reused is true when the memory held a table of this layout and
	// geometry, whose entries the table now holds; otherwise Reason says
	// why it was not reused ("" for fresh memory).
	Reused bool
	Reason string
	// Entries is the number of entries kept, Dropped the number removed
	// because they were inconsistent (a NAT half without its partner, a
	// SNAT address or port no longer configured, a slot torn by a crash).
	Entries, Dropped int
	// Rebased is true when the table's clock was moved (another boot, or
	// a boot clock behind the stored entries).
	Rebased bool
	// Pid is the process that attached before (0 if none).
	Pid int64
}

// Check reports why mem cannot be reused for a table configured by cfg
// ("" when it can): no header, another format or layout, another
// geometry (capacity, shards) or hash seed, or a header left half written.
func Check(cfg Config, mem []byte) string {
	if err := cfg.Validate(); err != nil {
		return err.Error()
	}
	return check(cfg, newLayout(cfg), mem)
}

func check(cfg Config, lay layout, mem []byte) string {
	if len(mem) < headerSize {
		return "too small for a header"
	}
	h := (*header)(unsafe.Pointer(unsafe.SliceData(mem)))
	switch {
	case h.Magic == [8]byte{}:
		return "no table"
	case h.Magic != headerMagic:
		return "not a connection table (bad magic)"
	case h.Version != FormatVersion:
		return "format version " + itoa(uint64(h.Version)) + ", this binary uses " + itoa(FormatVersion)
	case h.HeaderSize != headerSize || h.Layout != layoutSumOnce():
		return "entry layout differs from this binary's"
	case h.Sum != h.sum():
		return "header checksum mismatch (left half-written by a crash)"
	case h.Shards != uint64(lay.shards):
		return "shards " + itoa(h.Shards) + ", configuration has " + itoa(uint64(lay.shards))
	case h.Slots4 != uint64(lay.ps4*lay.shards) || h.Slots6 != uint64(lay.ps6*lay.shards):
		return "capacity (slots) " + itoa(h.Slots4) + "/" + itoa(h.Slots6) + ", configuration has " +
			itoa(uint64(lay.ps4*lay.shards)) + "/" + itoa(uint64(lay.ps6*lay.shards))
	case h.Size != uint64(lay.size) || len(mem) < lay.size:
		return "size " + itoa(h.Size) + " bytes, configuration needs " + itoa(uint64(lay.size))
	case h.Seed != hashSeed(cfg.Seed):
		return "hash seed changed"
	}
	return ""
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		if v /= 10; v == 0 {
			return string(b[i:])
		}
	}
}

// HeaderPid returns the pid recorded in the header at the start of b (the
// first bytes of a table's memory, e.g. read from its file), or 0.
func HeaderPid(b []byte) int64 {
	if len(b) < int(unsafe.Sizeof(header{})) {
		return 0
	}
	h := (*header)(unsafe.Pointer(unsafe.SliceData(b)))
	if h.Magic != headerMagic {
		return 0
	}
	return h.Pid
}

// Instance returns the number the table was made with (Persist.Instance).
func (t *Table) Instance() uint64 { return t.hdr.Instance }

// Attach makes a table configured by cfg in mem, which must be at least
// Size(cfg) bytes, stay mapped while the table is used and hold no Go
// pointers (a shared mapping of a file, say). When mem holds a table that
// Check accepts, its entries are kept: Attach rebuilds the index, the LRU
// lists, the free lists and the locks from the slots (a crashed process
// may have died holding a lock or half way through an update), drops
// inconsistent entries, moves the SNAT indices of entries to cfg's SNAT
// addresses, and recounts the SNAT ports and per-backend flows, which are
// derived from the entries. Otherwise mem is cleared (unless p.Fresh) and
// a new table made in it.
//
// Only one process may use the memory at a time; the caller ensures it
// (conntrack/shm holds a lock on the file). Not for the per-packet path:
// it may take tens of milliseconds for a large table.
func Attach(cfg Config, mem []byte, p Persist) (*Table, AttachInfo, error) {
	var info AttachInfo
	if err := cfg.Validate(); err != nil {
		return nil, info, err
	}
	lay := newLayout(cfg)
	if len(mem) < lay.size {
		return nil, info, &ConfigError{"capacity", "needs " + itoa(uint64(lay.size)) + " bytes of memory, got " + itoa(uint64(len(mem)))}
	}
	if !p.Fresh {
		info.Reason = check(cfg, lay, mem)
		if info.Reason != "" {
			clear(mem[:lay.size])
		}
	}
	reuse := !p.Fresh && info.Reason == ""
	t := makeTable(cfg, p.Now)
	t.mem = mem[:lay.size]
	t.hdr = (*header)(unsafe.Pointer(unsafe.SliceData(mem)))
	t.v4.place(t, mem, lay.f4, lay.ps4, lay.shards, cfg.SynBudget, !reuse)
	t.v6.place(t, mem, lay.f6, lay.ps6, lay.shards, cfg.SynBudget, !reuse)
	h := t.hdr
	if !reuse {
		*h = header{Magic: headerMagic, Version: FormatVersion, HeaderSize: headerSize, Layout: layoutSumOnce(),
			Size: uint64(lay.size), Slots4: uint64(len(t.v4.slots)), Slots6: uint64(len(t.v6.slots)),
			Shards: uint64(lay.shards), Seed: t.seed, Instance: p.Instance, BootID: p.BootID, BootBase: p.Boot}
		t.initSNAT(nil)
	} else {
		info.Reused, info.Pid = true, h.Pid
		h.Sum = 0 // recovering: a crash from here on leaves a header that is not reused
		t.recover(h, p, &info)
	}
	h.Pid, h.Attaches = p.Pid, h.Attaches+1
	h.PortMin, h.PortMax = cfg.SNATPortMin, cfg.SNATPortMax
	h.NSNAT4, h.NSNAT6 = uint16(len(cfg.SNATIPs4)), uint16(len(cfg.SNATIPs6))
	h.SNAT = [MaxSNATAddrs][16]byte{}
	for i, a := range cfg.SNATIPs4 {
		copy(h.SNAT[i][:], a[:])
	}
	for i, a := range cfg.SNATIPs6 {
		h.SNAT[len(cfg.SNATIPs4)+i] = a
	}
	h.Sum = h.sum()
	return t, info, nil
}

// recover turns the memory of a table another process left into a
// consistent table for this one (see Attach).
func (t *Table) recover(h *header, p Persist, info *AttachInfo) {
	// SNAT indices: the entries name the header's addresses; this table
	// numbers cfg's.
	remap := make([]int, int(h.NSNAT4)+int(h.NSNAT6))
	for i := range remap {
		remap[i] = -1
		if i < int(h.NSNAT4) {
			for j, a := range t.snat4 {
				if [4]byte(h.SNAT[i][:4]) == a {
					remap[i] = j
				}
			}
		} else {
			for j, a := range t.snat6 {
				if h.SNAT[i] == a {
					remap[i] = len(t.snat4) + j
				}
			}
		}
	}
	fix := snatFix{remap: remap, oldMin: h.PortMin, oldMax: h.PortMax, min: t.portMin, max: t.portMax}
	d4, seen4, ok4 := t.v4.recover(&fix)
	d6, seen6, ok6 := t.v6.recover(&fix)
	info.Dropped = d4 + d6
	// The clock: ticks count on the boot clock from h.BootBase.
	maxSeen, any := seen4, ok4
	if ok6 && (!any || int32(seen6-maxSeen) > 0) {
		maxSeen, any = seen6, true
	}
	elapsed := p.Boot - h.BootBase
	if p.BootID == ([16]byte{}) || h.BootID != p.BootID || elapsed < 0 ||
		any && int32(uint32(uint64(elapsed)/tickNanos)-maxSeen) < -rebaseSlack {
		// Another boot, or a clock behind the entries: the newest entry
		// is as old now as it was when the table was left.
		if !any {
			maxSeen = 0
		}
		elapsed = int64(maxSeen) * int64(tickNanos)
		h.BootID, h.BootBase = p.BootID, p.Boot-elapsed
		info.Rebased = true
	}
	t.base = p.Now - elapsed
	// Pairs: each half must find its partner naming it back; SNAT ports
	// are then counted from the fullnat forward entries.
	used := make([][]uint64, len(t.snat4)+len(t.snat6))
	for i := range used {
		used[i] = make([]uint64, (int(t.portMax-t.portMin)+1+63)/64)
	}
	info.Dropped += t.v4.recoverPairs(used) + t.v6.recoverPairs(used)
	t.initSNAT(used)
	for i := range t.flows {
		t.flows[i].Store(0)
	}
	info.Entries = t.v4.recount() + t.v6.recount()
}

// snatFix moves the SNAT index and port range of stored entries to the
// current configuration.
type snatFix struct {
	remap          []int
	oldMin, oldMax uint16
	min, max       uint16
}

// apply rewrites a fullnat entry's SNAT address index; false if the
// address or port is no longer configured.
func (x *snatFix) apply(idx *uint8, port uint16) bool {
	if int(*idx) >= len(x.remap) || x.remap[*idx] < 0 || port < x.min || port > x.max {
		return false
	}
	*idx = uint8(x.remap[*idx])
	return true
}

// recover rebuilds the family's shard headers, chains, free lists and LRU
// lists from its slots and drops slots that cannot be entries. It returns
// the number dropped and the newest timestamp (ok false if no entry).
func (f *family[K, E, F]) recover(fix *snatFix) (dropped int, newest uint32, ok bool) {
	ps := int32(f.bucketMask) + 1
	var order []int32
	for si := range f.shards {
		s := &f.shards[si]
		base := int32(si) * ps
		next := min(max(s.next, 0)+1, ps) // a crash may have died just after taking slot next
		for next < ps && f.slots[base+next].mark != 0 {
			next++
		}
		s.reset()
		s.next = next
		clear(f.buckets[base : base+ps])
		order = order[:0]
		for i := base; i < base+next; i++ {
			sl := &f.slots[i]
			if sl.mark == 0 {
				continue
			}
			h := f.hashOf(&sl.k)
			hs, b := f.locate(h)
			if sl.mark&^(markUsed|markPaired) != 0 || sl.mark&markUsed == 0 || sl.state == StateNone || sl.state >= numStates ||
				hs != s || !f.fixEntry(sl, fix) || f.find(&sl.k, b, f.tag(h)) >= 0 {
				sl.mark = 0 // torn by a crash, or no longer valid: free
				dropped++
				continue
			}
			f.links[i] = f.buckets[b]
			f.buckets[b] = f.word(f.tag(h), i, base)
			order = append(order, i)
			if !ok || int32(sl.seen-newest) > 0 {
				newest, ok = sl.seen, true
			}
		}
		// Free list: the unused slots below the high-water mark.
		for i := base + next - 1; i >= base; i-- {
			if f.slots[i].mark == 0 {
				if s.free >= 0 {
					f.links[i] = uint32(s.free-base) + 1
				} else {
					f.links[i] = 0
				}
				s.free = i
			}
		}
		// LRU lists: oldest pushed first, so the newest ends at the head.
		sort.Slice(order, func(a, b int) bool {
			return int32(f.slots[order[a]].seen-f.slots[order[b]].seen) < 0
		})
		for _, i := range order {
			f.lruPush(s, i)
			s.n++
		}
	}
	return dropped, newest, ok
}

// fixEntry moves a fullnat entry to the current SNAT addresses and range;
// false if it cannot be kept.
func (f *family[K, E, F]) fixEntry(sl *slot[K, E], fix *snatFix) bool {
	if sl.mark&markPaired == 0 {
		return true
	}
	var idx *uint8
	var port uint16
	var flags uint8
	switch e := any(&sl.e).(type) {
	case *Entry4:
		idx, port, flags = &e.SNATAddr, e.SNATPort, e.Flags
	case *entry6:
		idx, port, flags = &e.SNATAddr, e.SNATPort, e.Flags
	default:
		return false
	}
	if !isPaired(flags) {
		return false
	}
	if flags&FlagFullNAT == 0 {
		return true
	}
	return fix.apply(idx, port)
}

// recoverPairs removes every paired entry whose partner is missing or does
// not name it back, and fullnat pairs whose SNAT port is held twice; it
// marks the ports of the others in used. Returns the entries removed.
func (f *family[K, E, F]) recoverPairs(used [][]uint64) (dropped int) {
	for i := range f.usedRange() {
		sl := &f.slots[i]
		if sl.mark&markPaired == 0 {
			continue
		}
		var info pairInfo[K]
		f.pairOf(&sl.k, &sl.e, &info)
		ok := info.what&pairPartner != 0
		if ok {
			h := f.hashOf(&info.partner)
			_, b := f.locate(h)
			j := f.find(&info.partner, b, f.tag(h))
			ok = j >= 0 && f.slots[j].mark&markPaired != 0
			if ok {
				var back pairInfo[K]
				f.pairOf(&f.slots[j].k, &f.slots[j].e, &back)
				ok = back.what&pairPartner != 0 && back.partner == sl.k
			}
		}
		if ok && info.what&pairSNAT != 0 {
			// The forward half of a fullnat pair holds the port.
			u := used[info.snatIdx]
			off := info.snatPort - f.t.portMin
			if u[off>>6]&(1<<(off&63)) != 0 {
				// Held twice (only a torn table can do that): drop this pair.
				k := sl.k
				f.dropLocked(&k)
				f.dropLocked(&info.partner)
				dropped += 2
				continue
			}
			u[off>>6] |= 1 << (off & 63)
		}
		if !ok {
			k := sl.k
			f.dropLocked(&k)
			dropped++
		}
	}
	return dropped
}

// dropLocked removes k without settling its NAT obligations (recovery
// only: no lock is needed, the table is not in use yet).
func (f *family[K, E, F]) dropLocked(k *K) {
	h := f.hashOf(k)
	s, b := f.locate(h)
	if i := f.find(k, b, f.tag(h)); i >= 0 {
		f.removeLocked(s, i, b)
	}
}

// usedRange yields the slots below each shard's high-water mark (the
// others have never been used; a sparse file stays sparse).
func (f *family[K, E, F]) usedRange() func(func(int) bool) {
	return func(yield func(int) bool) {
		ps := int(f.bucketMask) + 1
		for si := range f.shards {
			for i := si * ps; i < si*ps+int(f.shards[si].next); i++ {
				if !yield(i) {
					return
				}
			}
		}
	}
}

// recount sets the per-backend flow counters from the family's entries
// and returns the number of entries.
func (f *family[K, E, F]) recount() (n int) {
	for si := range f.shards {
		n += int(f.shards[si].n)
	}
	for i := range f.usedRange() {
		if sl := &f.slots[i]; sl.mark&markUsed != 0 {
			if id, ok := f.flowOf(&sl.e); ok {
				f.t.addFlows(id, 1)
			}
		}
	}
	return n
}
