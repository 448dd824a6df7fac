// Package pki owns the TLS material of the Vigil server: a private CA
// created on first start (ECDSA P-256, ten years) and a server certificate
// signed by it for the server's names, both kept in a data directory and
// reused after; or the operator's own certificate and key instead. Only the
// server side (cmd/vigil, control tests, web tests) imports it; agents get
// the CA as PEM bytes and pin it.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside the directory given to Ensure.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
)

// Lifetimes. The server certificate is reissued by Ensure (with the same CA,
// so agents keep trusting it) when it has less than RenewBefore left or does
// not cover the names asked for.
const (
	CALifetime     = 10 * 365 * 24 * time.Hour
	ServerLifetime = 825 * 24 * time.Hour
	RenewBefore    = 30 * 24 * time.Hour
)

// Bundle is the server's TLS material.
type Bundle struct {
	CAPEM    []byte // PEM of the CA agents must pin (the private CA, or the operator's CA/chain)
	CAFile   string // file holding CAPEM, for agents' --tls_server_certs and the CLI
	CertFile string // server certificate (PEM)
	KeyFile  string // server private key (PEM, 0600)

	cert tls.Certificate
}

// TLSConfig returns a server configuration with the certificate, TLS 1.2 at
// least (osquery speaks only 1.2).
func (b Bundle) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.cert},
	}
}

// CertPool returns a pool holding the CA, for clients (agents, tests, the
// CLI) that pin it.
func (b Bundle) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b.CAPEM)
	return p
}

// Certificate returns the loaded server certificate.
func (b Bundle) Certificate() tls.Certificate { return b.cert }

// DefaultHosts returns the names the server certificate covers unless told
// otherwise: localhost, 127.0.0.1, ::1 and the machine's hostname.
func DefaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		hosts = append(hosts, h)
	}
	return hosts
}

// Ensure returns the private CA and server certificate kept in dir,
// creating them on first use. hosts are DNS names or IP addresses the
// server certificate must cover; empty means DefaultHosts. An existing CA is
// always reused; the server certificate is reissued when it expires within
// RenewBefore or lacks one of hosts.
func Ensure(dir string, hosts []string) (Bundle, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Bundle{}, fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	caCert, caKey, caPEM, err := ensureCA(dir)
	if err != nil {
		return Bundle{}, err
	}
	certFile := filepath.Join(dir, ServerCertFile)
	keyFile := filepath.Join(dir, ServerKeyFile)
	if ok, err := serverUsable(certFile, keyFile, caCert, hosts, time.Now()); err != nil {
		return Bundle{}, err
	} else if !ok {
		if err := issueServer(certFile, keyFile, caCert, caKey, hosts); err != nil {
			return Bundle{}, err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return Bundle{}, fmt.Errorf("pki: loading %s: %w", certFile, err)
	}
	return Bundle{CAPEM: caPEM, CAFile: filepath.Join(dir, CAFile), CertFile: certFile, KeyFile: keyFile, cert: cert}, nil
}

// FromFiles uses the operator's certificate and key instead of the private
// CA. certFile holds the server certificate, optionally followed by its
// intermediates; keyFile its private key. caFile is the PEM agents and the
// CLI should pin; empty means the certificate file itself (its chain),
// which suits a self-signed certificate. Each error names the file at
// fault: unreadable, not PEM, a key that is not the certificate's, an
// expired certificate, or (caFile given) a certificate that CA did not
// sign, which agents pinning it would refuse.
func FromFiles(certFile, keyFile, caFile string) (Bundle, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return Bundle{}, fmt.Errorf("pki: reading server certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return Bundle{}, fmt.Errorf("pki: reading server key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return Bundle{}, fmt.Errorf("pki: server certificate %s with key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return Bundle{}, fmt.Errorf("pki: server certificate %s: %w", certFile, err)
	}
	cert.Leaf = leaf
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return Bundle{}, fmt.Errorf("pki: server certificate %s expired on %s", certFile, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	if now.Before(leaf.NotBefore) {
		return Bundle{}, fmt.Errorf("pki: server certificate %s is not valid before %s (check this machine's clock)", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	pinFile := caFile
	if pinFile == "" {
		pinFile = certFile
	}
	caPEM, err := os.ReadFile(pinFile)
	if err != nil {
		return Bundle{}, fmt.Errorf("pki: reading CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return Bundle{}, fmt.Errorf("pki: %s holds no PEM certificate", pinFile)
	}
	if caFile != "" {
		inter := x509.NewCertPool()
		for _, der := range cert.Certificate[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(c)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
			return Bundle{}, fmt.Errorf("pki: server certificate %s does not verify with the CA in %s (agents pinning it would refuse the server): %w", certFile, caFile, err)
		}
	}
	return Bundle{CAPEM: caPEM, CAFile: pinFile, CertFile: certFile, KeyFile: keyFile, cert: cert}, nil
}

// Covers reports whether the server certificate is valid for host (a DNS
// name or an IP address), as a client connecting to that name checks.
func (b Bundle) Covers(host string) bool {
	leaf := b.leaf()
	return leaf != nil && leaf.VerifyHostname(host) == nil
}

// leaf is the parsed server certificate (nil if there is none).
func (b Bundle) leaf() *x509.Certificate {
	if b.cert.Leaf != nil || len(b.cert.Certificate) == 0 {
		return b.cert.Leaf
	}
	leaf, err := x509.ParseCertificate(b.cert.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

func ensureCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certPath := filepath.Join(dir, CAFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		cert, err := parseCert(certPEM, certPath)
		if err != nil {
			return nil, nil, nil, err
		}
		key, err := parseKey(keyPEM, keyPath)
		if err != nil {
			return nil, nil, nil, err
		}
		if !key.PublicKey.Equal(cert.PublicKey) {
			return nil, nil, nil, fmt.Errorf("pki: %s does not belong to %s", keyPath, certPath)
		}
		return cert, key, certPEM, nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		// first start
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("pki: reading CA: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("pki: reading CA key: %w", keyErr)
	default:
		// One of the pair is missing: never silently replace a CA that
		// agents may already pin.
		return nil, nil, nil, fmt.Errorf("pki: %s and %s must both exist or both be absent; restore the missing one or remove both to create a new CA (agents pinning the old CA must then be given the new one)", certPath, keyPath)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: generating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Vigil private CA", Organization: []string{"Vigil"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: parsing new CA certificate: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a CA certificate without its key would block the next start.
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, nil, err
	}
	if err := writeFile(certPath, certPEM, 0o644); err != nil {
		return nil, nil, nil, err
	}
	return cert, key, certPEM, nil
}

func serverUsable(certFile, keyFile string, ca *x509.Certificate, hosts []string, now time.Time) (bool, error) {
	certPEM, err := os.ReadFile(certFile)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("pki: reading %s: %w", certFile, err)
	}
	if _, err := os.Stat(keyFile); err != nil {
		return false, nil
	}
	cert, err := parseCert(certPEM, certFile)
	if err != nil {
		return false, nil // reissue rather than refuse to start
	}
	if cert.CheckSignatureFrom(ca) != nil || now.Add(RenewBefore).After(cert.NotAfter) {
		return false, nil
	}
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return false, nil
		}
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return false, nil
	}
	return true, nil
}

func issueServer(certFile, keyFile string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generating server key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"Vigil"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if ca.NotAfter.Before(tmpl.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("pki: creating server certificate: %w", err)
	}
	if err := writeKey(keyFile, key); err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("pki: crypto/rand failed: %v", err))
	}
	return n
}

func parseCert(b []byte, name string) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: %s: no PEM CERTIFICATE block", name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", name, err)
	}
	return c, nil
}

func parseKey(b []byte, name string) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("pki: %s: no PEM block", name)
	}
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", name, err)
	}
	return k, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: encoding key: %w", err)
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFile writes atomically (temp file, fsync, rename) so that a crash
// never leaves half a key behind.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	return nil
}

// Fingerprint returns the SHA-256 fingerprint of the first certificate in
// pemBytes as colon-separated hex, for people to compare out of band.
func Fingerprint(pemBytes []byte) (string, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return "", errors.New("pki: no PEM block")
	}
	sum := sha256.Sum256(block.Bytes)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":"), nil
}

// Names returns the DNS names and IP addresses the server certificate is
// issued for, in its order (DNS names first).
func (b Bundle) Names() []string {
	leaf := b.leaf()
	if leaf == nil {
		return nil
	}
	names := append([]string{}, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}
