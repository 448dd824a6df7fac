package main

// Tests of `vigil up` and `vigil server` as a person runs them: the start-up
// summary (how other hosts enroll), the operator's own certificate, and
// Ctrl-C.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/pki"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/store/duckdb"
)

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serving is a `vigil up|server` run in this process.
type serving struct {
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc // what SIGINT does in main
	done           chan struct{}      // closed when run returns
	err            error              // what run returned, once done
}

// startRun runs `vigil ARGS` (up or server) until the test cancels it, and
// waits until it prints its start-up summary (one write, text or JSON).
func startRun(t *testing.T, args ...string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		s.err = run(ctx, args, s.stdout, s.stderr)
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(time.Minute):
		}
	})
	deadline := time.After(2 * time.Minute)
	start := time.Now()
	defer func() {
		if testing.Verbose() {
			t.Logf("vigil %s serving after %v", strings.Join(args, " "), time.Since(start))
		}
	}()
	for s.stdout.String() == "" {
		select {
		case <-s.done:
			t.Fatalf("vigil %s stopped before serving: %v\nstderr: %s", strings.Join(args, " "), s.err, s.stderr)
		case <-deadline:
			t.Fatalf("vigil %s printed no summary within 2m\nstdout: %s\nstderr: %s", strings.Join(args, " "), s.stdout, s.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return s
}

// stop cancels the run as Ctrl-C does and returns its error; the deadline
// bounds a hang, it is not a timing assertion.
func (s *serving) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	start := time.Now()
	select {
	case <-s.done:
		if testing.Verbose() {
			t.Logf("stopped %v after Ctrl-C; stderr:\n%s", time.Since(start), s.stderr)
		}
		return s.err
	case <-time.After(90 * time.Second):
		t.Fatalf("still running 90s after Ctrl-C\nstderr: %s", s.stderr)
		return nil
	}
}

var listeningRE = regexp.MustCompile(`Listening on +(\S+)`)

// listenPort is the port the summary says the server listens on.
func listenPort(t *testing.T, summary string) string {
	t.Helper()
	m := listeningRE.FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("no 'Listening on' line in:\n%s", summary)
	}
	_, port, err := net.SplitHostPort(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// handshake connects to 127.0.0.1:port and verifies the certificate under
// serverName against the CA in caFile.
func handshake(port, serverName, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("no CA in " + caFile)
	}
	c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), &tls.Config{RootCAs: pool, ServerName: serverName})
	if err != nil {
		return err
	}
	return c.Close()
}

func TestEnrollHelp(t *testing.T) {
	hostname := "build-7"
	dir := t.TempDir()
	private, err := pki.Ensure(dir, []string{"localhost", "127.0.0.1", "::1", "vigil.example.internal", hostname, "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	narrow, err := pki.Ensure(t.TempDir(), []string{"localhost", "127.0.0.1"}) // covers neither the hostname nor a --tls-host
	if err != nil {
		t.Fatal(err)
	}
	opCA, opCert, opKey := testCA(t, "vigil-op.example.internal")
	operator, err := pki.FromFiles(opCert, opKey, opCA)
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(ip string) *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 8443} }
	for _, tc := range []struct {
		name     string
		addr     *net.TCPAddr
		tlsHosts []string
		bundle   pki.Bundle
		operator bool
		want     []string // lines (substrings) the help must hold
		not      []string
	}{
		{name: "loopback", addr: tcp("127.0.0.1"), tlsHosts: []string{"vigil.example.internal"}, bundle: private,
			want: []string{"Other hosts cannot enroll: the server listens on loopback only", "--listen 0.0.0.0:8443"},
			not:  []string{"vigil-agent --tls_hostname"}},
		{name: "0.0.0.0 with --tls-host", addr: tcp("0.0.0.0"), tlsHosts: []string{"vigil.example.internal", "10.1.2.3"}, bundle: private,
			want: []string{"vigil-agent --tls_hostname vigil.example.internal:8443 --tls_server_certs ca.pem --enroll_secret_path enroll_secret",
				"osqueryd --tls_hostname vigil.example.internal:8443"},
			not: []string{"127.0.0.1", "Warning", "machine's hostname"}},
		{name: "[::] without --tls-host", addr: tcp("::"), bundle: private,
			want: []string{"vigil-agent --tls_hostname build-7:8443 ", "build-7 is this machine's hostname; if other hosts cannot resolve it, restart with --tls-host"},
			not:  []string{"127.0.0.1", "Warning"}},
		{name: "specific address", addr: tcp("10.1.2.3"), bundle: private,
			want: []string{"vigil-agent --tls_hostname 10.1.2.3:8443 "},
			not:  []string{"Warning", "machine's hostname"}},
		{name: "certificate without the name", addr: tcp("0.0.0.0"), bundle: narrow,
			want: []string{"vigil-agent --tls_hostname build-7:8443 ", `Warning: the server certificate does not cover "build-7"`}},
		{name: "operator certificate, no --tls-host: its name", addr: tcp("0.0.0.0"), bundle: operator, operator: true,
			want: []string{"vigil-agent --tls_hostname vigil-op.example.internal:8443 "},
			not:  []string{"Warning", "machine's hostname"}},
		{name: "operator certificate without the name", addr: tcp("0.0.0.0"), tlsHosts: []string{"vigil.example.internal"}, bundle: narrow, operator: true,
			want: []string{`Warning: the --tls-cert certificate does not cover "vigil.example.internal"`}},
	} {
		e := enrollment(tc.addr, tc.tlsHosts, hostname, tc.bundle)
		var b strings.Builder
		writeEnrollHelp(&b, e, "/data/pki/ca.pem", "/data/enroll_secret", tc.operator)
		out := b.String()
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: help lacks %q:\n%s", tc.name, w, out)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(out, n) {
				t.Errorf("%s: help has %q:\n%s", tc.name, n, out)
			}
		}
	}
}

// TestServeEnrollAddress runs `vigil server` on every address, with and
// without --tls-host: the summary names an address other hosts reach,
// the certificate covers it, and the local profile keeps loopback.
func TestServeEnrollAddress(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil || hostname == "" {
		t.Skipf("no hostname (%v): nothing to enroll by", err)
	}
	dir := t.TempDir()
	const name = "vigil-enroll.test.invalid"

	s := startRun(t, "server", "--data-dir", dir, "--listen", "0.0.0.0:0", "--tls-host", name)
	out := s.stdout.String()
	port := listenPort(t, out)
	if want := "vigil-agent --tls_hostname " + name + ":" + port + " "; !strings.Contains(out, want) {
		t.Errorf("summary lacks %q:\n%s", want, out)
	}
	p, err := readProfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.URL != "https://127.0.0.1:"+port {
		t.Errorf("profile URL %q, want the loopback address", p.URL)
	}
	for _, sn := range []string{name, hostname, "127.0.0.1"} {
		if err := handshake(port, sn, p.CAFile); err != nil {
			t.Errorf("certificate does not verify as %q: %v", sn, err)
		}
	}
	if out, err := cli(t, "hosts", "--data-dir", dir); err != nil {
		t.Errorf("CLI through the profile: %v\n%s", err, out)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("Ctrl-C: %v", err)
	}

	// Without --tls-host: the hostname.
	s = startRun(t, "server", "--data-dir", dir, "--listen", "0.0.0.0:0", "--json")
	var sum map[string]any
	if err := json.Unmarshal([]byte(s.stdout.String()), &sum); err != nil {
		t.Fatalf("--json summary: %v: %s", err, s.stdout)
	}
	addr, _ := sum["enroll_address"].(string)
	host, port2, _ := net.SplitHostPort(addr)
	if host != hostname || sum["enroll_remote"] != true || sum["enroll_certificate_covers"] != true {
		t.Errorf("summary %v: want enroll_address %s:PORT, remote and covered", sum, hostname)
	}
	if err := handshake(port2, hostname, p.CAFile); err != nil {
		t.Errorf("certificate does not verify as the hostname %q: %v", hostname, err)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("Ctrl-C: %v", err)
	}
}

// testCA writes a CA and a server certificate for dnsNames (and no IP
// address) signed by it, as an operator's own PKI would.
func testCA(t *testing.T, dnsNames ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Operator Test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsNames[0]}, DNSNames: dnsNames,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	for f, b := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// TestOperatorCertificate starts `vigil up` with the operator's own
// certificate (issued for a DNS name only, not for 127.0.0.1): agents
// enroll over TLS verified with the operator's CA, and the local agent and
// CLI verify it under that name.
func TestOperatorCertificate(t *testing.T) {
	const name = "vigil-operator.test.invalid"
	caFile, certFile, keyFile := testCA(t, name)
	dir := t.TempDir()
	s := startRun(t, "up", "--data-dir", dir, "--listen", "127.0.0.1:0", "--disable-events",
		"--tls-cert", certFile, "--tls-key", keyFile, "--tls-ca", caFile)
	port := listenPort(t, s.stdout.String())
	p, err := readProfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.CAFile != caFile || p.ServerName != name {
		t.Errorf("profile CA %q server name %q, want %q and %q", p.CAFile, p.ServerName, caFile, name)
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", pki.CAFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a private CA was created beside the operator's certificate (stat: %v)", err)
	}

	// An osquery agent elsewhere enrolls, pinning the operator's CA.
	caPEM, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	agentClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name},
		// The test resolves the certificate's name to the server.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
	}}
	secret, err := os.ReadFile(filepath.Join(dir, "enroll_secret"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(osquery.EnrollRequest{EnrollSecret: strings.TrimSpace(string(secret)), HostIdentifier: "elsewhere-1", PlatformType: "9"})
	resp, err := agentClient.Post("https://"+name+":"+port+osquery.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("enroll pinning the operator's CA: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var er osquery.EnrollResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &er) != nil || er.NodeKey == "" {
		t.Fatalf("enroll: %s %s", resp.Status, b)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != name {
		t.Errorf("server did not present the operator's certificate")
	}
	// A client pinning other roots (the system's) refuses it.
	if _, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{ServerName: name}); err == nil {
		t.Error("a client with the system roots accepted the operator's private certificate")
	}

	// The local agent (which verifies under the certificate's name) and
	// the CLI (through the profile) both work.
	eventually(t, "local agent and remote agent listed", time.Minute, func() (bool, string) {
		out, err := cli(t, "hosts", "--data-dir", dir, "--json")
		if err != nil {
			return false, err.Error()
		}
		return len(jsonLines(t, out)) == 2, out
	})
	if err := s.stop(t); err != nil {
		t.Fatalf("Ctrl-C: %v", err)
	}
}

func TestOperatorCertificateErrors(t *testing.T) {
	caFile, certFile, keyFile := testCA(t, "vigil-a.test.invalid")
	otherCA, _, otherKey := testCA(t, "vigil-b.test.invalid")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"cert without key", []string{"--tls-cert", certFile}, []string{"--tls-cert and --tls-key go together"}},
		{"key without cert", []string{"--tls-key", keyFile}, []string{"--tls-cert and --tls-key go together"}},
		{"CA alone", []string{"--tls-ca", caFile}, []string{"--tls-ca names the CA of your own certificate"}},
		{"unreadable key", []string{"--tls-cert", certFile, "--tls-key", missing}, []string{"reading server key", missing}},
		{"key of another certificate", []string{"--tls-cert", certFile, "--tls-key", otherKey}, []string{certFile, otherKey, "private key does not match public key"}},
		{"CA that did not sign it", []string{"--tls-cert", certFile, "--tls-key", keyFile, "--tls-ca", otherCA}, []string{"does not verify with the CA in " + otherCA}},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"server", "--data-dir", dir, "--listen", "127.0.0.1:0"}, tc.args...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var stdout, stderr bytes.Buffer
		err := run(ctx, args, &stdout, &stderr)
		cancel()
		if err == nil {
			t.Errorf("%s: server started", tc.name)
			continue
		}
		for _, w := range tc.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
		if strings.Contains(tc.wants[0], "go together") || strings.Contains(tc.wants[0], "--tls-ca names") {
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: data directory created before the flags were checked", tc.name)
			}
		}
	}
}

// TestUpCtrlC runs `vigil up` in this process, lets the local agent enroll
// and its scheduled results reach the event store, then cancels the context
// as SIGINT does: the command returns nil and leaves the stores closed
// cleanly (no DuckDB or SQLite write-ahead log left behind), which
// reopening them proves.
func TestUpCtrlC(t *testing.T) {
	dir := t.TempDir()
	s := startRun(t, "up", "--data-dir", dir, "--listen", "127.0.0.1:0", "--disable-events")
	port := listenPort(t, s.stdout.String())
	for _, w := range []string{"API and agent endpoint  https://127.0.0.1:" + port, "Local agent             monitoring this host",
		"Other hosts cannot enroll: the server listens on loopback only", "--listen 0.0.0.0:" + port} {
		if !strings.Contains(s.stdout.String(), w) {
			t.Errorf("summary lacks %q:\n%s", w, s.stdout)
		}
	}
	hostname, _ := os.Hostname()
	eventually(t, "local agent enrolled", time.Minute, func() (bool, string) {
		out, err := cli(t, "hosts", "--data-dir", dir, "--json")
		if err != nil {
			return false, err.Error()
		}
		h := jsonLines(t, out)
		return len(h) == 1 && h[0]["hostname"] == hostname, out
	})
	// Scheduled results stored: DuckDB has written since it opened.
	c, err := (&clientFlags{dataDir: dir}).client()
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	eventually(t, "scheduled results in the event store", 2*time.Minute, func() (bool, string) {
		var out struct {
			Rows [][]any `json:"rows"`
		}
		if err := c.do(context.Background(), http.MethodPost, "/api/v1/events/query",
			map[string]string{"sql": "SELECT count(*) FROM query_results"}, &out); err != nil {
			return false, err.Error()
		}
		if len(out.Rows) == 1 && len(out.Rows[0]) == 1 {
			stored = toInt64(out.Rows[0][0])
		}
		return stored > 0, "no rows"
	})

	if err := s.stop(t); err != nil {
		t.Fatalf("vigil up after Ctrl-C returned %v\nstderr: %s", err, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), "shutting down") {
		t.Errorf("no shutdown message on stderr: %s", s.stderr)
	}
	if strings.Contains(s.stderr.String(), "not drained") {
		t.Errorf("the write-ahead log was not drained into the store at Ctrl-C: %s", s.stderr)
	}
	for _, f := range []string{"events.duckdb.wal", "state.db-wal"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s left behind (%d bytes): the store was not closed cleanly", f, fi.Size())
		}
	}

	// Reopen both: they open (no lock held, nothing to recover) and hold
	// what was written before Ctrl-C.
	ctx := context.Background()
	st, err := duckdb.Open(ctx, duckdb.Options{Path: filepath.Join(dir, "events.duckdb")})
	if err != nil {
		t.Fatalf("reopening the event store: %v", err)
	}
	rs, err := st.Query(ctx, "SELECT count(*) FROM query_results")
	if err != nil {
		t.Fatal(err)
	}
	if n := toInt64(rs.Rows[0][0]); n < stored {
		t.Errorf("event store holds %d result rows after restart, %d were stored before Ctrl-C", n, stored)
	}
	if err := st.Close(); err != nil {
		t.Error(err)
	}
	db, err := state.Open(ctx, filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatalf("reopening the state: %v", err)
	}
	defer db.Close()
	hosts, err := db.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].Hostname != hostname {
		t.Errorf("state after restart holds hosts %+v, want this host", hosts)
	}
}

// TestCommandHelp: -h prints each command's flags on its stderr with
// argument names that read as such (Go's flag package takes backquoted
// text of a usage as the argument's name).
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		cmd   string
		wants []string
	}{
		{"hosts", []string{"-data-dir DIR", "-json"}},
		{"query", []string{"-data-dir DIR", "-host value"}},
		{"alerts", []string{"-data-dir DIR", "-status string"}},
		{"up", []string{"-tls-cert string", "-tls-key string", "-tls-ca string", "-tls-host value", "-disable-events"}},
		{"server", []string{"-tls-cert string", "-tls-key string", "-tls-ca string"}},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{tc.cmd, "-h"}, &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s -h: %v, want flag.ErrHelp", tc.cmd, err)
		}
		help := stderr.String()
		for _, w := range tc.wants {
			if !strings.Contains(help, w) {
				t.Errorf("%s -h lacks %q:\n%s", tc.cmd, w, help)
			}
		}
		if strings.Contains(help, "vigil up\n") || regexp.MustCompile(`-\S+ vigil`).MatchString(help) {
			t.Errorf("%s -h names an argument after backquoted text:\n%s", tc.cmd, help)
		}
	}
}
