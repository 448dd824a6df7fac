// Package pgtest runs a throwaway PostgreSQL server for tests of the
// state's PostgreSQL backend and of replicas sharing it. The server is
// started on first use from the PostgreSQL binaries on this machine
// (initdb, pg_ctl; as the postgres user when running as root) and stopped
// by Main; each test gets a fresh database. Tests skip, saying why, when
// no PostgreSQL is installed. Set VIGIL_TEST_POSTGRES to a server URL
// (postgres://user@host:port/db) to use an existing server instead.
// Only tests import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	once    sync.Once
	baseURL string
	initErr error
	stop    func()
)

// Main runs the tests and then stops the server, if one was started:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if stop != nil {
		stop()
	}
	return code
}

// URL returns the URL of a new, empty database, or skips the test when no
// PostgreSQL is available.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(start)
	if initErr != nil {
		t.Skipf("PostgreSQL not available: %v", initErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		t.Fatalf("pgtest: connecting: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: creating database: %v", err)
	}
	u, _ := url.Parse(baseURL)
	u.Path = "/" + name
	return u.String()
}

func start() {
	if v := os.Getenv("VIGIL_TEST_POSTGRES"); v != "" {
		baseURL = v
		return
	}
	initdb, err := findBin("initdb")
	if err != nil {
		initErr = err
		return
	}
	pgctl, err := findBin("pg_ctl")
	if err != nil {
		initErr = err
		return
	}
	dir, err := os.MkdirTemp("", "vigil-pgtest-")
	if err != nil {
		initErr = err
		return
	}
	asUser := func(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		pgUser, err := user.Lookup("postgres")
		if err != nil {
			initErr = fmt.Errorf("running as root and no postgres user: %w", err)
			return
		}
		uid, _ := strconv.Atoi(pgUser.Uid)
		gid, _ := strconv.Atoi(pgUser.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			initErr = err
			return
		}
		asUser = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asUser(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		initErr = fmt.Errorf("initdb: %v: %s", err, out)
		return
	}
	port, err := freePort()
	if err != nil {
		initErr = err
		return
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=200", port, dir)
	if out, err := asUser(pgctl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		initErr = fmt.Errorf("pg_ctl start: %v: %s %s", err, out, log)
		return
	}
	baseURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	stop = func() {
		asUser(pgctl, "-D", data, "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(dir)
	}
}

func findBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("%s not found in PATH or /usr/lib/postgresql/*/bin (apt-get install postgresql)", name)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
