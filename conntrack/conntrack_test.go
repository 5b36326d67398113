package conntrack

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/xlb/xlb/internal/testutil"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"capacity zero", func(c *Config) { c.Capacity = 0 }, "capacity"},
		{"capacity huge", func(c *Config) { c.Capacity = MaxCapacity + 1 }, "capacity"},
		{"capacity6 negative", func(c *Config) { c.Capacity6 = -1 }, "capacity6"},
		{"shards not pow2", func(c *Config) { c.Shards = 48 }, "shards"},
		{"shards zero", func(c *Config) { c.Shards = 0 }, "shards"},
		{"tcp_syn zero", func(c *Config) { c.TCPSyn = 0 }, "tcp_syn"},
		{"tcp_established negative", func(c *Config) { c.TCPEstablished = -time.Second }, "tcp_established"},
		{"tcp_closing zero", func(c *Config) { c.TCPClosing = 0 }, "tcp_closing"},
		{"udp zero", func(c *Config) { c.UDP = 0 }, "udp"},
		{"other too long", func(c *Config) { c.Other = MaxTimeout + 1 }, "other"},
		{"evict_min_idle negative", func(c *Config) { c.EvictMinIdle = -1 }, "evict_min_idle"},
		{"evict_min_idle zero ok", func(c *Config) { c.EvictMinIdle = 0 }, ""},
		{"snat ports reversed", func(c *Config) {
			c.SNATIPs4 = [][4]byte{snat4a}
			c.SNATPortMin, c.SNATPortMax = 2000, 1000
		}, "snat.ports"},
		{"snat port zero", func(c *Config) {
			c.SNATIPs4 = [][4]byte{snat4a}
			c.SNATPortMin = 0
		}, "snat.ports"},
		{"snat ports ignored without addresses", func(c *Config) { c.SNATPortMin = 0 }, ""},
		{"snat duplicate", func(c *Config) { c.SNATIPs4 = [][4]byte{snat4a, snat4a} }, "snat.addresses"},
		{"snat too many", func(c *Config) { c.SNATIPs6 = make([][16]byte, 257) }, "snat.addresses"},
		{"max_backends negative", func(c *Config) { c.MaxBackends = -1 }, "max_backends"},
		{"max_backends huge", func(c *Config) { c.MaxBackends = MaxBackendIDs + 1 }, "max_backends"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("Validate = %v, want a ConfigError for %q", err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), "conntrack: "+tt.field+" ") {
				t.Errorf("message %q does not start with the field", err)
			}
			if _, err := New(c, 0); err == nil {
				t.Error("New accepted the invalid config")
			}
		})
	}
	if got := (&ConfigError{"tcp_syn", "must be > 0"}).Error(); got != "conntrack: tcp_syn must be > 0" {
		t.Errorf("Error() = %q", got)
	}
}

func TestCapacityRounding(t *testing.T) {
	if got := perShard(1_000_000, 64); got != 1<<14 {
		t.Errorf("perShard(1e6, 64) = %d, want 16384", got)
	}
	for _, tt := range []struct{ capacity, cap6, shards, want4, want6 int }{
		{64, 0, 4, 64, 64},
		{65, 0, 4, 128, 128},
		{10, 3, 16, 16, 16},
		{100, 1000, 4, 128, 1024},
	} {
		c := smallConfig()
		c.Capacity, c.Capacity6, c.Shards = tt.capacity, tt.cap6, tt.shards
		tbl := newTable(t, c)
		st := tbl.Stats()
		if st.Capacity4 != tt.want4 || st.Capacity6 != tt.want6 {
			t.Errorf("capacity %d/%d over %d shards: got %d/%d, want %d/%d",
				tt.capacity, tt.cap6, tt.shards, st.Capacity4, st.Capacity6, tt.want4, tt.want6)
		}
	}
}

func TestInsertLookupDelete4(t *testing.T) {
	tbl := newTable(t, smallConfig())
	k := testKey4(1, protoTCP)
	e := Entry4{Backend: 42, Service: 3, VPort: 80, State: StateEstablished}
	if _, ok := tbl.lookup4(&k, TCPFlagACK, at(0)); ok {
		t.Fatal("hit on an empty table")
	}
	if err := tbl.insert4(&k, e, at(0)); err != nil {
		t.Fatal(err)
	}
	got, ok := tbl.lookup4(&k, TCPFlagACK, at(time.Second))
	if !ok || got != e {
		t.Fatalf("Lookup4 = %+v, %v; want %+v", got, ok, e)
	}
	rk := key4{SrcIP: k.DstIP, DstIP: k.SrcIP, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto}
	if _, ok := tbl.lookup4(&rk, TCPFlagACK, at(time.Second)); ok {
		t.Fatal("reverse tuple hit: keys must be directional")
	}
	for _, other := range []key4{
		{SrcIP: k.SrcIP, DstIP: k.DstIP, SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: protoUDP},
		{SrcIP: k.SrcIP, DstIP: k.DstIP, SrcPort: k.SrcPort + 1, DstPort: k.DstPort, Proto: k.Proto},
	} {
		if _, ok := tbl.lookup4(&other, 0, at(time.Second)); ok {
			t.Fatalf("%+v hit", other)
		}
	}
	// Overwrite.
	e2 := e
	e2.Backend = 43
	if err := tbl.insert4(&k, e2, at(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := tbl.lookup4(&k, 0, at(2*time.Second)); got.Backend != 43 {
		t.Fatalf("after overwrite Backend = %d", got.Backend)
	}
	if tbl.Len() != 1 {
		t.Fatalf("Len = %d, want 1", tbl.Len())
	}
	if !tbl.delete4(&k) {
		t.Fatal("Delete4 = false")
	}
	if tbl.delete4(&k) {
		t.Fatal("second Delete4 = true")
	}
	if _, ok := tbl.lookup4(&k, 0, at(3*time.Second)); ok {
		t.Fatal("hit after delete")
	}
	st := tbl.Stats()
	if st.Inserts != 1 || st.Updates != 1 || st.Deletes != 1 || st.Entries4 != 0 {
		t.Fatalf("stats %+v", st)
	}
	tbl.prefetch4(nil)
	tbl.range4(nil)
	tbl.range6(nil)
	if tbl.insert4(nil, e, 0) != ErrNilKey || tbl.delete4(nil) {
		t.Fatal("nil key accepted")
	}
	if _, ok := tbl.lookup4(nil, 0, 0); ok {
		t.Fatal("nil key hit")
	}
	checkTable(t, tbl)
}

func TestInsertLookupDelete6(t *testing.T) {
	c := smallConfig()
	c.Capacity = 256 // no shard fills up
	tbl := newTable(t, c)
	var keys []key6
	for i := range 40 {
		k := testKey6(i, protoTCP)
		keys = append(keys, k)
		if err := tbl.insert6(&k, entry6{Backend: uint32(i), State: StateEstablished}, at(0)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	for i, k := range keys {
		e, ok := tbl.lookup6(&k, TCPFlagACK, at(time.Second))
		if !ok || e.Backend != uint32(i) || e.State != StateEstablished {
			t.Fatalf("key %d: %+v %v", i, e, ok)
		}
		rk := key6{SrcIP: k.DstIP, DstIP: k.SrcIP, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto}
		if _, ok := tbl.lookup6(&rk, 0, at(time.Second)); ok {
			t.Fatal("reverse tuple hit")
		}
	}
	for i, k := range keys {
		if i%2 == 0 && !tbl.delete6(&k) {
			t.Fatalf("delete %d", i)
		}
	}
	for i, k := range keys {
		if _, ok := tbl.lookup6(&k, 0, at(2*time.Second)); ok != (i%2 == 1) {
			t.Fatalf("key %d after deletes: hit=%v", i, ok)
		}
	}
	if st := tbl.Stats(); st.Entries6 != 20 || st.Entries4 != 0 {
		t.Fatalf("entries %d/%d", st.Entries4, st.Entries6)
	}
	if tbl.insert6(nil, entry6{}, 0) != ErrNilKey || tbl.delete6(nil) {
		t.Fatal("nil key accepted")
	}
	checkTable(t, tbl)
}

func TestNextState(t *testing.T) {
	const (
		S, A, F, R = TCPFlagSYN, TCPFlagACK, TCPFlagFIN, TCPFlagRST
	)
	tests := []struct {
		from, flags, want uint8
	}{
		{StateNone, S, StateSynSent},
		{StateNone, A, StateEstablished},
		{StateSynSent, S, StateSynSent},
		{StateSynSent, S | A, StateSynSent},
		{StateSynSent, A, StateEstablished},
		{StateSynSent, A | 0x08, StateEstablished}, // PSH|ACK
		{StateSynSent, 0, StateSynSent},
		{StateEstablished, A, StateEstablished},
		{StateEstablished, S, StateEstablished}, // stray SYN does not reset a live flow
		{StateEstablished, F | A, StateClosing},
		{StateEstablished, R, StateClosed},
		{StateEstablished, R | A, StateClosed},
		{StateClosing, A, StateClosing},
		{StateClosing, F, StateClosing},
		{StateClosing, R, StateClosed},
		{StateClosing, S, StateSynSent},
		{StateClosed, F, StateClosed},
		{StateClosed, A, StateClosed},
		{StateClosed, S, StateSynSent},
		{StateClosed, S | A, StateSynSent}, // the backend answers a reused tuple
		{StateUDP, R, StateUDP},
		{StateOther, S, StateOther},
	}
	for _, tt := range tests {
		if got := nextState(tt.from, tt.flags); got != tt.want {
			t.Errorf("nextState(%d, %#x) = %d, want %d", tt.from, tt.flags, got, tt.want)
		}
	}
	for _, tt := range []struct{ proto, flags, want uint8 }{
		{protoTCP, TCPFlagSYN, StateSynSent},
		{protoTCP, TCPFlagACK, StateEstablished},
		{protoTCP, TCPFlagFIN | TCPFlagACK, StateClosing},
		{protoTCP, TCPFlagRST, StateClosed},
		{protoTCP, 0, StateSynSent},
		{protoUDP, TCPFlagSYN, StateUDP},
		{1, 0, StateOther},
	} {
		if got := InitialState(tt.proto, tt.flags); got != tt.want {
			t.Errorf("InitialState(%d, %#x) = %d, want %d", tt.proto, tt.flags, got, tt.want)
		}
	}
}

// TestTimeouts drives single flows through packets at given times and
// checks hit/miss and state after each.
func TestTimeouts(t *testing.T) {
	const (
		S, A, F, R = TCPFlagSYN, TCPFlagACK, TCPFlagFIN, TCPFlagRST
	)
	type pkt struct {
		at    time.Duration
		flags uint8
		hit   bool
		state uint8
	}
	c := smallConfig() // syn 5s, established 100s, closing 2s, udp 10s, other 20s
	tests := []struct {
		name  string
		proto uint8
		state uint8 // at insert, at time 0
		pkts  []pkt
	}{
		{"syn lives TCPSyn", protoTCP, StateSynSent, []pkt{
			{4900 * time.Millisecond, S, true, StateSynSent},
			{9800 * time.Millisecond, 0, true, StateSynSent},
			{14700 * time.Millisecond, S, true, StateSynSent},
		}},
		{"syn expires after TCPSyn", protoTCP, StateSynSent, []pkt{
			{5100 * time.Millisecond, A, false, 0},
			{5200 * time.Millisecond, A, false, 0}, // and stays gone
		}},
		{"StateNone tcp is syn", protoTCP, StateNone, []pkt{
			{5100 * time.Millisecond, A, false, 0},
		}},
		{"established lasts TCPEstablished", protoTCP, StateSynSent, []pkt{
			{time.Second, A, true, StateEstablished},
			{time.Second + 99*time.Second, A, true, StateEstablished},
			{time.Second + 198*time.Second, 0, true, StateEstablished},
			{time.Second + 298*time.Second + 100*time.Millisecond, A, false, 0},
		}},
		{"fin switches to TCPClosing", protoTCP, StateEstablished, []pkt{
			{10 * time.Second, F | A, true, StateClosing},
			{11900 * time.Millisecond, A, true, StateClosing},
			{14 * time.Second, A, false, 0},
		}},
		{"rst closes with TCPClosing", protoTCP, StateEstablished, []pkt{
			{10 * time.Second, R, true, StateClosed},
			{11 * time.Second, A, true, StateClosed},
			{13100 * time.Millisecond, A, false, 0},
		}},
		{"syn reopens closed", protoTCP, StateClosed, []pkt{
			{time.Second, S, true, StateSynSent},
			{5 * time.Second, A, true, StateEstablished},
			{50 * time.Second, A, true, StateEstablished},
		}},
		{"udp", protoUDP, StateNone, []pkt{
			{9900 * time.Millisecond, 0, true, StateUDP},
			{19800 * time.Millisecond, TCPFlagRST, true, StateUDP},
			{29900 * time.Millisecond, 0, false, 0},
		}},
		{"other protocol", 47, StateNone, []pkt{
			{19900 * time.Millisecond, 0, true, StateOther},
			{40 * time.Second, 0, false, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := newTable(t, c)
			k := testKey4(7, tt.proto)
			k6 := testKey6(7, tt.proto)
			if err := tbl.insert4(&k, Entry4{Backend: 1, State: tt.state}, at(0)); err != nil {
				t.Fatal(err)
			}
			if err := tbl.insert6(&k6, entry6{Backend: 1, State: tt.state}, at(0)); err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.pkts {
				e, ok := tbl.lookup4(&k, p.flags, at(p.at))
				e6, ok6 := tbl.lookup6(&k6, p.flags, at(p.at))
				if ok != p.hit || ok6 != p.hit {
					t.Fatalf("at %v flags %#x: hit v4=%v v6=%v, want %v", p.at, p.flags, ok, ok6, p.hit)
				}
				if ok && (e.State != p.state || e6.State != p.state) {
					t.Fatalf("at %v flags %#x: state v4=%d v6=%d, want %d", p.at, p.flags, e.State, e6.State, p.state)
				}
			}
			checkTable(t, tbl)
		})
	}
}

// TestClockSkew: a worker whose clock reading is a little behind must not
// see a fresh entry as expired, nor move its timestamp back.
func TestClockSkew(t *testing.T) {
	tbl := newTable(t, smallConfig())
	k := testKey4(1, protoUDP)
	if err := tbl.insert4(&k, Entry4{}, at(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := tbl.lookup4(&k, 0, at(9*time.Second)); !ok {
		t.Fatal("miss for an older now")
	}
	if _, ok := tbl.lookup4(&k, 0, at(19900*time.Millisecond)); !ok {
		t.Fatal("older now moved the timestamp back")
	}
	// A now before the table's creation counts as its creation.
	if _, ok := tbl.lookup4(&k, 0, t0-int64(time.Hour)); !ok {
		t.Fatal("miss for a now before New")
	}
}

func TestExpireIncremental(t *testing.T) {
	c := smallConfig()
	c.Capacity, c.Shards = 512, 8 // 64 per shard: no shard fills up
	tbl := newTable(t, c)
	total := tbl.Stats().Capacity4 + tbl.Stats().Capacity6
	// 100 UDP flows (10s) inserted at 0, 50 established TCP (100s) at 0,
	// 30 v6 UDP at 0 and 20 v6 UDP at 15s.
	for i := range 100 {
		k := testKey4(i, protoUDP)
		mustInsert4(t, tbl, &k, Entry4{}, at(0))
	}
	for i := 100; i < 150; i++ {
		k := testKey4(i, protoTCP)
		mustInsert4(t, tbl, &k, Entry4{State: StateEstablished}, at(0))
	}
	for i := range 50 {
		k := testKey6(i, protoUDP)
		when := at(0)
		if i >= 30 {
			when = at(15 * time.Second)
		}
		if err := tbl.insert6(&k, entry6{}, when); err != nil {
			t.Fatal(err)
		}
	}
	now := at(20 * time.Second)
	if n := tbl.Expire(now, 0); n != 0 {
		t.Fatalf("Expire(budget 0) = %d", n)
	}
	for _, budget := range []int{1, 7, 64} {
		t.Run("", func(t *testing.T) {
			before := tbl.cursor.Load()
			n := tbl.Expire(now, budget)
			if n > budget {
				t.Fatalf("Expire(%d) removed %d", budget, n)
			}
			if got := tbl.cursor.Load() - before; got != uint64(budget) {
				t.Fatalf("Expire(%d) advanced the cursor by %d", budget, got)
			}
		})
	}
	// Repeated calls cover every slot exactly once per sweep.
	removed := 0
	for range (total + 6) / 7 {
		removed += tbl.Expire(now, 7)
	}
	st := tbl.Stats()
	if st.Entries4 != 50 || st.Entries6 != 20 {
		t.Fatalf("after a sweep: %d v4 / %d v6 entries, want 50/20 (removed %d)", st.Entries4, st.Entries6, removed)
	}
	if st.Expired != 130 {
		t.Fatalf("Expired = %d, want 130", st.Expired)
	}
	tbl.range4(func(k key4, e Entry4) bool {
		if k.Proto != protoTCP {
			t.Errorf("survivor %+v is not an established flow", k)
		}
		return true
	})
	// A budget above the table size is one sweep.
	if n := tbl.Expire(at(200*time.Second), 10*total); n != 70 {
		t.Fatalf("big Expire removed %d, want 70", n)
	}
	if tbl.Len() != 0 {
		t.Fatalf("Len = %d", tbl.Len())
	}
	checkTable(t, tbl)
}

func mustInsert4(tb testing.TB, tbl *Table, k *key4, e Entry4, now int64) {
	tb.Helper()
	if err := tbl.insert4(k, e, now); err != nil {
		tb.Fatalf("Insert4(%+v): %v", *k, err)
	}
}

// TestEvictLRU fills one 16-slot shard and checks that each insert beyond
// that evicts the least recently used entry.
func TestEvictLRU(t *testing.T) {
	tbl := newTable(t, smallConfig()) // 16 slots per shard, EvictMinIdle 1s
	keys := keysInShard4(tbl, 2, 16+8, protoTCP)
	for i := range 16 {
		mustInsert4(t, tbl, &keys[i], Entry4{Backend: uint32(i), State: StateEstablished}, at(time.Duration(i)*time.Second))
	}
	// Touch 0, 5 and 3 (in that order) at 20s, 21s, 22s: the LRU order is
	// now 1 2 4 6 7 ... 15 0 5 3.
	for i, j := range []int{0, 5, 3} {
		if _, ok := tbl.lookup4(&keys[j], TCPFlagACK, at(time.Duration(20+i)*time.Second)); !ok {
			t.Fatalf("miss for %d", j)
		}
	}
	want := []int{1, 2, 4, 6, 7, 8, 9, 10}
	for n, victim := range want {
		now := at(time.Duration(30+n) * time.Second)
		if err := tbl.insert4(&keys[16+n], Entry4{Backend: uint32(16 + n)}, now); err != nil {
			t.Fatalf("insert %d: %v", n, err)
		}
		for i := range 16 + n + 1 {
			_, ok := peek4(tbl, &keys[i])
			gone := false
			for _, v := range want[:n+1] {
				gone = gone || v == i
			}
			if ok == gone {
				t.Fatalf("after insert %d: key %d present=%v, want %v (victim should be %d)", n, i, ok, !gone, victim)
			}
		}
	}
	if st := tbl.Stats(); st.Evictions != uint64(len(want)) || st.Full != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkTable(t, tbl)
}

// peek4 finds k without refreshing it or changing its state.
func peek4(tbl *Table, k *key4) (e Entry4, ok bool) {
	tbl.range4(func(k2 key4, e2 Entry4) bool {
		if k2 == *k {
			e, ok = e2, true
			return false
		}
		return true
	})
	return e, ok
}

// peek6 finds k without refreshing it or changing its state.
func peek6(tbl *Table, k *key6) (e entry6, ok bool) {
	tbl.range6(func(k2 key6, e2 entry6) bool {
		if k2 == *k {
			e, ok = e2, true
			return false
		}
		return true
	})
	return e, ok
}

func TestFullRefuses(t *testing.T) {
	tbl := newTable(t, smallConfig())
	keys := keysInShard4(tbl, 1, 20, protoTCP)
	for i := range 16 {
		mustInsert4(t, tbl, &keys[i], Entry4{Backend: uint32(i), State: StateEstablished}, at(time.Duration(i)*100*time.Millisecond))
	}
	// At 2s the oldest has been idle 2s >= 1s: evictable.
	// At 1.6s + 0.5s... use a time where every entry is fresh instead.
	now := at(1600 * time.Millisecond) // oldest idle 1.6s, but touch all first
	for i := range 16 {
		if _, ok := tbl.lookup4(&keys[i], TCPFlagACK, now); !ok {
			t.Fatalf("miss %d", i)
		}
	}
	for n := range 4 {
		err := tbl.insert4(&keys[16+n], Entry4{Backend: 99}, now+int64(500*time.Millisecond))
		if !errors.Is(err, ErrFull) {
			t.Fatalf("insert into a full fresh shard: %v, want ErrFull", err)
		}
	}
	st := tbl.Stats()
	if st.Full != 4 || st.Evictions != 0 || st.Entries4 != 16 {
		t.Fatalf("stats %+v", st)
	}
	// Other shards still take inserts.
	other := keysInShard4(tbl, 0, 1, protoTCP)
	mustInsert4(t, tbl, &other[0], Entry4{}, now)
	// Survivors are intact.
	for i := range 16 {
		e, ok := tbl.lookup4(&keys[i], TCPFlagACK, now+int64(600*time.Millisecond))
		if !ok || e.Backend != uint32(i) {
			t.Fatalf("survivor %d: %+v %v", i, e, ok)
		}
	}
	for i := 16; i < 20; i++ {
		if _, ok := peek4(tbl, &keys[i]); ok {
			t.Fatalf("refused key %d present", i)
		}
	}
	// A closing entry at the LRU tail is evictable even when fresh. FIN on
	// key 7 at 2.3s, then packets on all others a granule later (3.0s) so
	// that key 7 is the tail.
	if _, ok := tbl.lookup4(&keys[7], TCPFlagFIN|TCPFlagACK, now+int64(700*time.Millisecond)); !ok {
		t.Fatal("miss")
	}
	for i := range 16 {
		if i != 7 {
			tbl.lookup4(&keys[i], TCPFlagACK, now+int64(1400*time.Millisecond))
		}
	}
	if err := tbl.insert4(&keys[16], Entry4{Backend: 16}, now+int64(1500*time.Millisecond)); err != nil {
		t.Fatalf("insert with a closing entry at the tail: %v", err)
	}
	if _, ok := peek4(tbl, &keys[7]); ok {
		t.Fatal("closing entry not evicted")
	}
	checkTable(t, tbl)
}

// TestEvictMinIdleZero: with EvictMinIdle 0 a full shard always evicts.
func TestEvictMinIdleZero(t *testing.T) {
	c := smallConfig()
	c.EvictMinIdle = 0
	tbl := newTable(t, c)
	keys := keysInShard4(tbl, 3, 40, protoUDP)
	for i, k := range keys {
		mustInsert4(t, tbl, &k, Entry4{Backend: uint32(i)}, at(0))
	}
	if st := tbl.Stats(); st.Evictions != 24 || st.Full != 0 || st.Entries4 != 16 {
		t.Fatalf("stats %+v", st)
	}
	for i, k := range keys {
		if _, ok := peek4(tbl, &k); ok != (i >= 24) {
			t.Fatalf("key %d present=%v", i, ok)
		}
	}
	checkTable(t, tbl)
}

func TestSNATAllocator(t *testing.T) {
	c := smallConfig()
	c.SNATPortMin, c.SNATPortMax = 5000, 5009 // 10 ports on each of 3 addresses
	tbl := newTable(t, c)
	type port struct {
		idx  uint8
		port uint16
	}
	got := map[port]bool{}
	for i := range 20 {
		idx, p, ok := tbl.allocSNAT4(uint32(i)*0x9e3779b9, 0)
		if !ok {
			t.Fatalf("alloc %d failed", i)
		}
		if idx > 1 || p < 5000 || p > 5009 {
			t.Fatalf("alloc %d: idx %d port %d out of range", i, idx, p)
		}
		if got[port{idx, p}] {
			t.Fatalf("port %d/%d handed out twice", idx, p)
		}
		got[port{idx, p}] = true
	}
	if _, _, ok := tbl.allocSNAT4(1, 0); ok {
		t.Fatal("alloc beyond the pool succeeded")
	}
	if _, _, ok := tbl.allocSNAT4(2, 0); ok {
		t.Fatal("alloc beyond the pool succeeded")
	}
	st := tbl.Stats()
	if st.SNATExhausted != 2 || st.SNATInUse != 20 || st.SNATFree != 10 {
		t.Fatalf("stats %+v", st)
	}
	// IPv6 addresses are independent and indexed after the IPv4 ones.
	idx, p, ok := tbl.allocSNAT6(7, 0)
	if !ok || idx != 2 {
		t.Fatalf("AllocSNAT6 = %d %d %v", idx, p, ok)
	}
	if ip, ok := tbl.snatIP6(idx); !ok || ip != snat6a {
		t.Fatalf("SNATIP6(%d) = %v %v", idx, ip, ok)
	}
	if _, ok := tbl.snatIP4(idx); ok {
		t.Fatal("SNATIP4 accepted an IPv6 index")
	}
	// Free: double frees and foreign ports are refused.
	if !tbl.FreeSNAT(0, 5003) {
		t.Fatal("free of an allocated port refused")
	}
	if tbl.FreeSNAT(0, 5003) {
		t.Fatal("double free accepted")
	}
	if tbl.FreeSNAT(0, 4999) || tbl.FreeSNAT(0, 5010) || tbl.FreeSNAT(3, 5000) {
		t.Fatal("out of range free accepted")
	}
	// The freed port is the only free IPv4 one: it comes back.
	idx, p, ok = tbl.allocSNAT4(12345, 0)
	if !ok || idx != 0 || p != 5003 {
		t.Fatalf("realloc = %d %d %v, want 0 5003 true", idx, p, ok)
	}
	// FIFO: freeing a and then b hands out a then b.
	tbl.FreeSNAT(1, 5007)
	tbl.FreeSNAT(1, 5001)
	for _, want := range []uint16{5007, 5001} {
		if idx, p, ok := tbl.allocSNAT4(0xffffffff, 0); !ok || idx != 1 || p != want {
			t.Fatalf("FIFO order: got %d %d %v, want 1 %d", idx, p, ok, want)
		}
	}
	checkTable(t, tbl)

	// No SNAT addresses: allocation fails without counting.
	c.SNATIPs4, c.SNATIPs6 = nil, nil
	tbl = newTable(t, c)
	if _, _, ok := tbl.allocSNAT4(1, 0); ok {
		t.Fatal("alloc without addresses succeeded")
	}
	if _, _, ok := tbl.allocSNAT6(1, 0); ok {
		t.Fatal("alloc without addresses succeeded")
	}
	if tbl.Stats().SNATExhausted != 0 || tbl.FreeSNAT(0, 1000) {
		t.Fatal("no-SNAT table misbehaves")
	}
}

func TestSNATAllocatorFullRange(t *testing.T) {
	c := smallConfig()
	c.SNATIPs4 = [][4]byte{snat4a}
	c.SNATIPs6 = nil
	c.SNATPortMin, c.SNATPortMax = 1, 65535
	tbl := newTable(t, c)
	seen := make([]bool, 65536)
	for range 65535 {
		_, p, ok := tbl.allocSNAT4(0, 0)
		if !ok || p == 0 || seen[p] {
			t.Fatalf("alloc: port %d ok %v (seen %v)", p, ok, seen[p])
		}
		seen[p] = true
	}
	if _, _, ok := tbl.allocSNAT4(0, 0); ok {
		t.Fatal("65536th alloc succeeded")
	}
	if !tbl.FreeSNAT(0, 65535) || !tbl.FreeSNAT(0, 1) {
		t.Fatal("free at the range ends")
	}
	checkTable(t, tbl)
}

// TestFullNATTeardown checks that every way a fullnat pair can lose one of
// its entries removes the other and returns the SNAT port.
func TestFullNATTeardown(t *testing.T) {
	c := smallConfig()
	type env struct {
		tbl        *Table
		fwd, rev   key4
		fe, re     Entry4
		idx        uint8
		port       uint16
		fwd6, rev6 key6
		fe6, re6   entry6
		idx6       uint8
		port6      uint16
	}
	setup := func(t *testing.T, proto uint8) *env {
		tbl := newTable(t, c)
		en := &env{tbl: tbl}
		var ok bool
		en.idx, en.port, ok = tbl.allocSNAT4(99, at(0))
		if !ok {
			t.Fatal("alloc")
		}
		en.fwd, en.fe, en.rev, en.re = fullNATPair4(tbl, testKey4(5, proto), en.idx, en.port, 3)
		en.fe.State = InitialState(proto, TCPFlagSYN)
		en.re.State = en.fe.State
		if err := tbl.insertNAT4(&en.fwd, en.fe, &en.rev, en.re, at(0)); err != nil {
			t.Fatalf("InsertNAT4: %v", err)
		}
		en.idx6, en.port6, ok = tbl.allocSNAT6(99, at(0))
		if !ok {
			t.Fatal("alloc6")
		}
		en.fwd6, en.fe6, en.rev6, en.re6 = fullNATPair6(tbl, testKey6(5, proto), en.idx6, en.port6, 3)
		en.fe6.State, en.re6.State = en.fe.State, en.fe.State
		if err := tbl.insertNAT6(&en.fwd6, en.fe6, &en.rev6, en.re6, at(0)); err != nil {
			t.Fatalf("InsertNAT6: %v", err)
		}
		if st := tbl.Stats(); st.SNATInUse != 2 || st.Entries4 != 2 || st.Entries6 != 2 {
			t.Fatalf("after InsertNAT: %+v", st)
		}
		// The reverse entry is found under the reply tuple.
		if e, ok := tbl.lookup4(&en.rev, TCPFlagSYN|TCPFlagACK, at(0)); !ok || e.PeerIP != en.fwd.SrcIP || e.PeerPort != en.fwd.SrcPort {
			t.Fatalf("reverse lookup: %+v %v", e, ok)
		}
		checkPairs(t, tbl)
		return en
	}
	gone := func(t *testing.T, en *env) {
		t.Helper()
		tbl := en.tbl
		if _, ok := peek4(tbl, &en.fwd); ok {
			t.Error("forward entry still present")
		}
		if _, ok := peek4(tbl, &en.rev); ok {
			t.Error("reverse entry still present")
		}
		found6 := 0
		tbl.range6(func(key6, entry6) bool { found6++; return true })
		if found6 != 0 {
			t.Errorf("%d IPv6 entries still present", found6)
		}
		st := tbl.Stats()
		if st.SNATInUse != 0 {
			t.Errorf("%d SNAT ports still in use", st.SNATInUse)
		}
		// Four entries went, each counted once under its reason (the
		// sweep may reach both halves of a pair before settling either).
		if n := st.Deletes + st.Expired + st.Evictions + st.PairRemovals; n != 4 {
			t.Errorf("removals counted %d, want 4: %+v", n, st)
		}
		// Both ports can be allocated again (they are the only free ones
		// once all others are taken).
		if tbl.FreeSNAT(en.idx, en.port) || tbl.FreeSNAT(en.idx6, en.port6) {
			t.Error("port was still allocated")
		}
		checkTable(t, tbl)
		checkPairs(t, tbl)
	}
	tests := []struct {
		name   string
		proto  uint8
		remove func(t *testing.T, en *env)
	}{
		{"delete forward", protoTCP, func(t *testing.T, en *env) {
			if !en.tbl.delete4(&en.fwd) || !en.tbl.delete6(&en.fwd6) {
				t.Fatal("delete")
			}
		}},
		{"delete reverse", protoTCP, func(t *testing.T, en *env) {
			if !en.tbl.delete4(&en.rev) || !en.tbl.delete6(&en.rev6) {
				t.Fatal("delete")
			}
		}},
		{"forward expires on lookup", protoUDP, func(t *testing.T, en *env) {
			now := at(11 * time.Second)
			_, ok := en.tbl.lookup4(&en.fwd, 0, now)
			_, ok6 := en.tbl.lookup6(&en.fwd6, 0, now)
			if ok || ok6 {
				t.Fatal("hit after expiry")
			}
		}},
		{"reverse expires on lookup", protoUDP, func(t *testing.T, en *env) {
			now := at(11 * time.Second)
			_, ok := en.tbl.lookup4(&en.rev, 0, now)
			_, ok6 := en.tbl.lookup6(&en.rev6, 0, now)
			if ok || ok6 {
				t.Fatal("hit after expiry")
			}
		}},
		{"Expire", protoTCP, func(t *testing.T, en *env) {
			now := at(6 * time.Second) // SYN timeout 5s
			if n := en.tbl.Expire(now, 1<<20); n != 4 {
				t.Fatalf("Expire removed %d, want 4", n)
			}
		}},
		{"rst then expiry", protoTCP, func(t *testing.T, en *env) {
			en.tbl.lookup4(&en.fwd, TCPFlagACK, at(time.Second))
			en.tbl.lookup6(&en.fwd6, TCPFlagACK, at(time.Second))
			e, _ := en.tbl.lookup4(&en.rev, TCPFlagRST, at(2*time.Second))
			e6, _ := en.tbl.lookup6(&en.rev6, TCPFlagRST, at(2*time.Second))
			if e.State != StateClosed || e6.State != StateClosed {
				t.Fatalf("state after RST %d/%d", e.State, e6.State)
			}
			now := at(4100 * time.Millisecond) // closing timeout 2s
			en.tbl.Expire(now, 1<<20)
		}},
		{"overwrite forward", protoTCP, func(t *testing.T, en *env) {
			if err := en.tbl.insert4(&en.fwd, Entry4{Backend: 9}, at(time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := en.tbl.insert6(&en.fwd6, entry6{Backend: 9}, at(time.Second)); err != nil {
				t.Fatal(err)
			}
			if !en.tbl.delete4(&en.fwd) || !en.tbl.delete6(&en.fwd6) {
				t.Fatal("plain entry missing")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			en := setup(t, tt.proto)
			tt.remove(t, en)
			gone(t, en)
		})
	}

	t.Run("eviction", func(t *testing.T) {
		en := setup(t, protoTCP)
		tbl := en.tbl
		// Fill the forward entry's shard with entries younger than it so
		// that it is the LRU victim.
		fs, _ := tbl.v4.locate(hash4(&en.fwd, tbl.seed))
		si := uint32((uintptr(unsafe.Pointer(fs)) - uintptr(unsafe.Pointer(&tbl.v4.shards[0]))) / unsafe.Sizeof(shard{}))
		var fill []key4
		for _, k := range keysInShard4(tbl, si, 40, protoUDP) {
			if k != en.fwd && k != en.rev {
				fill = append(fill, k)
			}
		}
		now := at(2 * time.Second)
		for i := 0; ; i++ {
			mustInsert4(t, tbl, &fill[i], Entry4{}, now)
			if _, ok := peek4(tbl, &en.fwd); !ok {
				break
			}
			if i > 20 {
				t.Fatal("forward entry never evicted")
			}
		}
		if _, ok := peek4(tbl, &en.rev); ok {
			t.Fatal("reverse survived the eviction of its forward entry")
		}
		if st := tbl.Stats(); st.SNATInUse != 1 || st.Evictions != 1 {
			t.Fatalf("stats %+v", st)
		}
		checkTable(t, tbl)
		checkPairs(t, tbl)
	})

	t.Run("bad pair", func(t *testing.T) {
		tbl := newTable(t, c)
		idx, port, _ := tbl.allocSNAT4(0, 0)
		fwd, fe, rev, re := fullNATPair4(tbl, testKey4(1, protoTCP), idx, port, 1)
		for name, mut := range map[string]func(){
			"rev key":      func() { rev.SrcPort++ },
			"rev not rev":  func() { re.Flags &^= FlagReverse },
			"fwd is rev":   func() { fe.Flags |= FlagReverse },
			"not nat":      func() { fe.Flags = 0 },
			"peer port":    func() { re.PeerPort++ },
			"snat idx bad": func() { fe.SNATAddr = 2 },
		} {
			fwd, fe, rev, re = fullNATPair4(tbl, testKey4(1, protoTCP), idx, port, 1)
			mut()
			if err := tbl.insertNAT4(&fwd, fe, &rev, re, 0); !errors.Is(err, ErrBadPair) {
				t.Errorf("%s: %v, want ErrBadPair", name, err)
			}
			// The port was consumed (freed) by the failed InsertNAT4, unless
			// the entry no longer named it as an IPv4 fullnat forward entry.
			if fe.Flags&(FlagFullNAT|FlagReverse) == FlagFullNAT && fe.SNATAddr == idx {
				if tbl.FreeSNAT(idx, port) {
					t.Errorf("%s: port still allocated after the failure", name)
				}
			} else if !tbl.FreeSNAT(idx, port) {
				t.Errorf("%s: port freed though the entry did not name it", name)
			}
			idx, port, _ = tbl.allocSNAT4(0, 0)
		}
		if tbl.Len() != 0 {
			t.Fatalf("Len = %d after bad pairs", tbl.Len())
		}
		if err := tbl.insertNAT4(nil, fe, &rev, re, 0); err != ErrNilKey {
			t.Fatal(err)
		}
		if err := tbl.insertNAT6(nil, entry6{}, nil, entry6{}, 0); err != ErrNilKey {
			t.Fatal(err)
		}
	})

	t.Run("reverse insert fails", func(t *testing.T) {
		tbl := newTable(t, c)
		idx, port, _ := tbl.allocSNAT4(0, 0)
		var fwd, rev key4
		var fe, re Entry4
		var rs, fs *shard
		for i := 1; rs == fs; i++ { // find a pair whose halves are in different shards
			fwd, fe, rev, re = fullNATPair4(tbl, testKey4(i, protoTCP), idx, port, 1)
			rs, _ = tbl.v4.locate(hash4(&rev, tbl.seed))
			fs, _ = tbl.v4.locate(hash4(&fwd, tbl.seed))
		}
		si := uint32((uintptr(unsafe.Pointer(rs)) - uintptr(unsafe.Pointer(&tbl.v4.shards[0]))) / unsafe.Sizeof(shard{}))
		for _, k := range keysInShard4(tbl, si, 16, protoTCP) {
			mustInsert4(t, tbl, &k, Entry4{State: StateEstablished}, at(time.Second))
		}
		err := tbl.insertNAT4(&fwd, fe, &rev, re, at(time.Second))
		if !errors.Is(err, ErrFull) {
			t.Fatalf("InsertNAT4 = %v, want ErrFull", err)
		}
		if _, ok := peek4(tbl, &fwd); ok {
			t.Fatal("forward entry left behind")
		}
		if tbl.FreeSNAT(idx, port) {
			t.Fatal("port not freed by the failed InsertNAT4")
		}
		if tbl.Len() != 16 {
			t.Fatalf("Len = %d", tbl.Len())
		}
		checkTable(t, tbl)
		checkPairs(t, tbl)
	})
}

// TestNATPair covers nat (not fullnat) pairs: no SNAT, reverse key
// backend -> client.
func TestNATPair(t *testing.T) {
	tbl := newTable(t, smallConfig())
	fwd := testKey4(3, protoTCP)
	bip := [4]byte{192, 0, 2, 12}
	fe := Entry4{Backend: 2, PeerIP: bip, PeerPort: 8080, VIP: fwd.DstIP, VPort: fwd.DstPort, Flags: FlagNAT}
	rev, ok := tbl.pairKey4(&fwd, &fe)
	want := key4{SrcIP: bip, SrcPort: 8080, DstIP: fwd.SrcIP, DstPort: fwd.SrcPort, Proto: protoTCP}
	if !ok || rev != want {
		t.Fatalf("PairKey4 = %+v %v, want %+v", rev, ok, want)
	}
	re := Entry4{Backend: 2, PeerIP: fwd.SrcIP, PeerPort: fwd.SrcPort, VIP: fwd.DstIP, VPort: fwd.DstPort, Flags: FlagNAT | FlagReverse}
	if back, _ := tbl.pairKey4(&rev, &re); back != fwd {
		t.Fatalf("PairKey4(rev) = %+v", back)
	}
	if err := tbl.insertNAT4(&fwd, fe, &rev, re, at(0)); err != nil {
		t.Fatal(err)
	}
	checkPairs(t, tbl)
	// Overwriting with the same pair keeps both halves.
	if err := tbl.insertNAT4(&fwd, fe, &rev, re, at(time.Second)); err != nil {
		t.Fatal(err)
	}
	if tbl.Len() != 2 {
		t.Fatalf("Len = %d after re-insert", tbl.Len())
	}
	// Replacing the reverse entry by a plain one tears the pair down: the
	// forward entry goes, the new plain entry stays.
	mustInsert4(t, tbl, &rev, Entry4{Backend: 77}, at(0))
	if _, ok := peek4(tbl, &fwd); ok {
		t.Fatal("forward entry survived the replacement of its reverse entry")
	}
	if e, ok := peek4(tbl, &rev); !ok || e.Backend != 77 {
		t.Fatal("replacement entry missing")
	}
	// A plain entry under the reverse key that does not name fwd is left
	// alone when fwd goes.
	mustInsert4(t, tbl, &fwd, fe, at(0))
	tbl.delete4(&fwd)
	if e, ok := peek4(tbl, &rev); !ok || e.Backend != 77 {
		t.Fatal("unrelated entry under the reverse key was removed")
	}
	if tbl.Len() != 1 || tbl.Stats().PairRemovals != 1 {
		t.Fatalf("Len %d, stats %+v", tbl.Len(), tbl.Stats())
	}
	if _, ok := tbl.pairKey4(&fwd, &Entry4{}); ok {
		t.Fatal("PairKey4 of a plain entry")
	}
	if _, ok := tbl.pairKey4(nil, nil); ok {
		t.Fatal("PairKey4(nil)")
	}
	if _, ok := tbl.pairKey6(nil, nil); ok {
		t.Fatal("PairKey6(nil)")
	}
	checkTable(t, tbl)
}

// TestRange checks that Range visits every entry once, with its live state,
// and stops when asked.
func TestRange(t *testing.T) {
	c := smallConfig()
	c.Capacity = 256 // no shard fills up
	tbl := newTable(t, c)
	for i := range 50 {
		k := testKey4(i, protoTCP)
		mustInsert4(t, tbl, &k, Entry4{Backend: uint32(i)}, at(0))
		k6 := testKey6(i, protoTCP)
		if err := tbl.insert6(&k6, entry6{Backend: uint32(i)}, at(0)); err != nil {
			t.Fatal(err)
		}
	}
	k := testKey4(3, protoTCP)
	tbl.lookup4(&k, TCPFlagACK, at(time.Second))
	seen := map[key4]bool{}
	tbl.range4(func(k key4, e Entry4) bool {
		if seen[k] {
			t.Errorf("%+v visited twice", k)
		}
		seen[k] = true
		want := StateSynSent
		if e.Backend == 3 {
			want = StateEstablished
		}
		if e.State != want {
			t.Errorf("backend %d state %d, want %d", e.Backend, e.State, want)
		}
		return true
	})
	if len(seen) != 50 {
		t.Fatalf("visited %d", len(seen))
	}
	n := 0
	tbl.range6(func(key6, entry6) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("Range6 did not stop: %d", n)
	}
	// fn may use the table.
	tbl.range4(func(k key4, e Entry4) bool {
		tbl.delete4(&k)
		return true
	})
	if st := tbl.Stats(); st.Entries4 != 0 || st.Entries6 != 50 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBytesPerEntry(t *testing.T) {
	tbl := newTable(t, smallConfig())
	b4, b6 := tbl.BytesPerEntry4(), tbl.BytesPerEntry6()
	t.Logf("bytes per entry: IPv4 %d, IPv6 %d (slot %d/%d + 4 bucket + 4 link); shard header %d",
		b4, b6, unsafe.Sizeof(slot[key4, Entry4]{}), unsafe.Sizeof(slot[key6, entry6]{}), unsafe.Sizeof(shard{}))
	if b4 > 64 {
		t.Errorf("IPv4 entry costs %d bytes, want <= 64", b4)
	}
	if b6 > 128 {
		t.Errorf("IPv6 entry costs %d bytes, want <= 128", b6)
	}
	if unsafe.Sizeof(shard{})%cacheLine != 0 || unsafe.Sizeof(snatPool{})%cacheLine != 0 {
		t.Errorf("shard (%d) or snatPool (%d) not padded to cache lines", unsafe.Sizeof(shard{}), unsafe.Sizeof(snatPool{}))
	}
}

// TestZeroAllocs calls the public API the way the dataplane does: keys,
// entries and results in the caller's variables, nothing allocated.
func TestZeroAllocs(t *testing.T) {
	tbl := newTable(t, smallConfig())
	k4, k6 := testKey4(1, protoTCP), testKey6(1, protoTCP)
	k, k6w := wide4(&k4), wide6(&k6)
	if err := tbl.Insert(&k, &Entry{Backend: 1}, at(0)); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Insert(&k6w, &Entry{Backend: 1}, at(0)); err != nil {
		t.Fatal(err)
	}
	m4 := testKey4(2, protoTCP)
	miss := wide4(&m4)
	f4 := testKey4(9, protoTCP)
	var e, pe Entry
	var pk Key
	hs := []uint64{tbl.Hash(&k), tbl.Hash(&miss)}
	h6 := []uint64{tbl.Hash(&k6w)}
	now := at(time.Second)
	for name, fn := range map[string]func(){
		"Hash":       func() { hs[0] = tbl.Hash(&k) },
		"Lookup4":    func() { tbl.Lookup(&k, hs[0], TCPFlagACK, now, &e) },
		"LookupMiss": func() { tbl.Lookup(&miss, hs[1], TCPFlagACK, now, &e) },
		"Lookup6":    func() { tbl.Lookup(&k6w, h6[0], TCPFlagACK, now, &e) },
		"Peek":       func() { tbl.Peek(&k, hs[0], now, &e) },
		"Insert4":    func() { e = Entry{Backend: 2}; _ = tbl.Insert(&k, &e, now) },
		"Insert6":    func() { e = Entry{Backend: 2}; _ = tbl.Insert(&k6w, &e, now) },
		"InsertDelete4": func() {
			_ = tbl.Insert(&miss, &Entry{}, now)
			tbl.Delete(&miss)
		},
		"AllocFreeSNAT": func() {
			idx, p, _ := tbl.AllocSNAT(false, 7)
			tbl.FreeSNAT(idx, p)
		},
		"InsertNATDelete": func() {
			idx, p, _ := tbl.AllocSNAT(false, 7)
			f, fe, r, re := fullNATPair4(tbl, f4, idx, p, 1)
			fk, fw, rk, rw := wide4(&f), wideE4(&fe), wide4(&r), wideE4(&re)
			_ = tbl.InsertNAT(&fk, &fw, &rk, &rw, now)
			tbl.Lookup(&fk, tbl.Hash(&fk), TCPFlagACK, now, &pe)
			tbl.PairKey(&fk, &pe, &pk)
			tbl.Delete(&fk)
		},
		"Expire":    func() { tbl.Expire(now, 16) },
		"ExpireAll": func() { tbl.Expire(now, 1<<30) }, // both families
		"Prefetch4": func() { tbl.Prefetch(false, hs) },
		"Prefetch6": func() { tbl.Prefetch(true, h6) },
	} {
		if n := testutil.Mallocs(200, fn); n != 0 {
			t.Errorf("%s: %d allocations in 200 calls", name, n)
		}
	}
	checkTable(t, tbl)
	checkPairs(t, tbl)
}

// TestConcurrent runs four workers doing mixed operations on overlapping
// keys, each with its own (slightly different) clock, then checks the
// invariants. Run with -race.
func TestConcurrent(t *testing.T) {
	t.Run("syn_budget=off", func(t *testing.T) { testConcurrent(t, 0) })
	t.Run("syn_budget=25", func(t *testing.T) { testConcurrent(t, 25) })
}

func testConcurrent(t *testing.T, budget int) {
	c := smallConfig()
	c.SynBudget = budget
	c.Capacity, c.Shards = 512, 8
	c.SNATPortMin, c.SNATPortMax = 1000, 1199
	tbl := newTable(t, c)
	dur := 500 * time.Millisecond
	if testing.Short() {
		dur = 100 * time.Millisecond
	}
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			now := at(time.Duration(w) * 10 * time.Millisecond)
			for i := 0; ; i++ {
				if i%256 == 0 && time.Now().After(deadline) {
					return
				}
				now += int64(rng.IntN(3)) * int64(time.Millisecond) * 5
				n := rng.IntN(700) // more keys than slots: evictions and ErrFull
				k, k6 := testKey4(n, protoTCP), testKey6(n, protoUDP)
				switch op := rng.IntN(16); {
				case op < 6:
					tbl.lookup4(&k, []uint8{TCPFlagSYN, TCPFlagACK, TCPFlagFIN, TCPFlagRST}[rng.IntN(4)], now)
					tbl.lookup6(&k6, 0, now)
				case op < 10:
					_ = tbl.insert4(&k, Entry4{Backend: uint32(n)}, now)
					_ = tbl.insert6(&k6, entry6{Backend: uint32(n)}, now)
				case op < 12:
					tbl.delete4(&k)
					tbl.delete6(&k6)
				case op < 14:
					// fullnat pairs on their own client range
					f4 := testKey4(100000+n%300, protoTCP)
					if idx, p, ok := tbl.allocSNAT4(uint32(n), now); ok {
						f, fe, r, re := fullNATPair4(tbl, f4, idx, p, uint32(n))
						_ = tbl.insertNAT4(&f, fe, &r, re, now)
					}
					f6 := testKey6(100000+n%300, protoTCP)
					if idx, p, ok := tbl.allocSNAT6(uint32(n), now); ok {
						f, fe, r, re := fullNATPair6(tbl, f6, idx, p, uint32(n))
						_ = tbl.insertNAT6(&f, fe, &r, re, now)
					}
					if rng.IntN(4) == 0 {
						tbl.delete4(&f4)
					}
				case op < 15:
					tbl.Expire(now, 32)
				default:
					batch := [4]key4{k, testKey4(n+1, protoTCP), testKey4(100000+n%300, protoTCP), {}}
					tbl.prefetch4(batch[:])
					tbl.prefetch6([]key6{k6})
					if n%8 == 0 {
						_ = tbl.Stats()
					}
				}
			}
		}()
	}
	wg.Wait()
	checkTable(t, tbl)
	n := 0
	tbl.range4(func(key4, Entry4) bool { n++; return true })
	tbl.range6(func(key6, entry6) bool { n++; return true })
	st := tbl.Stats()
	if n != tbl.Len() || n != st.Entries4+st.Entries6 {
		t.Fatalf("Range found %d entries, Len %d, Stats %d+%d", n, tbl.Len(), st.Entries4, st.Entries6)
	}
	// Every allocated SNAT port is held by exactly one stored forward
	// entry (reverse entries orphaned by races hold none).
	type port struct {
		idx  uint8
		port uint16
	}
	held := map[port]int{}
	tbl.range4(func(k key4, e Entry4) bool {
		if e.Flags&(FlagFullNAT|FlagReverse) == FlagFullNAT {
			held[port{e.SNATAddr, e.SNATPort}]++
		}
		return true
	})
	tbl.range6(func(k key6, e entry6) bool {
		if e.Flags&(FlagFullNAT|FlagReverse) == FlagFullNAT {
			held[port{e.SNATAddr, e.SNATPort}]++
		}
		return true
	})
	for p, c := range held {
		if c != 1 {
			t.Errorf("SNAT port %v held by %d entries", p, c)
		}
	}
	if len(held) != st.SNATInUse {
		t.Errorf("%d ports held by entries, %d allocated", len(held), st.SNATInUse)
	}
	t.Logf("stats after the run: %+v", st)
}

func TestBackendFlows(t *testing.T) {
	tbl := newTable(t, smallConfig())
	flows := func(want ...int64) {
		t.Helper()
		for id, w := range want {
			if got := tbl.BackendFlows(uint32(id)); got != w {
				t.Fatalf("BackendFlows(%d) = %d, want %d", id, got, w)
			}
		}
		checkTable(t, tbl)
	}
	k1, k2, k3 := testKey4(1, protoTCP), testKey4(2, protoUDP), testKey6(3, protoTCP)
	mustInsert4(t, tbl, &k1, Entry4{Backend: 1}, at(0))
	mustInsert4(t, tbl, &k2, Entry4{Backend: 1}, at(0))
	if err := tbl.insert6(&k3, entry6{Backend: 2}, at(0)); err != nil {
		t.Fatal(err)
	}
	flows(0, 2, 1)
	mustInsert4(t, tbl, &k2, Entry4{Backend: 2}, at(0)) // moves to backend 2
	flows(0, 1, 2)
	// A NAT pair counts once.
	idx, port, _ := tbl.allocSNAT4(0, at(0))
	fwd, fe, rev, re := fullNATPair4(tbl, testKey4(4, protoTCP), idx, port, 0)
	if err := tbl.insertNAT4(&fwd, fe, &rev, re, at(0)); err != nil {
		t.Fatal(err)
	}
	flows(1, 1, 2)
	tbl.delete4(&rev) // takes the forward entry with it
	flows(0, 1, 2)
	tbl.delete4(&k1)
	flows(0, 0, 2)
	tbl.Expire(at(time.Hour), 1<<20)
	flows(0, 0, 0)
	if tbl.BackendFlows(1024) != 0 || tbl.BackendFlows(1<<31) != 0 {
		t.Fatal("uncounted ID has flows")
	}
	// Uncounted IDs do not disturb anything.
	mustInsert4(t, tbl, &k1, Entry4{Backend: 5000}, at(0))
	tbl.delete4(&k1)
	c := smallConfig()
	c.MaxBackends = 0
	tbl = newTable(t, c)
	mustInsert4(t, tbl, &k1, Entry4{Backend: 0}, at(0))
	if tbl.BackendFlows(0) != 0 {
		t.Fatal("counted with MaxBackends 0")
	}
}

// TestNATPairLiveness: a NAT pair is one connection. A half that idles
// past its timeout stays while the other half carries traffic (a one-way
// UDP stream), and the pair goes once both are idle.
func TestNATPairLiveness(t *testing.T) {
	for _, sweep := range []bool{false, true} {
		t.Run(fmt.Sprintf("sweep=%v", sweep), func(t *testing.T) {
			tbl := newTable(t, smallConfig()) // udp 10s
			idx, port, _ := tbl.allocSNAT4(1, at(0))
			fwd, fe, rev, re := fullNATPair4(tbl, testKey4(1, protoUDP), idx, port, 1)
			if err := tbl.insertNAT4(&fwd, fe, &rev, re, at(0)); err != nil {
				t.Fatal(err)
			}
			// Only the backend talks, every 5s for 25s.
			for s := 5; s <= 25; s += 5 {
				now := at(time.Duration(s) * time.Second)
				if _, ok := tbl.lookup4(&rev, 0, now); !ok {
					t.Fatalf("reverse miss at %ds", s)
				}
				if sweep {
					tbl.Expire(now, 1<<20)
				}
			}
			// The forward entry (idle 26s > 10s) is still there, refreshed.
			if e, ok := tbl.lookup4(&fwd, 0, at(26*time.Second)); !ok || e.Backend != 1 {
				t.Fatalf("forward entry lost while the reverse direction was active: %+v %v", e, ok)
			}
			// Both idle for 10.5s: the pair goes, with its port.
			now := at(36500 * time.Millisecond)
			if sweep {
				if n := tbl.Expire(now, 1<<20); n != 2 {
					t.Fatalf("Expire removed %d, want 2", n)
				}
			} else if _, ok := tbl.lookup4(&rev, 0, now); ok {
				t.Fatal("reverse hit after the pair idled out")
			}
			if tbl.Len() != 0 || tbl.Stats().SNATInUse != 0 {
				t.Fatalf("Len %d, stats %+v", tbl.Len(), tbl.Stats())
			}
			checkTable(t, tbl)
		})
	}
	// FIN on one half makes the pair closing even though the other half
	// was established: it goes TCPClosing after the last packet.
	tbl := newTable(t, smallConfig()) // established 100s, closing 2s
	idx, port, _ := tbl.allocSNAT4(1, at(0))
	fwd, fe, rev, re := fullNATPair4(tbl, testKey4(1, protoTCP), idx, port, 1)
	fe.State, re.State = StateEstablished, StateEstablished
	if err := tbl.insertNAT4(&fwd, fe, &rev, re, at(0)); err != nil {
		t.Fatal(err)
	}
	tbl.lookup4(&fwd, TCPFlagFIN|TCPFlagACK, at(time.Second))
	tbl.lookup4(&rev, TCPFlagACK, at(1500*time.Millisecond))
	if n := tbl.Expire(at(3400*time.Millisecond), 1<<20); n != 0 {
		t.Fatalf("Expire at 3.4s removed %d (pair closing, last packet 1.5s)", n)
	}
	if n := tbl.Expire(at(3600*time.Millisecond), 1<<20); n != 2 {
		t.Fatalf("Expire at 3.6s removed %d, want the pair", n)
	}
	checkTable(t, tbl)
}

func TestPeekHasNoSideEffects(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Capacity, cfg.Shards = 64, 4
	tb, err := New(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	k := key4{SrcIP: [4]byte{1, 2, 3, 4}, DstIP: [4]byte{5, 6, 7, 8}, SrcPort: 1, DstPort: 80, Proto: 6}
	if err := tb.insert4(&k, Entry4{Backend: 7, State: StateSynSent}, 0); err != nil {
		t.Fatal(err)
	}
	syn := int64(cfg.TCPSyn)
	// Peeking just before expiry neither refreshes the entry nor moves its state.
	if e, ok := tb.peekKey4(&k, syn-int64(Tick)*3); !ok || e.Backend != 7 || e.State != StateSynSent {
		t.Fatalf("peek: %+v %v", e, ok)
	}
	if _, ok := tb.peekKey4(&k, syn+int64(Tick)*3); ok {
		t.Fatal("peek found an entry past its timeout (was it refreshed?)")
	}
	if tb.Len() != 1 {
		t.Fatalf("peek removed the expired entry: len %d", tb.Len())
	}
}
