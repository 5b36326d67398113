package mgmt

import (
	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/dataplane"
)

// Dataplane is what the management plane needs from the running data
// plane. internal/daemon implements it over the kernel (XDP, AF_XDP,
// workers, next hops); tests use a fake.
type Dataplane interface {
	// Apply makes cfg's services the running ones: validate it as
	// config.CompileAll does (returning a *config.FieldError naming the
	// key when it is invalid), compile a new Snapshot off the hot path,
	// update the steering maps, swap. cfg differs from the running
	// configuration in no key config.RestartKeys names. Backend states
	// already include health: a backend down by health check arrives as
	// "disabled". On error the running configuration is unchanged.
	Apply(cfg *config.File) error
	// Stats returns every counter, summed over workers.
	Stats() Stats
	// Flows samples up to limit connection-table entries of a service
	// ("" = every service).
	Flows(service string, limit int) ([]Flow, error)
	// Lookup runs the real pipeline on a synthesised packet of t.
	Lookup(t dataplane.Tuple) (dataplane.FlowDecision, error)
}

// Stats is GET /api/v1/stats: the data plane's counters in snake_case.
type Stats struct {
	UptimeSeconds float64                       `json:"uptime_seconds"`
	Generation    uint64                        `json:"generation"`
	Workers       int                           `json:"workers"`
	Totals        Totals                        `json:"totals"`
	Drops         map[string]uint64             `json:"drops"`  // by reason
	Passes        map[string]uint64             `json:"passes"` // by reason
	Services      map[string]ServiceStats       `json:"services"`
	PerWorker     []Totals                      `json:"per_worker"`
	Steering      map[string]map[string]uint64  `json:"steering"` // per interface
	Runners       RunnerStats                   `json:"runners"`
	Sockets       map[string]SocketStats        `json:"sockets"` // "eth0/0": interface/queue
	Conntrack     ConntrackStats                `json:"conntrack"`
	Interfaces    map[string]map[string]uint64  `json:"interfaces,omitempty"`
	Extra         map[string]map[string]float64 `json:"extra,omitempty"`
}

// Totals are packet and flow counters.
type Totals struct {
	RxPackets     uint64 `json:"rx_packets"`
	RxBytes       uint64 `json:"rx_bytes"`
	TxPackets     uint64 `json:"tx_packets"`
	TxBytes       uint64 `json:"tx_bytes"`
	Passed        uint64 `json:"passed"`
	Dropped       uint64 `json:"dropped"`
	NewFlows      uint64 `json:"new_flows"`
	Stateless     uint64 `json:"stateless"`
	Rescheduled   uint64 `json:"rescheduled"`
	EchoReplies   uint64 `json:"echo_replies"`
	ICMPForwarded uint64 `json:"icmp_forwarded"`
	Replies       uint64 `json:"replies"`
	// StatelessReplies are nat replies translated without an entry (part
	// of Replies): a restart with a rebuilt table, or a full one.
	StatelessReplies uint64 `json:"stateless_replies"`
	TooBigSent       uint64 `json:"too_big_sent"`
}

// TotalsFrom converts a worker's counters.
func TotalsFrom(c *dataplane.Counters) Totals {
	return Totals{RxPackets: c.RxPackets, RxBytes: c.RxBytes, TxPackets: c.TxPackets, TxBytes: c.TxBytes,
		Passed: c.Passed, Dropped: c.Dropped, NewFlows: c.NewFlows, Stateless: c.Stateless, Rescheduled: c.Rescheduled,
		EchoReplies: c.EchoReplies, ICMPForwarded: c.ICMPForwarded, Replies: c.Replies, StatelessReplies: c.StatelessReplies,
		TooBigSent: c.TooBigSent}
}

// ObjStats count one service's or backend's traffic.
type ObjStats struct {
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
	NewFlows uint64 `json:"new_flows"`
	Flows    int64  `json:"flows"` // connection-table entries now
}

// ServiceStats are a service's counters and its backends' (keyed like
// the API's {backend}: "10.0.0.11" or "10.0.0.11:8080").
type ServiceStats struct {
	ObjStats
	// Evicted counts the service's connection-table entries evicted to
	// make room, by state ("syn_sent" entries are what a SYN flood pushes
	// out); Refused the flows the full table refused (served statelessly
	// by hash in dsr, tunnel, l3dsr and nat; dropped in fullnat).
	Evicted  map[string]uint64   `json:"evicted,omitempty"`
	Refused  uint64              `json:"refused"`
	Backends map[string]ObjStats `json:"backends"`
}

// RunnerStats are the I/O loops' counters.
type RunnerStats struct {
	RxBatches    uint64 `json:"rx_batches"`
	TxDropped    uint64 `json:"tx_dropped"`
	PassDropped  uint64 `json:"pass_dropped"`
	FillStarved  uint64 `json:"fill_starved"`
	CompletedTxs uint64 `json:"completed_txs"`
	Sleeps       uint64 `json:"sleeps"` // times an idle worker slept in poll(2)
}

// SocketStats are one AF_XDP socket's kernel counters.
type SocketStats struct {
	Mode                 string `json:"mode"` // copy | zero-copy
	RxDropped            uint64 `json:"rx_dropped"`
	RxInvalidDescs       uint64 `json:"rx_invalid_descs"`
	TxInvalidDescs       uint64 `json:"tx_invalid_descs"`
	RxRingFull           uint64 `json:"rx_ring_full"`
	RxFillRingEmptyDescs uint64 `json:"rx_fill_ring_empty_descs"`
	TxRingEmptyDescs     uint64 `json:"tx_ring_empty_descs"`
	RxPackets            uint64 `json:"rx_packets"`
	TxPackets            uint64 `json:"tx_packets"`
	BusyPoll             bool   `json:"busy_poll"` // preferred busy polling on
	NAPIID               uint32 `json:"napi_id"`   // the NAPI busy polls drive; 0 = none known (veth)
	BusyPolls            uint64 `json:"busy_polls"`
}

// ConntrackStats describe the connection table. Capacity counts the
// slots of both address families (lb.conntrack.capacity each).
type ConntrackStats struct {
	Entries         int    `json:"entries"`
	Capacity        int    `json:"capacity"`
	HalfOpen        int    `json:"half_open"`        // SYN-only entries now
	HalfOpenBudget  int    `json:"half_open_budget"` // the most the table keeps (lb.conntrack.syn_budget)
	EvictedHalfOpen uint64 `json:"evicted_half_open"`
	Evictions       uint64 `json:"evictions"`
	Full            uint64 `json:"full"` // inserts refused
	SNATInUse       int    `json:"snat_in_use"`
	SNATFree        int    `json:"snat_free"`
}

// Flow is one connection-table entry, as GET /api/v1/flows shows it.
type Flow struct {
	Service  string `json:"service"`
	Protocol string `json:"protocol"`
	Client   string `json:"client"`  // address:port
	VIP      string `json:"vip"`     // address:port
	Backend  string `json:"backend"` // the backend's key
	State    string `json:"state"`
	SNAT     string `json:"snat,omitempty"` // fullnat: the source the backend sees
}
