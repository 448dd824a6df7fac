package table

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystemd serves the few calls systemd_units makes, over the D-Bus
// wire protocol, on root/run/dbus/system_bus_socket.
func fakeSystemd(t *testing.T, root string) {
	t.Helper()
	sock := filepath.Join(root, "run/dbus/system_bus_socket")
	os.MkdirAll(filepath.Dir(sock), 0o755)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("cannot listen on a unix socket: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	units := []any{
		[]any{"ssh.service", "OpenBSD Secure Shell server", "loaded", "active", "running", "",
			"/org/freedesktop/systemd1/unit/ssh_2eservice", uint32(0), "", "/"},
		[]any{"tmp.mount", "Temporary Directory", "loaded", "active", "mounted", "",
			"/org/freedesktop/systemd1/unit/tmp_2emount", uint32(7), "start", "/org/freedesktop/systemd1/job/7"},
	}
	props := map[string]string{
		"/org/freedesktop/systemd1/unit/ssh_2eservice FragmentPath":  "/lib/systemd/system/ssh.service",
		"/org/freedesktop/systemd1/unit/ssh_2eservice UnitFileState": "enabled",
		"/org/freedesktop/systemd1/unit/ssh_2eservice SourcePath":    "",
		"/org/freedesktop/systemd1/unit/ssh_2eservice User":          "root",
		"/org/freedesktop/systemd1/unit/tmp_2emount FragmentPath":    "/lib/systemd/system/tmp.mount",
		"/org/freedesktop/systemd1/unit/tmp_2emount UnitFileState":   "static",
		"/org/freedesktop/systemd1/unit/tmp_2emount SourcePath":      "/etc/fstab",
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFakeBus(c, units, props)
		}
	}()
}

func serveFakeBus(c net.Conn, units []any, props map[string]string) {
	defer c.Close()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "\x00AUTH EXTERNAL ") {
		c.Write([]byte("REJECTED EXTERNAL\r\n"))
		return
	}
	c.Write([]byte("OK 1234deadbeef\r\n"))
	if line, _ := r.ReadString('\n'); line != "BEGIN\r\n" {
		return
	}
	var serial uint32 = 100
	for {
		m, err := readDBusMessage(r)
		if err != nil {
			return
		}
		serial++
		member, _ := m.fields[dbusFieldMember].(string)
		path, _ := m.fields[dbusFieldPath].(string)
		reply := func(sig string, v any) {
			var body dbusEncoder
			body.value(sig, v)
			c.Write(encodeDBusMessage(dbusMethodReturn, serial, []dbusField{
				{dbusFieldReplySerial, "u", m.serial}, {dbusFieldSignature, "g", sig},
			}, body.b))
		}
		switch member {
		case "Hello":
			reply("s", ":1.42")
		case "ListUnits":
			reply("a(ssssssouso)", units)
		case "Get":
			key := path + " " + m.body[1].(string)
			if v, ok := props[key]; ok {
				reply("v", dbusVariant{"s", v})
				continue
			}
			var body dbusEncoder
			body.str("unknown property")
			c.Write(encodeDBusMessage(dbusError, serial, []dbusField{
				{dbusFieldErrorName, "s", "org.freedesktop.DBus.Error.UnknownProperty"},
				{dbusFieldReplySerial, "u", m.serial}, {dbusFieldSignature, "g", "s"},
			}, body.b))
		}
	}
}

func TestSystemdUnits(t *testing.T) {
	root, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	fakeSystemd(t, root)
	e := openTest(t, Options{Root: root})
	wantRows(t, e, "SELECT * FROM systemd_units",
		row("id", "ssh.service", "description", "OpenBSD Secure Shell server", "load_state", "loaded", "active_state", "active",
			"sub_state", "running", "unit_file_state", "enabled", "following", "", "object_path", "/org/freedesktop/systemd1/unit/ssh_2eservice",
			"job_id", "0", "job_type", "", "job_path", "/", "fragment_path", "/lib/systemd/system/ssh.service", "user", "root", "source_path", ""),
		row("id", "tmp.mount", "description", "Temporary Directory", "load_state", "loaded", "active_state", "active",
			"sub_state", "mounted", "unit_file_state", "static", "following", "", "object_path", "/org/freedesktop/systemd1/unit/tmp_2emount",
			"job_id", "7", "job_type", "start", "job_path", "/org/freedesktop/systemd1/job/7", "fragment_path", "/lib/systemd/system/tmp.mount",
			"user", "", "source_path", "/etc/fstab"),
	)
	// Columns not asked for cost no property calls; the list still comes.
	wantRows(t, e, "SELECT id FROM systemd_units WHERE active_state = 'active' AND sub_state = 'running'", row("id", "ssh.service"))
	// No bus: no rows, no error.
	wantRows(t, fixtureEngine(t), "SELECT * FROM systemd_units")
}

func FuzzReadDBusMessage(f *testing.F) {
	var body dbusEncoder
	body.value("a(su)", []any{[]any{"x", uint32(1)}})
	f.Add(encodeDBusMessage(dbusMethodReturn, 1, []dbusField{{dbusFieldReplySerial, "u", uint32(1)}, {dbusFieldSignature, "g", "a(su)"}}, body.b))
	f.Add(encodeDBusMessage(dbusMethodCall, 2, []dbusField{{dbusFieldPath, "o", "/"}, {dbusFieldSignature, "g", "v"}}, []byte{1, 's', 0, 0, 1, 0, 0, 0, 'a', 0}))
	// Any input must decode or fail cleanly (no panic, no runaway
	// allocation), and a decoded body has one value per complete type of
	// its signature.
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readDBusMessage(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		// A signature field carried under another type leaves the body
		// undecoded, which the client treats as an empty reply.
		sig, _ := m.fields[dbusFieldSignature].(string)
		if len(m.body) != len(splitDBusSig(sig)) {
			t.Fatalf("body has %d values for signature %q", len(m.body), sig)
		}
	})
}
