package control

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"regexp"
	"sort"
	"strings"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

// FleetConfig is the configuration people manage (versioned in state) on
// top of the built-in one (Options.Config). Each host is served the
// built-in configuration merged with this one, keeping only the packs
// that target the host.
type FleetConfig struct {
	Options    map[string]any                    `json:"options,omitempty"`
	Schedule   map[string]osquery.ScheduledQuery `json:"schedule,omitempty"` // every host
	Decorators *osquery.Decorators               `json:"decorators,omitempty"`
	FilePaths  map[string][]string               `json:"file_paths,omitempty"`
	Packs      map[string]Pack                   `json:"packs,omitempty"`
}

// Pack is a named group of scheduled queries with targeting.
type Pack struct {
	Queries map[string]osquery.ScheduledQuery `json:"queries"`
	// Labels: the pack goes to hosts with any of these labels; none means
	// every host. Every host has the labels "all", "platform:<platform>"
	// and "agent:<agent name>", besides those people give it.
	Labels []string `json:"labels,omitempty"`
	// Shard, 1 to 100, sends the pack to that percentage of the targeted
	// hosts, chosen by a stable hash of the host id (0 means all). The
	// server applies it, so osquery and Vigil's agent behave alike.
	Shard int `json:"shard,omitempty"`
	// Platform and Discovery are passed to the agent as osquery pack
	// fields (osquery evaluates them on the host).
	Platform  string   `json:"platform,omitempty"`
	Discovery []string `json:"discovery,omitempty"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)

// Validate checks a fleet configuration and says where any problem is.
func (c FleetConfig) Validate() error {
	var errs []string
	checkQuery := func(where string, q osquery.ScheduledQuery) {
		if strings.TrimSpace(q.Query) == "" {
			errs = append(errs, where+": query is empty")
		}
		if len(q.Query) > MaxSQLBytes {
			errs = append(errs, fmt.Sprintf("%s: query is %d bytes, over %d", where, len(q.Query), MaxSQLBytes))
		}
		if q.Interval < 1 || q.Interval > 604800 {
			errs = append(errs, fmt.Sprintf("%s: interval %d: want 1 to 604800 seconds", where, q.Interval))
		}
	}
	for _, name := range sortedKeys(c.Schedule) {
		if !nameRE.MatchString(name) {
			errs = append(errs, fmt.Sprintf("schedule.%s: name must be letters, digits, _ and - (at most 100)", name))
		}
		checkQuery("schedule."+name, c.Schedule[name])
	}
	for _, pname := range sortedKeys(c.Packs) {
		p := c.Packs[pname]
		where := "packs." + pname
		if !nameRE.MatchString(pname) {
			errs = append(errs, where+": name must be letters, digits, _ and - (at most 100)")
		}
		if len(p.Queries) == 0 {
			errs = append(errs, where+": no queries")
		}
		for _, qname := range sortedKeys(p.Queries) {
			if !nameRE.MatchString(qname) {
				errs = append(errs, fmt.Sprintf("%s.queries.%s: name must be letters, digits, _ and - (at most 100)", where, qname))
			}
			checkQuery(where+".queries."+qname, p.Queries[qname])
		}
		for _, l := range p.Labels {
			if !state.ValidLabel(l) {
				errs = append(errs, fmt.Sprintf("%s.labels: %q is not a label (lower-case letters, digits and _.:-)", where, l))
			}
		}
		if p.Shard < 0 || p.Shard > 100 {
			errs = append(errs, fmt.Sprintf("%s.shard: %d: want 0 (all) to 100", where, p.Shard))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("control: invalid configuration: %s: %w", strings.Join(errs, "; "), vigil.ErrInvalid)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// FleetConfig returns the current fleet configuration and its version
// (Version 0 when none was saved).
func (s *Server) FleetConfig(ctx context.Context) (FleetConfig, state.ConfigVersion, error) {
	v, err := s.db.LatestConfig(ctx)
	if err != nil {
		return FleetConfig{}, state.ConfigVersion{}, fmt.Errorf("control: %w", err)
	}
	var c FleetConfig
	if v.Version > 0 {
		if err := json.Unmarshal([]byte(v.Doc), &c); err != nil {
			return FleetConfig{}, v, fmt.Errorf("control: configuration version %d is unreadable: %w", v.Version, err)
		}
	}
	return c, v, nil
}

// PutFleetConfig validates and saves a new version (audited with the
// source from WithSource). base is the version the person edited; -1
// overwrites whatever is current.
func (s *Server) PutFleetConfig(ctx context.Context, actor string, c FleetConfig, base int64, comment string) (state.ConfigVersion, error) {
	if err := c.Validate(); err != nil {
		return state.ConfigVersion{}, err
	}
	doc, err := json.Marshal(c)
	if err != nil {
		return state.ConfigVersion{}, fmt.Errorf("control: encoding configuration: %w", err)
	}
	v, err := s.db.PutConfig(ctx, string(doc), actor, comment, base, &state.AuditEntry{Actor: actor, Action: "config.update",
		Source: sourceOf(ctx), Detail: map[string]any{"comment": comment, "packs": sortedKeys(c.Packs), "schedule": sortedKeys(c.Schedule)}})
	if err != nil {
		return state.ConfigVersion{}, fmt.Errorf("control: %w", err)
	}
	s.indexFleet(c)
	s.logger.Info("configuration saved", "version", v.Version, "actor", actor)
	return v, nil
}

// indexFleet remembers every query of a fleet configuration for
// OsqueryTableOf, whichever hosts it targets.
func (s *Server) indexFleet(c FleetConfig) {
	cfg := osquery.Config{Schedule: c.Schedule, Packs: map[string]json.RawMessage{}}
	for name, p := range c.Packs {
		raw, _ := json.Marshal(struct {
			Queries map[string]osquery.ScheduledQuery `json:"queries"`
		}{p.Queries})
		cfg.Packs[name] = raw
	}
	s.indexConfig(cfg)
}

// HostLabels returns a host's labels: the built-in ones and those people
// gave it.
func (s *Server) HostLabels(ctx context.Context, h vigil.Host) ([]string, error) {
	labels, err := s.db.HostLabels(ctx, h.ID)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	builtin := []string{"all"}
	if h.Platform != "" {
		builtin = append(builtin, "platform:"+strings.ToLower(h.Platform))
	}
	if h.AgentName != "" {
		builtin = append(builtin, "agent:"+strings.ToLower(h.AgentName))
	}
	return append(builtin, labels...), nil
}

// shardOf places a host in 0..99, stably.
func shardOf(hostID string) int {
	h := fnv.New32a()
	h.Write([]byte(hostID))
	return int(h.Sum32() % 100)
}

// EffectiveConfig is the configuration served to a host: the built-in
// configuration merged with the fleet configuration (which wins on equal
// names), with the packs that target the host.
func (s *Server) EffectiveConfig(ctx context.Context, h vigil.Host) (osquery.Config, int64, error) {
	var cfg osquery.Config
	if s.opts.Config != nil {
		base := s.opts.Config(h)
		// Copy the maps: the built-in config may be shared between hosts.
		cfg = base
		cfg.Schedule = maps.Clone(base.Schedule)
		cfg.Packs = maps.Clone(base.Packs)
		cfg.Options = maps.Clone(base.Options)
		cfg.FilePaths = maps.Clone(base.FilePaths)
	}
	fc, v, err := s.FleetConfig(ctx)
	if err != nil {
		return osquery.Config{}, 0, err
	}
	if v.Version == 0 {
		return cfg, 0, nil
	}
	labels, err := s.HostLabels(ctx, h)
	if err != nil {
		return osquery.Config{}, 0, err
	}
	has := map[string]bool{}
	for _, l := range labels {
		has[l] = true
	}
	if len(fc.Options) > 0 && cfg.Options == nil {
		cfg.Options = map[string]any{}
	}
	maps.Copy(cfg.Options, fc.Options)
	if len(fc.Schedule) > 0 && cfg.Schedule == nil {
		cfg.Schedule = map[string]osquery.ScheduledQuery{}
	}
	maps.Copy(cfg.Schedule, fc.Schedule)
	if fc.Decorators != nil {
		cfg.Decorators = fc.Decorators
	}
	if len(fc.FilePaths) > 0 && cfg.FilePaths == nil {
		cfg.FilePaths = map[string][]string{}
	}
	maps.Copy(cfg.FilePaths, fc.FilePaths)
	for name, p := range fc.Packs {
		if len(p.Labels) > 0 && !anyLabel(has, p.Labels) {
			continue
		}
		if p.Shard > 0 && shardOf(h.ID) >= p.Shard {
			continue
		}
		raw, err := json.Marshal(struct {
			Queries   map[string]osquery.ScheduledQuery `json:"queries"`
			Platform  string                            `json:"platform,omitempty"`
			Discovery []string                          `json:"discovery,omitempty"`
		}{p.Queries, p.Platform, p.Discovery})
		if err != nil {
			return osquery.Config{}, 0, fmt.Errorf("control: encoding pack %s: %w", name, err)
		}
		if cfg.Packs == nil {
			cfg.Packs = map[string]json.RawMessage{}
		}
		cfg.Packs[name] = raw
	}
	return cfg, v.Version, nil
}

func anyLabel(has map[string]bool, want []string) bool {
	for _, l := range want {
		if has[l] {
			return true
		}
	}
	return false
}
