package conntrack

import (
	"strconv"
	"time"
)

// Limits checked by [Config.Validate].
const (
	// MaxCapacity is the largest Capacity (and Capacity6) accepted.
	MaxCapacity = 1 << 28
	// MaxShards is the largest shard count accepted.
	MaxShards = 1 << 16
	// MaxTimeout is the largest timeout accepted. Timestamps are 32-bit
	// tick counts compared modulo 2^32, which stays exact for ages up to
	// 2^31 ticks (about 248 days); the limit keeps a wide margin.
	MaxTimeout = 90 * 24 * time.Hour
	// MaxSNATAddrs is the largest number of SNAT addresses (IPv4 and IPv6
	// together), because Entry.SNATAddr is a uint8.
	MaxSNATAddrs = 256
	// MaxBackendIDs is the largest MaxBackends accepted.
	MaxBackendIDs = 1 << 24
	// MaxServiceIDs is the largest MaxServices accepted.
	MaxServiceIDs = 1 << 20
	// DefaultSynBudget is the SynBudget of DefaultConfig, in percent.
	DefaultSynBudget = 25
)

// Config configures a [Table]. Start from [DefaultConfig]; the zero value is
// not valid.
type Config struct {
	// Capacity is the number of IPv4 entries. It is rounded up so that
	// every shard holds a power of two entries: the real capacity is
	// Shards * 2^ceil(log2(ceil(Capacity/Shards))), e.g. 1_000_000 over
	// 64 shards gives 1_048_576. A NAT pair uses two entries.
	Capacity int
	// Capacity6 is the number of IPv6 entries, rounded like Capacity.
	// 0 means the same as Capacity.
	Capacity6 int
	// Shards is the number of independently locked shards per address
	// family, a power of two. More shards mean less lock contention
	// between workers; each shard evicts on its own, so very small shards
	// evict earlier than a single table would.
	Shards int

	// Idle timeouts per connection state (see the State constants). All
	// must be > 0 and <= MaxTimeout.
	TCPSyn         time.Duration // StateSynSent
	TCPEstablished time.Duration // StateEstablished
	TCPClosing     time.Duration // StateClosing and StateClosed
	UDP            time.Duration // StateUDP
	Other          time.Duration // StateOther

	// EvictMinIdle is how long an entry must have been idle before Insert
	// may evict it to make room in a full shard. Entries that are expired,
	// closing or closed can always be evicted. 0 makes every full-shard
	// insert evict the least recently used entry.
	EvictMinIdle time.Duration

	// SNATIPs4 and SNATIPs6 are the fullnat source addresses. Entries and
	// the allocator name them by one index (Entry.SNATAddr) into the
	// concatenation SNATIPs4 ++ SNATIPs6: IPv4 addresses are indices
	// 0..len(SNATIPs4)-1, IPv6 addresses follow. At most MaxSNATAddrs.
	SNATIPs4 [][4]byte
	SNATIPs6 [][16]byte
	// SNATPortMin and SNATPortMax bound the SNAT source ports (inclusive).
	// Checked only when there are SNAT addresses.
	SNATPortMin, SNATPortMax uint16

	// MaxBackends is the number of backend IDs (0 to MaxBackends-1) whose
	// flows are counted for BackendFlows; 8 bytes each. 0 disables the
	// counters.
	MaxBackends int

	// MaxServices is the number of service IDs (0 to MaxServices-1) whose
	// evictions and refusals are counted for ServiceStats; 72 bytes each.
	// 0 disables the counters.
	MaxServices int

	// SynBudget is the share of each shard, in percent (1 to 100), that
	// half-open entries (StateSynSent) may hold. A half-open insert into a
	// shard at its budget evicts the shard's oldest half-open entry, and a
	// full shard gives up its oldest half-open entry before anything else,
	// so a SYN flood cycles through the budget and never pushes out
	// established flows. 0 turns the policy off: half-open entries are
	// ordinary LRU entries.
	SynBudget int

	// Seed keys the flow hash. Use a random value in production so that
	// remote peers cannot aim many flows at one bucket.
	Seed uint64
}

// DefaultConfig returns the defaults: 1_000_000 entries per family in 64
// shards; timeouts tcp_syn 60s, tcp_established 3600s, tcp_closing 10s,
// udp 60s, other 60s; evict_min_idle 5s; no SNAT addresses, SNAT ports
// 1024-65535; flow counters for 65536 backend IDs; eviction counters for
// 4096 service IDs; syn budget 25%; seed 0.
func DefaultConfig() Config {
	return Config{
		Capacity:       1_000_000,
		Shards:         64,
		TCPSyn:         60 * time.Second,
		TCPEstablished: 3600 * time.Second,
		TCPClosing:     10 * time.Second,
		UDP:            60 * time.Second,
		Other:          60 * time.Second,
		EvictMinIdle:   5 * time.Second,
		SNATPortMin:    1024,
		SNATPortMax:    65535,
		MaxBackends:    1 << 16,
		MaxServices:    1 << 12,
		SynBudget:      DefaultSynBudget,
	}
}

// ConfigError reports an invalid [Config] field. Field is the name the
// configuration file uses (e.g. "tcp_syn").
type ConfigError struct {
	Field  string
	Reason string
}

// Error implements error: "conntrack: tcp_syn must be > 0".
func (e *ConfigError) Error() string { return "conntrack: " + e.Field + " " + e.Reason }

// Validate checks c and returns a *ConfigError naming the first bad field.
func (c Config) Validate() error {
	if c.Capacity <= 0 || c.Capacity > MaxCapacity {
		return &ConfigError{"capacity", "must be between 1 and " + strconv.Itoa(MaxCapacity)}
	}
	if c.Capacity6 < 0 || c.Capacity6 > MaxCapacity {
		return &ConfigError{"capacity6", "must be between 0 and " + strconv.Itoa(MaxCapacity)}
	}
	if c.Shards <= 0 || c.Shards > MaxShards || c.Shards&(c.Shards-1) != 0 {
		return &ConfigError{"shards", "must be a power of two between 1 and " + strconv.Itoa(MaxShards)}
	}
	for _, d := range [...]struct {
		name string
		v    time.Duration
	}{
		{"tcp_syn", c.TCPSyn},
		{"tcp_established", c.TCPEstablished},
		{"tcp_closing", c.TCPClosing},
		{"udp", c.UDP},
		{"other", c.Other},
	} {
		if d.v <= 0 {
			return &ConfigError{d.name, "must be > 0"}
		}
		if d.v > MaxTimeout {
			return &ConfigError{d.name, "must be <= " + MaxTimeout.String()}
		}
	}
	if c.EvictMinIdle < 0 || c.EvictMinIdle > MaxTimeout {
		return &ConfigError{"evict_min_idle", "must be between 0 and " + MaxTimeout.String()}
	}
	if c.MaxBackends < 0 || c.MaxBackends > MaxBackendIDs {
		return &ConfigError{"max_backends", "must be between 0 and " + strconv.Itoa(MaxBackendIDs)}
	}
	if c.MaxServices < 0 || c.MaxServices > MaxServiceIDs {
		return &ConfigError{"max_services", "must be between 0 and " + strconv.Itoa(MaxServiceIDs)}
	}
	if c.SynBudget < 0 || c.SynBudget > 100 {
		return &ConfigError{"syn_budget", "must be a percentage between 1 and 100 (0: off)"}
	}
	if n := len(c.SNATIPs4) + len(c.SNATIPs6); n > 0 {
		if n > MaxSNATAddrs {
			return &ConfigError{"snat.addresses", "must list at most " + strconv.Itoa(MaxSNATAddrs) + " addresses"}
		}
		if c.SNATPortMin == 0 || c.SNATPortMin > c.SNATPortMax {
			return &ConfigError{"snat.ports", "must be a range min-max with 1 <= min <= max"}
		}
		for i, a := range c.SNATIPs4 {
			for _, b := range c.SNATIPs4[:i] {
				if a == b {
					return &ConfigError{"snat.addresses", "must not repeat an address"}
				}
			}
		}
		for i, a := range c.SNATIPs6 {
			for _, b := range c.SNATIPs6[:i] {
				if a == b {
					return &ConfigError{"snat.addresses", "must not repeat an address"}
				}
			}
		}
	}
	return nil
}

// perShard is the rounded number of entries per shard for a family capacity.
func perShard(capacity, shards int) int {
	n := (capacity + shards - 1) / shards
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
