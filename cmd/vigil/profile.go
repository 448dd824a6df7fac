package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profileFile is the CLI profile `vigil up` and `vigil server` write into
// their data directory, so that `vigil hosts|query|alerts --data-dir DIR`
// need no other set-up.
const profileFile = "profile.json"

// Profile says how the CLI reaches a Vigil server.
type Profile struct {
	URL    string `json:"url"`     // https://host:port
	CAFile string `json:"ca_file"` // PEM of the CA that signed the server certificate
	// ServerName, when set, is the name the certificate is verified
	// under instead of URL's host (an operator certificate that does not
	// cover the loopback address URL names).
	ServerName string `json:"server_name,omitempty"`
	Token      string `json:"token"` // people API token (admin for the profile `vigil up` writes)
}

// defaultDataDir is where `vigil up` keeps its state unless told otherwise:
// $XDG_STATE_HOME/vigil, else ~/.local/state/vigil.
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "vigil")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "vigil")
	}
	return "vigil-data"
}

func writeProfile(dataDir string, p Profile) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dataDir, profileFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing profile: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, profileFile)); err != nil {
		return fmt.Errorf("writing profile: %w", err)
	}
	return nil
}

func readProfile(dataDir string) (Profile, error) {
	var p Profile
	path := filepath.Join(dataDir, profileFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("no Vigil profile at %s: start `vigil up --data-dir %s` first, or pass --server and --token", path, dataDir)
	}
	if err != nil {
		return p, fmt.Errorf("reading profile: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("profile %s: %w", path, err)
	}
	return p, nil
}

// httpClient returns a client that trusts only the profile's CA (when one is
// given), with no overall timeout because query streams are long-lived.
func (p Profile) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: p.ServerName}
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", p.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: tr}, nil
}
