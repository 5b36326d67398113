package mgmt

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// FuzzAPI sends arbitrary methods, paths and bodies: the API never
// answers 5xx, and a request it refuses leaves the configuration as it
// was.
func FuzzAPI(f *testing.F) {
	seeds := []struct{ m, p, b string }{
		{"POST", "/api/v1/services", `{"name":"x","vip":"198.51.100.30","port":80,"backends":[{"address":"10.30.0.11"}]}`},
		{"POST", "/api/v1/services", `{"name":"x","vip":"198.51.100.30","port":80,"health":{"type":"http","interval":"1s","timeout":"2s"}}`},
		{"PATCH", "/api/v1/services/web/backends/10.30.0.11", `{"weight":3,"state":"draining"}`},
		{"PATCH", "/api/v1/services/web/backends/10.30.0.11", `{"weight":-3}`},
		{"PUT", "/api/v1/services/web", `{"name":"web","vip":"198.51.100.10","port":80,"mode":"l3dsr","backends":[]}`},
		{"PUT", "/api/v1/config", `{"interfaces":[{"name":"eth0"}],"services":[{"name":"a","vip":"::1"}]}`},
		{"PUT", "/api/v1/config", `{"interfaces":[{"name":"eth0"}],"lb":{"snat":{"addresses":["x"]}}}`},
		{"DELETE", "/api/v1/services/web/backends/[::1]:80", ""},
		{"GET", "/api/v1/lookup?protocol=udp&src=[2001:db8::1]:5&dst=198.51.100.10:80", ""},
		{"GET", "/api/v1/services/%2e%2e/backends", ""},
		{"POST", "/api/v1/services/web/backends", `{"address":"10.30.0.11"}`},
		{"POST", "/api/v1/services/web/backends", `[]`},
		{"GET", "/api/v1/flows?limit=99999999999999999999", ""},
	}
	for _, s := range seeds {
		f.Add(s.m, s.p, s.b)
	}
	e := newEnv(f, baseConfig)
	h := e.srv.Handler()
	f.Fuzz(func(t *testing.T, method, path, body string) {
		switch method {
		case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS":
		default:
			method = "GET"
		}
		if !strings.HasPrefix(path, "/") {
			path = "/api/v1/services/" + path
		}
		req, err := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer secret")
		before := e.srv.Config()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && !reflect.DeepEqual(before, e.srv.Config()) {
			t.Fatalf("%s %s %q: refused with %d but the configuration changed", method, path, body, rec.Code)
		}
		if rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s %s: %d without problem+json", method, path, rec.Code)
		}
	})
}
