package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/agent/table"
	"github.com/vigilhq/vigil/detect/rules"
	"github.com/vigilhq/vigil/web"
)

// The console's sources, wired into web.Options by Run.

// tableSchemas lists the agent tables for live-query completion. The list is
// the agent's own (vigil-agent's tables, as osquery's specs define them),
// computed once from a throwaway engine so that `vigil server` without a
// local agent offers completion too.
func (m *Main) tableSchemas() []web.TableSchema {
	m.tablesOnce.Do(func() {
		e, err := table.Open(context.Background(), table.Options{Logger: m.log})
		if err != nil {
			m.log.Warn("listing agent tables for the console", "err", err)
			return
		}
		defer e.Close()
		for _, t := range e.Tables() {
			ts := web.TableSchema{Name: t.Name, Description: t.Description, Event: t.Event}
			for _, c := range t.Columns {
				ts.Columns = append(ts.Columns, web.TableColumn{Name: c.Name, Type: c.Type, Hidden: c.Hidden})
			}
			m.tables = append(m.tables, ts)
		}
	})
	return m.tables
}

// ruleSource returns the YAML a loaded rule came from.
func (m *Main) ruleSource(_ context.Context, id string) ([]byte, error) {
	var src string
	for _, r := range m.detect.Rules() {
		if r.ID == id {
			src = r.Source
		}
	}
	if src == "" {
		return nil, fmt.Errorf("rule %s: %w", id, vigil.ErrNotFound)
	}
	fsyss := []fs.FS{rules.FS}
	if m.opts.RulesDir != "" {
		fsyss = append(fsyss, os.DirFS(m.opts.RulesDir))
	}
	for _, fsys := range fsyss {
		if b, err := fs.ReadFile(fsys, src); err == nil && bytes.Contains(b, []byte(id)) {
			return b, nil
		}
	}
	return nil, fmt.Errorf("source of rule %s (%s): %w", id, src, vigil.ErrNotFound)
}

// disabledRulesFile keeps the rules people turned off, so that a restart
// does not turn them on again.
const disabledRulesFile = "disabled_rules.json"

// setRuleEnabled turns a rule on or off and records the choice.
func (m *Main) setRuleEnabled(_ context.Context, id string, on bool) error {
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	if err := m.detect.SetEnabled(id, on); err != nil {
		return err
	}
	var off []string
	for _, r := range m.detect.Rules() {
		if !r.Enabled {
			off = append(off, r.ID)
		}
	}
	sort.Strings(off)
	b, err := json.Marshal(off)
	if err != nil {
		return err
	}
	tmp := filepath.Join(m.opts.DataDir, disabledRulesFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("recording disabled rules: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(m.opts.DataDir, disabledRulesFile)); err != nil {
		return fmt.Errorf("recording disabled rules: %w", err)
	}
	return nil
}

// applyDisabledRules turns off the rules recorded as disabled. A recorded
// rule that is no longer loaded is ignored.
func (m *Main) applyDisabledRules() error {
	b, err := os.ReadFile(filepath.Join(m.opts.DataDir, disabledRulesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading disabled rules: %w", err)
	}
	var off []string
	if err := json.Unmarshal(b, &off); err != nil {
		return fmt.Errorf("%s: %w", disabledRulesFile, err)
	}
	for _, id := range off {
		if err := m.detect.SetEnabled(id, false); err != nil && !errors.Is(err, vigil.ErrNotFound) {
			return err
		}
	}
	return nil
}
