package event

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestParseFields(t *testing.T) {
	body := `arch=c000003e syscall=59 success=yes exit=0 a0=55d0 ppid=10 pid=11 auid=4294967295 uid=0 comm="true" exe=2F746D702F6120622F74727565 key="vigil_exec"`
	f := parseFields(body)
	if f["exe"].str() != "/tmp/a b/true" {
		t.Fatalf("hex exe decoded to %q", f["exe"].str())
	}
	if f["comm"].str() != "true" || !f["comm"].quoted {
		t.Fatalf("comm %+v", f["comm"])
	}
	if f["pid"].value != "11" || f["key"].str() != "vigil_exec" {
		t.Fatalf("pid %q key %q", f["pid"].str(), f["key"].str())
	}
	user := `pid=5 uid=0 auid=1000 ses=3 msg='op=PAM:session_open grantors=pam_unix acct="root" exe="/usr/sbin/sshd" hostname=1.2.3.4 addr=1.2.3.4 terminal=ssh res=success'`
	u := parseFields(user)
	if u["acct"].str() != "root" || u["terminal"].str() != "ssh" || u["addr"].str() != "1.2.3.4" || u["pid"].value != "5" {
		t.Fatalf("user record fields %+v", u)
	}
}

func TestExecveArgv(t *testing.T) {
	long := strings.Repeat("x", 9000)
	hexSpace := strings.ToUpper(hex.EncodeToString([]byte("has space")))
	rec1 := `argc=4 a0="/bin/echo" a1=` + hexSpace + ` a2_len=9000 a2[0]="` + long[:7500] + `"`
	rec2 := `a2[1]="` + long[7500:] + `" a3=""`
	argv, err := execveArgv([]string{rec1, rec2})
	if err != nil {
		t.Fatal(err)
	}
	if len(argv) != 4 || argv[0] != "/bin/echo" || argv[1] != "has space" || argv[2] != long || argv[3] != "" {
		t.Fatalf("argv = %q", argv)
	}
	// A missing chunk is reported, not silently dropped.
	_, err = execveArgv([]string{rec1})
	if !errors.Is(err, errArgv) {
		t.Fatalf("missing chunk: err = %v", err)
	}
	if _, err := execveArgv([]string{`a0="x"`}); !errors.Is(err, errArgv) {
		t.Fatalf("no argc: err = %v", err)
	}
	if _, err := execveArgv([]string{`argc=-1`}); err == nil {
		t.Fatal("negative argc accepted")
	}
}

func TestParseSockaddr(t *testing.T) {
	// AF_INET 127.0.0.1:8080
	s, ok := parseSockaddr("02001F907F0000010000000000000000")
	if !ok || s.family != 2 || s.addr != "127.0.0.1" || s.port != 8080 {
		t.Fatalf("inet: %+v %v", s, ok)
	}
	// AF_INET6 [::1]:443
	s, ok = parseSockaddr("0A0001BB00000000" + "00000000000000000000000000000001" + "00000000")
	if !ok || s.family != 10 || s.addr != "::1" || s.port != 443 {
		t.Fatalf("inet6: %+v %v", s, ok)
	}
	if _, ok := parseSockaddr("0A00"); ok {
		t.Fatal("short inet6 accepted")
	}
	if _, ok := parseSockaddr("zz"); ok {
		t.Fatal("bad hex accepted")
	}
}

func FuzzParseFields(f *testing.F) {
	f.Add(`argc=2 a0="ls" a1=2D6C`)
	f.Add(`msg='op=x acct="r" res=success'`)
	f.Add(`a1[0]="a" a1_len=2 a1[1]="b" argc=2 a0=""`)
	f.Fuzz(func(t *testing.T, s string) {
		for k, v := range parseFields(s) {
			_ = k
			_ = v.str()
		}
		argv, err := execveArgv([]string{s})
		if err == nil && argv == nil {
			// argc=0 gives an empty, non-nil slice
			t.Fatalf("nil argv without error for %q", s)
		}
	})
}

func FuzzParseSockaddr(f *testing.F) {
	f.Add("02001F907F0000010000000000000000")
	f.Add("0100")
	f.Fuzz(func(t *testing.T, s string) {
		sa, ok := parseSockaddr(s)
		if ok && sa.family == 2 && sa.port > 65535 {
			t.Fatalf("port %d", sa.port)
		}
	})
}
