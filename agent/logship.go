package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vigilhq/vigil/agent/spool"
	"github.com/vigilhq/vigil/osquery"
)

// maxLogPayload bounds one POST /log body (osquery relies on max lines and
// max line size; this keeps a batch of big lines under common body limits).
const maxLogPayload = 8 << 20

// shipLoop sends spooled lines every LoggerTLSPeriod (a long-polling agent
// sends them from longPollLoop). A failed send backs off exponentially up
// to logger_tls_backoff_max; a 503 waits Retry-After. Lines leave the
// spool only after a 2xx answer.
func (a *Agent) shipLoop(ctx context.Context) {
	period := a.loggerPeriod()
	wait := period
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		period = a.loggerPeriod()
		err := a.shipOnce(ctx, time.Time{})
		if ctx.Err() != nil {
			return
		}
		wait = a.nextShip(err, wait, period)
	}
}

// nextShip is how long after a send the next comes: the period after a
// success, Retry-After after a 503 that gives one, else a backoff that
// doubles (last was the wait before) up to logger_tls_backoff_max.
func (a *Agent) nextShip(err error, last, period time.Duration) time.Duration {
	var he *httpError
	switch {
	case err == nil:
		return period
	case errors.As(err, &he) && he.RetryAfter > 0:
		a.baseLog.Info("log endpoint asked to retry later", "retry_after", he.RetryAfter)
		return min(he.RetryAfter, DefaultLoggerBackoffMax)
	default:
		wait := min(max(last*2, period), DefaultLoggerBackoffMax)
		a.baseLog.Warn("sending logs failed; backing off", "err", err, "retry_in", wait)
		return wait
	}
}

func (a *Agent) loggerPeriod() time.Duration {
	if n, ok := a.currentConfig().intOption("logger_tls_period"); ok && n > 0 {
		return time.Duration(n) * time.Second
	}
	return a.opts.LoggerTLSPeriod
}

func (a *Agent) loggerMaxLines() int {
	if n, ok := a.currentConfig().intOption("logger_tls_max_lines"); ok && n > 0 {
		return int(n)
	}
	return DefaultLoggerTLSMaxLines
}

// maxLineSize is logger_tls_max_linesize: the config option, else
// Options.LoggerTLSMaxLinesize, else osquery's 1 MiB.
func (a *Agent) maxLineSize() int {
	if n, ok := a.currentConfig().intOption("logger_tls_max_linesize"); ok && n > 0 {
		return int(n)
	}
	if a.opts.LoggerTLSMaxLinesize > 0 {
		return a.opts.LoggerTLSMaxLinesize
	}
	return DefaultLoggerTLSMaxLinesz
}

// maxResultBytes is distributed_max_result_bytes: the config option, else
// Options.DistributedMaxResultBytes, else DefaultDistributedMaxResultBytes.
func (a *Agent) maxResultBytes() int {
	if n, ok := a.currentConfig().intOption("distributed_max_result_bytes"); ok && n > 0 {
		return int(n)
	}
	if a.opts.DistributedMaxResultBytes > 0 {
		return a.opts.DistributedMaxResultBytes
	}
	return DefaultDistributedMaxResultBytes
}

// shipOnce sends everything spooled (results first, then status), in
// batches of at most logger_tls_max_lines. A long-polling agent asks for
// the last batch to be held as its next read until its next send is due
// (until): a Vigil server holds it once the lines are durable (the
// queries that came wait in heldNext); an osquery server answers {} at
// once. Lines leave the spool once the server has them.
func (a *Agent) shipOnce(ctx context.Context, until time.Time) error {
	if err := a.status.Sync(); err != nil {
		a.baseLog.Warn("syncing status spool", "err", err)
	}
	for _, s := range []struct {
		sp      *spool.Spool
		logType string
	}{{a.results, osquery.LogTypeResult}, {a.status, osquery.LogTypeStatus}} {
		for {
			recs, err := s.sp.Peek(a.loggerMaxLines(), maxLogPayload)
			if err != nil {
				return fmt.Errorf("reading %s spool: %w", s.logType, err)
			}
			if len(recs) == 0 {
				break
			}
			data := make([]json.RawMessage, len(recs))
			for i, r := range recs {
				data[i] = r.Data
			}
			ack := func() error {
				if err := s.sp.Ack(recs[len(recs)-1].Seq); err != nil {
					return fmt.Errorf("acknowledging %s spool: %w", s.logType, err)
				}
				return nil
			}
			last := s.sp.Len() == len(recs) && (s.logType == osquery.LogTypeStatus || a.status.Len() == 0)
			if !last || a.holdMS(until) == 0 {
				err := a.client.call(ctx, osquery.PathLog, func(k string) any {
					return osquery.LogRequest{NodeKey: k, LogType: s.logType, Data: data}
				}, nil)
				if err == nil {
					err = ack()
				}
				if err != nil {
					return err
				}
				continue
			}
			// The last batch, held until the next send is due: lines
			// spooled meanwhile go with that one.
			return a.shipHeld(ctx, until, osquery.LogRequest{LogType: s.logType, Data: data}, ack)
		}
	}
	return nil
}

// shipHeld sends a long-polling agent's last batch of a send, asking for
// it to be held as its next read until until; ack runs once the server
// has the lines.
func (a *Agent) shipHeld(ctx context.Context, until time.Time, req osquery.LogRequest, ack func() error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Until(until)+requestTimeout)
	defer cancel()
	q, err := a.client.callHeld(ctx, osquery.PathLog, func(k string) any {
		req.NodeKey, req.VigilWait = k, max(a.holdMS(until), 1)
		return req
	}, ack)
	if len(q) > 0 {
		a.heldNext = q
	}
	return err
}

// fileLoggerLoop is the filesystem logger used without a server: it moves
// spooled lines to osqueryd.results.log, osqueryd.snapshots.log and
// osqueryd.status.log under LoggerPath.
func (a *Agent) fileLoggerLoop(ctx context.Context) {
	t := time.NewTicker(a.opts.LoggerTLSPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.writeFiles(); err != nil {
				a.baseLog.Warn("filesystem logger", "err", err)
			}
		}
	}
}

func (a *Agent) writeFiles() error {
	if err := os.MkdirAll(a.opts.LoggerPath, 0o700); err != nil {
		return fmt.Errorf("create logger path: %w", err)
	}
	if err := a.status.Sync(); err != nil {
		return err
	}
	for _, s := range []struct {
		sp   *spool.Spool
		file func(json.RawMessage) string
	}{
		{a.results, func(l json.RawMessage) string {
			var h struct {
				Action string `json:"action"`
			}
			_ = json.Unmarshal(l, &h)
			if h.Action == osquery.ActionSnapshot {
				return "osqueryd.snapshots.log"
			}
			return "osqueryd.results.log"
		}},
		{a.status, func(json.RawMessage) string { return "osqueryd.status.log" }},
	} {
		for {
			recs, err := s.sp.Peek(DefaultLoggerTLSMaxLines, maxLogPayload)
			if err != nil || len(recs) == 0 {
				if err != nil {
					return err
				}
				break
			}
			files := map[string]*os.File{}
			var werr error
			for _, r := range recs {
				name := s.file(r.Data)
				f := files[name]
				if f == nil {
					path := filepath.Join(a.opts.LoggerPath, name)
					if a.opts.LoggerRotate {
						a.rotateOrWarn(path)
					}
					f, werr = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
					if werr != nil {
						break
					}
					files[name] = f
				}
				if _, werr = f.Write(append(r.Data, '\n')); werr != nil {
					break
				}
			}
			for _, f := range files {
				if werr == nil {
					werr = f.Sync()
				}
				f.Close()
			}
			if werr != nil {
				return fmt.Errorf("write log file: %w", werr)
			}
			if err := s.sp.Ack(recs[len(recs)-1].Seq); err != nil {
				return err
			}
		}
	}
	return nil
}

// rotateOrWarn rotates path if due. A rotation that fails (a name in the
// way, a permission) must not stop the logger: lines keep being appended to
// the current file, which then grows past the size until a rotation works.
func (a *Agent) rotateOrWarn(path string) {
	if err := rotateLog(path, a.opts.LoggerRotateSize, a.opts.LoggerRotateMaxFiles); err != nil {
		if _, warned := a.rotateFailing.LoadOrStore(path, struct{}{}); !warned {
			a.baseLog.Warn("filesystem logger: rotation failed; appending to the current file", "path", path, "err", err)
		}
		return
	}
	if _, was := a.rotateFailing.LoadAndDelete(path); was {
		a.baseLog.Info("filesystem logger: rotation works again", "path", path)
	}
}
