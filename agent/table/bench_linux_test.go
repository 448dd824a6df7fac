package table

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// BenchmarkProcesses and BenchmarkPsExec measure the same work (every
// process with pid, name and command line) so their ratio can be quoted.

func BenchmarkProcesses(b *testing.B) {
	e := openTest(b, Options{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := e.Query(ctx, "SELECT * FROM processes")
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Rows) == 0 {
			b.Fatal("no processes")
		}
	}
}

func BenchmarkProcessesPidNameCmdline(b *testing.B) {
	e := openTest(b, Options{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := e.Query(ctx, "SELECT pid, name, cmdline FROM processes"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessByPid is the pushed-down single-process read.
func BenchmarkProcessByPid(b *testing.B) {
	e := openTest(b, Options{})
	ctx := context.Background()
	q := "SELECT * FROM processes WHERE pid = " + strconv.Itoa(os.Getpid())
	for b.Loop() {
		res, err := e.Query(ctx, q)
		if err != nil || len(res.Rows) != 1 {
			b.Fatal(err, len(res.Rows))
		}
	}
}

func BenchmarkPsExec(b *testing.B) {
	ps, err := exec.LookPath("ps")
	if err != nil {
		b.Skip("no ps on this machine")
	}
	for b.Loop() {
		out, err := exec.Command(ps, "-eo", "pid,comm,args").Output()
		if err != nil {
			b.Fatal(err)
		}
		if len(out) == 0 {
			b.Fatal("no output")
		}
	}
}
