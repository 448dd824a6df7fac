package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent"
)

// BenchmarkIdleAgent runs the real vigil-agent binary with the default
// schedule (no server: config file and filesystem logger) and reports its
// resident memory and CPU use while idle. The window is 30 s unless
// VIGIL_IDLE_SECONDS says otherwise. Run with -benchtime=1x:
//
//	go test ./cmd/vigil-agent -run '^$' -bench IdleAgent -benchtime=1x
//
// Targets (issue #3): at most 40 MB RSS and 1% of one core.
func BenchmarkIdleAgent(b *testing.B) {
	window := 30 * time.Second
	if s := os.Getenv("VIGIL_IDLE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("VIGIL_IDLE_SECONDS=%q: %v", s, err)
		}
		window = time.Duration(n) * time.Second
	}
	dir := b.TempDir()
	bin := buildAgent(b, dir)
	cfg, err := json.Marshal(agent.DefaultConfig(10 * time.Second))
	if err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "osquery.conf")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		b.Fatal(err)
	}
	args := []string{"run", "--config_path", cfgPath, "--database_path", filepath.Join(dir, "db")}
	if os.Geteuid() != 0 {
		b.Log("not root: event sources off (--disable_events)")
		args = append(args, "--disable_events")
	}
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		// Let start-up (first runs of every query) pass before measuring idle.
		time.Sleep(5 * time.Second)
		cpu0 := cpuTicks(b, cmd.Process.Pid)
		t0 := time.Now()
		var maxRSS int64
		for time.Since(t0) < window {
			time.Sleep(time.Second)
			if r := rssKB(b, cmd.Process.Pid); r > maxRSS {
				maxRSS = r
			}
		}
		elapsed := time.Since(t0)
		cpu := cpuTicks(b, cmd.Process.Pid) - cpu0
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		// Clock ticks are 100 Hz on Linux.
		cpuPct := float64(cpu) / 100 / elapsed.Seconds() * 100
		b.ReportMetric(float64(maxRSS)/1024, "RSS-MB")
		b.ReportMetric(cpuPct, "CPU-%")
	}
}

func rssKB(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("agent exited: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("agent exited: %v", err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields after ")": state(0) ... utime(11) stime(12)
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// buildAgent builds the static agent binary into dir for a benchmark that
// measures the real process.
func buildAgent(b *testing.B, dir string) string {
	b.Helper()
	bin := filepath.Join(dir, "vigil-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building agent: %v\n%s", err, out)
	}
	return bin
}
