package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// client talks to the xlb REST API. Every request carries the bearer
// token when there is one (changes need it; reads need it with
// api.auth_reads).
type client struct {
	base    *url.URL
	token   string
	timeout time.Duration
	hc      *http.Client
}

// newClient checks the API URL ("host:port" means http://host:port) and
// reads the CA file for an https API.
func newClient(api, token string, timeout time.Duration, caFile string) (*client, error) {
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	u, err := url.Parse(api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &usageError{msg: fmt.Sprintf("--api %q is not an http:// or https:// URL", api)}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, &usageError{msg: fmt.Sprintf("--api %q: want scheme://host:port[/prefix] without a query", api)}
	}
	// One request per run: no idle connections to keep.
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: timeout, DisableKeepAlives: true}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &client{base: u, token: token, timeout: timeout, hc: &http.Client{Transport: tr}}, nil
}

// apiError is a 4xx or 5xx answer; Problem is its problem+json body when
// it had one.
type apiError struct {
	Status  int
	Problem problem
}

func (e *apiError) Error() string {
	title := e.Problem.Title
	if title == "" {
		title = http.StatusText(e.Status)
	}
	msg := fmt.Sprintf("%d %s", e.Status, title)
	if d := e.Problem.Detail; d != "" {
		msg += ": " + d
	}
	// The detail usually names the field already ("backends[0].address:
	// ..."); say it when it does not.
	if f := e.Problem.Field; f != "" && !strings.Contains(e.Problem.Detail, f) {
		msg += fmt.Sprintf(" (field %s", f)
		if v := e.Problem.Value; v != "" {
			msg += fmt.Sprintf(", value %q", v)
		}
		msg += ")"
	} else if v := e.Problem.Value; f != "" && v != "" && !strings.Contains(e.Problem.Detail, v) {
		msg += fmt.Sprintf(" (value %q)", v)
	}
	return msg
}

// connError says the API could not be reached at all.
type connError struct {
	base    string
	timeout time.Duration
	err     error
}

func (e *connError) Error() string {
	var why string
	var ne net.Error
	switch {
	case errors.Is(e.err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.Is(e.err, context.DeadlineExceeded), errors.As(e.err, &ne) && ne.Timeout():
		why = fmt.Sprintf("no answer within %s (--timeout)", e.timeout)
	default:
		why = e.err.Error()
		var ue *url.Error
		if errors.As(e.err, &ue) {
			why = ue.Err.Error()
		}
	}
	return fmt.Sprintf("cannot reach the xlb API at %s: %s (is xlb running? --api / XLB_API)", e.base, why)
}

func (e *connError) Unwrap() error { return e.err }

// request is one API call.
type request struct {
	method string
	path   []string // path segments after the base, unescaped: "api", "v1", "services", name
	query  url.Values
	body   []byte
	ctype  string // Content-Type of body (default application/json)
	accept string // default application/json
}

// do sends r and returns the body of a 2xx answer; other answers become
// an *apiError, transport failures a *connError.
func (c *client) do(r request) ([]byte, error) {
	segs := make([]string, len(r.path))
	for i, s := range r.path {
		segs[i] = url.PathEscape(s)
	}
	u := c.base.JoinPath(segs...)
	u.RawQuery = r.query.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if r.body != nil {
		ct := r.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	accept := r.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept+", application/problem+json")
	req.Header.Set("User-Agent", "xlbctl/"+versionString())
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &connError{base: c.base.String(), timeout: c.timeout, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &connError{base: c.base.String(), timeout: c.timeout, err: fmt.Errorf("reading the answer: %w", err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return b, nil
	}
	e := &apiError{Status: resp.StatusCode}
	if json.Unmarshal(b, &e.Problem) != nil || e.Problem.Status == 0 {
		// Not problem+json (a proxy in between, or not xlb at all).
		e.Problem = problem{Detail: firstLine(string(b))}
		if e.Problem.Detail == "" {
			e.Problem.Detail = "(empty answer)"
		}
	}
	return nil, e
}

// get is a GET of path segments with an optional query.
func (c *client) get(q url.Values, path ...string) ([]byte, error) {
	return c.do(request{method: http.MethodGet, path: path, query: q})
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > 200 {
		s = s[:200] + " …"
	}
	return s
}

// api builds the path of an API resource: api("services", name) is
// /api/v1/services/{name}.
func api(segs ...string) []string {
	return append([]string{"api", "v1"}, segs...)
}
