package dataplane

import (
	"fmt"
	"maps"
)

// IDs is the numbering of a snapshot's services (by name) and backends (by
// key, "service/address:port"), and the next fresh IDs. Conntrack entries
// name services and backends by these IDs, and a connection table that
// outlives the process (conntrack/shm) outlives the numbering with it: a
// restarted balancer keeps it by saving IDs next to the table and building
// its first snapshot from SeedIDs.
type IDs struct {
	Services    map[string]uint32 `json:"services"`
	Backends    map[string]uint32 `json:"backends"`
	NextService uint32            `json:"next_service"`
	NextBackend uint32            `json:"next_backend"`
}

// IDs returns the snapshot's numbering.
func (s *Snapshot) IDs() IDs {
	return IDs{Services: maps.Clone(s.svcIDs), Backends: maps.Clone(s.beIDs), NextService: s.nextSvc, NextBackend: s.nextBe}
}

// SeedIDs returns an empty snapshot that carries ids and nothing else, to
// pass as prev to Build: services and backends named in ids get their IDs
// back (whatever their order in the new Spec), new ones get IDs never used
// before, and IDs of services and backends that are gone stay unused, so
// an entry that names one finds nothing (and is rescheduled) instead of
// finding another backend. The first Build from it has generation 0. It
// is not a snapshot to run.
func SeedIDs(ids IDs) (*Snapshot, error) {
	s := &Snapshot{Gen: ^uint64(0), svcIDs: map[string]uint32{}, beIDs: map[string]uint32{},
		nextSvc: ids.NextService, nextBe: ids.NextBackend}
	for _, kind := range []struct {
		in   map[string]uint32
		out  map[string]uint32
		next *uint32
		what string
	}{{ids.Services, s.svcIDs, &s.nextSvc, "service"}, {ids.Backends, s.beIDs, &s.nextBe, "backend"}} {
		used := map[uint32]string{}
		for name, id := range kind.in {
			if other, dup := used[id]; dup {
				return nil, fmt.Errorf("dataplane: %s ID %d given to both %q and %q", kind.what, id, other, name)
			}
			if id >= 1<<30 {
				return nil, fmt.Errorf("dataplane: %s ID %d of %q out of range", kind.what, id, name)
			}
			used[id] = name
			kind.out[name] = id
			*kind.next = max(*kind.next, id+1)
		}
	}
	return s, nil
}
