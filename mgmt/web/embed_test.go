package web_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xlb/xlb/mgmt/web"
)

func do(t *testing.T, h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// assetRefs are the /ui/... references of index.html, with their ?v=.
var assetRefs = regexp.MustCompile(`(?:src|href)="(/ui/[^"?]+)\?v=([0-9a-f]{12})"`)

func TestIndex(t *testing.T) {
	h := web.Handler()
	w := do(t, h, "GET", "/")
	if w.Code != 200 {
		t.Fatalf("GET /: %d %s", w.Code, w.Body)
	}
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-cache",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": web.CSP,
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(web.CSP, "default-src 'self'") || strings.Contains(web.CSP, "unsafe") {
		t.Errorf("CSP %q is not strict", web.CSP)
	}
	body := w.Body.String()
	refs := assetRefs.FindAllStringSubmatch(body, -1)
	if len(refs) < 3 {
		t.Fatalf("index.html references %d versioned assets, want app.js, app.css and the icon:\n%s", len(refs), body)
	}
	if strings.Contains(body, `"/ui/app.js"`) {
		t.Error("index.html has an unversioned asset link")
	}
	// Nothing the CSP would block (inline scripts, styles, handlers) and
	// nothing from another origin.
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(tag, `src="/ui/`) {
			t.Errorf("index.html has an inline script: %s", tag)
		}
	}
	for _, bad := range []string{` style=`, `<style`, `javascript:`} {
		if strings.Contains(body, bad) {
			t.Errorf("index.html has %q, which the CSP forbids", bad)
		}
	}
	if m := regexp.MustCompile(`\son[a-z]+=`).FindString(body); m != "" {
		t.Errorf("index.html has an inline handler %q", m)
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		if !strings.HasPrefix(m[1], "/") && !strings.HasPrefix(m[1], "#") || strings.HasPrefix(m[1], "//") {
			t.Errorf("index.html links %q, outside its origin", m[1])
		}
	}
}

func TestAssets(t *testing.T) {
	h := web.Handler()
	idx := do(t, h, "GET", "/").Body.String()
	wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	seen := map[string]bool{}
	for _, m := range assetRefs.FindAllStringSubmatch(idx, -1) {
		p, v := m[1], m[2]
		if seen[p] {
			continue
		}
		seen[p] = true
		w := do(t, h, "GET", p+"?v="+v)
		if w.Code != 200 {
			t.Fatalf("GET %s?v=%s: %d", p, v, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); ct != wantType[filepath.Ext(p)] {
			t.Errorf("%s: Content-Type %q", p, ct)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s with its hash: Cache-Control %q", p, cc)
		}
		if w.Header().Get("Content-Security-Policy") != web.CSP {
			t.Errorf("%s: no CSP", p)
		}
		// Without the hash (or with an old one) it must be revalidated.
		for _, q := range []string{"", "?v=000000000000"} {
			if cc := do(t, h, "GET", p+q).Header().Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("%s%s: Cache-Control %q, want no-cache", p, q, cc)
			}
		}
		// A conditional request gets 304.
		etag := w.Header().Get("ETag")
		if etag == "" {
			t.Fatalf("%s: no ETag", p)
		}
		if c := do(t, h, "GET", p, "If-None-Match", etag).Code; c != http.StatusNotModified {
			t.Errorf("%s If-None-Match %s: %d, want 304", p, etag, c)
		}
		// gzip, when accepted, decodes to the same bytes.
		if filepath.Ext(p) != ".svg" {
			gz := do(t, h, "GET", p, "Accept-Encoding", "gzip, br")
			if gz.Header().Get("Content-Encoding") != "gzip" || !strings.Contains(gz.Header().Get("Vary"), "Accept-Encoding") {
				t.Errorf("%s: gzip not served (%v)", p, gz.Header())
				continue
			}
			zr, err := gzip.NewReader(gz.Body)
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := io.ReadAll(zr)
			if !bytes.Equal(plain, w.Body.Bytes()) {
				t.Errorf("%s: gzip body differs from the plain one", p)
			}
			if gz.Header().Get("ETag") == etag {
				t.Errorf("%s: gzip and identity share ETag %s", p, etag)
			}
			if do(t, h, "GET", p, "Accept-Encoding", "gzip;q=0").Header().Get("Content-Encoding") != "" {
				t.Errorf("%s: gzip sent although refused with q=0", p)
			}
		}
		if hd := do(t, h, "HEAD", p); hd.Code != 200 || hd.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d with %d body bytes", p, hd.Code, hd.Body.Len())
		}
	}
	for _, want := range []string{"/ui/app.js", "/ui/app.css"} {
		if !seen[want] {
			t.Errorf("index.html does not load %s", want)
		}
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := web.Handler()
	for _, p := range []string{"/ui/nope.js", "/ui/index.html", "/ui/", "/elsewhere"} {
		w := do(t, h, "GET", p)
		if w.Code != 404 || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: %d %s, want 404 problem+json", p, w.Code, w.Header().Get("Content-Type"))
		}
		if !strings.Contains(w.Body.String(), `"title": "Not Found"`) {
			t.Errorf("GET %s: body %s", p, w.Body)
		}
	}
	w := do(t, h, "POST", "/ui/app.js")
	if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/app.js: %d Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

// TestDistUpToDate rebuilds the bundle from src/ and static/ and compares
// it with the committed dist/: a source change without `make dashboard`
// fails here. It needs the build tools (npm ci in mgmt/web).
func TestDistUpToDate(t *testing.T) {
	if _, err := os.Stat("node_modules/esbuild"); err != nil {
		t.Skip("esbuild is not installed (make dashboard installs it): cannot rebuild dist/ to compare")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	out := t.TempDir()
	if b, err := exec.Command(node, "build.mjs", out).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	want, _ := filepath.Glob(filepath.Join(out, "*"))
	have, _ := filepath.Glob("dist/*")
	if len(want) != len(have) {
		t.Errorf("dist/ has %d files, a build makes %d: run make dashboard", len(have), len(want))
	}
	for _, f := range want {
		a, _ := os.ReadFile(f)
		b, err := os.ReadFile(filepath.Join("dist", filepath.Base(f)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("dist/%s is not what src/ and static/ build to: run make dashboard", filepath.Base(f))
		}
	}
}
