// Package web is the HTTP API for people: hosts, live queries (started
// and followed as server-sent events), alerts and their suppressions,
// alert outputs and dead letters, carves, the fleet
// configuration, tokens and the audit log, behind bearer-token
// authentication with roles. cmd/vigil mounts its Handler beside the
// osquery API of package control; the CLI and the console are its
// clients. Agents never import it.
//
// Every request carries "Authorization: Bearer <token>" (tokens come from
// state.CreateToken or POST /api/v1/tokens). A missing or bad token is
// 401; a role too low is 403; failed authentications from one address are
// limited (429 after Options.BadAuthLimit in Options.BadAuthWindow) and
// audited. Errors are JSON: {"error": "..."}. Each role includes the ones
// before it:
//
//	viewer    GET  /api/v1/whoami                    {"user","role"}
//	          GET  /api/v1/hosts                     {"hosts":[host + "online"]}
//	          GET  /api/v1/hosts/{id}/config         what the host is served, its labels, config version
//	          GET  /api/v1/alerts?status=&host=&rule=&limit=&before=   {"alerts":[alert + "match_count","last_match_at"],"next_before"},
//	                                                 newest first; a full page's next_before is the ?before= of the next
//	          GET  /api/v1/queries?limit=            {"queries":[campaign summaries]}
//	          GET  /api/v1/queries/{id}              campaign with per-host status, "columns" and rows (keys in column order)
//	          GET  /api/v1/queries/{id}/stream?events=all|summary   text/event-stream: result, status, done
//	          GET  /api/v1/carves                    {"carves":[...]}
//	          GET  /api/v1/config                    fleet configuration and version
//	          GET  /api/v1/config/versions[/{n}]
//	          GET  /api/v1/schema                    {"live":[agent tables],"events":[event store tables]}
//	          GET  /api/v1/hosts/{id}/health?limit=  {"online","last_seen","counters":[{"source","counters","inactive"}],"lost","lines":[status lines]}
//	          GET  /api/v1/rules                     {"rules":[rule + "has_source","can_toggle"]}
//	          GET  /api/v1/rules/{id}/source         {"id","yaml"}
//	          GET  /api/v1/suppressions?expired=1    {"suppressions":[...]}, newest first; expired ones only with expired=1
//	          GET  /api/v1/outputs                   {"configured","outputs":[{"name","kind","sent","attempts","failures","dead_lettered","dropped","queued"}]}
//	operator  POST /api/v1/queries                   {"sql","hosts":[id|identifier|hostname],"all"} -> 201 {"id","hosts"};
//	                                                 with Accept: text/event-stream, 201 and the query's events in one
//	                                                 request: created {"id","total","pending","offline"}, then result,
//	                                                 status, done as from .../stream (vigil query uses this)
//	          PATCH /api/v1/alerts/{id}              {"status","assignee","close_reason"}
//	          POST /api/v1/alerts/bulk               {"ids":[...],"status","assignee","close_reason"} -> {"updated","failed":{id:why}}
//	          GET  /api/v1/carves/{id}/data          the carved bytes (audited)
//	          POST /api/v1/events/query              {"sql"} -> {"columns","rows","truncated"}: one read-only SELECT (audited)
//	          GET  /api/v1/hosts/{id}/timeline?at=&before=&after=   {"host","from","to","events":[{"time","kind","table","event_id","fields"}]}
//	          POST /api/v1/rules/test                {"yaml","limit"} -> {"title","table","sql","columns","rows","truncated"}
//	          POST /api/v1/suppressions              {"rule_id","host","field","value","reason","expires_in"|"expires_at"} -> 201 suppression (audited)
//	          DELETE /api/v1/suppressions/{id}       expire it now; it stays listed with its hits (audited)
//	admin     PUT  /api/v1/rules/{id}/enabled        {"enabled"}
//	          PUT  /api/v1/config                    {"config","base_version","comment"} (409 if base is stale)
//	          PUT  /api/v1/hosts/{id}/labels         {"labels":[...]}
//	          POST /api/v1/hosts/{id}/revoke         revoke node keys: the agent must enroll again
//	          DELETE /api/v1/hosts/{id}
//	          GET|POST /api/v1/tokens, DELETE /api/v1/tokens/{id}
//	          GET|POST /api/v1/enroll-secrets, DELETE /api/v1/enroll-secrets/{name}
//	          GET  /api/v1/audit?after=&limit=&action=&format=json|ndjson
//	          POST /api/v1/outputs/{name}/test       send one test alert -> {"ok","output"}, or 502 {"error": the output's error} (audited)
//	          GET  /api/v1/dead-letters?limit=       {"dead_letters":[{"id","output","kind","payload","error","attempts","created_at"}]}
//	          POST /api/v1/dead-letters/{id}/redeliver   send once more -> {"ok","output"} and delete it, or 502 and keep it (audited)
//
// The stream of a live query replays what already happened, then sends
// events as hosts answer: "result" {"host_id","hostname","columns","rows"}
// for a host that succeeded (columns: the SELECT's column order, when the
// host's answer gave it; each row's keys come in that order), "status" {"host_id","hostname","status","error"}
// once per host (ok, error, offline, timeout), and finally "done"
// {"total","ok","error","timeout","offline"}. With ?events=summary (on
// the stream or on a streamed POST) it sends neither rows nor statuses:
// "progress" {"total","pending","ok","error","timeout","offline"} at most
// every 250 ms while hosts answer, then done; a watcher of a campaign to
// thousands of hosts reads the rows later from GET /api/v1/queries/{id}.
// Hosts offline when the query
// starts (no check-in within control.Options.OfflineAfter) are reported
// offline at once and never sent the query; the others have
// control.Options.QueryTimeout (default 90 s; vigil server --query-timeout) to answer, then time out.
//
// The console's endpoints read what Options gives them: Events (the event
// store, for the explorer, timelines and rule tests), Tables (agent table
// schemas for completion), Rules, RuleSource and SetRuleEnabled (the
// detection engine). One that is not given answers 501. A timeline shows
// processes, connections, files and logins of one host from at-before to
// at+after (default 15 minutes each, at most 7 days), oldest first, up to
// 500 events per table; its SQL takes the request's values as parameters
// only. A rule test compiles the YAML for the store's dialect and runs it
// without alerting or moving a watermark.
//
// A suppression silences future matches of a rule (rule_id), on a host
// (host id or hostname), whose event field equals a value (field and
// value), every criterion given holding; matches it silences open no
// alert and count as its hits. It needs a reason and an expiry at most
// MaxSuppression away (expires_in takes Go durations and whole days,
// "7d"). Outputs come from Options.Outputs (vigil server --outputs FILE):
// without them the list is empty and test sends and redeliveries answer
// 501. A test send and a redelivery try once, without retry, so the
// person gets the output's answer at once; a redelivery that fails keeps
// the dead letter as it was (no copy), one that works deletes it; a dead
// letter whose output is no longer configured is 409.
//
// API.AgentDrops is not an endpoint: it sums the agents' reported event
// losses per source from their status lines in the store, for the
// metrics package (vigil_agent_dropped_events).
//
// The console itself (package files under console/: JavaScript modules and
// CSS, embedded, no build step) is served at / unless Options.NoConsole,
// with a Content-Security-Policy that allows only its own files. It keeps
// the token a person pastes in sessionStorage and calls the API above.
package web
