package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

// statusHandler passes records to the inner handler and spools WARN and
// ERROR records as osquery status lines for the server.
type statusHandler struct {
	inner slog.Handler
	a     *Agent
	attrs []slog.Attr
	group string
}

var _ slog.Handler = (*statusHandler)(nil)

func (h *statusHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.inner.Enabled(ctx, l)
}

func (h *statusHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.inner.Enabled(ctx, r.Level) {
		err = h.inner.Handle(ctx, r)
	}
	if r.Level >= slog.LevelWarn {
		h.a.spoolStatus(h.statusLine(r))
	}
	return err
}

func (h *statusHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.inner = h.inner.WithAttrs(attrs)
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &n
}

func (h *statusHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.inner = h.inner.WithGroup(name)
	n.group = name
	return &n
}

// statusLine renders r as osquery does: severity 0 INFO, 1 WARNING, 2 ERROR,
// the source file and line, and the message with its attributes.
func (h *statusHandler) statusLine(r slog.Record) osquery.StatusLine {
	sev := 1
	if r.Level >= slog.LevelError {
		sev = 2
	}
	var sb strings.Builder
	sb.WriteString(r.Message)
	write := func(a slog.Attr) {
		if a.Key == "component" {
			return
		}
		fmt.Fprintf(&sb, " %s=%v", a.Key, a.Value.Resolve())
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(func(a slog.Attr) bool { write(a); return true })
	file, line := "", 0
	if r.PC != 0 {
		fs := runtime.CallersFrames([]uintptr{r.PC})
		f, _ := fs.Next()
		file, line = filepath.Base(f.File), f.Line
	}
	return osquery.StatusLine{
		HostIdentifier: h.a.hostID,
		CalendarTime:   osquery.CalendarTime(r.Time),
		UnixTime:       osquery.Int(r.Time.Unix()),
		Severity:       osquery.Int(sev),
		Filename:       file,
		Line:           osquery.Int(line),
		Message:        sb.String(),
		Version:        vigil.Version,
		Decorations:    h.a.statusDecorations(),
	}
}

func (a *Agent) statusDecorations() map[string]string {
	if a.sched == nil {
		return nil
	}
	return a.sched.decorations()
}

// spoolStatus appends a status line to the status spool and makes it
// durable before returning, as result lines: a status line counts as
// produced only once it is on disk. The spool group-commits, so
// concurrent loggers share one fsync. Errors are reported to the base
// logger only (never back into this path).
func (a *Agent) spoolStatus(l osquery.StatusLine) {
	if a.status == nil {
		return // during New, before the spool is open
	}
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	if _, err := a.status.Append(b); err != nil {
		a.baseLog.Debug("spooling status line", "err", err)
		return
	}
	if err := a.status.Sync(); err != nil {
		a.baseLog.Debug("syncing status spool", "err", err)
	}
}
