package event

import (
	"strconv"
	"strings"

	"github.com/elastic/go-libaudit/v2/auparse"
)

// socketEvent builds a socket_events row from a connect/bind/accept
// syscall with its SOCKADDR record. Only IPv4 and IPv6 sockets are kept, as
// osquery does unless told to include UNIX sockets.
func (a *auditSource) socketEvent(sc *auparse.AuditMessage, f map[string]field, msgs []*auparse.AuditMessage) {
	var sa sockaddr
	found := false
	for _, m := range msgs {
		if m.RecordType == auparse.AUDIT_SOCKADDR {
			sa, found = parseSockaddr(parseFields(recordBody(m.RawData))["saddr"].value)
		}
	}
	if !found || (sa.family != 2 && sa.family != 10) {
		return
	}
	name := syscallName(f)
	action := name
	switch name {
	case "accept", "accept4":
		action = "accept"
	case "connect", "bind":
	default:
		return
	}
	row := make(map[string]string, 20)
	row["action"] = action
	row["pid"] = f["pid"].value
	row["path"] = f["exe"].str()
	if fd, err := strconv.ParseUint(f["a0"].value, 16, 64); err == nil {
		row["fd"] = strconv.FormatUint(fd, 10)
	}
	row["auid"] = f["auid"].value
	row["family"] = strconv.Itoa(sa.family)
	row["protocol"] = ""
	row["local_address"], row["local_port"], row["remote_address"], row["remote_port"] = "", "0", "", "0"
	if action == "bind" {
		row["local_address"], row["local_port"] = sa.addr, strconv.Itoa(sa.port)
	} else {
		row["remote_address"], row["remote_port"] = sa.addr, strconv.Itoa(sa.port)
	}
	row["socket"] = ""
	ok := f["success"].value == "yes"
	exit := f["exit"].value
	switch {
	case ok:
		row["status"], row["success"] = "succeeded", "1"
	case action == "connect" && (exit == "-115" || exit == "EINPROGRESS"):
		row["status"], row["success"] = "in_progress", "0"
	case action == "accept" && (exit == "-11" || exit == "EAGAIN"):
		row["status"], row["success"] = "no_client", "0"
	default:
		row["status"], row["success"] = "failed", "0"
	}
	setTimes(row, sc.Timestamp, a.boot)
	a.sink.Add("socket_events", row)
	a.c.events.Add(1)
}

// userEvent builds a user_events row from a user-space audit message
// (USER_LOGIN, USER_AUTH, USER_START, ...: types 1100-1199 and 2100-2999).
func (a *auditSource) userEvent(m *auparse.AuditMessage) {
	t := int(m.RecordType)
	if !(t >= 1100 && t <= 1199) && !(t >= 2100 && t <= 2999) {
		return
	}
	body := recordBody(m.RawData)
	f := parseFields(body)
	msg := body
	if i := strings.Index(body, "msg='"); i >= 0 {
		msg = strings.TrimSuffix(body[i+5:], "'")
	}
	row := map[string]string{
		"uid":      f["uid"].value,
		"auid":     f["auid"].value,
		"pid":      f["pid"].value,
		"message":  msg,
		"type":     strconv.Itoa(t),
		"path":     f["exe"].str(),
		"address":  f["addr"].str(),
		"terminal": f["terminal"].str(),
	}
	setTimes(row, m.Timestamp, a.boot)
	a.sink.Add("user_events", row)
	a.c.events.Add(1)
}
