package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

const nodeKeyFile = "node_key"

// requestTimeout bounds a request that has no deadline of its own.
const requestTimeout = 60 * time.Second

// errNodeInvalid means the server answered node_invalid: the node key is
// unknown or revoked and the agent must enroll again.
var errNodeInvalid = errors.New("server says node key is invalid")

// httpError is a non-2xx answer.
type httpError struct {
	Status     int
	RetryAfter time.Duration // from Retry-After on 503/429
	Body       string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("server answered HTTP %d: %s", e.Status, e.Body)
}

// uplink talks the osquery TLS remote API to the server.
type uplink struct {
	a      *Agent
	base   string
	client *http.Client

	mu      sync.Mutex
	nodeKey string
	// enrollMu serialises re-enrollment triggered by several loops at once.
	enrollMu sync.Mutex
}

func newUplink(a *Agent) *uplink {
	c := a.opts.HTTPClient
	if c == nil {
		c = &http.Client{Transport: newTransport(a.opts.RootCAs)}
	}
	u := &uplink{a: a, base: a.opts.ServerURL, client: c}
	if b, err := os.ReadFile(filepath.Join(a.opts.DataDir, nodeKeyFile)); err == nil {
		u.nodeKey = strings.TrimSpace(string(b))
	}
	return u
}

// newTransport keeps one HTTP/1.1 connection to the server, as osquery
// does, and sends every request over it in turn. A server holds one
// connection per agent, and HTTP/1.1 costs it much less than HTTP/2 per
// request and per connection: with 10,000 simulated agents long polling
// and heavy log traffic, a live query to all of them was answered in
// 1.74–2.11 s instead of 3.08–7.07 s, and the server's peak memory was
// 1.29–1.34 GB instead of 1.70–1.88 GB (docs/scaling.md). A held request
// occupies the connection, so a long-polling agent sends everything from
// one loop, each request held until its next log send is due
// (longPollLoop).
func newTransport(roots *x509.CertPool) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	tr.Proxy = http.ProxyFromEnvironment
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no HTTP/2
	tr.MaxConnsPerHost = 1
	tr.MaxIdleConnsPerHost = 1
	return tr
}

func (u *uplink) key() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.nodeKey
}

// ensureEnrolled enrolls unless a node key is already stored, retrying with
// backoff until it succeeds or ctx is done.
func (u *uplink) ensureEnrolled(ctx context.Context) error {
	if u.key() != "" {
		return nil
	}
	return u.enrollRetry(ctx, "")
}

// enrollRetry enrolls, retrying with exponential backoff (1 s to 5 min).
// stale is the key that was found invalid: if another goroutine already
// replaced it, there is nothing to do.
func (u *uplink) enrollRetry(ctx context.Context, stale string) error {
	u.enrollMu.Lock()
	defer u.enrollMu.Unlock()
	if k := u.key(); k != "" && k != stale {
		return nil
	}
	backoff := time.Second
	for {
		err := u.enroll(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := backoff
		var he *httpError
		if errors.As(err, &he) && he.RetryAfter > wait {
			wait = min(he.RetryAfter, time.Hour) // the server asked (rate limit)
		}
		u.a.log.Warn("enrollment failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 5*time.Minute)
	}
}

func (u *uplink) enroll(ctx context.Context) error {
	req := osquery.EnrollRequest{
		EnrollSecret:   u.a.opts.EnrollSecret,
		HostIdentifier: u.a.hostID,
		PlatformType:   platformType(),
		HostDetails:    u.a.hostDetails(ctx),
	}
	var resp osquery.EnrollResponse
	if err := u.do(ctx, osquery.PathEnroll, "", req, &resp); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	if resp.NodeInvalid || resp.NodeKey == "" {
		return errors.New("enroll: server refused enrollment (node_invalid); check the enroll secret")
	}
	if err := writeFileAtomic(filepath.Join(u.a.opts.DataDir, nodeKeyFile), []byte(resp.NodeKey+"\n"), 0o600); err != nil {
		return fmt.Errorf("enroll: save node key: %w", err)
	}
	u.mu.Lock()
	u.nodeKey = resp.NodeKey
	u.mu.Unlock()
	u.a.log.Info("enrolled", "host_identifier", u.a.hostID)
	return nil
}

// platformType is osquery's platform_type number for this OS (posix-ish
// bit mask as osquery's PlatformType enum: linux=9 with posix).
func platformType() string {
	switch buildPlatform() {
	case "linux":
		return "9"
	case "darwin":
		return "21"
	case "windows":
		return "2"
	}
	return ""
}

// call posts a node request to path: body is built with the current node
// key. On node_invalid the agent enrolls again and retries once.
func (u *uplink) call(ctx context.Context, path string, body func(nodeKey string) any, out any) error {
	return u.retryEnrolled(ctx, path, func(key string) error { return u.do(ctx, path, key, body(key), out) })
}

// retryEnrolled runs send with the current node key; when it fails with
// node_invalid, the agent enrolls again and sends once more.
func (u *uplink) retryEnrolled(ctx context.Context, path string, send func(nodeKey string) error) error {
	for attempt := 0; ; attempt++ {
		key := u.key()
		err := send(key)
		if errors.Is(err, errNodeInvalid) && attempt == 0 {
			if err := u.reenroll(ctx, path, key); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// reenroll drops the node key the server refused on path and enrolls
// again.
func (u *uplink) reenroll(ctx context.Context, path, key string) error {
	u.a.log.Warn("node key rejected; enrolling again", "path", path)
	u.mu.Lock()
	if u.nodeKey == key {
		u.nodeKey = ""
	}
	u.mu.Unlock()
	return u.enrollRetry(ctx, key)
}

// callHeld posts a log or distributed/write that asks to be held as the
// next read (vigil_wait_ms), as call does. recorded is called once the
// server has the request: when a status carrying osquery.HeaderHeld
// comes, before the hold ends (what becomes of the hold, an agent
// stopping or a connection lost, does not undo it), or after a plain 2xx
// answer (a server that does not hold). It returns the queries the hold
// brought.
func (u *uplink) callHeld(ctx context.Context, path string, body func(nodeKey string) any, recorded func() error) (queries map[string]string, err error) {
	err = u.retryEnrolled(ctx, path, func(key string) error {
		resp, err := u.post(ctx, path, key, body(key))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 || resp.Header.Get(osquery.HeaderHeld) == "" {
			if err := u.answer(path, resp, nil); err != nil {
				return err
			}
			return recorded()
		}
		if err := recorded(); err != nil {
			return err
		}
		var held osquery.DistributedWriteResponse
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&held); err != nil {
			// Recorded all the same; the next read asks again.
			u.a.baseLog.Warn("a held request ended without its answer", "path", path, "err", err)
			return nil
		}
		queries = held.Queries
		return nil
	})
	return queries, err
}

// do posts one JSON request and decodes the answer. Every answer may carry
// node_invalid, which becomes errNodeInvalid.
func (u *uplink) do(ctx context.Context, path, nodeKey string, body, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		// A server that accepts the connection and never answers must not
		// stall the loop that called.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	resp, err := u.post(ctx, path, nodeKey, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return u.answer(path, resp, out)
}

// post sends one JSON request and returns the response, whose body the
// caller closes.
func (u *uplink) post(ctx context.Context, path, nodeKey string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "vigil-agent/"+vigil.Version)
	if nodeKey != "" {
		req.Header.Set("Authorization", "NodeKey "+nodeKey)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return resp, nil
}

// answer reads and checks a response: a non-2xx status is an httpError
// (with Retry-After), node_invalid is errNodeInvalid, and out, if not nil,
// gets the body decoded.
func (u *uplink) answer(path string, resp *http.Response, out any) error {
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		he := &httpError{Status: resp.StatusCode, Body: strings.TrimSpace(string(rb[:min(len(rb), 200)]))}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if s, err := strconv.Atoi(ra); err == nil && s >= 0 {
				he.RetryAfter = time.Duration(s) * time.Second
			} else if t, err := http.ParseTime(ra); err == nil {
				he.RetryAfter = time.Until(t)
			}
		}
		// Servers answer an unknown node key with node_invalid, sometimes
		// with a 401/403 status.
		var ni osquery.NodeInvalidResponse
		if json.Unmarshal(rb, &ni) == nil && ni.NodeInvalid && path != osquery.PathEnroll {
			return errNodeInvalid
		}
		return fmt.Errorf("%s: %w", path, he)
	}
	var ni osquery.NodeInvalidResponse
	if json.Unmarshal(rb, &ni) == nil && ni.NodeInvalid && path != osquery.PathEnroll {
		return errNodeInvalid
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			return fmt.Errorf("%s: decode answer: %w", path, err)
		}
	}
	return nil
}
