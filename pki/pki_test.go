package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsureCreatesAndReuses(t *testing.T) {
	dir := t.TempDir()
	b1, err := Ensure(dir, []string{"localhost", "127.0.0.1", "::1", "vigil.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CAKeyFile, ServerKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	ca, err := parseCert(b1.CAPEM, "ca")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA {
		t.Error("CA certificate is not a CA")
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
	if life := ca.NotAfter.Sub(ca.NotBefore); life < 9*365*24*time.Hour {
		t.Errorf("CA lifetime %v, want about 10 years", life)
	}
	leaf, err := x509.ParseCertificate(b1.Certificate().Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "vigil.example"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: b1.CertPool()}); err != nil {
			t.Errorf("server certificate does not verify for %s: %v", h, err)
		}
	}

	if onDisk, err := os.ReadFile(b1.CAFile); err != nil || !bytes.Equal(onDisk, b1.CAPEM) {
		t.Errorf("CAFile %s does not hold CAPEM: %v", b1.CAFile, err)
	}

	// Second start: same CA, same server certificate.
	b2, err := Ensure(dir, []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.CAPEM, b2.CAPEM) {
		t.Error("CA changed on second start")
	}
	if !bytes.Equal(b1.Certificate().Certificate[0], b2.Certificate().Certificate[0]) {
		t.Error("server certificate reissued although it covers the names")
	}

	// A new name: reissued by the same CA.
	b3, err := Ensure(dir, []string{"other.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.CAPEM, b3.CAPEM) {
		t.Error("CA changed when the server certificate was reissued")
	}
	leaf3, _ := x509.ParseCertificate(b3.Certificate().Certificate[0])
	if _, err := leaf3.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: b1.CertPool()}); err != nil {
		t.Errorf("reissued certificate: %v", err)
	}
}

func TestEnsureRefusesHalfCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, nil); err == nil {
		t.Fatal("Ensure replaced a CA whose key is missing; want an error")
	}
}

func TestTLSHandshake(t *testing.T) {
	b, err := Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = b.TLSConfig()
	srv.StartTLS()
	defer srv.Close()

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.CertPool()}}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("client pinning the CA: %v", err)
	}
	resp.Body.Close()

	// TLS 1.1 is refused.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.CertPool(), MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
	// A client without the CA is refused.
	if resp, err := (&http.Client{}).Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("client without the CA accepted the certificate")
	}
}

func TestFromFiles(t *testing.T) {
	src, err := Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFiles(src.CertFile, src.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if fp1, _ := Fingerprint(b.CAPEM); fp1 == "" {
		t.Error("no fingerprint")
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, src.CAPEM, 0o644)
	b2, err := FromFiles(src.CertFile, src.KeyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b2.CAPEM, src.CAPEM) || b2.CAFile != caFile || b.CAFile != src.CertFile {
		t.Error("FromFiles did not use the given CA")
	}
	if _, err := FromFiles(src.CertFile, filepath.Join(t.TempDir(), "missing.pem"), ""); err == nil {
		t.Error("missing key accepted")
	}
}
