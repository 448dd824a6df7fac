package output

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
)

// Email sends one message per batch of alerts over SMTP, upgrading with
// STARTTLS whenever the server offers it.
type Email struct {
	o EmailOptions
}

// EmailOptions configure an Email output.
type EmailOptions struct {
	Name     string
	Address  string // SMTP server host:port (587 or 25)
	From     string
	To       []string
	Username string // empty: no AUTH
	Password string
	// TLS configures STARTTLS (nil: system roots, ServerName from Address).
	TLS *tls.Config
	// RequireTLS refuses to send when the server offers no STARTTLS. AUTH
	// is never attempted without TLS except to localhost (net/smtp).
	RequireTLS bool
	Hello      string // EHLO name; default "localhost"
	Timeout    time.Duration
	Now        func() time.Time
}

// NewEmail returns an email output.
func NewEmail(o EmailOptions) *Email {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Hello == "" {
		o.Hello = "localhost"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Email{o: o}
}

var _ Output = (*Email)(nil)

func (e *Email) Name() string { return e.o.Name }
func (e *Email) Kind() string { return "email" }

// Send delivers one message with every alert.
func (e *Email) Send(ctx context.Context, alerts []vigil.Alert) error {
	if len(e.o.To) == 0 {
		return errors.New("email: no recipients")
	}
	msg, err := e.Message(alerts)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(e.o.Address)
	if err != nil {
		return fmt.Errorf("email: server address %q: %w", e.o.Address, err)
	}
	conn, err := (&net.Dialer{Timeout: e.o.Timeout}).DialContext(ctx, "tcp", e.o.Address)
	if err != nil {
		return fmt.Errorf("email: connecting to %s: %w", e.o.Address, err)
	}
	deadline := time.Now().Add(e.o.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("email: greeting from %s: %w", e.o.Address, err)
	}
	defer c.Close()
	if err := c.Hello(e.o.Hello); err != nil {
		return fmt.Errorf("email: EHLO: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := e.o.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		} else if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("email: STARTTLS: %w", err)
		}
	} else if e.o.RequireTLS {
		return fmt.Errorf("email: %s offers no STARTTLS and require_tls is set", e.o.Address)
	}
	if e.o.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.o.Username, e.o.Password, host)); err != nil {
			return fmt.Errorf("email: AUTH: %w", err)
		}
	}
	if err := c.Mail(e.o.From); err != nil {
		return fmt.Errorf("email: MAIL FROM: %w", err)
	}
	for _, to := range e.o.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("email: RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("email: DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("email: writing message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("email: ending message: %w", err)
	}
	return c.Quit()
}

// Message returns the RFC 5322 message for alerts: a text summary and
// each alert as JSON.
func (e *Email) Message(alerts []vigil.Alert) ([]byte, error) {
	subject := fmt.Sprintf("Vigil: %d new alert(s)", len(alerts))
	if len(alerts) == 1 {
		subject = fmt.Sprintf("Vigil [%s]: %s on %s", alerts[0].Level, alerts[0].RuleTitle, alerts[0].Hostname)
	}
	var id [12]byte
	rand.Read(id[:])
	var b strings.Builder
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, noCRLF(v)) }
	hdr("From", e.o.From)
	hdr("To", strings.Join(e.o.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", noCRLF(subject)))
	hdr("Date", e.o.Now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+hex.EncodeToString(id[:])+"@vigil>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(SlackText(alerts), "\n", "\r\n"))
	b.WriteString("\r\n")
	for _, a := range alerts {
		j, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("email: encoding alert: %w", err)
		}
		b.WriteString(strings.ReplaceAll(string(j), "\n", "\r\n"))
		b.WriteString("\r\n")
	}
	return []byte(b.String()), nil
}

func noCRLF(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }
