package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

// ConfigView is the fleet configuration with its version.
type ConfigView struct {
	state.ConfigVersion
	Config control.FleetConfig `json:"config"`
}

func (a *API) getConfig(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	c, v, err := a.ctl.FleetConfig(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ConfigView{ConfigVersion: v, Config: c})
}

// ConfigUpdate is the body of PUT /api/v1/config. BaseVersion is the
// version the edit started from: the save is refused (409) if another
// version was saved since. Omit it to overwrite.
type ConfigUpdate struct {
	Config      control.FleetConfig `json:"config"`
	BaseVersion *int64              `json:"base_version,omitempty"`
	Comment     string              `json:"comment,omitempty"`
}

func (a *API) putConfig(w http.ResponseWriter, r *http.Request, p state.Principal) {
	var req ConfigUpdate
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	base := int64(-1)
	if req.BaseVersion != nil {
		base = *req.BaseVersion
	}
	v, err := a.ctl.PutFleetConfig(control.WithSource(r.Context(), r.RemoteAddr), p.Name, req.Config, base, req.Comment)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) listConfigVersions(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	vs, err := a.db.ConfigVersions(r.Context(), 100)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": vs})
}

func (a *API) getConfigVersion(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	n, err := strconv.ParseInt(r.PathValue("version"), 10, 64)
	if err != nil || n < 1 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("version %q is not a positive number", r.PathValue("version")))
		return
	}
	v, err := a.db.Config(r.Context(), n)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var c control.FleetConfig
	if err := json.Unmarshal([]byte(v.Doc), &c); err != nil {
		a.fail(w, r, fmt.Errorf("decoding configuration version %d: %w", n, err))
		return
	}
	writeJSON(w, http.StatusOK, ConfigView{ConfigVersion: v, Config: c})
}

// HostConfigView is what a host is served, and why.
type HostConfigView struct {
	HostID        string         `json:"host_id"`
	Labels        []string       `json:"labels"`
	ConfigVersion int64          `json:"config_version"`
	Config        osquery.Config `json:"config"`
}

func (a *API) hostConfig(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	h, err := a.db.Host(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	labels, err := a.ctl.HostLabels(r.Context(), h)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cfg, v, err := a.ctl.EffectiveConfig(r.Context(), h)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, HostConfigView{HostID: h.ID, Labels: labels, ConfigVersion: v, Config: cfg})
}

// LabelsRequest is the body of PUT /api/v1/hosts/{id}/labels: the labels
// people give the host (replacing the previous ones).
type LabelsRequest struct {
	Labels []string `json:"labels"`
}

func (a *API) setHostLabels(w http.ResponseWriter, r *http.Request, p state.Principal) {
	var req LabelsRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := a.db.SetHostLabels(r.Context(), id, req.Labels); err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "host.labels", id, map[string]any{"labels": req.Labels})
	labels, err := a.db.HostLabels(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"labels": labels})
}
