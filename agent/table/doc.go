// Package table is the agent's SQL engine: osquery-compatible virtual tables
// (names, columns and types exactly as osquery's specs/*.table, checked by
// the conformance test) served by an in-memory SQLite (modernc.org/sqlite,
// pure Go) through its vtab API.
//
// It owns the registry of tables and their schemas (registry_linux.go, one
// file per table, suffixed _linux.go where the implementation is Linux
// specific) and the "each row once per scheduled query" cursors of the event
// tables. The agent runtime (agent/...) and cmd/vigil-agent import it; it
// imports no server package and no cgo package, so the agent stays
// CGO_ENABLED=0.
//
// # How a query runs
//
// Each connection of the engine's private driver gets one CREATE VIRTUAL
// TABLE per table (modernc's vtab has no eponymous modules). BestIndex hands
// every usable =, LIKE, GLOB and range constraint to the table's generator
// and omits none, so SQLite re-checks what generators return: a generator
// may return more rows than asked (never fewer). Constrained index columns
// (processes.pid, users.uid, ...) make cheap plans; a table with required
// columns (file, hash) fails with an error naming them when none is
// constrained. On file and hash, =, LIKE and GLOB on path or directory name
// the files: LIKE's '%' and '_' (GLOB's '*', '?' and "[...]") match within
// one path component and a final "%%" ("**") takes everything below, as
// osquery's filesystem patterns do; one pattern may expand to at most
// 100,000 paths (pathpattern.go), beyond that the query fails saying so. Values are converted to the declared column type the way
// osquery converts its rows: what does not parse becomes NULL.
//
// osquery's SQL functions are registered on every connection (split,
// regex_split, regex_match, inet_aton, concat, concat_ws, md5, sha1, sha256,
// to_base64, from_base64, conditional_to_base64, in_cidr_block,
// community_id_v1[_strict], version_compare) with its version collations
// (version, version_dpkg, version_rhel, version_arch); SQLite's own math
// functions are built in.
// Results render as osquery renders them: NULL as "", doubles with 15
// significant digits and a ".0" when integral.
//
// # Where we differ from osquery on purpose
//
//   - users, groups, user_groups read /etc/passwd and /etc/group: no NSS
//     (LDAP, sssd) accounts, which would need libc.
//   - system_info.hostname is the kernel's hostname, not a DNS FQDN; hardware
//     columns come from /sys/class/dmi/id instead of raw SMBIOS.
//   - dns_resolvers reports each search domain (osquery repeats the first)
//     and netmask 128 for IPv6 nameservers.
//   - process_memory_map keeps paths that contain spaces whole.
//   - rpm_packages reads rpm 4.16+'s SQLite database only (no Berkeley DB or
//     NDB); without it the table has no rows.
//   - The hidden namespace columns (pid_with_namespace, mount_namespace_id)
//     exist but are always NULL: queries are not run inside other
//     namespaces.
//   - regex_match and regex_split use Go's RE2 syntax (no backreferences or
//     lookaround) where osquery uses ECMAScript.
//   - Event cursors of QueryAs live in memory: they restart with the engine,
//     as the event buffer's ids do.
//
// # Vigil's own tables
//
// Tables named vigil_* are Vigil's, not osquery's: no osquery spec, left out
// of the conformance test by name.
//
//   - vigil_event_drops: one row per event publisher (audit, cn_proc,
//     fanotify, inotify), subscriber (process_events, socket_events,
//     user_events, file_events: their buffers) and logger (result lines,
//     distributed results, spools), with every loss counter: kernel_lost
//     (audit's lost counter), socket_overflows (ENOBUFS), queue_dropped,
//     sequence_gaps, incomplete, parse_errors, proc_gone, buffered,
//     buffer_dropped (events_max or buffered_log_max overflow),
//     buffer_expired (events_expiry), too_large (over
//     logger_tls_max_linesize or distributed_max_result_bytes), and lost,
//     the sum of the counters that mean a row never reached a consumer.
//     osquery_events shows the same publishers and subscribers with
//     osquery's columns.
//
// Kept on purpose because osquery does it: resident_size and total_size of
// processes are /proc's kB values times 1000; routes reports netmask 0 for
// host routes (/32, /128); listening_ports includes packet sockets.
package table
