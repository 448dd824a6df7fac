// Package output delivers alerts to the outside world: a signed JSON
// webhook, a Slack-compatible webhook, syslog (RFC 5424 over TCP or TLS,
// octet-counted) and email (SMTP, STARTTLS when offered). A Dispatcher
// queues the alerts the detection engine opens (it is a detect.Notifier),
// retries each output with exponential backoff, and records a dead letter
// in the state after the last failure. Outputs are configured from a YAML
// file (LoadConfig). cmd/vigil wires it; web calls Stats, TestSend and
// Resend (a person's test and redelivery buttons) and reads dead letters
// through state.
package output

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/state"
)

// Output sends alerts to one destination.
type Output interface {
	// Name is the configured name, unique among outputs.
	Name() string
	// Kind is webhook, slack, syslog or email.
	Kind() string
	// Send delivers the alerts once (no retry); an error means none or
	// only some were delivered and the whole batch may be sent again.
	// It may run concurrently with itself (the output's queue worker, a
	// test send, a redelivery).
	Send(ctx context.Context, alerts []vigil.Alert) error
}

// DeadLetters stores what could not be delivered (state.DB).
type DeadLetters interface {
	AddDeadLetter(ctx context.Context, d state.DeadLetter) (int64, error)
}

var _ DeadLetters = (*state.DB)(nil)

// Retry is the retry policy of every output.
type Retry struct {
	Attempts int           // tries in all, first included; default 5
	Initial  time.Duration // wait after the first failure; default 1s
	Max      time.Duration // longest wait; default 1m
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Initial <= 0 {
		r.Initial = time.Second
	}
	if r.Max <= 0 {
		r.Max = time.Minute
	}
	return r
}

// backoff is the wait before try n+1 (n >= 1): Initial doubled per
// failure, capped at Max, with up to 20% jitter so outputs failing
// together do not retry in lockstep.
func (r Retry) backoff(n int) time.Duration {
	d := r.Initial
	for i := 1; i < n && d < r.Max; i++ {
		d *= 2
	}
	d = min(d, r.Max)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// Options configure a Dispatcher.
type Options struct {
	Outputs     []Output
	Filters     map[string]Filter // by output name; none means every alert
	Retry       Retry
	DeadLetters DeadLetters // nil: failures are only logged
	QueueSize   int         // batches queued per output; default 1024
	Logger      *slog.Logger
}

// Filter selects the alerts an output gets.
type Filter struct {
	MinLevel vigil.Level // "" means every level
	Rules    []string    // rule ids; empty means every rule
}

func (f Filter) keep(a vigil.Alert) bool {
	if f.MinLevel != "" && levelRank(a.Level) < levelRank(f.MinLevel) {
		return false
	}
	if len(f.Rules) == 0 {
		return true
	}
	for _, r := range f.Rules {
		if r == a.RuleID {
			return true
		}
	}
	return false
}

func levelRank(l vigil.Level) int {
	switch l {
	case vigil.LevelInformational:
		return 1
	case vigil.LevelLow:
		return 2
	case vigil.LevelMedium:
		return 3
	case vigil.LevelHigh:
		return 4
	case vigil.LevelCritical:
		return 5
	}
	return 0
}

// Stats are one output's counters.
type Stats struct {
	Name         string `json:"name"`
	Kind         string `json:"kind"`
	Sent         int64  `json:"sent"`     // alerts delivered
	Attempts     int64  `json:"attempts"` // Send calls
	Failures     int64  `json:"failures"` // Send calls that failed
	DeadLettered int64  `json:"dead_lettered"`
	Dropped      int64  `json:"dropped"` // batches refused because the queue was full (dead-lettered too)
	Queued       int    `json:"queued"`
}

type worker struct {
	out    Output
	filter Filter
	queue  chan []vigil.Alert
	mu     sync.Mutex
	stats  Stats
}

// Dispatcher fans alerts out to outputs, each with its own queue so a
// slow or failing output never delays the others.
type Dispatcher struct {
	opts    Options
	log     *slog.Logger
	workers []*worker
	byName  map[string]*worker
}

// New returns a dispatcher; call Run to start delivering. Output names
// must be unique.
func New(opts Options) (*Dispatcher, error) {
	opts.Retry = opts.Retry.withDefaults()
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1024
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Dispatcher{opts: opts, log: logger.With("component", "output"), byName: map[string]*worker{}}
	for _, o := range opts.Outputs {
		if _, dup := d.byName[o.Name()]; dup {
			return nil, fmt.Errorf("output name %q is used twice", o.Name())
		}
		w := &worker{out: o, filter: opts.Filters[o.Name()], queue: make(chan []vigil.Alert, opts.QueueSize),
			stats: Stats{Name: o.Name(), Kind: o.Kind()}}
		d.workers = append(d.workers, w)
		d.byName[o.Name()] = w
	}
	return d, nil
}

// Notify queues the alerts for every output whose filter keeps them. It
// never blocks: when an output's queue is full the batch is dead-lettered.
func (d *Dispatcher) Notify(ctx context.Context, alerts []vigil.Alert) {
	for _, w := range d.workers {
		var keep []vigil.Alert
		for _, a := range alerts {
			if w.filter.keep(a) {
				keep = append(keep, a)
			}
		}
		if len(keep) == 0 {
			continue
		}
		select {
		case w.queue <- keep:
		default:
			w.mu.Lock()
			w.stats.Dropped++
			w.mu.Unlock()
			d.deadLetter(ctx, w, keep, errors.New("output queue full"), 0)
		}
	}
}

// Run delivers queued alerts until ctx is done.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, w := range d.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case batch := <-w.queue:
					d.deliver(ctx, w, batch) //nolint:errcheck // dead-lettered and logged
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// Deliver sends alerts to the named output now, with retries, and
// dead-letters them after the last failure. It returns the last error.
func (d *Dispatcher) Deliver(ctx context.Context, name string, alerts []vigil.Alert) error {
	w, ok := d.byName[name]
	if !ok {
		return fmt.Errorf("output %q: %w", name, vigil.ErrNotFound)
	}
	return d.deliver(ctx, w, alerts)
}

func (d *Dispatcher) deliver(ctx context.Context, w *worker, alerts []vigil.Alert) error {
	var err error
	for try := 1; try <= d.opts.Retry.Attempts; try++ {
		if try > 1 {
			t := time.NewTimer(d.opts.Retry.backoff(try - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				d.deadLetter(context.WithoutCancel(ctx), w, alerts, fmt.Errorf("shutting down after %w", err), try-1)
				return err
			case <-t.C:
			}
		}
		if err = w.send(ctx, alerts); err == nil {
			return nil
		}
		d.log.Warn("output failed", "output", w.out.Name(), "try", try, "of", d.opts.Retry.Attempts, "err", err)
	}
	d.deadLetter(ctx, w, alerts, err, d.opts.Retry.Attempts)
	return err
}

func (d *Dispatcher) deadLetter(ctx context.Context, w *worker, alerts []vigil.Alert, cause error, attempts int) {
	// Counted once stored: a reader of the counter finds the letter.
	defer func() {
		w.mu.Lock()
		w.stats.DeadLettered++
		w.mu.Unlock()
	}()
	if d.opts.DeadLetters == nil {
		d.log.Error("alerts not delivered", "output", w.out.Name(), "alerts", len(alerts), "err", cause)
		return
	}
	payload, err := json.Marshal(alerts)
	if err != nil {
		payload = []byte(fmt.Sprintf(`{"error":"encoding alerts: %s"}`, err))
	}
	// Stored even when the dispatcher is stopping: these alerts went
	// nowhere else.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
	defer cancel()
	if _, err := d.opts.DeadLetters.AddDeadLetter(ctx, state.DeadLetter{Output: w.out.Name(), Kind: w.out.Kind(),
		Payload: string(payload), Error: cause.Error(), Attempts: attempts}); err != nil {
		d.log.Error("alerts not delivered and dead letter not stored", "output", w.out.Name(), "alerts", len(alerts),
			"err", cause, "dead_letter_err", err)
	}
}

// deadLetterTimeout bounds storing a dead letter.
const deadLetterTimeout = 10 * time.Second

// TestAlert is the alert TestSend delivers.
func TestAlert(now time.Time) vigil.Alert {
	return vigil.Alert{ID: 0, RuleID: "vigil-test", RuleTitle: "Vigil output test", Level: vigil.LevelInformational,
		HostID: "test", Hostname: "vigil-test", EventID: fmt.Sprintf("test-%d", now.UnixNano()), EventTable: "test",
		EventTime: now.UTC(), CreatedAt: now.UTC(), Status: vigil.AlertOpen,
		Fields: map[string]any{"message": "This is a test alert sent by Vigil to check an output."}}
}

// TestSend sends one test alert to the named output, once, without
// retries or dead letter, and returns the error (for a "test" button).
func (d *Dispatcher) TestSend(ctx context.Context, name string) error {
	w, ok := d.byName[name]
	if !ok {
		return fmt.Errorf("output %q: %w", name, vigil.ErrNotFound)
	}
	if err := w.out.Send(ctx, []vigil.Alert{TestAlert(time.Now())}); err != nil {
		return fmt.Errorf("test send to output %q: %w", name, err)
	}
	return nil
}

// Stats returns each output's counters, in configuration order.
func (d *Dispatcher) Stats() []Stats {
	out := make([]Stats, 0, len(d.workers))
	for _, w := range d.workers {
		w.mu.Lock()
		s := w.stats
		w.mu.Unlock()
		s.Queued = len(w.queue)
		out = append(out, s)
	}
	return out
}

// Names lists the outputs, in configuration order.
func (d *Dispatcher) Names() []string {
	out := make([]string, 0, len(d.workers))
	for _, w := range d.workers {
		out = append(out, w.out.Name())
	}
	return out
}

// Redeliver sends a dead letter's alerts again to its output, with
// retries; a new dead letter is recorded if that fails too. The caller
// deletes the old one (state.DeleteDeadLetter) on success.
func (d *Dispatcher) Redeliver(ctx context.Context, dl state.DeadLetter) error {
	alerts, err := deadLetterAlerts(dl)
	if err != nil {
		return err
	}
	return d.Deliver(ctx, dl.Output, alerts)
}

// Resend sends a dead letter's alerts to its output once: no retry, no
// new dead letter on failure. It is what a person's "redeliver" button
// calls: the answer (or the error) comes at once, and a failure leaves
// the one record there is instead of adding a copy. The caller deletes
// the dead letter on success. An output no longer configured is
// vigil.ErrNotFound; an unreadable payload is vigil.ErrInvalid.
func (d *Dispatcher) Resend(ctx context.Context, dl state.DeadLetter) error {
	w, ok := d.byName[dl.Output]
	if !ok {
		return fmt.Errorf("output %q of dead letter %d is not configured: %w", dl.Output, dl.ID, vigil.ErrNotFound)
	}
	alerts, err := deadLetterAlerts(dl)
	if err != nil {
		return err
	}
	if err := w.send(ctx, alerts); err != nil {
		return fmt.Errorf("resending dead letter %d to output %q: %w", dl.ID, dl.Output, err)
	}
	return nil
}

// send makes one attempt and counts it.
func (w *worker) send(ctx context.Context, alerts []vigil.Alert) error {
	err := w.out.Send(ctx, alerts)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Attempts++
	if err == nil {
		w.stats.Sent += int64(len(alerts))
	} else {
		w.stats.Failures++
	}
	return err
}

func deadLetterAlerts(dl state.DeadLetter) ([]vigil.Alert, error) {
	var alerts []vigil.Alert
	if err := json.Unmarshal([]byte(dl.Payload), &alerts); err != nil {
		return nil, fmt.Errorf("dead letter %d: decoding its alerts: %s: %w", dl.ID, err, vigil.ErrInvalid)
	}
	if len(alerts) == 0 {
		return nil, fmt.Errorf("dead letter %d holds no alerts: %w", dl.ID, vigil.ErrInvalid)
	}
	return alerts, nil
}
