package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// ConfigError is a config that cannot be used: Source is the file it came
// from ("" for the server's config), Path the JSON path of the problem
// ("schedule.process_events.interval", "" for the whole document).
type ConfigError struct {
	Source string
	Path   string
	Msg    string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// cfgParser walks a config document and stops at the first problem, which
// it reports with its JSON path.
type cfgParser struct {
	source   string
	readPack func(string) ([]byte, error)
}

func (p *cfgParser) errf(path, format string, args ...any) error {
	return &ConfigError{Source: p.source, Path: path, Msg: fmt.Sprintf(format, args...)}
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinPath appends a key to a JSON path; keys that are not plain words are
// quoted (schedule["a.b"]).
func joinPath(path, key string) string {
	if !plainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// show renders a JSON value for a message, shortened.
func show(raw json.RawMessage) string {
	s := string(bytes.TrimSpace(raw))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// object decodes an object; null is an empty object.
func (p *cfgParser) object(raw json.RawMessage, path string) (map[string]json.RawMessage, []string, error) {
	if k := kind(raw); k == "null" || k == "nothing" {
		return nil, nil, nil
	}
	var m map[string]json.RawMessage
	if kind(raw) != "an object" || json.Unmarshal(raw, &m) != nil {
		return nil, nil, p.errf(path, "want an object, got %s", kind(raw))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return m, keys, nil
}

func (p *cfgParser) str(raw json.RawMessage, path string) (string, error) {
	var s string
	if k := kind(raw); k == "null" || k == "nothing" {
		return "", nil
	}
	if kind(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		return "", p.errf(path, "%s is not a string", show(raw))
	}
	return s, nil
}

// integer accepts 10 and "10", as osquery configs write both.
func (p *cfgParser) integer(raw json.RawMessage, path string) (int64, error) {
	s := strings.TrimSpace(string(raw))
	if kind(raw) == "a string" {
		var v string
		if json.Unmarshal(raw, &v) == nil {
			s = strings.TrimSpace(v)
		}
	} else if kind(raw) != "a number" {
		return 0, p.errf(path, "%s is not an integer", show(raw))
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	// 10.0 and 1e3 are integers written as doubles.
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f), nil
	}
	return 0, p.errf(path, "%s is not an integer", show(raw))
}

// boolean accepts true, "true", 1, "yes", "on" and their negations.
func (p *cfgParser) boolean(raw json.RawMessage, path string) (bool, error) {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	switch strings.ToLower(s) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off", "", "null":
		return false, nil
	}
	return false, p.errf(path, "%s is not a boolean", show(raw))
}

func (p *cfgParser) strings(raw json.RawMessage, path string) ([]string, error) {
	if k := kind(raw); k == "null" || k == "nothing" {
		return nil, nil
	}
	var items []json.RawMessage
	if kind(raw) != "an array" || json.Unmarshal(raw, &items) != nil {
		return nil, p.errf(path, "want an array of strings, got %s", kind(raw))
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := p.str(it, path+"["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *cfgParser) stringLists(raw json.RawMessage, path string) (map[string][]string, error) {
	m, keys, err := p.object(raw, path)
	if err != nil || m == nil {
		return nil, err
	}
	out := make(map[string][]string, len(keys))
	for _, k := range keys {
		if out[k], err = p.strings(m[k], joinPath(path, k)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// syntaxError turns a JSON syntax error into one with a line and column.
func (p *cfgParser) syntaxError(b []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off := int(min(se.Offset, int64(len(b))))
		line := 1 + bytes.Count(b[:off], []byte("\n"))
		// Offset is just past the offending byte (or the end of input).
		col := off - bytes.LastIndexByte(b[:off], '\n')
		if !strings.Contains(se.Error(), "end of JSON") {
			col--
		}
		return p.errf("", "line %d column %d: %v", line, col, se)
	}
	return p.errf("", "%v", err)
}

// intOptions are the options the agent reads as integers: a config that
// sets one to something else is refused rather than silently ignored.
var intOptions = []string{
	"buffered_log_max", "config_refresh", "distributed_interval", "distributed_max_result_bytes",
	"events_expiry", "events_max",
	"logger_tls_max_lines", "logger_tls_max_linesize", "logger_tls_period", "schedule_epoch",
	"watchdog_delay", "watchdog_latency_limit", "watchdog_level", "watchdog_memory_limit",
	"watchdog_utilization_limit",
}

// parseConfig parses and validates an osquery config. source names the
// file ("" for the server's config) in errors; packs given as a string are
// file paths read through readPack (nil rejects them). The error is a
// *ConfigError with the JSON path of the first problem.
func parseConfig(b []byte, source string, readPack func(string) ([]byte, error)) (*agentConfig, error) {
	p := &cfgParser{source: source, readPack: readPack}
	if err := json.Unmarshal(b, new(any)); err != nil {
		return nil, p.syntaxError(b, err)
	}
	top, _, err := p.object(b, "")
	if err != nil {
		return nil, err
	}
	c := &agentConfig{}
	if raw, ok := top["options"]; ok {
		if _, _, err := p.object(raw, "options"); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &c.Options); err != nil {
			return nil, p.errf("options", "%v", err)
		}
		for _, name := range intOptions {
			if v, ok := c.Options[name]; ok {
				vb, _ := json.Marshal(v)
				if _, err := p.integer(vb, joinPath("options", name)); err != nil {
					return nil, err
				}
			}
		}
	}
	if raw, ok := top["decorators"]; ok {
		if c.Decorators, err = p.decorators(raw, "decorators"); err != nil {
			return nil, err
		}
	}
	if c.FilePaths, err = p.optStringLists(top, "file_paths"); err != nil {
		return nil, err
	}
	if c.Exclude, err = p.optStringLists(top, "exclude_paths"); err != nil {
		return nil, err
	}
	sched, names, err := p.object(top["schedule"], "schedule")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		q, err := p.query(sched[name], joinPath("schedule", name), name, packDefaults{})
		if err != nil {
			return nil, err
		}
		c.Queries = append(c.Queries, q)
	}
	packs, pnames, err := p.object(top["packs"], "packs")
	if err != nil {
		return nil, err
	}
	for _, pname := range pnames {
		qs, err := p.pack(packs[pname], joinPath("packs", pname), pname)
		if err != nil {
			return nil, err
		}
		c.Queries = append(c.Queries, qs...)
	}
	sort.Slice(c.Queries, func(i, j int) bool { return c.Queries[i].Name < c.Queries[j].Name })
	return c, nil
}

func (p *cfgParser) optStringLists(top map[string]json.RawMessage, key string) (map[string][]string, error) {
	raw, ok := top[key]
	if !ok {
		return nil, nil
	}
	return p.stringLists(raw, key)
}

func (p *cfgParser) decorators(raw json.RawMessage, path string) (*osquery.Decorators, error) {
	m, _, err := p.object(raw, path)
	if err != nil || m == nil {
		return nil, err
	}
	d := &osquery.Decorators{}
	if d.Load, err = p.strings(m["load"], joinPath(path, "load")); err != nil {
		return nil, err
	}
	if d.Always, err = p.strings(m["always"], joinPath(path, "always")); err != nil {
		return nil, err
	}
	if raw, ok := m["interval"]; ok {
		if d.Interval, err = p.stringLists(raw, joinPath(path, "interval")); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// packDefaults are what a pack gives its queries.
type packDefaults struct {
	platform  string
	shard     int64
	discovery []string
}

// pack parses one entry of "packs": an object, or (file configs) the path
// of a file holding one; errors inside a pack file name the file.
func (p *cfgParser) pack(raw json.RawMessage, path, name string) ([]query, error) {
	pp := p
	if kind(raw) == "a string" {
		file, _ := p.str(raw, path)
		if p.readPack == nil {
			return nil, p.errf(path, "refers to pack file %q; only inline packs are supported here", file)
		}
		b, err := p.readPack(file)
		if err != nil {
			return nil, p.errf(path, "reading pack file: %v", err)
		}
		// Paths inside the pack file are relative to it.
		pp = &cfgParser{source: p.source, readPack: p.readPack}
		if p.source != "" {
			pp.source = p.source + " (" + path + " from " + file + ")"
		} else {
			pp.source = "(" + path + " from " + file + ")"
		}
		if err := json.Unmarshal(b, new(any)); err != nil {
			return nil, pp.syntaxError(b, err)
		}
		raw, path = b, ""
	}
	m, _, err := pp.object(raw, path)
	if err != nil {
		return nil, err
	}
	var def packDefaults
	if def.platform, err = pp.str(m["platform"], joinPath(path, "platform")); err != nil {
		return nil, err
	}
	if _, err = pp.str(m["version"], joinPath(path, "version")); err != nil {
		return nil, err
	}
	if raw, ok := m["shard"]; ok {
		if def.shard, err = pp.integer(raw, joinPath(path, "shard")); err != nil {
			return nil, err
		}
	}
	if def.discovery, err = pp.strings(m["discovery"], joinPath(path, "discovery")); err != nil {
		return nil, err
	}
	qpath := joinPath(path, "queries")
	qs, qnames, err := pp.object(m["queries"], qpath)
	if err != nil {
		return nil, err
	}
	out := make([]query, 0, len(qnames))
	for _, qn := range qnames {
		q, err := pp.query(qs[qn], joinPath(qpath, qn), "pack"+packDelimiter+name+packDelimiter+qn, def)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

// query parses one scheduled query object.
func (p *cfgParser) query(raw json.RawMessage, path, name string, def packDefaults) (query, error) {
	m, _, err := p.object(raw, path)
	if err != nil {
		return query{}, err
	}
	if m == nil {
		return query{}, p.errf(path, "want an object, got null")
	}
	q := query{Name: name, Removed: true, Denylist: true, Platform: def.platform, Shard: int(def.shard), Discovery: def.discovery}
	rawSQL, ok := m["query"]
	if !ok {
		return query{}, p.errf(path, `missing "query"`)
	}
	if q.SQL, err = p.str(rawSQL, joinPath(path, "query")); err != nil {
		return query{}, err
	}
	if strings.TrimSpace(q.SQL) == "" {
		return query{}, p.errf(joinPath(path, "query"), "empty query")
	}
	rawIv, ok := m["interval"]
	if !ok {
		return query{}, p.errf(path, `missing "interval"`)
	}
	iv, err := p.integer(rawIv, joinPath(path, "interval"))
	if err != nil {
		return query{}, err
	}
	// Bounded so that the Duration cannot overflow (osquery's own cap is
	// far below: 604800).
	if iv <= 0 || iv > math.MaxInt32 {
		return query{}, p.errf(joinPath(path, "interval"), "%d is not a positive number of seconds", iv)
	}
	q.Interval = time.Duration(iv) * time.Second
	for _, f := range []struct {
		key string
		dst *bool
	}{{"denylist", &q.Denylist}, {"removed", &q.Removed}, {"snapshot", &q.Snapshot}} {
		if raw, ok := m[f.key]; ok {
			if *f.dst, err = p.boolean(raw, joinPath(path, f.key)); err != nil {
				return query{}, err
			}
		}
	}
	if raw, ok := m["platform"]; ok {
		if q.Platform, err = p.str(raw, joinPath(path, "platform")); err != nil {
			return query{}, err
		}
		if q.Platform == "" {
			q.Platform = def.platform
		}
	}
	if _, err = p.str(m["version"], joinPath(path, "version")); err != nil {
		return query{}, err
	}
	if raw, ok := m["shard"]; ok {
		n, err := p.integer(raw, joinPath(path, "shard"))
		if err != nil {
			return query{}, err
		}
		if n != 0 {
			q.Shard = int(n)
		}
	}
	return q, nil
}
