package main

import "time"

// The API's JSON objects, as far as xlbctl's tables read them. xlbctl
// keeps its own copies instead of importing mgmt, so the CLI stays a small
// HTTP client with no dataplane code in it; -o json and -o yaml print the
// API's own bytes, so a field these types lack is never lost.

// objStats count one service's or backend's traffic.
type objStats struct {
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
	NewFlows uint64 `json:"new_flows"`
	Flows    int64  `json:"flows"`
}

type healthView struct {
	State      string  `json:"state"` // up | down | unknown
	LastResult string  `json:"last_result"`
	LastError  string  `json:"last_error"`
	LatencyMS  float64 `json:"latency_ms"`
	Checked    bool    `json:"checked"`
}

type backendView struct {
	Address   string      `json:"address"`
	Port      int         `json:"port"`
	Weight    *int        `json:"weight"`
	State     string      `json:"state"`
	MAC       string      `json:"mac"`
	Interface string      `json:"interface"`
	Health    *healthView `json:"health"`
	Flows     int64       `json:"flows"`
	Counters  objStats    `json:"counters"`
}

type healthSpec struct {
	Type     string `json:"type"`
	Port     int    `json:"port"`
	Path     string `json:"path"`
	Expect   int    `json:"expect"`
	Interval string `json:"interval"`
	Timeout  string `json:"timeout"`
	Rise     int    `json:"rise"`
	Fall     int    `json:"fall"`
}

type serviceView struct {
	Name      string        `json:"name"`
	VIP       string        `json:"vip"`
	Port      int           `json:"port"`
	Protocol  string        `json:"protocol"`
	Mode      string        `json:"mode"`
	Scheduler string        `json:"scheduler"`
	DSCP      int           `json:"dscp"`
	FragHash  bool          `json:"frag_hash"`
	AllDown   string        `json:"all_down"`
	Health    healthSpec    `json:"health"`
	Backends  []backendView `json:"backends"`
	Counters  objStats      `json:"counters"`
	AllIsDown bool          `json:"all_backends_down"`
}

type serviceListView struct {
	Services []serviceView `json:"services"`
}

type backendListView struct {
	Backends []backendView `json:"backends"`
}

// totals are GET /api/v1/stats "totals".
type totals struct {
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
	TooBigSent    uint64 `json:"too_big_sent"`
}

type statsView struct {
	UptimeSeconds float64           `json:"uptime_seconds"`
	Generation    uint64            `json:"generation"`
	Workers       int               `json:"workers"`
	Totals        totals            `json:"totals"`
	Drops         map[string]uint64 `json:"drops"`
	Passes        map[string]uint64 `json:"passes"`
	Services      map[string]struct {
		objStats
		Backends map[string]objStats `json:"backends"`
	} `json:"services"`
	Runners   map[string]uint64 `json:"runners"`
	Conntrack struct {
		Entries  int `json:"entries"`
		Capacity int `json:"capacity"`
	} `json:"conntrack"`
}

type flowView struct {
	Service  string `json:"service"`
	Protocol string `json:"protocol"`
	Client   string `json:"client"`
	VIP      string `json:"vip"`
	Backend  string `json:"backend"`
	State    string `json:"state"`
	SNAT     string `json:"snat"`
}

type flowList struct {
	Flows []flowView `json:"flows"`
}

type lookupView struct {
	Service  string `json:"service"`
	Mode     string `json:"mode"`
	Backend  string `json:"backend"`
	Action   string `json:"action"`
	Reason   string `json:"reason"`
	Existing bool   `json:"existing"`
	Why      string `json:"why"`
}

type healthStatus struct {
	State       string    `json:"state"`
	Since       time.Time `json:"since"`
	LastCheck   time.Time `json:"last_check"`
	LastResult  string    `json:"last_result"`
	LastError   string    `json:"last_error"`
	LatencyMS   float64   `json:"latency_ms"`
	Transitions uint64    `json:"transitions"`
	HeldUntil   time.Time `json:"held_until"`
}

type healthReport struct {
	Backends map[string]healthStatus `json:"backends"` // "service/backend"
	Counters struct {
		Targets     uint64 `json:"targets"`
		Checks      uint64 `json:"checks"`
		Failures    uint64 `json:"failures"`
		Transitions uint64 `json:"transitions"`
		Dampened    uint64 `json:"dampened"`
	} `json:"counters"`
	AllDown []string `json:"all_down_services"`
}

// problem is an RFC 9457 problem+json body.
type problem struct {
	Type        string   `json:"type"`
	Title       string   `json:"title"`
	Status      int      `json:"status"`
	Detail      string   `json:"detail"`
	Instance    string   `json:"instance"`
	Field       string   `json:"field"`
	Value       string   `json:"value"`
	RestartKeys []string `json:"restart_keys"`
}
