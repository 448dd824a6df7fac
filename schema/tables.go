package schema

import "time"

// tables is the schema. Order is stable: stores create tables in it.
var tables = []Table{
	processCreation,
	networkConnection,
	fileEvent,
	authentication,
}

var processCreation = Table{
	Name:        "process_creation",
	Description: "Process executions (osquery process_events)",
	Columns: []Column{
		{"process_pid", BigInt, "Process id"},
		{"process_parent_pid", BigInt, "Parent process id"},
		{"process_executable", Text, "Path of the executed file"},
		{"process_name", Text, "Base name of the executed file"},
		{"process_command_line", Text, "Full command line (argv joined by spaces)"},
		{"process_working_directory", Text, "Working directory at exec"},
		{"process_parent_executable", Text, "Path of the parent's executable when known"},
		{"process_parent_command_line", Text, "Parent's command line when known"},
		{"user_id", BigInt, "Real user id"},
		{"user_name", Text, "User name when known"},
		{"user_effective_id", BigInt, "Effective user id"},
		{"user_audit_id", BigInt, "Audit (login) user id"},
		{"group_id", BigInt, "Real group id"},
		{"group_effective_id", BigInt, "Effective group id"},
		{"process_syscall", Text, "execve or execveat"},
	},
	Fields: map[string]string{
		"ProcessId":         "process_pid",
		"ParentProcessId":   "process_parent_pid",
		"Image":             "process_executable",
		"CommandLine":       "process_command_line",
		"CurrentDirectory":  "process_working_directory",
		"ParentImage":       "process_parent_executable",
		"ParentCommandLine": "process_parent_command_line",
		"User":              "user_name",
		"LogonId":           "user_audit_id",
	},
	Sources: []Source{{
		OsqueryTable: "process_events",
		Map: func(r map[string]string) (map[string]any, time.Time) {
			return map[string]any{
				"process_pid":               num(r, "pid"),
				"process_parent_pid":        num(r, "parent"),
				"process_executable":        str(r, "path"),
				"process_name":              base(r["path"]),
				"process_command_line":      str(r, "cmdline"),
				"process_working_directory": str(r, "cwd"),
				"user_id":                   num(r, "uid"),
				"user_effective_id":         num(r, "euid"),
				"user_audit_id":             num(r, "auid"),
				"group_id":                  num(r, "gid"),
				"group_effective_id":        num(r, "egid"),
				"process_syscall":           str(r, "syscall"),
			}, unixTime(r, "time")
		},
	}},
}

var networkConnection = Table{
	Name:        "network_connection",
	Description: "Socket connect, bind and accept (osquery socket_events)",
	Columns: []Column{
		{"network_action", Text, "connect, bind or accept"},
		{"process_pid", BigInt, "Process id"},
		{"process_executable", Text, "Path of the process's executable"},
		{"user_audit_id", BigInt, "Audit (login) user id"},
		{"network_family", BigInt, "Address family (2 inet, 10 inet6)"},
		{"network_protocol", BigInt, "IP protocol number"},
		{"source_ip", Text, "Local address"},
		{"source_port", BigInt, "Local port"},
		{"destination_ip", Text, "Remote address"},
		{"destination_port", BigInt, "Remote port"},
		{"network_status", Text, "succeeded, failed, in_progress or no_client"},
	},
	Fields: map[string]string{
		"Image":           "process_executable",
		"ProcessId":       "process_pid",
		"SourceIp":        "source_ip",
		"SourcePort":      "source_port",
		"DestinationIp":   "destination_ip",
		"DestinationPort": "destination_port",
		"Protocol":        "network_protocol",
	},
	Sources: []Source{{
		OsqueryTable: "socket_events",
		Map: func(r map[string]string) (map[string]any, time.Time) {
			return map[string]any{
				"network_action":     str(r, "action"),
				"process_pid":        num(r, "pid"),
				"process_executable": str(r, "path"),
				"user_audit_id":      num(r, "auid"),
				"network_family":     num(r, "family"),
				"network_protocol":   num(r, "protocol"),
				"source_ip":          str(r, "local_address"),
				"source_port":        num(r, "local_port"),
				"destination_ip":     str(r, "remote_address"),
				"destination_port":   num(r, "remote_port"),
				"network_status":     str(r, "status"),
			}, unixTime(r, "time")
		},
	}},
}

var fileEvent = Table{
	Name:        "file_event",
	Description: "File changes (osquery file_events)",
	Columns: []Column{
		{"file_path", Text, "Path of the file"},
		{"file_name", Text, "Base name of the file"},
		{"file_action", Text, "CREATED, UPDATED, DELETED, ..."},
		{"file_category", Text, "file_paths category from the config"},
		{"file_inode", BigInt, "Inode number"},
		{"file_owner_id", BigInt, "Owning user id"},
		{"file_group_id", BigInt, "Owning group id"},
		{"file_mode", Text, "Permission bits"},
		{"file_size", BigInt, "Size in bytes"},
		{"file_sha256", Text, "SHA-256 after the change"},
		{"process_pid", BigInt, "Acting process id when known"},
		{"process_executable", Text, "Acting process's executable when known"},
	},
	Fields: map[string]string{
		"TargetFilename": "file_path",
		"Image":          "process_executable",
	},
	Sources: []Source{{
		OsqueryTable: "file_events",
		Map: func(r map[string]string) (map[string]any, time.Time) {
			return map[string]any{
				"file_path":          str(r, "target_path"),
				"file_name":          base(r["target_path"]),
				"file_action":        str(r, "action"),
				"file_category":      str(r, "category"),
				"file_inode":         num(r, "inode"),
				"file_owner_id":      num(r, "uid"),
				"file_group_id":      num(r, "gid"),
				"file_mode":          str(r, "mode"),
				"file_size":          num(r, "size"),
				"file_sha256":        str(r, "sha256"),
				"process_pid":        num(r, "pid"),
				"process_executable": str(r, "executable"),
			}, unixTime(r, "time")
		},
	}},
}

var authentication = Table{
	Name:        "authentication",
	Description: "Logins, sudo and authentication results (osquery user_events, last, logged_in_users)",
	Columns: []Column{
		{"auth_message", Text, "Message of the event"},
		{"auth_type", BigInt, "Audit message type or utmp type"},
		{"user_id", BigInt, "User id"},
		{"user_name", Text, "User name when known"},
		{"user_audit_id", BigInt, "Audit (login) user id"},
		{"process_pid", BigInt, "Process id"},
		{"process_executable", Text, "Program that reported the event"},
		{"source_ip", Text, "Remote address"},
		{"terminal", Text, "Terminal"},
	},
	Fields: map[string]string{
		"User":     "user_name",
		"SourceIp": "source_ip",
		"Image":    "process_executable",
	},
	Sources: []Source{
		{OsqueryTable: "user_events", Map: func(r map[string]string) (map[string]any, time.Time) {
			return map[string]any{
				"auth_message":       str(r, "message"),
				"auth_type":          num(r, "type"),
				"user_id":            num(r, "uid"),
				"user_audit_id":      num(r, "auid"),
				"process_pid":        num(r, "pid"),
				"process_executable": str(r, "path"),
				"source_ip":          str(r, "address"),
				"terminal":           str(r, "terminal"),
			}, unixTime(r, "time")
		}},
		{OsqueryTable: "last", Map: func(r map[string]string) (map[string]any, time.Time) {
			return map[string]any{
				"auth_type":   num(r, "type"),
				"user_name":   str(r, "username"),
				"process_pid": num(r, "pid"),
				"source_ip":   str(r, "host"),
				"terminal":    str(r, "tty"),
			}, unixTime(r, "time")
		}},
		{OsqueryTable: "logged_in_users", Map: func(r map[string]string) (map[string]any, time.Time) {
			return map[string]any{
				"auth_type":   nil,
				"user_name":   str(r, "user"),
				"process_pid": num(r, "pid"),
				"source_ip":   str(r, "host"),
				"terminal":    str(r, "tty"),
			}, unixTime(r, "time")
		}},
	},
}
