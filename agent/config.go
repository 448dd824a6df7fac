package agent

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// packDelimiter joins pack and query names, as osquery's --pack_delimiter.
const packDelimiter = "_"

// query is one scheduled query after packs are flattened.
type query struct {
	Name     string
	SQL      string
	Interval time.Duration
	Snapshot bool
	Removed  bool
	Platform string
	Shard    int
	Denylist bool
	// Pack-level discovery queries: all must return rows.
	Discovery []string
}

// agentConfig is a parsed osquery config.
type agentConfig struct {
	Queries    []query
	Options    map[string]any
	Decorators *osquery.Decorators
	FilePaths  map[string][]string
	Exclude    map[string][]string
}

// flexInt is an int osquery configs write as 10 or "10".
type flexInt int

func (n *flexInt) UnmarshalJSON(b []byte) error {
	var i osquery.Int
	if err := i.UnmarshalJSON(b); err != nil {
		return err
	}
	*n = flexInt(i)
	return nil
}

// flexBool is a bool written as true, "true" or 1.
type flexBool bool

func (v *flexBool) UnmarshalJSON(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"`)
	switch strings.ToLower(s) {
	case "true", "1", "yes", "on":
		*v = true
	case "false", "0", "no", "off", "", "null":
		*v = false
	default:
		return fmt.Errorf("%s is not a boolean", b)
	}
	return nil
}

type queryJSON struct {
	Query    string    `json:"query"`
	Interval flexInt   `json:"interval"`
	Snapshot flexBool  `json:"snapshot"`
	Removed  *flexBool `json:"removed"`
	Platform string    `json:"platform"`
	Version  string    `json:"version"`
	Shard    flexInt   `json:"shard"`
	Denylist *flexBool `json:"denylist"`
}

type packJSON struct {
	Queries   map[string]queryJSON `json:"queries"`
	Discovery []string             `json:"discovery"`
	Platform  string               `json:"platform"`
	Version   string               `json:"version"`
	Shard     flexInt              `json:"shard"`
}

type configJSON struct {
	Schedule    map[string]queryJSON       `json:"schedule"`
	Packs       map[string]json.RawMessage `json:"packs"`
	Options     map[string]any             `json:"options"`
	Decorators  *osquery.Decorators        `json:"decorators"`
	FilePaths   map[string][]string        `json:"file_paths"`
	Exclude     map[string][]string        `json:"exclude_paths"`
	NodeInvalid bool                       `json:"node_invalid"`
}

// parseConfig parses an osquery config. Packs given as a string are file
// paths (filesystem config) read through readPack; readPack nil rejects
// them. Bad input gets an error naming the query or pack.
func parseConfig(b []byte, readPack func(string) ([]byte, error)) (*agentConfig, error) {
	var cj configJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&cj); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &agentConfig{Options: cj.Options, Decorators: cj.Decorators, FilePaths: cj.FilePaths, Exclude: cj.Exclude}
	for name, q := range cj.Schedule {
		qq, err := toQuery(name, q, nil)
		if err != nil {
			return nil, err
		}
		c.Queries = append(c.Queries, qq)
	}
	for pname, raw := range cj.Packs {
		var p packJSON
		raw = bytes.TrimSpace(raw)
		if len(raw) > 0 && raw[0] == '"' {
			var path string
			if err := json.Unmarshal(raw, &path); err != nil {
				return nil, fmt.Errorf("config: pack %q: %w", pname, err)
			}
			if readPack == nil {
				return nil, fmt.Errorf("config: pack %q refers to %q; only inline packs are supported here", pname, path)
			}
			pb, err := readPack(path)
			if err != nil {
				return nil, fmt.Errorf("config: pack %q: %w", pname, err)
			}
			raw = pb
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("config: pack %q: %w", pname, err)
		}
		for qname, q := range p.Queries {
			if q.Platform == "" {
				q.Platform = p.Platform
			}
			if q.Shard == 0 {
				q.Shard = p.Shard
			}
			qq, err := toQuery("pack"+packDelimiter+pname+packDelimiter+qname, q, p.Discovery)
			if err != nil {
				return nil, err
			}
			c.Queries = append(c.Queries, qq)
		}
	}
	sort.Slice(c.Queries, func(i, j int) bool { return c.Queries[i].Name < c.Queries[j].Name })
	return c, nil
}

func toQuery(name string, q queryJSON, discovery []string) (query, error) {
	if strings.TrimSpace(q.Query) == "" {
		return query{}, fmt.Errorf("config: scheduled query %q has no query", name)
	}
	if q.Interval <= 0 {
		return query{}, fmt.Errorf("config: scheduled query %q: interval %d must be positive", name, q.Interval)
	}
	removed := true
	if q.Removed != nil {
		removed = bool(*q.Removed)
	}
	deny := true
	if q.Denylist != nil {
		deny = bool(*q.Denylist)
	}
	return query{
		Name: name, SQL: q.Query, Interval: time.Duration(q.Interval) * time.Second,
		Snapshot: bool(q.Snapshot), Removed: removed, Platform: q.Platform, Shard: int(q.Shard),
		Denylist: deny, Discovery: discovery,
	}, nil
}

// option reads a config option as an integer (osquery options are JSON
// numbers, strings or booleans).
func (c *agentConfig) intOption(name string) (int64, bool) {
	if c == nil || c.Options == nil {
		return 0, false
	}
	switch v := c.Options[name].(type) {
	case float64:
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// loadConfig fetches (server) or reads (file) the config and installs it.
func (a *Agent) loadConfig(ctx context.Context) error {
	var b []byte
	var readPack func(string) ([]byte, error)
	if a.client != nil {
		var raw json.RawMessage
		err := a.client.call(ctx, osquery.PathConfig, func(k string) any { return osquery.NodeRequest{NodeKey: k} }, &raw)
		if err != nil {
			return fmt.Errorf("fetch config: %w", err)
		}
		b = raw
	} else {
		var err error
		b, err = os.ReadFile(a.opts.ConfigPath)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		dir := filepath.Dir(a.opts.ConfigPath)
		readPack = func(p string) ([]byte, error) {
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			return os.ReadFile(p)
		}
	}
	sum := sha1.Sum(b)
	hash := hex.EncodeToString(sum[:])
	a.mu.Lock()
	same := a.configHash == hash && a.config != nil
	a.mu.Unlock()
	if same {
		return nil
	}
	c, err := parseConfig(b, readPack)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.config, a.configHash = c, hash
	a.mu.Unlock()
	a.sched.setConfig(ctx, c)
	a.applyFilePaths(c)
	a.log.Info("config loaded", "queries", len(c.Queries), "hash", hash)
	return nil
}

func (a *Agent) currentConfig() *agentConfig {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.config
}

// configRefresh is ConfigRefresh, or the config's config_refresh option.
func (a *Agent) configRefresh() time.Duration {
	if n, ok := a.currentConfig().intOption("config_refresh"); ok && n > 0 {
		return time.Duration(n) * time.Second
	}
	return a.opts.ConfigRefresh
}

// configLoop re-fetches the config every ConfigRefresh. Until a first config
// is loaded it retries with osquery's accelerated refresh (bounded backoff).
func (a *Agent) configLoop(ctx context.Context) {
	backoff := time.Second
	for {
		wait := a.configRefresh()
		if a.currentConfig() == nil {
			wait = backoff
			backoff = min(backoff*2, 300*time.Second)
		} else if wait <= 0 {
			<-ctx.Done()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := a.loadConfig(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("config refresh failed", "err", err)
		}
	}
}
