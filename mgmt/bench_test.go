package mgmt

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/dataplane"
)

// buildDP is a Dataplane that compiles every configuration into a real
// Snapshot (what the daemon does, minus the kernel).
type buildDP struct {
	fakeDP
	snap *dataplane.Snapshot
}

func (b *buildDP) Apply(cfg *config.File) error {
	c, err := cfg.CompileForBuild()
	if err != nil {
		return err
	}
	c.Spec.Ifaces = []dataplane.Iface{{MTU: 1500}}
	s, err := dataplane.Build(c.Spec, b.snap)
	if err != nil {
		return cfg.Translate(err)
	}
	b.snap = s
	return nil
}

// BenchmarkPatchAt1000Services is one backend PATCH with 1 000 services ×
// 10 backends: validation, compile, state file, answer.
func BenchmarkPatchAt1000Services(b *testing.B) {
	var doc strings.Builder
	doc.WriteString("interfaces: [{name: eth0}]\nlb: {maglev_size: 1021}\nservices:\n")
	for s := 0; s < 1000; s++ {
		fmt.Fprintf(&doc, "  - name: s%d\n    vip: 198.51.%d.%d\n    port: 80\n    backends:\n", s, 100+s/250, s%250+1)
		for k := 0; k < 10; k++ {
			fmt.Fprintf(&doc, "      - {address: 10.%d.%d.%d, mac: \"02:00:00:00:%02x:%02x\"}\n", 40+s/250, s%250, k+1, s%250, k)
		}
	}
	f, err := config.Parse([]byte(doc.String()), "yaml")
	if err != nil {
		b.Fatal(err)
	}
	f.API.StateFile = filepath.Join(b.TempDir(), "state.json")
	srv, err := New(Options{Config: f, Dataplane: &buildDP{}, Token: "t", Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("PATCH", "/api/v1/services/s7/backends/10.40.7.3", strings.NewReader(fmt.Sprintf(`{"weight":%d}`, i%50+1)))
		req.Header.Set("Authorization", "Bearer t")
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
