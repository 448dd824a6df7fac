package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// issueTest signs a server certificate for 127.0.0.1 with the CA in dir
// (created by Ensure), valid until notAfter, and writes it and its key
// into files of their own.
func issueTest(t *testing.T, dir string, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	caPEM, _ := os.ReadFile(filepath.Join(dir, CAFile))
	caKeyPEM, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	ca, err := parseCert(caPEM, "ca")
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := parseKey(caKeyPEM, "ca key")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    notAfter.Add(-48 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	certFile, keyFile = filepath.Join(out, "cert.pem"), filepath.Join(out, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestFromFilesErrors(t *testing.T) {
	caDir := t.TempDir()
	src, err := Ensure(caDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	expiredCert, expiredKey := issueTest(t, caDir, time.Now().Add(-time.Hour))
	futureCert, futureKey := issueTest(t, caDir, time.Now().Add(72*time.Hour)) // valid from tomorrow
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate\n"), 0o644)
	missing := filepath.Join(t.TempDir(), "missing.pem")

	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want1, want2  string // both must be in the error
	}{
		{"cert unreadable", missing, src.KeyFile, "", "reading server certificate", missing},
		{"key unreadable", src.CertFile, missing, "", "reading server key", missing},
		{"key of another certificate", src.CertFile, other.KeyFile, "", other.KeyFile, "private key does not match public key"},
		{"cert not PEM", junk, src.KeyFile, "", junk, "PEM"},
		{"expired", expiredCert, expiredKey, "", expiredCert, "expired on"},
		{"not yet valid", futureCert, futureKey, "", futureCert, "not valid before"},
		{"CA that did not sign it", src.CertFile, src.KeyFile, other.CAFile, "does not verify with the CA in " + other.CAFile, "unknown authority"},
		{"CA file unreadable", src.CertFile, src.KeyFile, missing, "reading CA", missing},
		{"CA file not PEM", src.CertFile, src.KeyFile, junk, junk, "no PEM certificate"},
	} {
		_, err := FromFiles(tc.cert, tc.key, tc.ca)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want1) || !strings.Contains(err.Error(), tc.want2) {
			t.Errorf("%s: error %q, want it to name %q and %q", tc.name, err, tc.want1, tc.want2)
		}
	}
}

func TestCovers(t *testing.T) {
	dir := t.TempDir()
	b, err := Ensure(dir, []string{"localhost", "127.0.0.1", "vigil.example"})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{"vigil.example": true, "127.0.0.1": true, "localhost": true, "other.example": false, "10.0.0.1": false} {
		if got := b.Covers(host); got != want {
			t.Errorf("Ensure bundle Covers(%q) = %v, want %v", host, got, want)
		}
	}
	// FromFiles: the operator's certificate covers only what it names.
	certFile, keyFile := issueTest(t, dir, time.Now().Add(time.Hour))
	fb, err := FromFiles(certFile, keyFile, filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if !fb.Covers("127.0.0.1") || fb.Covers("localhost") || fb.Covers("vigil.example") {
		t.Error("FromFiles bundle: Covers does not follow the certificate's names (only 127.0.0.1)")
	}
	if got := fb.Names(); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("FromFiles bundle: Names() = %q, want [127.0.0.1]", got)
	}
	if got := b.Names(); !slices.Contains(got, "vigil.example") || !slices.Contains(got, "127.0.0.1") || !slices.Contains(got, "localhost") {
		t.Errorf("Ensure bundle: Names() = %q, want localhost, vigil.example and 127.0.0.1 among them", got)
	}
}
