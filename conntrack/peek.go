package conntrack

// peek copies k's entry to *out without refreshing it, advancing its state
// or removing it when expired (an expired entry is a miss). For the flow
// lookup of the management API, which must not keep flows alive.
func (f *family[K, E, F]) peek(k *K, h uint64, now uint32, out *E) (st uint8, ok bool) {
	s, b := f.locate(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	i := f.find(k, b, f.tag(h))
	if i < 0 || f.expiredAt(&f.slots[i], now) {
		return 0, false
	}
	*out, st = f.slots[i].e, f.slots[i].state
	return st, true
}

// Peek4 is Lookup4 without side effects: the entry is not refreshed, its
// TCP state does not move and an expired entry is not removed. Not for the
// per-packet path.
func (t *Table) Peek4(k *Key4, now int64) (e Entry4, ok bool) {
	if k == nil {
		return e, false
	}
	st, ok := t.v4.peek(k, hash4(k, t.seed), t.tick(now), &e)
	e.State = st
	return e, ok
}

// Peek6 is Peek4 for IPv6.
func (t *Table) Peek6(k *Key6, now int64) (e Entry6, ok bool) {
	if k == nil {
		return e, false
	}
	st, ok := t.v6.peek(k, hash6(k, t.seed), t.tick(now), &e)
	e.State = st
	return e, ok
}
