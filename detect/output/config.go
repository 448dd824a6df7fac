package output

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil"
)

// Config is the outputs file (vigil server --outputs FILE):
//
//	retry: {attempts: 5, initial: 1s, max: 1m}
//	outputs:
//	  - name: soc
//	    type: webhook              # webhook | slack | syslog | email
//	    url: https://soc.example/hooks/vigil
//	    secret_env: VIGIL_WEBHOOK_SECRET   # or secret_file, or secret
//	    min_level: high            # optional filter
//	    rules: [rule ids]          # optional filter
//	  - name: chat
//	    type: slack
//	    url: https://hooks.example/services/T/B/X
//	  - name: siem
//	    type: syslog
//	    address: siem.example:6514
//	    tls: true
//	    ca_file: /etc/vigil/siem-ca.pem
//	  - name: mail
//	    type: email
//	    address: smtp.example:587
//	    from: vigil@example.com
//	    to: [soc@example.com]
//	    username: vigil
//	    password_env: VIGIL_SMTP_PASSWORD
//	    require_tls: true
//
// Secrets may be given inline (secret, password), from an environment
// variable (*_env) or from a file (*_file, trailing newline trimmed).
type Config struct {
	Retry   RetryConfig    `yaml:"retry"`
	Outputs []OutputConfig `yaml:"outputs"`
}

// RetryConfig is the retry section.
type RetryConfig struct {
	Attempts int           `yaml:"attempts"`
	Initial  time.Duration `yaml:"initial"`
	Max      time.Duration `yaml:"max"`
}

// OutputConfig is one output.
type OutputConfig struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"`
	MinLevel string   `yaml:"min_level"`
	Rules    []string `yaml:"rules"`

	// webhook, slack
	URL        string            `yaml:"url"`
	Secret     string            `yaml:"secret"`
	SecretEnv  string            `yaml:"secret_env"`
	SecretFile string            `yaml:"secret_file"`
	Headers    map[string]string `yaml:"headers"`

	// syslog, email
	Address            string `yaml:"address"`
	TLS                bool   `yaml:"tls"`
	CAFile             string `yaml:"ca_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`

	// syslog
	Facility int    `yaml:"facility"`
	AppName  string `yaml:"app_name"`

	// email
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordEnv  string   `yaml:"password_env"`
	PasswordFile string   `yaml:"password_file"`
	RequireTLS   bool     `yaml:"require_tls"`

	Timeout time.Duration `yaml:"timeout"`
}

// ParseConfig decodes an outputs file; name is used in errors. Unknown
// keys are errors (a typo must not silently drop a setting).
func ParseConfig(name string, data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // an empty file: no outputs
		}
		return c, fmt.Errorf("%s: %w", name, err)
	}
	seen := map[string]bool{}
	for i, o := range c.Outputs {
		where := fmt.Sprintf("%s: outputs[%d]", name, i)
		if o.Name == "" {
			return c, fmt.Errorf("%s: name is required", where)
		}
		where = fmt.Sprintf("%s: output %q", name, o.Name)
		if seen[o.Name] {
			return c, fmt.Errorf("%s: name used twice", where)
		}
		seen[o.Name] = true
		if o.MinLevel != "" && levelRank(vigil.Level(o.MinLevel)) == 0 {
			return c, fmt.Errorf("%s: min_level %q is not one of informational, low, medium, high, critical", where, o.MinLevel)
		}
		switch o.Type {
		case "webhook", "slack":
			u, err := url.Parse(o.URL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return c, fmt.Errorf("%s: url %q must be an http(s) URL", where, o.URL)
			}
			if o.Type == "webhook" && o.Secret == "" && o.SecretEnv == "" && o.SecretFile == "" {
				return c, fmt.Errorf("%s: a webhook needs secret, secret_env or secret_file (its requests are signed)", where)
			}
		case "syslog", "email":
			if _, _, err := net.SplitHostPort(o.Address); err != nil {
				return c, fmt.Errorf("%s: address %q must be host:port", where, o.Address)
			}
			if o.Type == "syslog" && (o.Facility < 0 || o.Facility > 23) {
				return c, fmt.Errorf("%s: facility %d is not 0–23", where, o.Facility)
			}
			if o.Type == "email" && (o.From == "" || len(o.To) == 0) {
				return c, fmt.Errorf("%s: email needs from and to", where)
			}
		default:
			return c, fmt.Errorf("%s: type %q is not webhook, slack, syslog or email", where, o.Type)
		}
	}
	return c, nil
}

// LoadConfig reads and parses an outputs file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading outputs file: %w", err)
	}
	return ParseConfig(path, data)
}

// Build makes the outputs and dispatcher options of c (secrets and CA
// files are read now). Set DeadLetters and Logger on the result.
func (c Config) Build() (Options, error) {
	opts := Options{Retry: Retry{Attempts: c.Retry.Attempts, Initial: c.Retry.Initial, Max: c.Retry.Max}, Filters: map[string]Filter{}}
	for _, o := range c.Outputs {
		var out Output
		switch o.Type {
		case "webhook":
			secret, err := readSecret(o.Secret, o.SecretEnv, o.SecretFile)
			if err != nil {
				return opts, fmt.Errorf("output %q: %w", o.Name, err)
			}
			out = NewWebhook(WebhookOptions{Name: o.Name, URL: o.URL, Secret: []byte(secret), Headers: o.Headers})
		case "slack":
			out = NewSlack(o.Name, o.URL, nil)
		case "syslog":
			var cfg *tls.Config
			if o.TLS {
				var err error
				if cfg, err = tlsConfig(o); err != nil {
					return opts, fmt.Errorf("output %q: %w", o.Name, err)
				}
			}
			out = NewSyslog(SyslogOptions{Name: o.Name, Address: o.Address, TLS: cfg, Facility: o.Facility, AppName: o.AppName, Timeout: o.Timeout})
		case "email":
			pw, err := readSecret(o.Password, o.PasswordEnv, o.PasswordFile)
			if err != nil {
				return opts, fmt.Errorf("output %q: %w", o.Name, err)
			}
			cfg, err := tlsConfig(o)
			if err != nil {
				return opts, fmt.Errorf("output %q: %w", o.Name, err)
			}
			out = NewEmail(EmailOptions{Name: o.Name, Address: o.Address, From: o.From, To: o.To, Username: o.Username,
				Password: pw, TLS: cfg, RequireTLS: o.RequireTLS, Timeout: o.Timeout})
		default:
			return opts, fmt.Errorf("output %q: type %q is not webhook, slack, syslog or email", o.Name, o.Type)
		}
		opts.Outputs = append(opts.Outputs, out)
		opts.Filters[o.Name] = Filter{MinLevel: vigil.Level(o.MinLevel), Rules: o.Rules}
	}
	return opts, nil
}

func readSecret(inline, env, file string) (string, error) {
	switch {
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading secret: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return inline, nil
}

func tlsConfig(o OutputConfig) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(o.Address)
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
