package output

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
)

// Syslog sends one RFC 5424 message per alert over TCP, or TLS (RFC 5425),
// with octet-counting framing ("LEN SP MSG", RFC 6587 3.4.1). It dials for
// each Send, so a restarted collector costs nothing but a retry.
type Syslog struct {
	o SyslogOptions
}

// SyslogOptions configure a Syslog output.
type SyslogOptions struct {
	Name     string
	Address  string      // host:port
	TLS      *tls.Config // nil: plain TCP
	Facility int         // 0–23; default 13 (log audit)
	AppName  string      // default "vigil"
	Hostname string      // default os.Hostname()
	Timeout  time.Duration
	Now      func() time.Time
}

// SyslogSDID is the structured-data id of the alert element, under the
// private enterprise number used for examples in RFC 5424 (32473).
const SyslogSDID = "vigil@32473"

// NewSyslog returns a syslog output.
func NewSyslog(o SyslogOptions) *Syslog {
	if o.Facility <= 0 || o.Facility > 23 {
		o.Facility = 13
	}
	if o.AppName == "" {
		o.AppName = "vigil"
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Syslog{o: o}
}

var _ Output = (*Syslog)(nil)

func (s *Syslog) Name() string { return s.o.Name }
func (s *Syslog) Kind() string { return "syslog" }

// Send writes one framed message per alert on a fresh connection.
func (s *Syslog) Send(ctx context.Context, alerts []vigil.Alert) error {
	d := &net.Dialer{Timeout: s.o.Timeout}
	var (
		conn net.Conn
		err  error
	)
	if s.o.TLS != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: s.o.TLS}).DialContext(ctx, "tcp", s.o.Address)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.o.Address)
	}
	if err != nil {
		return fmt.Errorf("connecting to syslog %s: %w", s.o.Address, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(s.o.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	w := bufio.NewWriter(conn)
	for _, a := range alerts {
		msg, err := s.Format(a)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%d %s", len(msg), msg)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing to syslog %s: %w", s.o.Address, err)
	}
	return nil
}

// Severity maps an alert level to a syslog severity.
func Severity(l vigil.Level) int {
	switch l {
	case vigil.LevelCritical:
		return 2 // critical
	case vigil.LevelHigh:
		return 3 // error
	case vigil.LevelMedium:
		return 4 // warning
	case vigil.LevelLow:
		return 5 // notice
	}
	return 6 // informational
}

// Format returns the RFC 5424 message of a (without framing):
// <PRI>1 TIMESTAMP HOST APP - alert [vigil@32473 ...] BOM JSON.
func (s *Syslog) Format(a vigil.Alert) ([]byte, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encoding alert for syslog: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s %s - alert [%s", s.o.Facility*8+Severity(a.Level),
		s.o.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), headerField(s.o.Hostname, 255), headerField(s.o.AppName, 48), SyslogSDID)
	for _, p := range [][2]string{{"alert_id", strconv.FormatInt(a.ID, 10)}, {"rule_id", a.RuleID}, {"level", string(a.Level)},
		{"host_id", a.HostID}, {"hostname", a.Hostname}, {"event_id", a.EventID}} {
		fmt.Fprintf(&b, ` %s="%s"`, p[0], sdEscape(p[1]))
	}
	b.WriteString("] \ufeff")
	b.Write(body)
	return []byte(b.String()), nil
}

// headerField makes s a valid header field: printable US-ASCII without
// spaces, at most n characters, "-" when empty.
func headerField(s string, n int) string {
	out := []byte{}
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

// sdEscape escapes a structured-data parameter value (RFC 5424 6.3.3).
func sdEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(s)
}
