package output_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// syslogMsg is one parsed RFC 5424 message.
type syslogMsg struct {
	Pri                  int
	Version              int
	Timestamp, Host, App string
	ProcID, MsgID        string
	SD                   map[string]map[string]string
	Msg                  string
}

var headerRE = regexp.MustCompile(`^<(\d{1,3})>(\d) (\S+) (\S+) (\S+) (\S+) (\S+) `)

// parseRFC5424 parses a message (without framing) strictly enough to
// catch malformed output: header fields, structured data with escapes,
// the BOM before a UTF-8 message.
func parseRFC5424(s string) (syslogMsg, error) {
	m := headerRE.FindStringSubmatch(s)
	if m == nil {
		return syslogMsg{}, fmt.Errorf("bad header in %q", s)
	}
	var out syslogMsg
	out.Pri, _ = strconv.Atoi(m[1])
	out.Version, _ = strconv.Atoi(m[2])
	out.Timestamp, out.Host, out.App, out.ProcID, out.MsgID = m[3], m[4], m[5], m[6], m[7]
	rest := s[len(m[0]):]
	out.SD = map[string]map[string]string{}
	if strings.HasPrefix(rest, "-") {
		rest = rest[1:]
	} else {
		for strings.HasPrefix(rest, "[") {
			rest = rest[1:]
			end := strings.IndexAny(rest, " ]")
			if end < 0 {
				return out, errors.New("unterminated SD-ELEMENT")
			}
			id := rest[:end]
			params := map[string]string{}
			rest = rest[end:]
			for strings.HasPrefix(rest, " ") {
				rest = rest[1:]
				eq := strings.Index(rest, `="`)
				if eq < 0 {
					return out, fmt.Errorf("bad SD-PARAM in %q", rest)
				}
				name := rest[:eq]
				rest = rest[eq+2:]
				var val strings.Builder
				i := 0
				for ; i < len(rest); i++ {
					c := rest[i]
					if c == '\\' && i+1 < len(rest) && strings.ContainsRune(`"\]`, rune(rest[i+1])) {
						val.WriteByte(rest[i+1])
						i++
						continue
					}
					if c == '"' {
						break
					}
					if c == ']' {
						return out, fmt.Errorf("unescaped ] in SD-PARAM %s", name)
					}
					val.WriteByte(c)
				}
				if i == len(rest) {
					return out, errors.New("unterminated SD-PARAM value")
				}
				params[name] = val.String()
				rest = rest[i+1:]
			}
			if !strings.HasPrefix(rest, "]") {
				return out, fmt.Errorf("SD-ELEMENT %s not closed", id)
			}
			rest = rest[1:]
			out.SD[id] = params
		}
	}
	if rest != "" {
		if !strings.HasPrefix(rest, " ") {
			return out, errors.New("no space before MSG")
		}
		out.Msg = strings.TrimPrefix(rest[1:], "\ufeff")
	}
	return out, nil
}

// readFramed reads octet-counted messages ("LEN SP MSG") until EOF.
func readFramed(r *bufio.Reader) ([]string, error) {
	var out []string
	for {
		n, err := r.ReadString(' ')
		if err == io.EOF && n == "" {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("reading frame length: %w", err)
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil || size <= 0 {
			return out, fmt.Errorf("bad frame length %q", n)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return out, fmt.Errorf("reading %d-byte frame: %w", size, err)
		}
		out = append(out, string(buf))
	}
}

// syslogListener accepts connections (TLS when cfg is set) and collects
// every parsed message; failed is set on malformed input.
type syslogListener struct {
	ln     net.Listener
	mu     sync.Mutex
	msgs   []syslogMsg
	errs   []error
	closed bool
}

func newSyslogListener(t *testing.T, cfg *tls.Config) *syslogListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	l := &syslogListener{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				frames, err := readFramed(bufio.NewReader(c))
				l.mu.Lock()
				defer l.mu.Unlock()
				if err != nil {
					l.errs = append(l.errs, err)
				}
				for _, f := range frames {
					m, err := parseRFC5424(f)
					if err != nil {
						l.errs = append(l.errs, err)
						continue
					}
					l.msgs = append(l.msgs, m)
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return l
}

func (l *syslogListener) snapshot() ([]syslogMsg, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]syslogMsg(nil), l.msgs...), append([]error(nil), l.errs...)
}

// smtpSink is a minimal SMTP server: EHLO (announcing STARTTLS when it
// has a certificate and AUTH PLAIN after TLS), STARTTLS, AUTH PLAIN,
// MAIL, RCPT, DATA (dot-unstuffed), QUIT.
type smtpSink struct {
	ln  net.Listener
	tls *tls.Config

	mu    sync.Mutex
	mails []mail
}

type mail struct {
	From string
	To   []string
	Data string
	TLS  bool
	Auth string // the decoded AUTH PLAIN response
	Helo string
}

func newSMTPSink(t *testing.T, cfg *tls.Config) *smtpSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln, tls: cfg}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *smtpSink) serve(c net.Conn) {
	defer func() { c.Close() }()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(line string) { w.WriteString(line + "\r\n"); w.Flush() }
	var m mail
	say("220 sink ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		arg := ""
		if i := strings.IndexByte(line, ' '); i > 0 {
			arg = line[i+1:]
		}
		switch verb {
		case "EHLO", "HELO":
			m.Helo = arg
			var ext []string
			if s.tls != nil && !m.TLS {
				ext = append(ext, "STARTTLS")
			}
			if m.TLS {
				ext = append(ext, "AUTH PLAIN")
			}
			if len(ext) == 0 {
				say("250 sink")
				continue
			}
			w.WriteString("250-sink\r\n")
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				w.WriteString("250" + sep + e + "\r\n")
			}
			w.Flush()
		case "STARTTLS":
			if s.tls == nil || m.TLS {
				say("502 no")
				continue
			}
			say("220 go ahead")
			tc := tls.Server(c, s.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
			r, w = bufio.NewReader(tc), bufio.NewWriter(tc)
			m = mail{TLS: true}
		case "AUTH":
			f := strings.Fields(arg)
			if !m.TLS || len(f) != 2 || strings.ToUpper(f[0]) != "PLAIN" {
				say("504 unsupported")
				continue
			}
			dec, err := decodeB64(f[1])
			if err != nil {
				say("501 bad base64")
				continue
			}
			m.Auth = dec
			say("235 ok")
		case "MAIL":
			if len(arg) < 5 {
				say("501 syntax")
				continue
			}
			m.From = strings.Trim(arg[len("FROM:"):], "<> ")
			say("250 ok")
		case "RCPT":
			if len(arg) < 3 {
				say("501 syntax")
				continue
			}
			m.To = append(m.To, strings.Trim(arg[len("TO:"):], "<> "))
			say("250 ok")
		case "DATA":
			say("354 go")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			m.Data = data.String()
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			say("250 queued")
		case "QUIT":
			say("221 bye")
			return
		case "RSET", "NOOP":
			say("250 ok")
		default:
			say("500 unknown")
		}
	}
}

func (s *smtpSink) received() []mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mail(nil), s.mails...)
}

func decodeB64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}
