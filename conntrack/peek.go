package conntrack

// peek copies k's entry to *out without refreshing it, advancing its state
// or removing it when expired (an expired entry is a miss). For the flow
// lookup of the management API, which must not keep flows alive. Like a
// lookup it takes the shard's lock only when a writer was busy.
func (f *family[K, E, F]) peek(k *K, h uint64, now uint32, out *E) (st uint8, ok bool) {
	st, r := f.read(k, h, now, 0, false, false, out)
	if r != readSlow {
		return st, r == readHit
	}
	s, b := f.locate(h)
	s.lock()
	defer s.unlock()
	i := f.find(k, b, f.tag(h))
	if i < 0 || f.expiredAt(&f.slots[i], now) {
		return 0, false
	}
	*out, st = f.slots[i].e, f.slots[i].state
	return st, true
}
