package agent

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	var source string
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
		source = a.opts.ConfigPath
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
	rejected := a.rejectedHash == hash
	a.mu.Unlock()
	if same || rejected {
		// A config refused before is not reported again at every refresh.
		return nil
	}
	c, err := parseConfig(b, source, readPack)
	if err != nil {
		a.mu.Lock()
		a.rejectedHash = hash
		a.mu.Unlock()
		return err
	}
	a.mu.Lock()
	a.config, a.configHash, a.rejectedHash = c, hash, ""
	a.mu.Unlock()
	a.applyOptions(c)
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
			if a.currentConfig() != nil {
				a.log.Warn("config refresh failed; the previous config stays active", "err", err)
			} else {
				a.log.Warn("config refresh failed; no config yet", "err", err)
			}
		}
	}
}
