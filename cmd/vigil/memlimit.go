package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultMemoryLimit is none: a limit near what is live makes the
// garbage collector run without pause (at 10,000 agents over HTTP/2,
// 768MiB took 40% of the server's CPU and tripled live-query latency;
// over HTTP/1.1, 640MiB still slowed live queries). Operators who cap the
// process's memory set it a fifth or so below that cap.
const defaultMemoryLimit = "0"

// applyMemoryLimit sets the Go runtime's soft memory limit, unless the
// operator set GOMEMLIMIT (which the runtime has applied already).
func applyMemoryLimit(v string) error {
	if os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	n, err := parseBytes(v)
	if err != nil {
		return fmt.Errorf("--memory-limit: %w", err)
	}
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return nil
}

// parseBytes reads a size such as 768MiB, 2GiB, 500MB or 1048576.
func parseBytes(v string) (int64, error) {
	s := strings.TrimSpace(v)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (use bytes, or a number with KiB, MiB, GiB, KB, MB or GB)", v)
	}
	return int64(n * float64(mult)), nil
}
