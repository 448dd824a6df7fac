package table

// Schemas of the event tables (see events.go).

// processEventsSchema is specs/posix/process_events.table (Linux columns).
var processEventsSchema = Schema{
	Name:        "process_events",
	Description: "Track time/action process executions.",
	Event:       true,
	Columns: []Column{
		{Name: "pid", Type: TypeBigint},
		{Name: "path", Type: TypeText},
		{Name: "mode", Type: TypeText},
		{Name: "cmdline", Type: TypeText},
		{Name: "cmdline_size", Type: TypeBigint, Hidden: true},
		{Name: "env", Type: TypeText, Hidden: true},
		{Name: "env_count", Type: TypeBigint, Hidden: true},
		{Name: "env_size", Type: TypeBigint, Hidden: true},
		{Name: "cwd", Type: TypeText},
		{Name: "auid", Type: TypeBigint},
		{Name: "uid", Type: TypeBigint},
		{Name: "euid", Type: TypeBigint},
		{Name: "gid", Type: TypeBigint},
		{Name: "egid", Type: TypeBigint},
		{Name: "owner_uid", Type: TypeBigint},
		{Name: "owner_gid", Type: TypeBigint},
		{Name: "atime", Type: TypeBigint},
		{Name: "mtime", Type: TypeBigint},
		{Name: "ctime", Type: TypeBigint},
		{Name: "btime", Type: TypeBigint},
		{Name: "overflows", Type: TypeText, Hidden: true},
		{Name: "parent", Type: TypeBigint},
		{Name: "time", Type: TypeBigint},
		{Name: "uptime", Type: TypeBigint},
		{Name: "eid", Type: TypeText, Hidden: true},
		{Name: "fsuid", Type: TypeBigint},
		{Name: "suid", Type: TypeBigint},
		{Name: "fsgid", Type: TypeBigint},
		{Name: "sgid", Type: TypeBigint},
		{Name: "syscall", Type: TypeText},
	},
}

// socketEventsSchema is specs/posix/socket_events.table (Linux columns).
var socketEventsSchema = Schema{
	Name:        "socket_events",
	Description: "Track network socket bind, connect, and accepts.",
	Event:       true,
	Columns: []Column{
		{Name: "action", Type: TypeText},
		{Name: "pid", Type: TypeBigint},
		{Name: "path", Type: TypeText},
		{Name: "fd", Type: TypeText},
		{Name: "auid", Type: TypeBigint},
		{Name: "family", Type: TypeInteger},
		{Name: "protocol", Type: TypeInteger, Hidden: true},
		{Name: "local_address", Type: TypeText},
		{Name: "remote_address", Type: TypeText},
		{Name: "local_port", Type: TypeInteger},
		{Name: "remote_port", Type: TypeInteger},
		{Name: "socket", Type: TypeText, Hidden: true},
		{Name: "time", Type: TypeBigint},
		{Name: "uptime", Type: TypeBigint},
		{Name: "eid", Type: TypeText, Hidden: true},
		{Name: "success", Type: TypeInteger, Hidden: true},
		{Name: "status", Type: TypeText},
	},
}

// fileEventsSchema is specs/posix/file_events.table (Linux columns).
var fileEventsSchema = Schema{
	Name:        "file_events",
	Description: "Track time/action changes to files specified in configuration data.",
	Event:       true,
	Columns: []Column{
		{Name: "target_path", Type: TypeText},
		{Name: "category", Type: TypeText},
		{Name: "action", Type: TypeText},
		{Name: "transaction_id", Type: TypeBigint},
		{Name: "inode", Type: TypeBigint},
		{Name: "uid", Type: TypeBigint},
		{Name: "gid", Type: TypeBigint},
		{Name: "mode", Type: TypeText},
		{Name: "size", Type: TypeBigint},
		{Name: "atime", Type: TypeBigint},
		{Name: "mtime", Type: TypeBigint},
		{Name: "ctime", Type: TypeBigint},
		{Name: "md5", Type: TypeText, Collate: "nocase"},
		{Name: "sha1", Type: TypeText, Collate: "nocase"},
		{Name: "sha256", Type: TypeText, Collate: "nocase"},
		{Name: "hashed", Type: TypeInteger},
		{Name: "time", Type: TypeBigint},
		{Name: "eid", Type: TypeText, Hidden: true},
	},
}

// userEventsSchema is specs/posix/user_events.table (Linux columns).
var userEventsSchema = Schema{
	Name:        "user_events",
	Description: "Track user events from the audit framework.",
	Event:       true,
	Columns: []Column{
		{Name: "uid", Type: TypeBigint},
		{Name: "auid", Type: TypeBigint},
		{Name: "pid", Type: TypeBigint},
		{Name: "message", Type: TypeText},
		{Name: "type", Type: TypeInteger},
		{Name: "path", Type: TypeText},
		{Name: "address", Type: TypeText},
		{Name: "terminal", Type: TypeText},
		{Name: "time", Type: TypeBigint},
		{Name: "uptime", Type: TypeBigint},
		{Name: "eid", Type: TypeText, Hidden: true},
	},
}
