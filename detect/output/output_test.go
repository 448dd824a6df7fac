package output_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/detect/output"
	"github.com/vigilhq/vigil/pki"
	"github.com/vigilhq/vigil/state"
)

func testAlerts() []vigil.Alert {
	t0 := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	return []vigil.Alert{
		{ID: 7, RuleID: `r"1]`, RuleTitle: "Evil <@channel>", Level: vigil.LevelHigh, HostID: "h1", Hostname: "web-1",
			EventID: "ev-1", EventTable: "process_creation", EventTime: t0, CreatedAt: t0, Status: vigil.AlertOpen,
			Fields: map[string]any{"process_command_line": "sh -c evil"}},
		{ID: 8, RuleID: "r2", RuleTitle: "Low thing", Level: vigil.LevelLow, HostID: "h2", Hostname: "db-1",
			EventID: "ev-2", EventTable: "process_creation", EventTime: t0, CreatedAt: t0, Status: vigil.AlertOpen},
	}
}

func tlsBundle(t *testing.T) pki.Bundle {
	t.Helper()
	b, err := pki.Ensure(t.TempDir(), []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWebhookIsSignedAndVerifies(t *testing.T) {
	secret := []byte("s3cret")
	var got output.WebhookPayload
	var verr error
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		verr = output.Verify(secret, r.Header.Get(output.SignatureTimestampHeader), r.Header.Get(output.SignatureHeader), body, time.Now(), 5*time.Minute)
		if verr != nil {
			http.Error(w, verr.Error(), http.StatusUnauthorized)
			return
		}
		// The same body under another secret or altered must not verify.
		if output.Verify([]byte("other"), r.Header.Get(output.SignatureTimestampHeader), r.Header.Get(output.SignatureHeader), body, time.Now(), time.Minute) == nil {
			t.Error("signature verified with the wrong secret")
		}
		if output.Verify(secret, r.Header.Get(output.SignatureTimestampHeader), r.Header.Get(output.SignatureHeader), append(body, ' '), time.Now(), time.Minute) == nil {
			t.Error("signature verified over an altered body")
		}
		if r.Header.Get("X-Team") != "soc" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", r.Header)
		}
		json.Unmarshal(body, &got)
	}))
	defer srv.Close()
	wh := output.NewWebhook(output.WebhookOptions{Name: "soc", URL: srv.URL, Secret: secret, Headers: map[string]string{"X-Team": "soc"}})
	if err := wh.Send(context.Background(), testAlerts()); err != nil {
		t.Fatalf("Send: %v (receiver: %v)", err, verr)
	}
	if got.Version != 1 || len(got.Alerts) != 2 || got.Alerts[0].EventID != "ev-1" || got.Alerts[1].RuleID != "r2" {
		t.Errorf("payload %+v", got)
	}
	// A stale timestamp is refused even with a good signature.
	old := time.Now().Add(-time.Hour)
	body := []byte(`{}`)
	if err := output.Verify(secret, "x", output.Sign(secret, old, body), body, time.Now(), time.Minute); err == nil {
		t.Error("bad timestamp accepted")
	}
	if err := output.Verify(secret, itoa(old.Unix()), output.Sign(secret, old, body), body, time.Now(), time.Minute); err == nil || !strings.Contains(err.Error(), "away from now") {
		t.Errorf("stale timestamp: %v", err)
	}
	// A non-2xx answer is an error.
	bad := output.NewWebhook(output.WebhookOptions{Name: "bad", URL: srv.URL, Secret: []byte("wrong")})
	if err := bad.Send(context.Background(), testAlerts()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong secret: %v", err)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestSlackMessage(t *testing.T) {
	var msg output.SlackMessage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&msg)
	}))
	defer srv.Close()
	if err := output.NewSlack("chat", srv.URL, nil).Send(context.Background(), testAlerts()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "2 new alert") || !strings.Contains(msg.Text, "Evil &lt;@channel&gt; on web-1") ||
		strings.Contains(msg.Text, "<@channel>") || !strings.Contains(msg.Text, "[low] Low thing on db-1") {
		t.Errorf("text %q", msg.Text)
	}
}

func TestSyslogRFC5424OverTCPAndTLS(t *testing.T) {
	b := tlsBundle(t)
	for _, useTLS := range []bool{false, true} {
		name := "tcp"
		var srvCfg, cliCfg *tls.Config
		if useTLS {
			name = "tls"
			srvCfg = b.TLSConfig()
			cliCfg = &tls.Config{RootCAs: b.CertPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		}
		t.Run(name, func(t *testing.T) {
			l := newSyslogListener(t, srvCfg)
			now := time.Date(2026, 11, 27, 4, 1, 2, 345678000, time.UTC)
			s := output.NewSyslog(output.SyslogOptions{Name: "siem", Address: l.ln.Addr().String(), TLS: cliCfg,
				Hostname: "vigil server", Now: func() time.Time { return now }})
			if err := s.Send(context.Background(), testAlerts()); err != nil {
				t.Fatal(err)
			}
			var msgs []syslogMsg
			var errs []error
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if msgs, errs = l.snapshot(); len(msgs)+len(errs) >= 2 {
					break
				}
			}
			if len(errs) > 0 || len(msgs) != 2 {
				t.Fatalf("messages %+v, errors %v", msgs, errs)
			}
			m := msgs[0]
			if m.Pri != 13*8+3 || m.Version != 1 || m.Timestamp != "2026-11-27T04:01:02.345678Z" || m.Host != "vigilserver" ||
				m.App != "vigil" || m.ProcID != "-" || m.MsgID != "alert" {
				t.Errorf("header %+v", m)
			}
			sd := m.SD[output.SyslogSDID]
			if sd["rule_id"] != `r"1]` || sd["alert_id"] != "7" || sd["hostname"] != "web-1" || sd["level"] != "high" {
				t.Errorf("structured data %v", m.SD)
			}
			var a vigil.Alert
			if err := json.Unmarshal([]byte(m.Msg), &a); err != nil || a.EventID != "ev-1" {
				t.Errorf("message %q: %v", m.Msg, err)
			}
			if msgs[1].Pri != 13*8+5 {
				t.Errorf("low alert PRI %d, want notice", msgs[1].Pri)
			}
		})
	}
	// A TLS listener refuses a client that does not trust its CA.
	l := newSyslogListener(t, b.TLSConfig())
	s := output.NewSyslog(output.SyslogOptions{Name: "siem", Address: l.ln.Addr().String(), TLS: &tls.Config{ServerName: "127.0.0.1"}})
	if err := s.Send(context.Background(), testAlerts()); err == nil {
		t.Error("TLS to an untrusted certificate succeeded")
	}
}

func TestEmailUsesSTARTTLSAndAuth(t *testing.T) {
	b := tlsBundle(t)
	sink := newSMTPSink(t, b.TLSConfig())
	e := output.NewEmail(output.EmailOptions{Name: "mail", Address: sink.ln.Addr().String(), From: "vigil@example.com",
		To: []string{"soc@example.com", "oncall@example.com"}, Username: "vigil", Password: "pw", RequireTLS: true,
		TLS: &tls.Config{RootCAs: b.CertPool(), MinVersion: tls.VersionTLS12}})
	if err := e.Send(context.Background(), testAlerts()[:1]); err != nil {
		t.Fatal(err)
	}
	mails := sink.received()
	if len(mails) != 1 {
		t.Fatalf("%d mails", len(mails))
	}
	m := mails[0]
	if !m.TLS || m.Auth != "\x00vigil\x00pw" || m.From != "vigil@example.com" || strings.Join(m.To, ",") != "soc@example.com,oncall@example.com" {
		t.Errorf("mail %+v", m)
	}
	if !strings.Contains(m.Data, "Subject: ") || !strings.Contains(m.Data, "\"event_id\": \"ev-1\"") || !strings.Contains(m.Data, "To: soc@example.com, oncall@example.com\r\n") {
		t.Errorf("data %q", m.Data)
	}

	plain := newSMTPSink(t, nil)
	e = output.NewEmail(output.EmailOptions{Name: "mail", Address: plain.ln.Addr().String(), From: "a@b", To: []string{"c@d"}, RequireTLS: true})
	if err := e.Send(context.Background(), testAlerts()); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("plain server with require_tls: %v", err)
	}
	e = output.NewEmail(output.EmailOptions{Name: "mail", Address: plain.ln.Addr().String(), From: "a@b", To: []string{"c@d"}})
	if err := e.Send(context.Background(), testAlerts()); err != nil {
		t.Errorf("plain server without require_tls: %v", err)
	}
	if got := plain.received(); len(got) != 1 || got[0].TLS {
		t.Errorf("plain mails %+v", got)
	}
}

func openState(t *testing.T) *state.DB {
	t.Helper()
	db, err := state.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestDispatcherRetriesThenDeadLetters(t *testing.T) {
	var flaky, down atomic.Int32
	var mu sync.Mutex
	var delivered []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if flaky.Add(1) <= 2 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			var p output.WebhookPayload
			json.NewDecoder(r.Body).Decode(&p)
			mu.Lock()
			for _, a := range p.Alerts {
				delivered = append(delivered, a.EventID)
			}
			mu.Unlock()
		case "/down":
			down.Add(1)
			http.Error(w, "down", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	st := openState(t)
	d, err := output.New(output.Options{
		Outputs: []output.Output{
			output.NewWebhook(output.WebhookOptions{Name: "flaky", URL: srv.URL + "/flaky", Secret: []byte("k")}),
			output.NewWebhook(output.WebhookOptions{Name: "down", URL: srv.URL + "/down", Secret: []byte("k")}),
		},
		Filters:     map[string]output.Filter{"flaky": {MinLevel: vigil.LevelHigh}},
		Retry:       output.Retry{Attempts: 3, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		DeadLetters: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	d.Notify(ctx, testAlerts())
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := d.Stats()
		if s[0].Sent == 1 && s[1].DeadLettered == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	if strings.Join(delivered, ",") != "ev-1" { // the low alert is filtered out
		t.Errorf("delivered %v", delivered)
	}
	mu.Unlock()
	if flaky.Load() != 3 || down.Load() != 3 {
		t.Errorf("attempts flaky=%d down=%d, want 3 each", flaky.Load(), down.Load())
	}
	dls, err := st.DeadLetters(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Output != "down" || dls[0].Kind != "webhook" || dls[0].Attempts != 3 ||
		!strings.Contains(dls[0].Error, "500") || !strings.Contains(dls[0].Payload, `"ev-2"`) {
		t.Fatalf("dead letters %+v", dls)
	}
	// Once the receiver is back, the dead letter is delivered again.
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p output.WebhookPayload
		json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		for _, a := range p.Alerts {
			delivered = append(delivered, "again:"+a.EventID)
		}
		mu.Unlock()
	})
	if err := d.Redeliver(context.Background(), dls[0]); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if strings.Join(delivered, ",") != "ev-1,again:ev-1,again:ev-2" {
		t.Errorf("delivered after redelivery %v", delivered)
	}
	mu.Unlock()
	if err := st.DeleteDeadLetter(context.Background(), dls[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteDeadLetter(context.Background(), dls[0].ID); err == nil {
		t.Error("deleting twice succeeded")
	}
}

func TestTestSend(t *testing.T) {
	var got output.SlackMessage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&got)
	}))
	defer srv.Close()
	d, err := output.New(output.Options{Outputs: []output.Output{output.NewSlack("chat", srv.URL, nil), output.NewSlack("dead", "http://127.0.0.1:1/", nil)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.TestSend(context.Background(), "chat"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.Text, "Vigil output test") {
		t.Errorf("test message %q", got.Text)
	}
	if err := d.TestSend(context.Background(), "dead"); err == nil || !strings.Contains(err.Error(), `output "dead"`) {
		t.Errorf("test send to a dead output: %v", err)
	}
	if err := d.TestSend(context.Background(), "nope"); err == nil {
		t.Error("test send to an unknown output succeeded")
	}
	if _, err := output.New(output.Options{Outputs: []output.Output{output.NewSlack("x", srv.URL, nil), output.NewSlack("x", srv.URL, nil)}}); err == nil {
		t.Error("duplicate names accepted")
	}
}

// FuzzSyslogFormat checks that any alert text makes a message our strict
// RFC 5424 parser reads back with the same structured data.
func FuzzSyslogFormat(f *testing.F) {
	f.Add(`r"1]`, "web-1", "host \\ x")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, rule, host, hostID string) {
		s := output.NewSyslog(output.SyslogOptions{Name: "x", Address: "127.0.0.1:1", Hostname: host + " ünï"})
		msg, err := s.Format(vigil.Alert{RuleID: rule, Hostname: host, HostID: hostID, Level: vigil.LevelMedium})
		if err != nil {
			t.Fatal(err)
		}
		m, err := parseRFC5424(string(msg))
		if err != nil {
			t.Fatalf("%q: %v", msg, err)
		}
		sd := m.SD[output.SyslogSDID]
		if sd["rule_id"] != rule || sd["hostname"] != host || sd["host_id"] != hostID || m.Pri != 13*8+4 {
			t.Fatalf("round trip of %q %q %q: %+v", rule, host, hostID, m)
		}
	})
}

func TestResend(t *testing.T) {
	var up atomic.Bool
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "receiver down", http.StatusBadGateway)
			return
		}
		var p output.WebhookPayload
		json.NewDecoder(r.Body).Decode(&p)
		got.Add(int32(len(p.Alerts)))
	}))
	defer srv.Close()
	st := openState(t)
	d, err := output.New(output.Options{
		Outputs:     []output.Output{output.NewWebhook(output.WebhookOptions{Name: "soc", URL: srv.URL, Secret: []byte("k")})},
		Retry:       output.Retry{Attempts: 3, Initial: time.Millisecond, Max: time.Millisecond},
		DeadLetters: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	payload, _ := json.Marshal(testAlerts())
	id, err := st.AddDeadLetter(ctx, state.DeadLetter{Output: "soc", Kind: "webhook", Payload: string(payload), Error: "x", Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	dl, err := st.DeadLetter(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// Down: one attempt, the error at once, and no second dead letter.
	err = d.Resend(ctx, dl)
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), fmt.Sprint("dead letter ", id)) {
		t.Errorf("resend to a down receiver: %v", err)
	}
	if s := d.Stats()[0]; s.Attempts != 1 || s.Failures != 1 || s.DeadLettered != 0 {
		t.Errorf("stats after a failed resend %+v: want one failed attempt and no dead letter", s)
	}
	if dls, _ := st.DeadLetters(ctx, 10); len(dls) != 1 {
		t.Errorf("dead letters after a failed resend: %d, want the one there was", len(dls))
	}
	up.Store(true)
	if err := d.Resend(ctx, dl); err != nil {
		t.Fatal(err)
	}
	if got.Load() != 2 || d.Stats()[0].Sent != 2 {
		t.Errorf("delivered %d alerts (stats %+v), want 2", got.Load(), d.Stats()[0])
	}
	for _, c := range []struct {
		dl   state.DeadLetter
		kind error
	}{
		{state.DeadLetter{ID: 9, Output: "gone", Payload: string(payload)}, vigil.ErrNotFound},
		{state.DeadLetter{ID: 9, Output: "soc", Payload: "{not json"}, vigil.ErrInvalid},
		{state.DeadLetter{ID: 9, Output: "soc", Payload: "[]"}, vigil.ErrInvalid},
	} {
		if err := d.Resend(ctx, c.dl); !errors.Is(err, c.kind) || !strings.Contains(err.Error(), "dead letter 9") {
			t.Errorf("resend %+v: %v, want %v naming the dead letter", c.dl, err, c.kind)
		}
	}
	if got.Load() != 2 {
		t.Errorf("bad dead letters were sent: %d alerts", got.Load())
	}
}
