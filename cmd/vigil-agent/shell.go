package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/chzyer/readline"

	"github.com/vigilhq/vigil/agent/table"
)

const shellHelp = `Enter SQL ending with ';' or a command:
  .tables [substring]     list tables
  .schema [table]         show CREATE TABLE statements
  .mode table|json|csv|line
  .help                   this text
  .quit / .exit           leave (or Ctrl-D)
`

// shell runs an interactive SQL shell like osqueryi: readline with history
// on a terminal, plain line reading otherwise (scripts, tests).
func (m *Main) shell(ctx context.Context, e *table.Engine) error {
	if f, ok := m.Stdin.(*os.File); ok && f == os.Stdin && readline.DefaultIsTerminal() {
		home, _ := os.UserHomeDir()
		rl, err := readline.NewEx(&readline.Config{
			Prompt:          "vigil> ",
			HistoryFile:     filepath.Join(home, ".vigil_agent_history"),
			InterruptPrompt: "^C",
			EOFPrompt:       ".quit",
			AutoComplete:    shellCompleter(e),
		})
		if err != nil {
			return fmt.Errorf("shell: %w", err)
		}
		defer rl.Close()
		fmt.Fprintf(m.Stdout, "vigil-agent shell: %d tables. Type .help for help.\n", len(e.Tables()))
		return m.shellLoop(ctx, e, func(prompt string) (string, error) {
			rl.SetPrompt(prompt)
			line, err := rl.Readline()
			if errors.Is(err, readline.ErrInterrupt) {
				return "", nil
			}
			return line, err
		})
	}
	sc := bufio.NewScanner(m.Stdin)
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	return m.shellLoop(ctx, e, func(string) (string, error) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return "", err
			}
			return "", io.EOF
		}
		return sc.Text(), nil
	})
}

func shellCompleter(e *table.Engine) readline.AutoCompleter {
	var items []readline.PrefixCompleterInterface
	for _, c := range []string{".tables", ".schema", ".mode", ".help", ".quit", ".exit", "SELECT", "FROM", "WHERE"} {
		items = append(items, readline.PcItem(c))
	}
	for _, t := range e.Tables() {
		items = append(items, readline.PcItem(t.Name))
	}
	return readline.NewPrefixCompleter(items...)
}

// shellLoop reads commands and statements until EOF, .quit or ctx is done.
func (m *Main) shellLoop(ctx context.Context, e *table.Engine, read func(prompt string) (string, error)) error {
	var stmt strings.Builder
	for ctx.Err() == nil {
		prompt := "vigil> "
		if stmt.Len() > 0 {
			prompt = "  ...> "
		}
		line, err := read(prompt)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		trimmed := strings.TrimSpace(line)
		if stmt.Len() == 0 && strings.HasPrefix(trimmed, ".") {
			if quit := m.dotCommand(e, trimmed); quit {
				return nil
			}
			continue
		}
		if trimmed == "" {
			continue
		}
		stmt.WriteString(line)
		stmt.WriteString("\n")
		if !strings.HasSuffix(trimmed, ";") {
			continue
		}
		sql := stmt.String()
		stmt.Reset()
		res, err := e.Query(ctx, sql)
		if err != nil {
			fmt.Fprintln(m.Stdout, "Error:", err)
			continue
		}
		if err := printResult(m.Stdout, m.format, res); err != nil {
			return err
		}
	}
	return nil
}

// dotCommand runs a shell command; it returns true to leave the shell.
func (m *Main) dotCommand(e *table.Engine, line string) bool {
	f := strings.Fields(line)
	arg := ""
	if len(f) > 1 {
		arg = f[1]
	}
	switch f[0] {
	case ".quit", ".exit":
		return true
	case ".help":
		fmt.Fprint(m.Stdout, shellHelp)
	case ".tables":
		for _, t := range e.Tables() {
			if strings.Contains(t.Name, arg) {
				fmt.Fprintln(m.Stdout, "  => "+t.Name)
			}
		}
	case ".schema":
		var names []string
		byName := map[string]table.Schema{}
		for _, t := range e.Tables() {
			if arg == "" || t.Name == arg {
				names = append(names, t.Name)
				byName[t.Name] = t
			}
		}
		if len(names) == 0 {
			fmt.Fprintln(m.Stdout, "Error: no such table:", arg)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintln(m.Stdout, createStatement(byName[n]))
		}
	case ".mode":
		switch arg {
		case "table", "json", "csv", "line":
			m.format = arg
		case "pretty":
			m.format = "table"
		default:
			fmt.Fprintln(m.Stdout, "Error: .mode table|json|csv|line")
		}
	default:
		fmt.Fprintf(m.Stdout, "Error: unknown command %s (try .help)\n", f[0])
	}
	return false
}

// createStatement renders a schema as osqueryi's .schema does.
func createStatement(s table.Schema) string {
	var cols []string
	for _, c := range s.Columns {
		col := "`" + c.Name + "` " + c.Type
		if c.Hidden {
			col += " HIDDEN"
		}
		if c.Required {
			col += " REQUIRED"
		}
		if c.Index {
			col += " INDEX"
		}
		cols = append(cols, col)
	}
	return "CREATE TABLE " + s.Name + "(" + strings.Join(cols, ", ") + ");"
}
