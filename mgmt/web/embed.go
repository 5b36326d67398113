// Package web is xlb's dashboard: a single page served by the daemon at
// / on the API listener, using the same REST API (and bearer token) as
// xlbctl. Its assets are built from src/ and static/ by `make dashboard`
// (esbuild, from npm) into dist/, which is committed and embedded here, so
// a plain `go build` needs no npm and the page loads nothing from any
// other origin.
//
// Handler serves:
//
//	GET /               index.html (Cache-Control: no-cache)
//	GET /ui/<file>      the other files of dist/; index.html names them
//	                    with ?v=<content hash>, and a request that carries
//	                    the current hash may be cached for a year
//	                    (immutable); without it, no-cache
//
// Every response carries a strict Content-Security-Policy (default-src
// 'self', nothing inline, no framing), nosniff, a strong ETag (answered
// with 304 on If-None-Match) and, when the client accepts it and it pays,
// a gzip body compressed once at start-up.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
)

//go:embed dist
var dist embed.FS

// CSP is the Content-Security-Policy of every dashboard response: only
// this origin's scripts, styles, images and API; no inline code, no
// plugins, no framing, no <base> tricks, forms post only here.
const CSP = "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'self'"

// AssetPrefix is where every file but index.html is served.
const AssetPrefix = "/ui/"

// immutable is the cache policy of an asset requested with its hash.
const immutable = "public, max-age=31536000, immutable"

type asset struct {
	name    string
	body    []byte
	gz      []byte // nil when gzip does not make it smaller
	ctype   string
	etag    string // strong, of body
	version string // short content hash, the ?v= of index.html's links
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".json": "application/json",
	".txt":  "text/plain; charset=utf-8",
	".map":  "application/json",
}

// load reads dist once: hashes, content types, gzip, and index.html with
// versioned links.
var load = sync.OnceValues(func() (map[string]*asset, error) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, err
	}
	assets := map[string]*asset{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("web: %s: no content type for %q", p, path.Ext(p))
		}
		assets[p] = &asset{name: p, body: b, ctype: ct}
		return nil
	})
	if err != nil {
		return nil, err
	}
	idx, ok := assets["index.html"]
	if !ok {
		return nil, fmt.Errorf("web: dist has no index.html")
	}
	for _, a := range assets {
		if a != idx {
			a.version = hashOf(a.body)[:12]
		}
	}
	html := string(idx.body)
	for _, a := range assets {
		if a != idx {
			ref := `"` + AssetPrefix + a.name + `"`
			html = strings.ReplaceAll(html, ref, `"`+AssetPrefix+a.name+"?v="+a.version+`"`)
		}
	}
	idx.body = []byte(html)
	for _, a := range assets {
		a.etag = `"` + hashOf(a.body)[:24] + `"`
		a.gz = compress(a.body, a.ctype)
	}
	return assets, nil
})

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// compress gzips text bodies when that saves at least a tenth.
func compress(b []byte, ctype string) []byte {
	if strings.HasPrefix(ctype, "image/png") || len(b) < 512 {
		return nil
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(b)
	_ = zw.Close()
	if buf.Len() > len(b)*9/10 {
		return nil
	}
	return buf.Bytes()
}

// Handler serves the dashboard: GET / and GET /ui/... (see the package
// comment). Mount it for exactly those paths; it answers anything else
// under them with 404 problem+json.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	assets, err := load()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")

	var a *asset
	switch {
	case r.URL.Path == "/":
		a = assets["index.html"]
	case strings.HasPrefix(r.URL.Path, AssetPrefix):
		name := strings.TrimPrefix(r.URL.Path, AssetPrefix)
		if name != "index.html" {
			a = assets[name]
		}
	}
	if a == nil {
		notFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		problem(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s (allowed: GET, HEAD)", r.Method, r.URL.Path))
		return
	}
	switch {
	case a.version == "":
		h.Set("Cache-Control", "no-cache")
	case r.URL.Query().Get("v") == a.version:
		h.Set("Cache-Control", immutable)
	default:
		h.Set("Cache-Control", "no-cache")
	}
	body, etag := a.body, a.etag
	if a.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	h.Set("Content-Type", a.ctype)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		h.Del("Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// acceptsGzip reads Accept-Encoding, honouring gzip;q=0.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}

// etagMatch is If-None-Match's weak comparison.
func etagMatch(header, etag string) bool {
	if strings.TrimSpace(header) == "*" {
		return true
	}
	for _, t := range strings.Split(header, ",") {
		if strings.TrimPrefix(strings.TrimSpace(t), "W/") == etag {
			return true
		}
	}
	return false
}

func notFound(w http.ResponseWriter, r *http.Request) {
	problem(w, r, http.StatusNotFound, fmt.Sprintf("no such resource: %s (the dashboard is at /, the API under /api/v1)", r.URL.Path))
}

// problem writes an RFC 9457 problem like the API's.
func problem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Del("Cache-Control")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(struct {
		Type     string `json:"type"`
		Title    string `json:"title"`
		Status   int    `json:"status"`
		Detail   string `json:"detail"`
		Instance string `json:"instance"`
	}{"about:blank", http.StatusText(status), status, detail, r.URL.Path})
}
