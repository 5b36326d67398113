package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// TestAPIOverTLS: with api.tls_cert and api.tls_key the API speaks HTTPS
// only, with the token file's token.
func TestAPIOverTLS(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 1})
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xlb"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath, tokPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "token")
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	_ = os.WriteFile(tokPath, []byte("file-token\n"), 0o600)
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\nlb: {workers: 1}\n", tp.LBClientIface)
	fmt.Fprintf(&b, "api: {listen: %s, tls_cert: %s, tls_key: %s, token_file: %s}\n", apiAddr, certPath, keyPath, tokPath)
	fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    backends: [{address: %s}]\n", tp.VIP, tp.Backends[0].Addr)
	cfg := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// startXLB polls plain HTTP; launch and poll HTTPS instead.
	cmdLB := launchXLB(t, tp, cfg, nil, "--poll")
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	c := tp.LB.HTTPClient(2 * time.Second)
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	waitFor(t, 10*time.Second, "the HTTPS API", func() bool {
		resp, err := c.Get("https://" + apiAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	req, _ := http.NewRequest("PATCH", "https://"+apiAddr+"/api/v1/services/web/backends/"+tp.Backends[0].Addr.String(), strings.NewReader(`{"weight":3}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer file-token")
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PATCH over TLS with the token file's token: %v %v", err, resp)
	}
	resp.Body.Close()
	// Plain HTTP on the TLS port is refused.
	if resp, err := tp.LB.HTTPClient(time.Second).Get("http://" + apiAddr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered on the TLS listener")
		}
	}
	cmdLB.stop(t)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
