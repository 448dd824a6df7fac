// Package sigma parses Sigma rules (YAML, with a file, line and column for
// every error) into an AST and compiles them to SQL for Vigil's event
// stores: detection rules become a boolean expression over the columns of
// the event table their logsource maps to (Query), correlation rules a
// complete SELECT over sliding windows (CorrelationQuery). Meta filters
// are AND-ed to the rules they name. Check and Convert back
// `vigil sigma check|convert`; ReadEvents and RunEvents back
// `vigil sigma test` (JSON-lines events), with Test kept for the YAML
// sample format that lists expected rules.
//
// Mappings: SchemaMapping (the default) resolves logsources to Vigil's own
// event tables (process_creation, network_connection, file_event,
// authentication); CatalogMapping to the wide Sigma catalog of the schema
// package, one table per logsource of the SigmaHQ corpus (Windows event
// logs, cloud audit logs, ...), for stores that create those tables
// (`vigil sigma check|convert|test --catalog`). A rule whose logsource has
// no table fails with an Error naming the logsource (NoTable reports it).
// ComputerName and Computer, the event's host in Sigma, resolve to the
// common hostname column in every table that maps them no other way.
// A rule's taxonomy (sigma by default) is read but not translated: fields
// resolve by name, so rules of another taxonomy compile where their field
// names are the mapping's (the v2.1 network category uses ECS names), and
// an unknown field fails, naming the taxonomy.
//
// The examples of the specification (tests/schema) are checked by
// spec_examples_test.go with base rules in testdata/spec-fixtures.
//
// Values from rules reach SQL only through each dialect's one escaping
// function (Dialect.String) and column names only from the schema package
// (through a Mapping), so a rule cannot change the structure of the SQL it
// compiles to; FuzzCompile checks that.
//
// Semantics, where the specification leaves room or converters differ:
//
//   - Matching is case-insensitive, for non-ASCII letters too, unless the
//     cased modifier is given; "case-insensitive" means both sides go
//     through the simple per-code-point lowercase mapping (no full case
//     folding: "ß" is not "ss", final and medial sigma differ). Regular
//     expressions are case-sensitive unless re|i.
//   - DuckDB: results are those of "col ILIKE pattern ESCAPE '\'", in
//     cheaper forms (see DuckDB.MatchAny): values without wildcards
//     become lower(col) = 'v' (one IN list for several), starts_with,
//     ends_with or contains over lower(col), with the value lowered in
//     Go (six or more contains values: one regexp_matches of their
//     quoted alternation over lower(col)); values with wildcards
//     lower(col) LIKE, with ESCAPE only when
//     the pattern escapes a character. Go's and DuckDB's lowercase agree
//     on every code point (tested on the engine); a value with a code
//     point unknown to Go's Unicode tables keeps ILIKE. cased uses the
//     same forms without lower().
//   - ClickHouse: lowerUTF8, positionCaseInsensitiveUTF8 and RE2 (?i);
//     lowerUTF8 leaves letters whose lowercase has another UTF-8 length
//     (İ, the Kelvin sign, ẞ) unchanged, so those fold on DuckDB only.
//   - An absent field is NULL and never matches; "not x" is
//     NOT coalesce(x, false), so negation keeps events whose field is
//     absent. neq behaves like "not" of the same match.
//   - Keyword (fieldless) searches look for each value anywhere in the
//     table's raw message column, or in every text column when the table
//     has none.
//   - base64 and base64offset values are matched case-sensitively: the
//     encoded text of "IEX" is not that of "iex".
//   - windash replaces every -, /, en dash, em dash and horizontal bar of
//     the value by a class of all five (a regular expression), not only
//     at the start of words.
//   - cidr works on the text of addresses: IPv4 ranges as dotted-decimal
//     prefixes, IPv6 ranges on the expanded 32-digit form of the address
//     (any spelling, "::" compression, zone ids).
//   - expand needs every placeholder in Options.Placeholders, else the
//     rule fails.
//   - timespan is a sliding window ending at each event; a hit is an event
//     at which the correlation's condition holds. DuckDB uses window
//     functions; ClickHouse 18.16 has none, so its queries collect each
//     group's events into an array (quadratic in a group's size) and
//     treat a NULL group-by value as an empty string. temporal_ordered checks
//     that the rules' events occur in the listed order within timespan,
//     each strictly after the previous one by (event_time, event_id): one
//     event matching two of the rules is not a chain of two.
//     value_percentile is the share (in percent) of the group's events in
//     the window that have the event's value of the field.
//     value_count does not count an empty value, on either engine
//     (ClickHouse's non-nullable columns hold a missing value as the empty
//     string).
//
// Meta filters: a filter's condition is AND-ed, as written, to the condition
// of every rule it names (pySigma's reading). The specification's own
// example ("Filter Administrator account": condition `selection` on
// `User|startswith: adm_`, described as the valid accounts) reads as if the
// filter removed what it selects; taken literally as an AND it would instead
// keep only those accounts. We follow pySigma because it is what filter
// authors test against today and because it keeps the filter's condition an
// ordinary Sigma condition with no implied negation: to drop events, write
// `condition: not selection`. A filter never widens a rule.
//
// It imports the schema and store contracts and no database code;
// detect and the CLI import it.
package sigma
