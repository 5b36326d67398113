package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

const apiAddr = "127.0.0.1:9900" // inside the lb namespace

// backend is one backend host's HTTP server on ports 80 and 8080 (on
// 0.0.0.0, so it also answers on the VIP on lo), which the test can stop.
type backend struct {
	name, addr string
	srv        *http.Server
	wg         sync.WaitGroup
	once       sync.Once
}

func (b *backend) stop() {
	b.once.Do(func() {
		b.srv.Close()
		b.wg.Wait()
	})
}

func startBackend(t *testing.T, h *netns.Host) *backend {
	t.Helper()
	b := &backend{name: h.Name, addr: h.Addr.String()}
	var ls []net.Listener
	err := h.Do(func() error {
		for _, port := range []int{80, 8080} {
			l, err := net.Listen("tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		return nil
	})
	if err != nil {
		for _, l := range ls {
			l.Close()
		}
		t.Fatalf("backend %s: %v", h.Name, err)
	}
	b.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(netns.HTTPReply{Backend: b.name, Remote: r.RemoteAddr})
	})}
	for _, l := range ls {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.srv.Serve(l)
		}()
	}
	t.Cleanup(b.stop)
	return b
}

// traffic is the background load: new HTTP connections from the client
// namespace to the VIP, counted by the backend that answered.
type traffic struct {
	mu     sync.Mutex
	counts map[string]int
	errors int
	last   string
	// reused counts answers to a connection whose 4-tuple (the client's
	// source port; the rest is fixed) a recent one of the same backend
	// had: the kernel picked the port again while xlb's connection table
	// still held the old, closing flow, so it went where that flow went.
	reused map[string]int
	ports  map[string]portUse
	recent []answer // the last answers, newest last
}

type answer struct {
	Backend string `json:"backend"`
	Remote  string `json:"remote"`
	At      int64  `json:"at_ms"` // Unix milliseconds
	Reused  bool   `json:"reused,omitempty"`
}

type portUse struct {
	backend string
	at      time.Time
}

// conntrackMemory is how long a closed flow may stay in xlb's table
// (lb.conntrack.tcp_closing, 10 s by default, plus slack).
const conntrackMemory = 15 * time.Second

// note records one answer; remote is the client's ip:port as the backend saw it.
func (tr *traffic) note(name, remote string) {
	if tr.counts == nil {
		tr.counts, tr.reused, tr.ports = map[string]int{}, map[string]int{}, map[string]portUse{}
	}
	tr.counts[name]++
	now := time.Now()
	a := answer{Backend: name, Remote: remote, At: now.UnixMilli()}
	if u, ok := tr.ports[remote]; ok && u.backend == name && now.Sub(u.at) < conntrackMemory {
		tr.reused[name]++
		a.Reused = true
	}
	tr.ports[remote] = portUse{name, now}
	if tr.recent = append(tr.recent, a); len(tr.recent) > 400 {
		tr.recent = tr.recent[100:]
	}
}

func (tr *traffic) run(ctx context.Context, c *http.Client, url string, every time.Duration) {
	for ctx.Err() == nil {
		name, remote, err := fetch(ctx, c, url)
		tr.mu.Lock()
		if err != nil {
			tr.errors++
			tr.last = err.Error()
		} else {
			tr.note(name, remote)
		}
		tr.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}

func (tr *traffic) snapshot() map[string]any {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	c, re := map[string]int{}, map[string]int{}
	total := 0
	for k, v := range tr.counts {
		c[k] = v
		total += v
	}
	for k, v := range tr.reused {
		re[k] = v
	}
	return map[string]any{"counts": c, "reused": re, "total": total, "errors": tr.errors, "last_error": tr.last, "now_ms": time.Now().UnixMilli()}
}

// fetch returns the backend that answered and the client's address as it saw it.
func fetch(ctx context.Context, c *http.Client, url string) (backend, remote string, err error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var r netns.HTTPReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", "", fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return r.Backend, r.Remote, nil
}

// need reports a missing tool: a skip, or a failure under make dashboard-test.
func need(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (make dashboard-test installs it)"
	if os.Getenv("XLB_DASHBOARD_E2E") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func TestDashboard(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		need(t, "node is not installed")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		need(t, "chromium is not installed at %s", chromium)
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		need(t, "playwright-core is not installed in mgmt/web/e2e")
	}
	shots := os.Getenv("XLB_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	shots, _ = filepath.Abs(shots)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	bin := filepath.Join(t.TempDir(), "xlb")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/xlb/xlb/cmd/xlb").CombinedOutput(); err != nil {
		t.Fatalf("build xlb: %v\n%s", err, out)
	}

	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: "dsr", Backends: 3})
	backends := map[string]*backend{}
	var infoBackends []map[string]string
	for _, h := range tp.Backends {
		b := startBackend(t, h)
		backends[b.name] = b
		infoBackends = append(infoBackends, map[string]string{"name": b.name, "addr": b.addr})
	}

	// xlb with a fast TCP health check and an API token.
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "interfaces:\n  - {name: %s, xdp: native}\nlb:\n  workers: 1\n  conntrack: {capacity: 65536}\napi: {listen: %s}\n", tp.LBClientIface, apiAddr)
	fmt.Fprintf(&cfg, "services:\n  - name: web\n    vip: %s\n    port: 80\n    protocol: tcp\n    mode: dsr\n    scheduler: maglev\n", tp.VIP)
	fmt.Fprintf(&cfg, "    health: {type: tcp, interval: 200ms, timeout: 150ms, fall: 2, rise: 2}\n    backends:\n")
	for _, h := range tp.Backends {
		fmt.Fprintf(&cfg, "      - {address: %s, port: 80, weight: 100}\n", h.Addr)
	}
	cfgPath := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)

	var logs syncBuf
	xlb := exec.Command("ip", "netns", "exec", tp.LB.NS, bin, "run", "--config", cfgPath, "--poll", "--log-format", "console")
	xlb.Env = append(os.Environ(), "XLB_API_TOKEN="+token)
	xlb.Stdout, xlb.Stderr = &logs, &logs
	if err := xlb.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- xlb.Wait() }()
	defer func() {
		_ = xlb.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = xlb.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("xlb logs:\n%s", logs.String())
		}
	}()
	apiClient := tp.LB.HTTPClient(2 * time.Second)
	up := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := apiClient.Get("http://" + apiAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				up = true
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("xlb exited: %v\n%s", err, logs.String())
		default:
		}
	}
	if !up {
		t.Fatalf("xlb did not come up\n%s", logs.String())
	}

	// Real traffic through the VIP for the whole test.
	tr := &traffic{}
	trCtx, trStop := context.WithCancel(ctx)
	var trWG sync.WaitGroup
	trWG.Add(1)
	go func() {
		defer trWG.Done()
		tr.run(trCtx, tp.HTTPClient(time.Second), "http://"+tp.VIP.String()+"/", 20*time.Millisecond)
	}()
	defer func() {
		trStop()
		trWG.Wait()
	}()

	// The harness API the browser script calls for what only the test
	// can do: traffic counts, probes from the client, stopping a backend.
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"vip": tp.VIP.String(), "client": tp.Client.Addr.String(), "backends": infoBackends})
	})
	mux.HandleFunc("GET /traffic", func(w http.ResponseWriter, r *http.Request) { reply(w, tr.snapshot()) })
	mux.HandleFunc("GET /recent", func(w http.ResponseWriter, r *http.Request) {
		since, _ := strconv.ParseInt(r.URL.Query().Get("since_ms"), 10, 64)
		tr.mu.Lock()
		var out []answer
		for _, a := range tr.recent {
			if a.At >= since {
				out = append(out, a)
			}
		}
		tr.mu.Unlock()
		reply(w, out)
	})
	mux.HandleFunc("GET /probe", func(w http.ResponseWriter, r *http.Request) {
		port := r.URL.Query().Get("port")
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		p := &traffic{}
		c := tp.HTTPClient(time.Second)
		for i := 0; i < n && i < 200; i++ {
			name, remote, err := fetch(r.Context(), c, "http://"+net.JoinHostPort(tp.VIP.String(), port)+"/")
			if err != nil {
				p.errors++
				p.last = err.Error()
			} else {
				p.note(name, remote)
			}
		}
		reply(w, p.snapshot())
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		b, ok := backends[r.URL.Query().Get("backend")]
		if !ok {
			http.Error(w, "no such backend", http.StatusNotFound)
			return
		}
		b.stop()
		reply(w, map[string]string{"stopped": b.name})
	})
	var hl net.Listener
	if err := tp.LB.Do(func() (err error) { hl, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(hl)
	defer hs.Close()

	// The browser, in the lb namespace.
	script := exec.CommandContext(ctx, "ip", "netns", "exec", tp.LB.NS, node, "dashboard.mjs")
	script.Env = append(os.Environ(),
		"XLB_URL=http://"+apiAddr,
		"XLB_TOKEN="+token,
		"HARNESS_URL=http://"+hl.Addr().String(),
		"CHROMIUM="+chromium,
		"XLB_SCREENSHOTS="+shots,
	)
	pr, pw := io.Pipe()
	script.Stdout, script.Stderr = pw, pw
	var result string
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if r, ok := strings.CutPrefix(line, "RESULT "); ok {
				result = r
			}
			t.Log(line)
		}
	}()
	start := time.Now()
	err = script.Run()
	pw.Close()
	<-lines
	if err != nil {
		t.Fatalf("browser test failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(result), &res); err != nil {
		t.Fatalf("no RESULT line from the browser test: %v", err)
	}
	t.Logf("browser test passed in %s; screenshots in %s", time.Since(start).Round(time.Millisecond), shots)
	t.Logf("first load: %v bytes transferred (%v requests), first contentful paint %v ms, first data %v ms",
		res["page_weight_bytes"], res["first_load_requests"], res["first_contentful_paint_ms"], res["first_data_ms"])
	st := tr.snapshot()
	t.Logf("background traffic: %v", st)
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
