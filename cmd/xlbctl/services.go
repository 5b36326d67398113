package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

var serviceCommands = []*command{
	{path: "service list", summary: "every service with its backends' state",
		detail: "Lists every service: its VIP and port, protocol, forwarding mode, scheduler and how many\n" +
			"of its backends are up (active and not down by health check). GET /api/v1/services.",
		run: serviceList},
	{path: "service get", args: "NAME", summary: "one service and its backends",
		detail: "Shows one service, its health check, its traffic and its backends. GET /api/v1/services/NAME.",
		run:    serviceGet},
	{path: "service add", args: "[flags] | -f FILE", summary: "add a service",
		detail: "Adds a service, from flags or from a file holding one service object in YAML or JSON\n" +
			"(the keys of the configuration file's services[]; -f - reads stdin). Keys left out get\n" +
			"their defaults (protocol tcp, mode dsr, scheduler maglev). POST /api/v1/services.\n\n" +
			"  xlbctl service add --name web --vip 198.51.100.10 --port 80 \\\n" +
			"      --backend 10.0.0.11 --backend 10.0.0.12,weight=50 --health-type http --health-path /healthz\n" +
			"  xlbctl service add -f web.yaml",
		setup: serviceAddFlags, run: serviceAdd},
	{path: "service rm", args: "NAME", summary: "remove a service",
		detail: "Removes a service: its VIP stops being balanced at once. DELETE /api/v1/services/NAME.",
		run:    serviceRm},
}

func serviceList(a *app, c *command, args []string) error {
	_, _, cl, err := c.parseClient(a, args, 0, 0)
	if err != nil {
		return err
	}
	raw, err := cl.get(nil, api("services")...)
	if err != nil {
		return err
	}
	var l serviceListView
	return a.emit(raw, &l, func(w io.Writer) {
		if len(l.Services) == 0 {
			fmt.Fprintln(w, "no services")
			return
		}
		row(w, "NAME", "VIP:PORT", "PROTO", "MODE", "SCHED", "BACKENDS")
		for _, s := range l.Services {
			row(w, s.Name, hostPort(s.VIP, s.Port), s.Protocol, s.Mode, s.Scheduler, backendsUp(&s))
		}
	})
}

// backendsUp writes "up/total up", and "ALL DOWN" when the service serves
// over backends that are all down by health check.
func backendsUp(s *serviceView) string {
	up := 0
	for _, b := range s.Backends {
		if isUp(&b) {
			up++
		}
	}
	out := fmt.Sprintf("%d/%d up", up, len(s.Backends))
	if s.AllIsDown {
		out += " (ALL DOWN: all_down " + orDash(s.AllDown) + ")"
	}
	return out
}

// isUp: active and not down by health check (an unchecked or not yet
// decided backend takes flows).
func isUp(b *backendView) bool {
	return b.State == "active" && (b.Health == nil || b.Health.State != "down")
}

func serviceGet(a *app, c *command, args []string) error {
	_, pos, cl, err := c.parseClient(a, args, 1, 1)
	if err != nil {
		return err
	}
	raw, err := cl.get(nil, api("services", pos[0])...)
	if err != nil {
		return err
	}
	var s serviceView
	return a.emit(raw, &s, func(w io.Writer) {
		row(w, "NAME:", s.Name)
		row(w, "VIP:", hostPort(s.VIP, s.Port)+" "+s.Protocol)
		mode := s.Mode
		if s.Mode == "l3dsr" {
			mode += fmt.Sprintf(" (dscp %d)", s.DSCP)
		}
		row(w, "MODE:", mode)
		sched := s.Scheduler
		if s.FragHash {
			sched += " (frag_hash)"
		}
		row(w, "SCHEDULER:", sched)
		row(w, "HEALTH:", describeHealth(&s.Health))
		row(w, "ALL DOWN:", orDash(s.AllDown))
		row(w, "TRAFFIC:", fmt.Sprintf("%d packets, %s, %d new flows, %d flows now",
			s.Counters.Packets, bytesHuman(s.Counters.Bytes), s.Counters.NewFlows, s.Counters.Flows))
		row(w, "BACKENDS:", backendsUp(&s))
		if len(s.Backends) > 0 {
			fmt.Fprintln(w)
			backendTable(w, s.Backends)
		}
	})
}

// describeHealth writes a service's health check in one line.
func describeHealth(h *healthSpec) string {
	if h.Type == "" || h.Type == "none" {
		return "none"
	}
	parts := []string{h.Type}
	if h.Port != 0 {
		parts = append(parts, fmt.Sprintf("port %d", h.Port))
	}
	if h.Path != "" {
		parts = append(parts, h.Path)
	}
	if h.Expect != 0 {
		parts = append(parts, fmt.Sprintf("expect %d", h.Expect))
	}
	if h.Interval != "" {
		parts = append(parts, "every "+h.Interval)
	}
	if h.Timeout != "" {
		parts = append(parts, "timeout "+h.Timeout)
	}
	if h.Rise != 0 {
		parts = append(parts, fmt.Sprintf("rise %d", h.Rise))
	}
	if h.Fall != 0 {
		parts = append(parts, fmt.Sprintf("fall %d", h.Fall))
	}
	return strings.Join(parts, ", ")
}

func serviceAddFlags(fs *flag.FlagSet) {
	fs.String("f", "", "read the service from `FILE` (YAML or JSON; - = stdin) instead of flags")
	fs.String("name", "", "service name (or give it as the only argument)")
	fs.String("vip", "", "virtual IP `address`")
	fs.Int("port", 0, "`port` (0 = every port)")
	fs.String("protocol", "", "tcp or udp (default tcp)")
	fs.String("mode", "", "dsr, tunnel, l3dsr, nat or fullnat (default dsr)")
	fs.String("scheduler", "", "maglev, rr, wrr, lc, wlc or sh (default maglev)")
	fs.Int("dscp", 0, "DSCP `code` of an l3dsr service")
	fs.Bool("frag-hash", false, "schedule by addresses only, so fragments follow their flow")
	fs.String("all-down", "", "when every backend is down by health check: serve (default) or drop")
	fs.Var(&listFlag{}, "backend", "a backend `ADDR[:PORT][,weight=N][,state=S][,mac=M][,interface=IF]` (repeatable)")
	fs.String("health-type", "", "health check: tcp, http, https, udp or none")
	fs.Int("health-port", 0, "health check `port` (default the backend's)")
	fs.String("health-path", "", "http(s) check `path`, e.g. /healthz")
	fs.String("health-host", "", "http(s) check Host header")
	fs.Int("health-expect", 0, "http(s) check: expected `status` (default 200)")
	fs.String("health-send", "", "tcp/udp check: `bytes` to send")
	fs.String("health-receive", "", "tcp/udp check: `bytes` the answer must contain")
	fs.String("health-interval", "", "time between checks, e.g. 2s")
	fs.String("health-timeout", "", "time limit of one check, e.g. 1s")
	fs.Int("health-rise", 0, "successes that bring a backend up")
	fs.Int("health-fall", 0, "failures that take a backend down")
}

func serviceAdd(a *app, c *command, args []string) error {
	fs, pos, err := c.parse(a, args, 0, 1)
	if err != nil {
		return err
	}
	var body []byte
	if file := flagString(fs, "f"); flagSet(fs, "f") {
		others := []string{}
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "f" {
				others = append(others, "--"+f.Name)
			}
		})
		if len(others) > 0 || len(pos) > 0 {
			return &usageError{cmd: c, msg: "service add: -f takes the whole service; drop " + strings.Join(append(others, pos...), " ")}
		}
		data, err := a.readFile(file)
		if err != nil {
			return err
		}
		if body, err = objectJSON(file, data); err != nil {
			return err
		}
	} else {
		svc, err := serviceFromFlags(c, fs, pos)
		if err != nil {
			return err
		}
		body, _ = json.Marshal(svc)
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.do(request{method: http.MethodPost, path: api("services"), body: body})
	if err != nil {
		return err
	}
	var s serviceView
	return a.emit(raw, &s, func(w io.Writer) {
		fmt.Fprintf(w, "service %s added: %s %s, %s, %d backends\n", s.Name, hostPort(s.VIP, s.Port), s.Protocol, s.Mode, len(s.Backends))
	})
}

// serviceFromFlags builds the service object from service add's flags:
// only the keys given, so the API fills in the defaults.
func serviceFromFlags(c *command, fs *flag.FlagSet, pos []string) (map[string]any, error) {
	svc := map[string]any{}
	name := flagString(fs, "name")
	if len(pos) == 1 {
		if name != "" && name != pos[0] {
			return nil, &usageError{cmd: c, msg: fmt.Sprintf("service add: two names: --name %s and %s", name, pos[0])}
		}
		name = pos[0]
	}
	if name == "" {
		return nil, &usageError{cmd: c, msg: "service add: missing --name (or -f FILE)"}
	}
	svc["name"] = name
	for _, k := range []string{"vip", "protocol", "mode", "scheduler", "all-down"} {
		if flagSet(fs, k) {
			svc[strings.ReplaceAll(k, "-", "_")] = flagString(fs, k)
		}
	}
	for _, k := range []string{"port", "dscp"} {
		if flagSet(fs, k) {
			svc[k] = flagInt(fs, k)
		}
	}
	if flagSet(fs, "frag-hash") {
		svc["frag_hash"] = flagBool(fs, "frag-hash")
	}
	health := map[string]any{}
	for _, k := range []string{"type", "path", "host", "send", "receive", "interval", "timeout"} {
		if flagSet(fs, "health-"+k) {
			health[k] = flagString(fs, "health-"+k)
		}
	}
	for _, k := range []string{"port", "expect", "rise", "fall"} {
		if flagSet(fs, "health-"+k) {
			health[k] = flagInt(fs, "health-"+k)
		}
	}
	if len(health) > 0 {
		svc["health"] = health
	}
	backends := []map[string]any{}
	for _, spec := range fs.Lookup("backend").Value.(flag.Getter).Get().([]string) {
		b, err := parseBackendSpec(spec)
		if err != nil {
			return nil, &usageError{cmd: c, msg: "service add: --backend " + err.Error()}
		}
		backends = append(backends, b)
	}
	svc["backends"] = backends
	return svc, nil
}

// parseBackendSpec reads ADDR[:PORT][,weight=N][,state=S][,mac=M][,interface=IF].
func parseBackendSpec(spec string) (map[string]any, error) {
	parts := strings.Split(spec, ",")
	b := addrPort(parts[0])
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q: %q is not key=value", spec, kv)
		}
		switch k {
		case "weight":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("%q: weight %q is not a number", spec, v)
			}
			b[k] = n
		case "state", "mac", "interface":
			b[k] = v
		default:
			return nil, fmt.Errorf("%q: unknown key %q (weight, state, mac, interface)", spec, k)
		}
	}
	return b, nil
}

// addrPort reads ADDR[:PORT] ("10.0.0.1", "10.0.0.1:80", "2001:db8::1",
// "[2001:db8::1]:80") into address and port keys. What is not an address
// goes to the API as written, which names the key at fault.
func addrPort(s string) map[string]any {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return map[string]any{"address": ap.Addr().String(), "port": int(ap.Port())}
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return map[string]any{"address": a.String()}
	}
	if h, p, ok := strings.Cut(s, ":"); ok && !strings.Contains(p, ":") {
		if n, err := strconv.Atoi(p); err == nil {
			return map[string]any{"address": h, "port": n}
		}
	}
	return map[string]any{"address": s}
}

// readFile reads FILE, or stdin for "-".
func (a *app) readFile(name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// isJSONFile decides a file's format: by extension, else by its first
// character.
func isJSONFile(name string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return true
	case ".yaml", ".yml":
		return false
	}
	t := strings.TrimSpace(string(data))
	return strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[")
}

// objectJSON returns a YAML or JSON file's object as JSON.
func objectJSON(name string, data []byte) ([]byte, error) {
	if isJSONFile(name, data) {
		if !json.Valid(data) {
			var v any
			err := json.Unmarshal(data, &v)
			return nil, fmt.Errorf("%s is not valid JSON: %w", displayName(name), err)
		}
		return data, nil
	}
	b, err := yamlToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not valid YAML: %w", displayName(name), err)
	}
	return b, nil
}

func displayName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}

func serviceRm(a *app, c *command, args []string) error {
	_, pos, cl, err := c.parseClient(a, args, 1, 1)
	if err != nil {
		return err
	}
	return a.remove(cl, api("services", pos[0]), "service "+pos[0]+" removed")
}

// parseClient is c.parse followed by a.client: the flags and positional
// arguments of a command that calls the API, and the client to call it
// with.
func (c *command) parseClient(a *app, args []string, min, max int) (*flag.FlagSet, []string, *client, error) {
	fs, pos, err := c.parse(a, args, min, max)
	if err != nil {
		return nil, nil, nil, err
	}
	cl, err := a.client()
	if err != nil {
		return nil, nil, nil, err
	}
	return fs, pos, cl, nil
}

// remove sends DELETE for the API resource at path and, in table format,
// writes the line done ("service web removed").
func (a *app) remove(cl *client, path []string, done string) error {
	if _, err := cl.do(request{method: http.MethodDelete, path: path}); err != nil {
		return err
	}
	if a.format == fmtTable {
		fmt.Fprintln(a.stdout, done)
	}
	return nil
}
