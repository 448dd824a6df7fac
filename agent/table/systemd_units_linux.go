package table

import (
	"fmt"
	"time"
)

var systemdUnitsTable = &tableDef{schema: systemdUnitsSchema, gen: genSystemdUnits}

// systemdUnitsSchema is specs/linux/systemd_units.table (Linux columns).
var systemdUnitsSchema = Schema{
	Name:        "systemd_units",
	Description: "Track systemd units.",
	Columns: []Column{
		{Name: "id", Type: TypeText},
		{Name: "description", Type: TypeText},
		{Name: "load_state", Type: TypeText},
		{Name: "active_state", Type: TypeText},
		{Name: "sub_state", Type: TypeText},
		{Name: "unit_file_state", Type: TypeText},
		{Name: "following", Type: TypeText},
		{Name: "object_path", Type: TypeText},
		{Name: "job_id", Type: TypeBigint},
		{Name: "job_type", Type: TypeText},
		{Name: "job_path", Type: TypeText},
		{Name: "fragment_path", Type: TypeText},
		{Name: "user", Type: TypeText},
		{Name: "source_path", Type: TypeText},
	},
}

const (
	systemBusSocket = "/run/dbus/system_bus_socket"
	systemdDest     = "org.freedesktop.systemd1"
	systemdPath     = "/org/freedesktop/systemd1"
	dbusTimeout     = 10 * time.Second
)

// unitProperties are read per unit, only when their column is used.
var unitProperties = []struct{ col, iface, name string }{
	{"fragment_path", "org.freedesktop.systemd1.Unit", "FragmentPath"},
	{"source_path", "org.freedesktop.systemd1.Unit", "SourcePath"},
	{"unit_file_state", "org.freedesktop.systemd1.Unit", "UnitFileState"},
	{"user", "org.freedesktop.systemd1.Service", "User"},
}

// genSystemdUnits asks systemd over the system bus for its units
// (Manager.ListUnits) and, per unit, the string properties asked for. A
// host without a system bus (containers) has no rows.
func genSystemdUnits(q *queryCtx) ([]Row, error) {
	bus, err := dialDBus(q.fs.real(systemBusSocket), dbusTimeout)
	if err != nil {
		q.log.Debug("systemd_units: no system bus", "err", err)
		return nil, nil
	}
	defer bus.Close()
	body, err := bus.call(systemdDest, systemdPath, "org.freedesktop.systemd1.Manager", "ListUnits")
	if err != nil {
		return nil, fmt.Errorf("listing systemd units: %w", err)
	}
	if len(body) != 1 {
		return nil, fmt.Errorf("listing systemd units: unexpected reply %v", body)
	}
	units, _ := body[0].([]any)
	var rows []Row
	for _, u := range units {
		if err := q.Err(); err != nil {
			return nil, err
		}
		f, ok := u.([]any)
		if !ok || len(f) != 10 {
			continue
		}
		s := func(i int) string { v, _ := f[i].(string); return v }
		jobID, _ := f[7].(uint32)
		r := Row{
			"id": s(0), "description": s(1), "load_state": s(2), "active_state": s(3), "sub_state": s(4),
			"following": s(5), "object_path": s(6), "job_id": jobID, "job_type": s(8), "job_path": s(9),
		}
		for _, p := range unitProperties {
			if !q.Used(p.col) {
				continue
			}
			// Not every unit has every interface (User is a Service
			// property): a failed Get leaves the column empty.
			r[p.col] = ""
			if v, err := bus.call(systemdDest, s(6), "org.freedesktop.DBus.Properties", "Get", p.iface, p.name); err == nil && len(v) == 1 {
				if str, ok := v[0].(string); ok {
					r[p.col] = str
				}
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}
