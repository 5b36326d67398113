package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/internal/xsk"
)

// Stats is what GET /api/v1/stats returns: the sum of every worker's
// counters, per service and per backend, plus the steering programs' and
// runners' counters.
type Stats struct {
	Uptime    string                       `json:"uptime"`
	Gen       uint64                       `json:"generation"`
	Workers   int                          `json:"workers"`
	Totals    dataplane.Counters           `json:"totals"`
	Reasons   map[string]uint64            `json:"reasons"`
	Services  map[string]ObjStats          `json:"services"`
	Steering  map[string]map[string]uint64 `json:"steering"`
	Runners   dataplane.RunnerStats        `json:"runners"`
	Sockets   map[string]xsk.Stats         `json:"sockets"` // "eth0/0": interface/queue
	Conntrack int                          `json:"conntrack_entries"`
}

// ObjStats are one service's counters and its backends'.
type ObjStats struct {
	dataplane.ObjCounters
	Backends map[string]dataplane.ObjCounters `json:"backends"`
}

// Stats sums the counters of every worker.
func (d *Daemon) Stats() Stats {
	s := d.snap.Load()
	st := Stats{Uptime: time.Since(d.started).Round(time.Second).String(), Gen: s.Gen, Workers: len(d.workers),
		Reasons: map[string]uint64{}, Services: map[string]ObjStats{}, Steering: map[string]map[string]uint64{}}
	for _, w := range d.workers {
		c := w.Counters()
		st.Totals.Add(&c)
	}
	for r := dataplane.Reason(1); r < dataplane.NumReasons; r++ {
		if n := st.Totals.Reasons[r]; n > 0 {
			st.Reasons[r.String()] = n
		}
	}
	for i := range s.Services {
		svc := &s.Services[i]
		if !svc.Present {
			continue
		}
		os := ObjStats{Backends: map[string]dataplane.ObjCounters{}}
		for _, w := range d.workers {
			c := w.ServiceCounters(svc.ID)
			os.Packets += c.Packets
			os.Bytes += c.Bytes
			os.NewFlows += c.NewFlows
		}
		for _, bid := range svc.Backends {
			var bc dataplane.ObjCounters
			for _, w := range d.workers {
				c := w.BackendCounters(bid)
				bc.Packets += c.Packets
				bc.Bytes += c.Bytes
				bc.NewFlows += c.NewFlows
			}
			os.Backends[s.Backends[bid].Key[len(svc.Name)+1:]] = bc
		}
		st.Services[svc.Name] = os
	}
	for _, ifc := range d.ifaces {
		if ifc.steering == nil {
			continue
		}
		if c, err := ifc.steering.Counters(); err == nil {
			st.Steering[ifc.net.Name] = c.Map()
		}
	}
	for _, r := range d.runners {
		rs := r.Stats()
		st.Runners.RxBatches += rs.RxBatches
		st.Runners.TxDropped += rs.TxDropped
		st.Runners.PassDropped += rs.PassDropped
		st.Runners.FillStarved += rs.FillStarved
		st.Runners.CompletedTxs += rs.CompletedTxs
	}
	st.Sockets = map[string]xsk.Stats{}
	for _, sk := range d.socks {
		if ss, err := sk.Stats(); err == nil {
			name := strconv.Itoa(sk.Ifindex())
			if ifi, err := net.InterfaceByIndex(sk.Ifindex()); err == nil {
				name = ifi.Name
			}
			st.Sockets[fmt.Sprintf("%s/%d", name, sk.Queue())] = ss
		}
	}
	st.Conntrack = d.ct.Len()
	return st
}

// Handler serves the read-only status API (the full REST API comes later):
// GET /api/v1/stats.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(d.Stats())
	})
	return mux
}
