package main

// The server's TLS material and what other hosts need to enroll: the
// enroll secret, the certificate (private CA or the operator's) and the
// address printed for them.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/vigilhq/vigil/pki"
)

// checkTLSOptions refuses half an operator certificate before anything is
// created in the data directory.
func (m *Main) checkTLSOptions() error {
	o := m.opts
	switch {
	case (o.TLSCertFile == "") != (o.TLSKeyFile == ""):
		return errors.New("--tls-cert and --tls-key go together: give the server certificate and its private key, or neither to use the private CA in DATA/pki")
	case o.TLSCAFile != "" && o.TLSCertFile == "":
		return errors.New("--tls-ca names the CA of your own certificate: give it with --tls-cert and --tls-key (without them the server uses its private CA, DATA/pki/ca.pem)")
	}
	return nil
}

// loadTLS returns the operator's certificate when one is given, else the
// private CA's in dir, issued for every name this server may be reached by.
func (m *Main) loadTLS(dir string) (pki.Bundle, error) {
	o := m.opts
	if o.TLSCertFile != "" {
		b, err := pki.FromFiles(o.TLSCertFile, o.TLSKeyFile, o.TLSCAFile)
		if err != nil {
			return pki.Bundle{}, fmt.Errorf("--tls-cert/--tls-key/--tls-ca: %w", err)
		}
		return b, nil
	}
	b, err := pki.Ensure(dir, m.certHosts())
	if err != nil {
		return pki.Bundle{}, fmt.Errorf("preparing TLS: %w", err)
	}
	return b, nil
}

// certHosts are the names the private CA's server certificate covers:
// loopback, the --tls-host names, the machine's hostname (what other hosts
// are told to enroll with when the server listens on every address) and
// the --listen host when it is a specific one.
func (m *Main) certHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range m.opts.TLSHosts {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(m.opts.Listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// Enrollment says how another host reaches the server.
type Enrollment struct {
	// Address is host:port, for vigil-agent's and osquery's --tls_hostname.
	Address string
	// Remote is false when the server listens on loopback only: no other
	// host can reach it.
	Remote bool
	// Covered is true when the server certificate is valid for Address's
	// host, so that an agent verifying it against the CA accepts it.
	Covered bool
	// Host is Address's host.
	Host string
	// Hostname is true when Host is the machine's hostname (listening on
	// every address, no --tls-host): other hosts may not resolve it.
	Hostname bool
}

// enrollment picks the address other hosts enroll with: on an unspecified
// listen address (0.0.0.0, [::], ":port") the first --tls-host, else the
// machine's hostname (or, when an operator certificate does not cover the
// hostname, the name it was issued for); on a specific address the first
// --tls-host, else that address. Loopback is not reachable from elsewhere.
func enrollment(addr *net.TCPAddr, tlsHosts []string, hostname string, b pki.Bundle) Enrollment {
	var first string
	for _, h := range tlsHosts {
		if h = strings.TrimSpace(h); h != "" {
			first = h
			break
		}
	}
	e := Enrollment{Host: addr.IP.String(), Remote: true}
	switch {
	case addr.IP.IsLoopback():
		e.Remote = false
	case first != "":
		e.Host = first
	case addr.IP.IsUnspecified() && hostname != "" && b.Covers(hostname):
		e.Host, e.Hostname = hostname, true
	case addr.IP.IsUnspecified() && certName(b) != "":
		// An operator certificate issued for another name: the
		// name agents can verify.
		e.Host = certName(b)
	case addr.IP.IsUnspecified() && hostname != "":
		e.Host, e.Hostname = hostname, true
	case addr.IP.IsUnspecified():
		e.Host, e.Remote = "127.0.0.1", false
	}
	e.Address = net.JoinHostPort(e.Host, strconv.Itoa(addr.Port))
	e.Covered = b.Covers(e.Host)
	return e
}

// certName is the first name of the server certificate that is neither a
// wildcard nor loopback: the name an operator issued it for.
func certName(b pki.Bundle) string {
	for _, n := range b.Names() {
		if strings.HasPrefix(n, "*") || n == "localhost" {
			continue
		}
		if ip := net.ParseIP(n); ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
			continue
		}
		return n
	}
	return ""
}

// localServerName is the name this machine's agent and CLI verify the
// certificate under when it does not cover the loopback URL's address (an
// operator certificate issued for a DNS name): the first of --tls-host,
// the hostname, "localhost" and the certificate's own names it covers.
// "" means the URL's address itself.
func (m *Main) localServerName(addr *net.TCPAddr, hostname string, b pki.Bundle) string {
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	if b.Covers(host) {
		return ""
	}
	candidates := append(append([]string{}, m.opts.TLSHosts...), hostname, "localhost")
	candidates = append(candidates, b.Names()...)
	for _, h := range candidates {
		if h = strings.TrimSpace(h); h != "" && b.Covers(h) {
			return h
		}
	}
	m.log.Warn("the server certificate covers no name this machine's agent and CLI could verify it under: they will refuse it",
		"address", host, "tls_hosts", m.opts.TLSHosts, "hostname", hostname)
	return ""
}

// loadOrCreateSecret returns the enroll secret kept at path, creating a
// random one on first start.
func loadOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading enroll secret: %w", err)
	}
	var r [24]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	s := hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing enroll secret: %w", err)
	}
	return s, nil
}

// urlHost is host:port for connecting from this machine: loopback when the
// server listens on every address.
func urlHost(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(a.Port))
	}
	return net.JoinHostPort(a.IP.String(), fmt.Sprint(a.Port))
}
