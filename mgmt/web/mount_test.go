package web_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/mgmt"
	"github.com/xlb/xlb/mgmt/web"
)

// nullDataplane runs nothing: enough for the API's router.
type nullDataplane struct{}

func (nullDataplane) Apply(*config.File) error               { return nil }
func (nullDataplane) Stats() mgmt.Stats                      { return mgmt.Stats{} }
func (nullDataplane) Flows(string, int) ([]mgmt.Flow, error) { return nil, nil }
func (nullDataplane) Lookup(dataplane.Tuple) (dataplane.FlowDecision, error) {
	return dataplane.FlowDecision{}, nil
}

// TestMountedOnAPI checks the API listener's routing: the dashboard at /
// and /ui/..., the API untouched, every other path still the API's 404.
func TestMountedOnAPI(t *testing.T) {
	f, err := config.Parse([]byte("interfaces: [{name: eth0}]\napi: {listen: 127.0.0.1:0}\nservices: []\n"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mgmt.New(mgmt.Options{Config: f, Dataplane: nullDataplane{}, AllowNoToken: true, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	get := func(method, p string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, p, nil))
		return w
	}
	if w := get("GET", "/"); w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") || w.Header().Get("Content-Security-Policy") != web.CSP {
		t.Errorf("GET /: %d %v", w.Code, w.Header())
	}
	if w := get("HEAD", "/"); w.Code != 200 {
		t.Errorf("HEAD /: %d", w.Code)
	}
	if w := get("GET", "/ui/app.js"); w.Code != 200 || w.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("GET /ui/app.js: %d %v", w.Code, w.Header())
	}
	if w := get("GET", "/api/v1/stats"); w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("GET /api/v1/stats: %d %v", w.Code, w.Header())
	}
	for _, p := range []string{"/nope", "/api/v2/x", "/ui/nope.js", "/index.html"} {
		w := get("GET", p)
		if w.Code != 404 || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: %d %s, want the 404 problem", p, w.Code, w.Header().Get("Content-Type"))
		}
	}
	if w := get("POST", "/"); w.Code != 404 || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("POST /: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
}
