package preflight

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/xlb/xlb/internal/napi"
)

// irqInfo is one interrupt of an interface and the CPUs it may run on.
type irqInfo struct {
	irq  int
	name string // its /proc/interrupts name ("eth0-TxRx-0"); may be empty
	cpus []int
}

// kthreadInfo is a threaded NAPI's kthread ("napi/<if>-<id>").
type kthreadInfo struct {
	pid  int
	comm string
	cpus []int
}

// napiPlacement finds where the interface's NAPI runs: its interrupts
// (the netdev family's NAPI list, Linux 6.9+, else /proc/interrupts lines
// named after the interface) with their affinity, and in threaded mode
// the NAPI kthreads with theirs, and compares them with the workers' CPUs.
func (c *checker) napiPlacement(ifc *ifaceInfo) Result {
	name := ifc.cfg.Name
	list, lerr := napi.List(ifc.ni.Index)
	threaded, _ := readTrim(c.o.sys("class", "net", name, "threaded"))
	var irqNums []int
	var pids []int
	for _, n := range list {
		if n.IRQ >= 0 && !slices.Contains(irqNums, n.IRQ) {
			irqNums = append(irqNums, n.IRQ)
		}
		if n.PID > 0 {
			pids = append(pids, n.PID)
		}
	}
	names := interruptNames(c.o.ProcRoot)
	if len(irqNums) == 0 {
		irqNums = irqsNamed(names, name)
	}
	var irqs []irqInfo
	for _, n := range irqNums {
		irqs = append(irqs, irqInfo{irq: n, name: names[n], cpus: irqAffinity(c.o.ProcRoot, n)})
	}
	if lerr != nil && threaded == "1" {
		pids = kthreadsNamed(c.o.ProcRoot, name)
	}
	var kts []kthreadInfo
	for _, pid := range pids {
		comm, _ := readTrim(c.o.proc(strconv.Itoa(pid), "comm"))
		kts = append(kts, kthreadInfo{pid: pid, comm: comm, cpus: allowedList(c.o.ProcRoot, pid)})
	}
	deferIRQs, _ := readTrim(c.o.sys("class", "net", name, "napi_defer_hard_irqs"))
	groFlush, _ := readTrim(c.o.sys("class", "net", name, "gro_flush_timeout"))
	set, count := allowedCPUs()
	var free []int
	workers := workerCPUs(c.workerCount(), c.f.LB.CPUs, count)
	for cpu := 0; cpu < 1024; cpu++ {
		if set.IsSet(cpu) && !slices.Contains(workers, cpu) {
			free = append(free, cpu)
		}
	}
	return napiResult(napiFacts{name: name, irqs: irqs, kthreads: kts, workers: workers, free: free,
		deferIRQs: deferIRQs, groFlush: groFlush, poll: c.f.LB.Poll, listErr: lerr})
}

type napiFacts struct {
	name                string
	irqs                []irqInfo
	kthreads            []kthreadInfo
	workers, free       []int // the workers' CPUs; allowed CPUs without a worker
	deferIRQs, groFlush string
	poll                bool // lb.poll
	listErr             error
}

func napiResult(f napiFacts) Result {
	r := Result{Name: "napi " + f.name}
	if len(f.irqs) == 0 && len(f.kthreads) == 0 {
		r.Detail = "no NAPI interrupt or kthread of its own: received frames are processed in softirq on the CPU that raised it (veth: the sender's)"
		if f.listErr != nil {
			r.Detail += fmt.Sprintf("; the kernel does not list NAPIs (Linux 6.9+: %v), so only /proc/interrupts lines named after %s were looked for", f.listErr, f.name)
		}
		return r
	}
	var onWorker, elsewhere []string
	var irqFix, ktFix []string
	dest := "another CPU"
	if len(f.free) > 0 {
		dest = cpuList(f.free)
	}
	for _, q := range f.irqs {
		what := fmt.Sprintf("IRQ %d", q.irq)
		if q.name != "" {
			what += " (" + q.name + ")"
		}
		if hit := intersect(q.cpus, f.workers); len(hit) > 0 {
			onWorker = append(onWorker, fmt.Sprintf("%s can run on worker CPU %s", what, cpuList(hit)))
			irqFix = append(irqFix, fmt.Sprintf("echo %s > /proc/irq/%d/smp_affinity_list", dest, q.irq))
		} else {
			elsewhere = append(elsewhere, fmt.Sprintf("%s on CPU %s", what, cpuList(q.cpus)))
		}
	}
	for _, k := range f.kthreads {
		what := fmt.Sprintf("kthread %s (pid %d)", k.comm, k.pid)
		if hit := intersect(k.cpus, f.workers); len(hit) > 0 {
			onWorker = append(onWorker, fmt.Sprintf("%s can run on worker CPU %s", what, cpuList(hit)))
			ktFix = append(ktFix, fmt.Sprintf("taskset -pc %s %d", dest, k.pid))
		} else {
			elsewhere = append(elsewhere, fmt.Sprintf("%s on CPU %s", what, cpuList(k.cpus)))
		}
	}
	if len(onWorker) == 0 {
		r.Detail = list(elsewhere) + fmt.Sprintf(": off the worker CPUs (%s)", cpuList(f.workers))
		return r
	}
	// Busy polling takes a NAPI over only where the driver links it to
	// the socket's queue, which drivers with queue interrupts do; a veth
	// does not (its sockets never learn a NAPI id): its worker can only
	// yield the CPU to it.
	pollable := len(f.irqs) > 0
	deferral := f.deferIRQs != "" && f.deferIRQs != "0" && f.groFlush != "" && f.groFlush != "0"
	if pollable && deferral && !f.poll {
		r.Detail = list(onWorker) + fmt.Sprintf(": the worker busy-polls that NAPI itself (SO_PREFER_BUSY_POLL), and napi_defer_hard_irqs=%s, gro_flush_timeout=%s keep its interrupt off while it does (unless xlb run --poll)",
			f.deferIRQs, f.groFlush)
		return r
	}
	r.Status = Warn
	r.Detail = list(onWorker) + ": the worker shares that CPU with it"
	switch {
	case !pollable:
		r.Detail += " and cannot busy-poll it (the driver links no NAPI to its queues, as veth), so it only yields the CPU to it"
	case f.poll:
		r.Detail += " and, with lb.poll, does not busy-poll it"
	default:
		r.Detail += " and busy-polls it, but without interrupt deferral the interrupt keeps taking the CPU too"
	}
	r.Detail += ": it forwards less than with the NAPI on another CPU (about half over veth, docs/BENCHMARKS.md \"Busy polling and idle workers\")"
	moves := append(irqFix, ktFix...)
	if len(irqFix) > 0 {
		moves = append(moves, "and keep irqbalance away from it")
	}
	r.Fix = "move it off the workers (" + strings.Join(moves, "; ") + ") or set lb.cpus to CPUs without NAPI work"
	if pollable {
		r.Fix += fmt.Sprintf("; or let the busy-polling worker own it: echo 2 > /sys/class/net/%s/napi_defer_hard_irqs; echo 200000 > /sys/class/net/%s/gro_flush_timeout", f.name, f.name)
	}
	return r
}

func intersect(a, b []int) []int {
	var out []int
	for _, x := range a {
		if slices.Contains(b, x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// interruptNames maps the numbered lines of /proc/interrupts to their
// names (the last field: "eth0-TxRx-0", "virtio0-input.0").
func interruptNames(procRoot string) map[int]string {
	out := map[int]string{}
	fh, err := os.Open(filepath.Join(procRoot, "interrupts"))
	if err != nil {
		return out
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(fs[0], ":"))
		if err != nil || !strings.HasSuffix(fs[0], ":") {
			continue
		}
		out[n] = fs[len(fs)-1]
	}
	return out
}

// irqsNamed returns the interrupts whose name is ifname or starts with
// "ifname-" or "ifname@" (most drivers name their queue vectors so).
func irqsNamed(names map[int]string, ifname string) []int {
	var out []int
	for n, s := range names {
		if s == ifname || strings.HasPrefix(s, ifname+"-") || strings.HasPrefix(s, ifname+"@") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// irqAffinity reads the CPUs an interrupt is delivered to: its effective
// affinity when the kernel reports one, else the allowed list.
func irqAffinity(procRoot string, irq int) []int {
	dir := filepath.Join(procRoot, "irq", strconv.Itoa(irq))
	for _, f := range []string{"effective_affinity_list", "smp_affinity_list"} {
		s, err := readTrim(filepath.Join(dir, f))
		if err != nil || s == "" {
			continue
		}
		if cpus, err := parseCPUList(s); err == nil && len(cpus) > 0 {
			return cpus
		}
	}
	return nil
}

// allowedList reads a task's Cpus_allowed_list from /proc/<pid>/status.
func allowedList(procRoot string, pid int) []int {
	fh, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return nil
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Cpus_allowed_list:"); ok {
			cpus, _ := parseCPUList(v)
			return cpus
		}
	}
	return nil
}

// kthreadsNamed finds the threaded-NAPI kthreads "napi/<ifname>-<id>" by
// their comm (for kernels that do not list NAPIs; comm is cut at 15
// characters, and names repeat across network namespaces).
func kthreadsNamed(procRoot, ifname string) []int {
	ents, _ := os.ReadDir(procRoot)
	prefix := "napi/" + ifname + "-"
	if len(prefix) > 15 {
		prefix = prefix[:15]
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := readTrim(filepath.Join(procRoot, e.Name(), "comm"))
		if err == nil && strings.HasPrefix(comm, prefix) {
			out = append(out, pid)
		}
	}
	return out
}
