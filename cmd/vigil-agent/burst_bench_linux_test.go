package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkExecBurstAgent is issue #3's burst measured on the whole agent:
// the real vigil-agent binary (audit source, a scheduled process_events
// query every second, the spool and the filesystem logger) while 5,000
// execs run as fast as 8 workers can start them. It reports the fraction
// of the burst's pids found exactly once in the results log, and the
// agent's CPU per exec: its CPU during the burst and until the last row
// is logged, less its idle rate over the same time. Needs root (audit).
//
//	go test ./cmd/vigil-agent -run '^$' -bench ExecBurstAgent -benchtime=1x
//
// agent/event's BenchmarkExecBurst measures the event source alone.
func BenchmarkExecBurstAgent(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: the audit source is what is measured")
	}
	const execs, workers = 5000, 8
	dir := b.TempDir()
	bin := buildAgent(b, dir)
	cfg := `{"schedule": {"execs": {"query": "SELECT pid, path, cmdline FROM process_events", "interval": 1}}}`
	cfgPath := filepath.Join(dir, "osquery.conf")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		logDir := filepath.Join(dir, "log"+strconv.Itoa(i))
		cmd := exec.Command(bin, "run", "--config_path", cfgPath, "--database_path", filepath.Join(dir, "db"+strconv.Itoa(i)),
			"--logger_path", logDir, "--logger_tls_period", "1")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		pid := cmd.Process.Pid
		// Start-up, then the idle rate over 5 s.
		time.Sleep(5 * time.Second)
		idle0, t0 := cpuTicks(b, pid), time.Now()
		time.Sleep(5 * time.Second)
		idleRate := float64(cpuTicks(b, pid)-idle0) / time.Since(t0).Seconds()

		cpu0, start := cpuTicks(b, pid), time.Now()
		pids := burst(b, execs, workers)
		burstTime := time.Since(start)
		seen := waitForPids(b, filepath.Join(logDir, "osqueryd.results.log"), pids, 60*time.Second)
		elapsed := time.Since(start)
		cpu := float64(cpuTicks(b, pid)-cpu0) - idleRate*elapsed.Seconds()
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()

		once, dup := 0, 0
		for _, n := range seen {
			switch {
			case n == 1:
				once++
			case n > 1:
				dup++
			}
		}
		// Clock ticks are 100 Hz on Linux: 10 ms each.
		b.ReportMetric(cpu*10_000/float64(execs), "agent-µs-cpu/exec")
		b.ReportMetric(float64(once)/float64(execs), "captured")
		b.ReportMetric(float64(dup), "duplicates")
		b.ReportMetric(float64(execs)/burstTime.Seconds(), "burst-execs/s")
		b.ReportMetric(elapsed.Seconds(), "s-until-logged")
	}
}

// burst runs n execs of /bin/true from workers goroutines and returns
// their pids.
func burst(b *testing.B, n, workers int) map[int]bool {
	var mu sync.Mutex
	pids := make(map[int]bool, n)
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for range jobs {
				c := exec.Command("/bin/true")
				if err := c.Start(); err != nil {
					b.Error(err)
					continue
				}
				mu.Lock()
				pids[c.Process.Pid] = true
				mu.Unlock()
				c.Wait()
			}
		})
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return pids
}

// waitForPids reads the results log until every pid has a row or the
// deadline passes, and returns how many rows each pid had.
func waitForPids(b *testing.B, path string, pids map[int]bool, limit time.Duration) map[int]int {
	seen := make(map[int]int, len(pids))
	found := 0
	off := 0
	deadline := time.Now().Add(limit)
	for found < len(pids) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		data, err := os.ReadFile(path)
		if err != nil {
			continue // not written yet
		}
		// Whole lines only: the logger may be mid-write.
		end := bytes.LastIndexByte(data, '\n') + 1
		for _, l := range bytes.Split(data[off:end], []byte("\n")) {
			var line struct {
				Name    string            `json:"name"`
				Columns map[string]string `json:"columns"`
			}
			if json.Unmarshal(l, &line) != nil || line.Name != "execs" {
				continue
			}
			p, _ := strconv.Atoi(line.Columns["pid"])
			if pids[p] {
				if seen[p] == 0 {
					found++
				}
				seen[p]++
			}
		}
		off = end
	}
	return seen
}
