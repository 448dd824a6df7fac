package output

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
)

// Webhook signature headers. The signature is
// "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)) where
// timestamp is the decimal Unix time in SignatureTimestampHeader; a
// receiver recomputes it (Verify) and refuses old timestamps to stop
// replays.
const (
	SignatureHeader          = "X-Vigil-Signature"
	SignatureTimestampHeader = "X-Vigil-Timestamp"
)

// Sign returns the signature header value of body sent at ts.
func Sign(secret []byte, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a webhook request's signature headers against body, in
// constant time, refusing a timestamp more than tolerance away from now.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook signature: bad %s %q", SignatureTimestampHeader, timestamp)
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook signature: timestamp %s is %s away from now", ts.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	want := Sign(secret, ts, body)
	if subtle.ConstantTimeCompare([]byte(want), []byte(signature)) != 1 {
		return errors.New("webhook signature: mismatch")
	}
	return nil
}

// WebhookPayload is the JSON body of a webhook.
type WebhookPayload struct {
	Version int           `json:"version"` // 1
	SentAt  time.Time     `json:"sent_at"`
	Alerts  []vigil.Alert `json:"alerts"`
}

// Webhook posts alerts as JSON, signed with HMAC-SHA256 when it has a
// secret.
type Webhook struct {
	name    string
	url     string
	secret  []byte
	headers map[string]string
	client  *http.Client
	now     func() time.Time
}

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	Name    string
	URL     string
	Secret  []byte            // empty: unsigned (LoadConfig requires one)
	Headers map[string]string // extra headers
	Client  *http.Client      // default: 10 s timeout
	Now     func() time.Time
}

// NewWebhook returns a webhook output.
func NewWebhook(o WebhookOptions) *Webhook {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Webhook{name: o.Name, url: o.URL, secret: o.Secret, headers: o.Headers, client: o.Client, now: o.Now}
}

var _ Output = (*Webhook)(nil)

func (w *Webhook) Name() string { return w.name }
func (w *Webhook) Kind() string { return "webhook" }

// Send posts one WebhookPayload with every alert.
func (w *Webhook) Send(ctx context.Context, alerts []vigil.Alert) error {
	now := w.now()
	body, err := json.Marshal(WebhookPayload{Version: 1, SentAt: now.UTC(), Alerts: alerts})
	if err != nil {
		return fmt.Errorf("encoding webhook payload: %w", err)
	}
	h := map[string]string{"Content-Type": "application/json"}
	if len(w.secret) > 0 {
		h[SignatureTimestampHeader] = strconv.FormatInt(now.Unix(), 10)
		h[SignatureHeader] = Sign(w.secret, now, body)
	}
	for k, v := range w.headers {
		h[k] = v
	}
	return post(ctx, w.client, w.url, body, h)
}

func post(ctx context.Context, c *http.Client, url string, body []byte, headers map[string]string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("posting: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Slack posts a text summary to a Slack-compatible incoming webhook
// (Slack, Mattermost, Rocket.Chat accept {"text": ...}).
type Slack struct {
	name   string
	url    string
	client *http.Client
}

// NewSlack returns a Slack-compatible output; client nil means a 10 s
// timeout.
func NewSlack(name, url string, client *http.Client) *Slack {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Slack{name: name, url: url, client: client}
}

var _ Output = (*Slack)(nil)

func (s *Slack) Name() string { return s.name }
func (s *Slack) Kind() string { return "slack" }

// SlackMessage is the body posted to a Slack-compatible webhook.
type SlackMessage struct {
	Text string `json:"text"`
}

// Send posts one message listing the alerts (at most 20 lines, then a
// count of the rest).
func (s *Slack) Send(ctx context.Context, alerts []vigil.Alert) error {
	body, err := json.Marshal(SlackMessage{Text: SlackText(alerts)})
	if err != nil {
		return err
	}
	return post(ctx, s.client, s.url, body, map[string]string{"Content-Type": "application/json"})
}

// SlackText is the message text for alerts. Slack's control characters
// (&, <, >) in values are escaped so a process name cannot ping @channel.
func SlackText(alerts []vigil.Alert) string {
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	var b strings.Builder
	fmt.Fprintf(&b, "*Vigil: %d new alert(s)*\n", len(alerts))
	for i, a := range alerts {
		if i == 20 {
			fmt.Fprintf(&b, "…and %d more\n", len(alerts)-20)
			break
		}
		host := a.Hostname
		if host == "" {
			host = a.HostID
		}
		fmt.Fprintf(&b, "• [%s] %s on %s (alert %d, %s)\n", esc.Replace(string(a.Level)), esc.Replace(a.RuleTitle),
			esc.Replace(host), a.ID, a.EventTime.UTC().Format(time.RFC3339))
	}
	return b.String()
}
