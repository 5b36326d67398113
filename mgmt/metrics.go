package mgmt

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector turns the dataplane's counters and the health states into
// Prometheus metrics at scrape time (worker counters are summed then, so
// nothing on the packet path knows about Prometheus).
type collector struct{ s *Server }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("xlb_"+name, help, labels, nil)
}

var (
	mRx          = desc("rx_packets_total", "Frames the workers received.")
	mRxBytes     = desc("rx_bytes_total", "Bytes the workers received.")
	mTx          = desc("tx_packets_total", "Frames the workers transmitted.")
	mTxBytes     = desc("tx_bytes_total", "Bytes the workers transmitted.")
	mNewFlows    = desc("new_flows_total", "Flows scheduled to a backend.")
	mStateless   = desc("stateless_flows_total", "New flows served by hash because the connection table was full.")
	mResched     = desc("rescheduled_flows_total", "Flows whose backend was gone or down and were rescheduled.")
	mReplies     = desc("nat_replies_total", "nat/fullnat replies translated back to clients.")
	mDrops       = desc("dropped_packets_total", "Frames dropped, by reason.", "reason")
	mPasses      = desc("passed_packets_total", "Frames the pipeline would pass to the kernel, by reason.", "reason")
	mSvcPackets  = desc("service_packets_total", "Frames of a service.", "service")
	mSvcBytes    = desc("service_bytes_total", "Bytes of a service.", "service")
	mSvcNew      = desc("service_new_flows_total", "New flows of a service.", "service")
	mBePackets   = desc("backend_packets_total", "Frames sent to a backend.", "service", "backend")
	mBeBytes     = desc("backend_bytes_total", "Bytes sent to a backend.", "service", "backend")
	mBeNew       = desc("backend_new_flows_total", "New flows scheduled to a backend.", "service", "backend")
	mBeFlows     = desc("backend_flows", "Connection-table entries of a backend.", "service", "backend")
	mBeHealth    = desc("backend_health", "1 for the backend's health state (up, down, unknown).", "service", "backend", "state")
	mBeWeight    = desc("backend_weight", "Configured weight of a backend.", "service", "backend")
	mCtEntries   = desc("conntrack_entries", "Entries in the connection table.")
	mCtCapacity  = desc("conntrack_capacity", "Capacity of the connection table (both families).")
	mCtHalfOpen  = desc("conntrack_half_open", "Half-open (SYN-only) entries in the connection table.")
	mCtEvicted   = desc("conntrack_evictions_total", "Entries evicted to make room, by kind (half_open, all).", "kind")
	mCtFull      = desc("conntrack_full_total", "Inserts the full connection table refused.")
	mSvcRefused  = desc("service_conntrack_refused_total", "Flows of a service the full table refused (stateless, or dropped in fullnat).", "service")
	mSvcEvicted  = desc("service_conntrack_evicted_total", "A service's entries evicted to make room, by state.", "service", "state")
	mStatelessRp = desc("nat_stateless_replies_total", "nat replies translated without a connection-table entry.")
	mSock        = desc("socket_events_total", "AF_XDP socket kernel counters (rx_dropped, rx_ring_full, rx_fill_ring_empty_descs, ...).", "socket", "counter")
	mRunner      = desc("runner_events_total", "Worker I/O loop counters (tx_dropped, pass_dropped, fill_starved, ...).", "counter")
	mSteering    = desc("steering_packets_total", "Frames seen by the XDP steering program, by outcome.", "interface", "outcome")
	mGeneration  = desc("config_generation", "Generation of the running dataplane snapshot.")
	mWorkers     = desc("workers", "Running workers.")
	mChanges     = desc("api_changes_total", "Configuration changes, by result (accepted, refused, failed).", "result")
	mHealthCheck = desc("health_checks_total", "Health checks run, by result.", "result")
	mHealthTrans = desc("health_transitions_total", "Health state transitions (up_to_down, down_to_up, dampened).", "kind")
	mAllDown     = desc("all_backends_down_total", "Times a service found every backend down, by the all_down policy applied.", "policy")
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mRx, mRxBytes, mTx, mTxBytes, mNewFlows, mStateless, mResched, mReplies, mDrops, mPasses,
		mSvcPackets, mSvcBytes, mSvcNew, mBePackets, mBeBytes, mBeNew, mBeFlows, mBeHealth, mBeWeight, mCtEntries, mCtCapacity,
		mSock, mRunner, mSteering, mGeneration, mCtHalfOpen, mCtEvicted, mCtFull, mSvcRefused, mSvcEvicted, mStatelessRp, mWorkers, mChanges, mHealthCheck, mHealthTrans, mAllDown} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	st := s.o.Dataplane.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	t := st.Totals
	counter(mRx, t.RxPackets)
	counter(mRxBytes, t.RxBytes)
	counter(mTx, t.TxPackets)
	counter(mTxBytes, t.TxBytes)
	counter(mNewFlows, t.NewFlows)
	counter(mStateless, t.Stateless)
	counter(mResched, t.Rescheduled)
	counter(mReplies, t.Replies)
	for r, n := range st.Drops {
		counter(mDrops, n, r)
	}
	for r, n := range st.Passes {
		counter(mPasses, n, r)
	}
	for name, ss := range st.Services {
		counter(mSvcPackets, ss.Packets, name)
		counter(mSvcBytes, ss.Bytes, name)
		counter(mSvcNew, ss.NewFlows, name)
		for be, bs := range ss.Backends {
			counter(mBePackets, bs.Packets, name, be)
			counter(mBeBytes, bs.Bytes, name, be)
			counter(mBeNew, bs.NewFlows, name, be)
			gauge(mBeFlows, float64(bs.Flows), name, be)
		}
	}
	s.mu.Lock()
	for i := range s.cfg.Services {
		svc := &s.cfg.Services[i]
		for j := range svc.Backends {
			b := &svc.Backends[j]
			v := s.backendView(svc, b, nil)
			for _, state := range []string{"up", "down", "unknown"} {
				x := 0.0
				if v.Health.State == state {
					x = 1
				}
				gauge(mBeHealth, x, svc.Name, b.Key(), state)
			}
			if b.Weight != nil {
				gauge(mBeWeight, float64(*b.Weight), svc.Name, b.Key())
			}
		}
	}
	s.mu.Unlock()
	gauge(mCtEntries, float64(st.Conntrack.Entries))
	gauge(mCtCapacity, float64(st.Conntrack.Capacity))
	gauge(mCtHalfOpen, float64(st.Conntrack.HalfOpen))
	counter(mCtEvicted, st.Conntrack.EvictedHalfOpen, "half_open")
	counter(mCtEvicted, st.Conntrack.Evictions, "all")
	counter(mCtFull, st.Conntrack.Full)
	counter(mStatelessRp, st.Totals.StatelessReplies)
	for name, ss := range st.Services {
		counter(mSvcRefused, ss.Refused, name)
		for state, n := range ss.Evicted {
			counter(mSvcEvicted, n, name, state)
		}
	}
	for name, ss := range st.Sockets {
		for k, v := range map[string]uint64{"rx_dropped": ss.RxDropped, "rx_invalid_descs": ss.RxInvalidDescs,
			"tx_invalid_descs": ss.TxInvalidDescs, "rx_ring_full": ss.RxRingFull,
			"rx_fill_ring_empty_descs": ss.RxFillRingEmptyDescs, "tx_ring_empty_descs": ss.TxRingEmptyDescs} {
			counter(mSock, v, name, k)
		}
	}
	r := st.Runners
	for k, v := range map[string]uint64{"rx_batches": r.RxBatches, "tx_dropped": r.TxDropped, "pass_dropped": r.PassDropped,
		"fill_starved": r.FillStarved, "completed_txs": r.CompletedTxs} {
		counter(mRunner, v, k)
	}
	for ifname, m := range st.Steering {
		for k, v := range m {
			counter(mSteering, v, ifname, k)
		}
	}
	gauge(mGeneration, float64(st.Generation))
	gauge(mWorkers, float64(st.Workers))
	counter(mChanges, s.ctr.changes.Load(), "accepted")
	counter(mChanges, s.ctr.refused.Load(), "refused")
	counter(mChanges, s.ctr.failed.Load(), "failed")
	hc := s.health.Counters()
	counter(mHealthCheck, hc.Checks-hc.Failures, "ok")
	counter(mHealthCheck, hc.Failures, "failed")
	counter(mHealthTrans, hc.UpToDown, "up_to_down")
	counter(mHealthTrans, hc.DownToUp, "down_to_up")
	counter(mHealthTrans, hc.Dampened, "dampened")
	counter(mAllDown, s.ctr.allDownServe.Load(), "serve")
	counter(mAllDown, s.ctr.allDownDrop.Load(), "drop")
}

func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func (s *Server) getMetrics(w http.ResponseWriter, r *http.Request) {
	s.metricsOnce.Do(func() { s.metrics = s.metricsHandler() })
	s.metrics.ServeHTTP(w, r)
}
