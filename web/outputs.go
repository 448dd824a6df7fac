package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/detect/output"
	"github.com/vigilhq/vigil/state"
)

// Outputs is what the API needs of the alert outputs (an
// *output.Dispatcher): their counters, a test send, and a second chance
// for a dead letter.
type Outputs interface {
	// Stats lists the configured outputs with their counters.
	Stats() []output.Stats
	// TestSend sends one test alert to the named output, once.
	TestSend(ctx context.Context, name string) error
	// Resend sends a dead letter's alerts to its output once, without
	// recording another dead letter when that fails.
	Resend(ctx context.Context, dl state.DeadLetter) error
}

var _ Outputs = (*output.Dispatcher)(nil)

// outputTimeout bounds a test send or a redelivery: a person waits for
// the answer, and an output that hangs must not hold the request.
const outputTimeout = 30 * time.Second

// OutputsList answers GET /api/v1/outputs.
type OutputsList struct {
	// Configured is false when the server runs without an outputs file.
	Configured bool           `json:"configured"`
	Outputs    []output.Stats `json:"outputs"`
}

func (a *API) listOutputs(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	out := OutputsList{Outputs: []output.Stats{}}
	if a.opts.Outputs != nil {
		out.Configured = true
		if s := a.opts.Outputs.Stats(); s != nil {
			out.Outputs = s
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func noOutputs(w http.ResponseWriter) {
	writeError(w, http.StatusNotImplemented, "no alert outputs are configured on this server (vigil server --outputs FILE)")
}

// OutputResult answers a test send or a redelivery that went through.
type OutputResult struct {
	OK     bool   `json:"ok"`
	Output string `json:"output"`
}

// testOutput sends the test alert (admin: it reaches people outside
// Vigil). A delivery failure is 502 with the output's error, audited as
// well as a success.
func (a *API) testOutput(w http.ResponseWriter, r *http.Request, p state.Principal) {
	name := r.PathValue("name")
	if err := noBody(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if a.opts.Outputs == nil {
		noOutputs(w)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), outputTimeout)
	defer cancel()
	err := a.opts.Outputs.TestSend(ctx, name)
	if errors.Is(err, vigil.ErrNotFound) {
		a.fail(w, r, err)
		return
	}
	detail := map[string]any{"ok": err == nil}
	if err != nil {
		detail["error"] = err.Error()
	}
	a.audit(r, p, "output.test", name, detail)
	if err != nil {
		a.logger.Warn("output test send failed", "output", name, "err", err)
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, OutputResult{OK: true, Output: name})
}

// DeadLettersList answers GET /api/v1/dead-letters.
type DeadLettersList struct {
	DeadLetters []state.DeadLetter `json:"dead_letters"`
}

func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	limit, ok := queryLimit(w, r, 100, 1000)
	if !ok {
		return
	}
	dls, err := a.db.DeadLetters(r.Context(), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, DeadLettersList{DeadLetters: dls})
}

// redeliverDeadLetter sends a dead letter's alerts again, once; on
// success the record is deleted, on failure it stays and the answer is
// 502 with the output's error. Both are audited.
func (a *API) redeliverDeadLetter(w http.ResponseWriter, r *http.Request, p state.Principal) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("dead letter id %q is not a number", r.PathValue("id")))
		return
	}
	if err := noBody(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if a.opts.Outputs == nil {
		noOutputs(w)
		return
	}
	dl, err := a.db.DeadLetter(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), outputTimeout)
	defer cancel()
	err = a.opts.Outputs.Resend(ctx, dl)
	target := strconv.FormatInt(id, 10)
	switch {
	case errors.Is(err, vigil.ErrNotFound):
		// The output was removed from the configuration since.
		writeError(w, http.StatusConflict, readable(err, vigil.ErrNotFound))
		return
	case errors.Is(err, vigil.ErrInvalid):
		writeError(w, http.StatusConflict, readable(err, vigil.ErrInvalid))
		return
	case err != nil:
		a.audit(r, p, "dead_letter.redeliver", target, map[string]any{"output": dl.Output, "ok": false, "error": err.Error()})
		a.logger.Warn("dead letter redelivery failed", "dead_letter", id, "output", dl.Output, "err", err)
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	a.audit(r, p, "dead_letter.redeliver", target, map[string]any{"output": dl.Output, "ok": true})
	// Delivered: the record has served its purpose. A concurrent
	// redelivery may have deleted it already.
	if err := a.db.DeleteDeadLetter(r.Context(), id); err != nil && !errors.Is(err, vigil.ErrNotFound) {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OutputResult{OK: true, Output: dl.Output})
}
