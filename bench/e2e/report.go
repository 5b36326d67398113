package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Result is one run of the benchmark, as written to bench/results.
type Result struct {
	Started  time.Time   `json:"started"`
	Seconds  float64     `json:"seconds"`
	Host     Host        `json:"host"`
	Settings Settings    `json:"settings"`
	UDP      []UDPRun    `json:"udp"`
	Conn     []ConnRun   `json:"conn,omitempty"`
	Replay   []ReplayRun `json:"replay,omitempty"`
	Notes    []string    `json:"notes,omitempty"`
}

// Host describes the machine.
type Host struct {
	Kernel   string `json:"kernel"`
	CPUModel string `json:"cpu_model"`
	CPUs     int    `json:"cpus"`
	Go       string `json:"go"`
	// Commit is the VCS revision the xlb binary was built from ("+dirty"
	// with uncommitted changes), when the build recorded it.
	Commit     string  `json:"commit,omitempty"`
	LoadBefore float64 `json:"load_before"` // 1-minute load average
	LoadAfter  float64 `json:"load_after"`
}

// Settings are the run's parameters.
type Settings struct {
	Reps          int     `json:"reps"`
	WindowSeconds float64 `json:"window_seconds"`
	WarmupSeconds float64 `json:"warmup_seconds"`
	ConnSeconds   float64 `json:"conn_seconds"`
	Rate          int     `json:"rate"`                 // 0: unpaced
	PacedRate     int     `json:"paced_rate,omitempty"` // of the paced cases
	FrameBytes    int     `json:"frame_bytes"`
	Flows         int     `json:"flows"`
	GenCPU        int     `json:"gen_cpu"`
	LBCPU         int     `json:"lb_cpu"`
}

// UDPRun is one counting window of one UDP case.
type UDPRun struct {
	Case    string `json:"case"`
	Kind    string `json:"kind"`
	Mode    string `json:"mode,omitempty"`
	Poll    bool   `json:"poll,omitempty"`
	Workers int    `json:"workers"`
	Rate    int    `json:"rate,omitempty"`     // offered rate when paced
	SameCPU bool   `json:"same_cpu,omitempty"` // generator on the balancer's CPU, nice 10
	Rep     int    `json:"rep"`

	Seconds      float64 `json:"seconds"`
	Offered      uint64  `json:"offered"`   // frames the generator sent
	Forwarded    uint64  `json:"forwarded"` // frames the sink counted
	OfferedPPS   float64 `json:"offered_pps"`
	ForwardedPPS float64 `json:"forwarded_pps"`
	Loss         float64 `json:"loss"` // 1 - forwarded/offered
	// CPUSeconds is the busy time of the balancer's CPUs (/proc/stat;
	// with two workers less the generator's and the sink's threads),
	// NsPerPacket that per forwarded packet. TaskSeconds and
	// TaskNsPerPacket count only the balancer's own tasks (its process or
	// thread and its NAPI kthreads); OtherCPU is the difference as a share
	// of a CPU: what else ran there.
	CPUSeconds       float64           `json:"cpu_seconds"`
	NsPerPacket      float64           `json:"ns_per_packet"`
	TaskSeconds      float64           `json:"task_seconds"`
	TaskNsPerPacket  float64           `json:"task_ns_per_packet"`
	OtherCPU         float64           `json:"other_cpu"`
	GeneratorSeconds float64           `json:"generator_seconds"`
	Stats            map[string]uint64 `json:"stats,omitempty"`
	Error            string            `json:"error,omitempty"`
}

func (u UDPRun) line() string {
	if u.Error != "" {
		return "FAILED: " + firstLine(u.Error)
	}
	return fmt.Sprintf("%s/s forwarded of %s/s offered (loss %.1f%%), %.0f ns/pkt CPU, %.0f ns/pkt tasks, other %.0f%%",
		si(u.ForwardedPPS), si(u.OfferedPPS), 100*u.Loss, u.NsPerPacket, u.TaskNsPerPacket, 100*u.OtherCPU)
}

// ConnRun is one wrk run.
type ConnRun struct {
	Case      string  `json:"case"`
	KeepAlive bool    `json:"keep_alive"`
	Rep       int     `json:"rep"`
	Requests  uint64  `json:"requests"`
	Seconds   float64 `json:"seconds"`
	RPS       float64 `json:"rps"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	Errors    uint64  `json:"errors"` // socket errors and non-2xx/3xx responses
	Error     string  `json:"error,omitempty"`
}

func (c ConnRun) line() string {
	if c.Error != "" {
		return "FAILED: " + firstLine(c.Error)
	}
	return fmt.Sprintf("%.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors", c.RPS, c.P50Ms, c.P99Ms, c.Errors)
}

// ReplayRun is one in-process `xlb bench replay`.
type ReplayRun struct {
	Workers     int     `json:"workers"`
	Rep         int     `json:"rep"`
	Packets     uint64  `json:"packets"`
	Mpps        float64 `json:"mpps"`
	NsPerPacket float64 `json:"ns_per_packet"`
	Error       string  `json:"error,omitempty"`
}

func (r ReplayRun) line() string {
	if r.Error != "" {
		return "FAILED: " + firstLine(r.Error)
	}
	return fmt.Sprintf("%.2f Mpps, %.0f ns/pkt per worker", r.Mpps, r.NsPerPacket)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

var (
	wrkReqs    = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)`)
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk --latency output into c.
func parseWrk(out string, c *ConnRun) error {
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("wrk: no Requests/sec in its output: %q", out)
	}
	c.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkReqs.FindStringSubmatch(out); m != nil {
		c.Requests, _ = strconv.ParseUint(m[1], 10, 64)
		c.Seconds = wrkDuration(m[2], m[3]) / 1000
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v := wrkDuration(m[2], m[3])
		if m[1] == "50" {
			c.P50Ms = v
		} else {
			c.P99Ms = v
		}
	}
	if m := wrkSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseUint(s, 10, 64)
			c.Errors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		c.Errors += n
	}
	return nil
}

// wrkDuration converts a wrk duration to milliseconds.
func wrkDuration(v, unit string) float64 {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return f / 1000
	case "s":
		return f * 1000
	case "m":
		return f * 60000
	}
	return f
}

// ---- summaries ----

// Span is the median and range of a figure over repetitions.
type Span struct{ Median, Min, Max float64 }

func span(v []float64) Span {
	if len(v) == 0 {
		return Span{math.NaN(), math.NaN(), math.NaN()}
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Span{m, s[0], s[len(s)-1]}
}

// UDPSummary sums up the repetitions of one UDP case.
type UDPSummary struct {
	Case                         string
	Workers                      int
	Runs, Failed                 int
	Forwarded, Offered, Loss     Span
	NsPerPacket, TaskNsPerPacket Span
	OtherCPU                     Span
	FirstError                   string
}

// SummarizeUDP groups the UDP runs by case, in the order they first ran.
func SummarizeUDP(runs []UDPRun) []UDPSummary {
	var order []string
	by := map[string][]UDPRun{}
	for _, r := range runs {
		if _, ok := by[r.Case]; !ok {
			order = append(order, r.Case)
		}
		by[r.Case] = append(by[r.Case], r)
	}
	var out []UDPSummary
	for _, name := range order {
		s := UDPSummary{Case: name}
		var fwd, off, loss, ns, tns, other []float64
		for _, r := range by[name] {
			s.Runs++
			s.Workers = r.Workers
			if r.Error != "" {
				s.Failed++
				if s.FirstError == "" {
					s.FirstError = firstLine(r.Error)
				}
				continue
			}
			fwd = append(fwd, r.ForwardedPPS)
			off = append(off, r.OfferedPPS)
			loss = append(loss, r.Loss)
			ns = append(ns, r.NsPerPacket)
			tns = append(tns, r.TaskNsPerPacket)
			other = append(other, r.OtherCPU)
		}
		s.Forwarded, s.Offered, s.Loss = span(fwd), span(off), span(loss)
		s.NsPerPacket, s.TaskNsPerPacket, s.OtherCPU = span(ns), span(tns), span(other)
		out = append(out, s)
	}
	return out
}

// ConnSummary sums up one connection-level case.
type ConnSummary struct {
	Case          string
	KeepAlive     bool
	Runs, Failed  int
	RPS, P50, P99 Span
	Errors        uint64
	FirstError    string
}

// SummarizeConn groups the wrk runs by case and keep-alive.
func SummarizeConn(runs []ConnRun) []ConnSummary {
	type key struct {
		c  string
		ka bool
	}
	var order []key
	by := map[key][]ConnRun{}
	for _, r := range runs {
		k := key{r.Case, r.KeepAlive}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], r)
	}
	var out []ConnSummary
	for _, k := range order {
		s := ConnSummary{Case: k.c, KeepAlive: k.ka}
		var rps, p50, p99 []float64
		for _, r := range by[k] {
			s.Runs++
			if r.Error != "" {
				s.Failed++
				if s.FirstError == "" {
					s.FirstError = firstLine(r.Error)
				}
				continue
			}
			rps, p50, p99 = append(rps, r.RPS), append(p50, r.P50Ms), append(p99, r.P99Ms)
			s.Errors += r.Errors
		}
		s.RPS, s.P50, s.P99 = span(rps), span(p50), span(p99)
		out = append(out, s)
	}
	return out
}

// ---- Markdown ----

// si formats a rate: 1.23 M, 456 k.
func si(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0f k", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func rangeOf(s Span, f func(float64) string) string {
	if math.IsNaN(s.Median) {
		return "–"
	}
	if f(s.Min) == f(s.Max) {
		return f(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

func pct(v float64) string   { return fmt.Sprintf("%.1f %%", 100*v) }
func ns(v float64) string    { return fmt.Sprintf("%.0f", v) }
func ms(v float64) string    { return fmt.Sprintf("%.2f", v) }
func kpps(v float64) string  { return fmt.Sprintf("%.0f k", v/1e3) }
func reqs(v float64) string  { return fmt.Sprintf("%.0f", v) }
func ratio(v float64) string { return fmt.Sprintf("%.2f×", v) }

// Markdown renders the run's tables. svgName, when set, is linked as the
// chart.
func Markdown(r *Result, svgName string) string {
	var b strings.Builder
	st := r.Settings
	rate := "unpaced (saturation)"
	if st.Rate > 0 {
		rate = fmt.Sprintf("paced to %s/s", si(float64(st.Rate)))
	}
	commit := ""
	if r.Host.Commit != "" {
		commit = " (xlb " + r.Host.Commit + ")"
	}
	fmt.Fprintf(&b, "Run of %s%s: %d repetitions, interleaved, of a %.0f s counting window after %.0f s of warm-up; %d-byte UDP over %d flows, %s; generator on CPU %d, balancer and its NAPIs on CPU %d. Host: %s, %d CPUs (%s), %s; load average %.1f before, %.1f after; the run took %s.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), commit, st.Reps, st.WindowSeconds, st.WarmupSeconds, st.FrameBytes, st.Flows, rate, st.GenCPU, st.LBCPU,
		r.Host.Kernel, r.Host.CPUs, r.Host.CPUModel, r.Host.Go, r.Host.LoadBefore, r.Host.LoadAfter, (time.Duration(r.Seconds) * time.Second).String())
	udp := SummarizeUDP(r.UDP)
	var single []UDPSummary
	var multi *UDPSummary
	for i := range udp {
		if udp[i].Workers >= 2 {
			multi = &udp[i]
		} else {
			single = append(single, udp[i])
		}
	}
	var others []float64
	for _, s := range single {
		if !math.IsNaN(s.OtherCPU.Median) {
			others = append(others, s.OtherCPU.Median)
		}
	}
	if o := span(others); !math.IsNaN(o.Max) && o.Max > 0.15 {
		fmt.Fprintf(&b, "**Noisy run:** other work took %s of the balancer's CPU (median per case, %s–%s): the balancer got the rest, so packets/s and the /proc/stat figures are low and vary from run to run. The balancer tasks' ns/packet is the steadier figure.\n\n",
			pct(o.Median), pct(o.Min), pct(o.Max))
	}
	if len(single) > 0 {
		b.WriteString("| path | forwarded packets/s | offered packets/s | loss | CPU ns/packet (/proc/stat) | ns/packet (balancer tasks) | other load on its CPU |\n|---|---|---|---|---|---|---|\n")
		for _, s := range single {
			if s.Failed == s.Runs {
				fmt.Fprintf(&b, "| %s | failed: %s | | | | | |\n", s.Case, mdEscape(s.FirstError))
				continue
			}
			name := s.Case
			if s.Failed > 0 {
				name += fmt.Sprintf(" (%d of %d runs failed)", s.Failed, s.Runs)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, rangeOf(s.Forwarded, si), rangeOf(s.Offered, si),
				rangeOf(s.Loss, pct), rangeOf(s.NsPerPacket, ns), rangeOf(s.TaskNsPerPacket, ns), pct(s.OtherCPU.Median))
		}
		b.WriteString("\n")
	}
	for _, v := range []struct{ suffix, what string }{
		{"", "generator on the other CPU"},
		{SameCPUSuffix, "generator on the balancer's CPU at nice 10"},
	} {
		x, bare := find(udp, "xlb dsr"+v.suffix), find(udp, "bare AF_XDP forwarder"+v.suffix)
		if x == nil || bare == nil || math.IsNaN(x.Forwarded.Median) || math.IsNaN(bare.Forwarded.Median) {
			continue
		}
		pr := x.Forwarded.Median / bare.Forwarded.Median
		nr := x.NsPerPacket.Median / bare.NsPerPacket.Median
		tr := x.TaskNsPerPacket.Median / bare.TaskNsPerPacket.Median
		fmt.Fprintf(&b, "xlb dsr against the bare AF_XDP forwarder, %s (medians): %s the packets/s (target ≥ 0.9×: %s), %s the CPU ns/packet (%s by the balancer's tasks; target ≤ 1.15×: %s).\n\n",
			v.what, ratio(pr), verdict(pr >= 0.9), ratio(nr), ratio(tr), verdict(nr <= 1.15))
	}
	if r.Settings.PacedRate > 0 {
		suffix := fmt.Sprintf(", paced %s/s", si(float64(r.Settings.PacedRate)))
		x, bare := find(udp, "xlb dsr"+suffix), find(udp, "bare AF_XDP forwarder"+suffix)
		if x != nil && bare != nil && !math.IsNaN(x.NsPerPacket.Median) && !math.IsNaN(bare.NsPerPacket.Median) {
			fmt.Fprintf(&b, "Paced to %s/s: xlb dsr forwarded %s of what was offered against %s for the bare forwarder, at %s its CPU ns/packet (%s by the balancer's tasks).\n\n",
				si(float64(r.Settings.PacedRate)), pct(1-x.Loss.Median), pct(1-bare.Loss.Median),
				ratio(x.NsPerPacket.Median/bare.NsPerPacket.Median), ratio(x.TaskNsPerPacket.Median/bare.TaskNsPerPacket.Median))
		}
	}
	if multi != nil {
		b.WriteString("Multiple queues: veths with 2 rx/tx queues, xlb `lb.workers: 2` (one worker per queue, on CPUs 0 and 1, each queue's NAPI with its worker) and a generator thread on each CPU at nice 10, so that it takes what the balancer leaves (a veth picks the rx queue by the sending CPU), against the 1-worker cases above (veths with one queue, worker on CPU 1): the generator on CPU 0, and, the like-for-like reference, the generator on the worker's CPU at nice 10. CPU per packet with two workers is both CPUs' busy time less the generator's and the sink's threads.\n\n")
		b.WriteString("| | forwarded packets/s | CPU ns/packet | ns/packet (balancer tasks) | 2 workers against it |\n|---|---|---|---|---|\n")
		refs := []struct{ name, label string }{
			{"xlb dsr", "1 worker, generator on CPU 0"},
			{"xlb dsr" + SameCPUSuffix, "1 worker, generator on its CPU (nice 10)"},
		}
		for _, ref := range refs {
			one := find(udp, ref.name)
			if one == nil || math.IsNaN(one.Forwarded.Median) {
				continue
			}
			scale := "–"
			if !math.IsNaN(multi.Forwarded.Median) && one.Forwarded.Median > 0 {
				scale = ratio(multi.Forwarded.Median / one.Forwarded.Median)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", ref.label, rangeOf(one.Forwarded, kpps), rangeOf(one.NsPerPacket, ns), rangeOf(one.TaskNsPerPacket, ns), scale)
		}
		if multi.Failed == multi.Runs {
			fmt.Fprintf(&b, "| 2 workers | failed: %s | | | |\n", mdEscape(multi.FirstError))
		} else {
			fmt.Fprintf(&b, "| 2 workers | %s | %s | %s | |\n", rangeOf(multi.Forwarded, kpps), rangeOf(multi.NsPerPacket, ns), rangeOf(multi.TaskNsPerPacket, ns))
		}
		b.WriteString("\n")
	}
	if len(r.Replay) > 0 {
		byW := map[int][]float64{}
		nsW := map[int][]float64{}
		for _, rr := range r.Replay {
			if rr.Error == "" {
				byW[rr.Workers] = append(byW[rr.Workers], rr.Mpps)
				nsW[rr.Workers] = append(nsW[rr.Workers], rr.NsPerPacket)
			}
		}
		b.WriteString("In process (`xlb bench replay`, dsr, mixed traffic from gen-pcap, no kernel):\n\n| workers | Mpps (wall clock) | ns/packet per worker |\n|---|---|---|\n")
		ws := []int{}
		for w := range byW {
			ws = append(ws, w)
		}
		sort.Ints(ws)
		for _, w := range ws {
			fmt.Fprintf(&b, "| %d | %s | %s |\n", w, rangeOf(span(byW[w]), func(v float64) string { return fmt.Sprintf("%.2f", v) }), rangeOf(span(nsW[w]), ns))
		}
		if len(byW[1]) > 0 && len(byW[2]) > 0 {
			fmt.Fprintf(&b, "| scaling | %s | |\n", ratio(span(byW[2]).Median/span(byW[1]).Median))
		}
		b.WriteString("\n")
	}
	if conn := SummarizeConn(r.Conn); len(conn) > 0 {
		fmt.Fprintf(&b, "Connection level: wrk (1 thread, 32 connections, %.0f s, on CPU %d) to nginx (one worker, on CPU %d, both backend addresses) through the balancer on CPU %d; requests/s and latency, median of the repetitions (range in brackets).\n\n",
			st.ConnSeconds, st.GenCPU, st.GenCPU, st.LBCPU)
		b.WriteString("| path | keep-alive req/s | p50 ms | p99 ms | `Connection: close` req/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|\n")
		var order []string
		byCase := map[string][2]*ConnSummary{}
		for i := range conn {
			c := &conn[i]
			v, ok := byCase[c.Case]
			if !ok {
				order = append(order, c.Case)
			}
			if c.KeepAlive {
				v[0] = c
			} else {
				v[1] = c
			}
			byCase[c.Case] = v
		}
		cell := func(c *ConnSummary) string {
			if c == nil {
				return "– | – | –"
			}
			if c.Failed == c.Runs {
				return "failed: " + mdEscape(c.FirstError) + " | | "
			}
			s := fmt.Sprintf("%s | %s | %s", rangeOf(c.RPS, reqs), rangeOf(c.P50, ms), rangeOf(c.P99, ms))
			if c.Errors > 0 {
				s = fmt.Sprintf("%s (%d errors)", s, c.Errors)
			}
			return s
		}
		for _, name := range order {
			v := byCase[name]
			fmt.Fprintf(&b, "| %s | %s | %s |\n", name, cell(v[0]), cell(v[1]))
		}
		b.WriteString("\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "Note: %s\n\n", n)
	}
	if svgName != "" {
		fmt.Fprintf(&b, "![forwarded packets/s and CPU per packet](%s)\n", svgName)
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func find(s []UDPSummary, name string) *UDPSummary {
	for i := range s {
		if s[i].Case == name {
			return &s[i]
		}
	}
	return nil
}

// ---- SVG ----

// SVG draws the UDP cases as three bar charts side by side: forwarded
// packets/s, CPU ns/packet (/proc/stat) and the balancer tasks' ns/packet,
// medians with the range as a whisker.
func SVG(r *Result) string {
	udp := SummarizeUDP(r.UDP)
	const (
		rowH   = 26
		top    = 56
		chartW = 300
		gap    = 40
		right  = 20
	)
	labelW := 190 // room for the case names, at about 7 px a character
	for _, s := range udp {
		labelW = max(labelW, 7*len([]rune(s.Case))+16)
	}
	w := labelW + 3*chartW + 2*gap + right
	h := top + rowH*len(udp) + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">xlb-bench, %s (%d-byte UDP, median and range of %d runs)</text>`+"\n",
		10, r.Started.Format("2006-01-02 15:04 UTC"), r.Settings.FrameBytes, r.Settings.Reps)
	panels := []struct {
		title string
		x0    int
		get   func(UDPSummary) Span
		fmtv  func(float64) string
		color string
	}{
		{"forwarded packets/s", labelW, func(s UDPSummary) Span { return s.Forwarded }, kpps, "#3b7dd8"},
		{"CPU ns/packet, /proc/stat (lower is better)", labelW + chartW + gap, func(s UDPSummary) Span { return s.NsPerPacket }, ns, "#d8833b"},
		{"ns/packet, balancer tasks (lower is better)", labelW + 2*(chartW+gap), func(s UDPSummary) Span { return s.TaskNsPerPacket }, ns, "#6a9f3a"},
	}
	for _, p := range panels {
		maxV := 0.0
		for _, s := range udp {
			if v := p.get(s).Max; !math.IsNaN(v) {
				maxV = math.Max(maxV, v)
			}
		}
		if maxV == 0 {
			maxV = 1
		}
		scale := float64(chartW-60) / maxV
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", p.x0, top-12, p.title)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`+"\n", p.x0, top-4, p.x0, top+rowH*len(udp))
		for i, s := range udp {
			y := top + i*rowH
			v := p.get(s)
			if math.IsNaN(v.Median) {
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#a00">failed</text>`+"\n", p.x0+4, y+15)
				continue
			}
			bw := v.Median * scale
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", p.x0, y+4, bw, rowH-10, p.color)
			x1, x2 := float64(p.x0)+v.Min*scale, float64(p.x0)+v.Max*scale
			cy := y + rowH/2 - 1
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222"/>`+"\n", x1, cy, x2, cy)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222"/>`+"\n", x1, cy-4, x1, cy+4)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222"/>`+"\n", x2, cy-4, x2, cy+4)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", x2+5, y+15, p.fmtv(v.Median))
		}
	}
	for i, s := range udp {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, top+i*rowH+15, xmlEscape(s.Case))
	}
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">generator on CPU %d, balancer on CPU %d; veth, AF_XDP copy mode; %s</text>`+"\n",
		h-14, r.Settings.GenCPU, r.Settings.LBCPU, xmlEscape(r.Host.Kernel))
	b.WriteString("</svg>\n")
	return b.String()
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	for _, c := range s {
		switch c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// ---- files ----

// Files are what Save wrote.
type Files struct{ JSON, Markdown, SVG string }

// Save writes the run to dir as e2e-<timestamp>.json, .md and .svg.
func Save(r *Result, dir string) (Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, err
	}
	base := filepath.Join(dir, "e2e-"+r.Started.Format("20060102-150405"))
	f := Files{JSON: base + ".json", Markdown: base + ".md", SVG: base + ".svg"}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return f, err
	}
	for _, w := range []struct {
		path string
		data []byte
	}{
		{f.JSON, append(js, '\n')},
		{f.Markdown, []byte("# xlb-bench\n\n" + Markdown(r, filepath.Base(f.SVG)))},
		{f.SVG, []byte(SVG(r))},
	} {
		if err := os.WriteFile(w.path, w.data, 0o644); err != nil {
			return f, err
		}
	}
	return f, nil
}

// Load reads a run written by Save.
func Load(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("e2e: %s: %w", path, err)
	}
	return &r, nil
}

// Newest returns the newest e2e-*.json in dir (by name: the names are
// timestamps).
func Newest(dir string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "e2e-*.json"))
	if err != nil {
		return "", err
	}
	if len(m) == 0 {
		return "", fmt.Errorf("e2e: no e2e-*.json in %s", dir)
	}
	sort.Strings(m)
	return m[len(m)-1], nil
}

// Doc markers: UpdateDoc rewrites what lies between them.
const (
	DocBegin = "<!-- bench-e2e:begin (written by xlb-bench; edits between the markers are lost) -->"
	DocEnd   = "<!-- bench-e2e:end -->"
)

// UpdateDoc replaces the part of the Markdown file between DocBegin and
// DocEnd with body. The file must hold both markers.
func UpdateDoc(path, body string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, DocBegin)
	j := strings.Index(s, DocEnd)
	if i < 0 || j < i {
		return errors.New("e2e: " + path + " has no bench-e2e markers (" + DocBegin + " … " + DocEnd + ")")
	}
	out := s[:i+len(DocBegin)] + "\n\n" + strings.TrimSpace(body) + "\n\n" + s[j:]
	if out == s {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
