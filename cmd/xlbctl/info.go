package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

var infoCommands = []*command{
	{path: "stats", summary: "counters",
		detail: "Shows the data plane's counters summed over workers: totals, drops and passes by reason\n" +
			"(non-zero ones), and packets per service. -o json has every counter, per worker, socket\n" +
			"and interface too. GET /api/v1/stats.",
		run: statsCmd},
	{path: "flows", args: "[--service S] [--limit N]", summary: "a sample of the connection table",
		detail: "Lists connection-table entries: client, VIP, backend and TCP state (and the SNAT source\n" +
			"for fullnat). GET /api/v1/flows.",
		setup: func(fs *flag.FlagSet) {
			fs.String("service", "", "only this `service`'s flows")
			fs.Int("limit", 100, "at most `N` flows (1..10000)")
		},
		run: flowsCmd},
	{path: "lookup", args: "--protocol tcp|udp --src IP:PORT --dst VIP:PORT", summary: "which backend gets a flow",
		detail: "Asks which backend the real pipeline picks for a flow's next packet, and why: the flow's\n" +
			"entry in the connection table, or the scheduler for a new flow. Nothing is changed.\n" +
			"GET /api/v1/lookup.\n\n  xlbctl lookup --src 203.0.113.7:40000 --dst 198.51.100.10:80",
		setup: func(fs *flag.FlagSet) {
			fs.String("protocol", "tcp", "tcp or udp")
			fs.String("src", "", "the client's `IP:PORT` ([v6]:port for IPv6)")
			fs.String("dst", "", "the service's `VIP:PORT`")
		},
		run: lookupCmd},
	{path: "health", summary: "every backend's health-check state",
		detail: "Shows every health-checked backend: state, since when, the last check's result and\n" +
			"latency; then the checker's counters and the services whose backends are all down.\n" +
			"GET /api/v1/health.",
		run: healthCmd},
}

func statsCmd(a *app, c *command, args []string) error {
	if _, _, err := c.parse(a, args, 0, 0); err != nil {
		return err
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.get(nil, api("stats")...)
	if err != nil {
		return err
	}
	var st statsView
	return a.emit(raw, &st, func(w io.Writer) {
		t := st.Totals
		row(w, "UPTIME:", uptime(st.UptimeSeconds))
		row(w, "GENERATION:", st.Generation)
		row(w, "WORKERS:", st.Workers)
		ct := fmt.Sprint(st.Conntrack.Entries)
		if st.Conntrack.Capacity > 0 {
			ct = fmt.Sprintf("%d of %d (%.1f%%)", st.Conntrack.Entries, st.Conntrack.Capacity, 100*float64(st.Conntrack.Entries)/float64(st.Conntrack.Capacity))
		}
		row(w, "CONNTRACK:", ct)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "TOTALS")
		row(w, "  received", fmt.Sprintf("%d packets", t.RxPackets), bytesHuman(t.RxBytes))
		row(w, "  transmitted", fmt.Sprintf("%d packets", t.TxPackets), bytesHuman(t.TxBytes))
		row(w, "  passed to the kernel", t.Passed)
		row(w, "  dropped", t.Dropped)
		row(w, "  new flows", t.NewFlows)
		row(w, "  rescheduled", t.Rescheduled)
		row(w, "  stateless (table full)", t.Stateless)
		row(w, "  echo replies", t.EchoReplies)
		row(w, "  ICMP forwarded", t.ICMPForwarded)
		row(w, "  replies (nat)", t.Replies)
		row(w, "  too-big sent", t.TooBigSent)
		byReason(w, "DROPS BY REASON", st.Drops)
		byReason(w, "PASSES BY REASON", st.Passes)
		var losses []string
		for _, k := range sortedKeys(st.Runners) {
			if st.Runners[k] != 0 && k != "rx_batches" && k != "completed_txs" {
				losses = append(losses, k)
			}
		}
		if len(losses) > 0 {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "I/O LOSSES")
			for _, k := range losses {
				row(w, "  "+k, st.Runners[k])
			}
		}
		if len(st.Services) > 0 {
			fmt.Fprintln(w)
			row(w, "SERVICE", "PACKETS", "BYTES", "NEW FLOWS", "FLOWS")
			names := make([]string, 0, len(st.Services))
			for n := range st.Services {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				s := st.Services[n]
				row(w, n, s.Packets, bytesHuman(s.Bytes), s.NewFlows, s.Flows)
			}
		}
	})
}

// byReason writes the non-zero counters of m, largest first.
func byReason(w io.Writer, title string, m map[string]uint64) {
	var ks []string
	for k, v := range m {
		if v != 0 {
			ks = append(ks, k)
		}
	}
	if len(ks) == 0 {
		return
	}
	sort.Slice(ks, func(i, j int) bool {
		if m[ks[i]] != m[ks[j]] {
			return m[ks[i]] > m[ks[j]]
		}
		return ks[i] < ks[j]
	})
	fmt.Fprintln(w)
	fmt.Fprintln(w, title)
	for _, k := range ks {
		row(w, "  "+k, m[k])
	}
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func flowsCmd(a *app, c *command, args []string) error {
	fs, _, err := c.parse(a, args, 0, 0)
	if err != nil {
		return err
	}
	q := url.Values{}
	if s := flagString(fs, "service"); s != "" {
		q.Set("service", s)
	}
	if flagSet(fs, "limit") {
		q.Set("limit", strconv.Itoa(flagInt(fs, "limit")))
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.get(q, api("flows")...)
	if err != nil {
		return err
	}
	var l flowList
	return a.emit(raw, &l, func(w io.Writer) {
		if len(l.Flows) == 0 {
			fmt.Fprintln(w, "no flows")
			return
		}
		snat := false
		for _, f := range l.Flows {
			snat = snat || f.SNAT != ""
		}
		hdr := []any{"SERVICE", "PROTO", "CLIENT", "VIP", "BACKEND", "STATE"}
		if snat {
			hdr = append(hdr, "SNAT")
		}
		row(w, hdr...)
		for _, f := range l.Flows {
			cols := []any{f.Service, f.Protocol, f.Client, f.VIP, f.Backend, orDash(f.State)}
			if snat {
				cols = append(cols, orDash(f.SNAT))
			}
			row(w, cols...)
		}
	})
}

func lookupCmd(a *app, c *command, args []string) error {
	fs, _, err := c.parse(a, args, 0, 0)
	if err != nil {
		return err
	}
	q := url.Values{}
	for _, k := range []string{"protocol", "src", "dst"} {
		v := flagString(fs, k)
		if v == "" {
			return &usageError{cmd: c, msg: "lookup: missing --" + k}
		}
		q.Set(k, v)
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.get(q, api("lookup")...)
	if err != nil {
		return err
	}
	var l lookupView
	return a.emit(raw, &l, func(w io.Writer) {
		row(w, "FLOW:", fmt.Sprintf("%s %s -> %s", q.Get("protocol"), q.Get("src"), q.Get("dst")))
		row(w, "ACTION:", l.Action)
		if l.Service != "" {
			row(w, "SERVICE:", fmt.Sprintf("%s (%s)", l.Service, l.Mode))
		}
		if l.Backend != "" {
			row(w, "BACKEND:", l.Backend)
		}
		if l.Reason != "" {
			row(w, "REASON:", l.Reason)
		}
		row(w, "EXISTING:", map[bool]string{true: "yes: the flow is in the connection table", false: "no"}[l.Existing])
		row(w, "WHY:", l.Why)
	})
}

func healthCmd(a *app, c *command, args []string) error {
	if _, _, err := c.parse(a, args, 0, 0); err != nil {
		return err
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.get(nil, api("health")...)
	if err != nil {
		return err
	}
	var h healthReport
	now := time.Now()
	return a.emit(raw, &h, func(w io.Writer) {
		if len(h.Backends) == 0 {
			fmt.Fprintln(w, "no health-checked backends")
		} else {
			keys := make([]string, 0, len(h.Backends))
			for k := range h.Backends {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			row(w, "SERVICE", "BACKEND", "STATE", "SINCE", "LAST CHECK", "RESULT", "LATENCY", "TRANSITIONS")
			for _, k := range keys {
				s := h.Backends[k]
				svc, be, _ := strings.Cut(k, "/")
				state := s.State
				if !s.HeldUntil.IsZero() && s.HeldUntil.After(now) {
					state += " (held " + s.HeldUntil.Sub(now).Round(time.Second).String() + ")"
				}
				lat := "-"
				if !s.LastCheck.IsZero() {
					lat = strconv.FormatFloat(s.LatencyMS, 'f', 1, 64) + "ms"
				}
				res := s.LastResult
				if s.State == "down" && s.LastError != "" && s.LastError != res {
					res += "; last error: " + s.LastError
				}
				row(w, svc, be, state, ago(s.Since, now), ago(s.LastCheck, now), clip(orDash(res), 60), lat, s.Transitions)
			}
		}
		fmt.Fprintln(w)
		ct := h.Counters
		fmt.Fprintf(w, "%d targets, %d checks, %d failures, %d transitions, %d dampened\n", ct.Targets, ct.Checks, ct.Failures, ct.Transitions, ct.Dampened)
		if len(h.AllDown) > 0 {
			fmt.Fprintf(w, "every backend is down in: %s\n", strings.Join(h.AllDown, ", "))
		}
	})
}
