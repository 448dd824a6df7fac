package sigma_test

import (
	"slices"
	"testing"
)

// foldCases check the case-insensitive forms on non-ASCII text, escapes
// and lists; they run on DuckDB and ClickHouse.
var foldCases = []matchCase{
	{"contains folds non-ASCII letters",
		"  sel:\n    CommandLine|contains: 'ÄÖÜ'\n  condition: sel",
		[]row{cmd("xäöüy"), cmd("XÄÖÜY"), cmd("aou"), cmd("xÄöÜ")}, []int{1, 2, 4}},
	{"Greek capital sigma lowers to medial sigma only",
		"  sel:\n    CommandLine: 'ΟΔΟΣ'\n  condition: sel",
		[]row{cmd("οδοσ"), cmd("ΟΔΟΣ"), cmd("οδος"), cmd("Οδοσ")}, []int{1, 2, 4}},
	{"sharp s is not SS",
		"  sel:\n    CommandLine|contains: 'STRASSE'\n  condition: sel",
		[]row{cmd("straße"), cmd("Strasse"), cmd("STRAßE")}, []int{2}},
	{"Cyrillic startswith and endswith",
		"  sel:\n    CommandLine|startswith: 'ПРИВЕТ'\n    Image|endswith: 'МИР'\n  condition: sel",
		[]row{{"process_command_line": "привет всем", "process_executable": "/bin/мир"}, {"process_command_line": "ПРИВЕТ", "process_executable": "/bin/МИРа"}, {"process_command_line": "Привет", "process_executable": "Мир"}}, []int{1, 3}},
	{"cased keeps non-ASCII case",
		"  sel:\n    CommandLine|contains|cased: 'Ä'\n  condition: sel",
		[]row{cmd("xÄy"), cmd("xäy")}, []int{1}},
	{"question mark is one non-ASCII character",
		"  sel:\n    CommandLine: 'a?C'\n  condition: sel",
		[]row{cmd("aÄc"), cmd("aäc"), cmd("ac"), cmd("aÄÄc")}, []int{1, 2}},
	{"wildcards between non-ASCII literals",
		"  sel:\n    CommandLine: 'Ä*Ö'\n  condition: sel",
		[]row{cmd("äxyzö"), cmd("ÄÖ"), cmd("äxyzöx"), cmd("xäö")}, []int{1, 2}},
	{"SQL wildcards and backslashes in a plain value",
		"  sel:\n    CommandLine: 'C:\\TEMP\\100%_x'\n  condition: sel",
		[]row{cmd(`c:\temp\100%_x`), cmd(`c:\temp\100ab_x`), cmd(`c:\temp\1000_x`), cmd(`C:\TEMP\100%_X`)}, []int{1, 4}},
	{"SQL wildcards next to Sigma wildcards",
		"  sel:\n    CommandLine: '*50%*_\\*'\n  condition: sel",
		[]row{cmd("x 50% y _*"), cmd("x 50a y _*"), cmd("x 50% y a*"), cmd("x 50% y _x")}, []int{1}},
	{"backslash before a wildcard in a wildcard pattern",
		"  sel:\n    CommandLine: 'x\\\\*Y'\n  condition: sel",
		[]row{cmd(`x\aay`), cmd(`xaay`), cmd(`x\Y`)}, []int{1, 3}},
	{"list of plain values is one set, case-insensitively",
		"  sel:\n    Image:\n      - '/BIN/A'\n      - '/bin/b'\n      - '/bin/Ü'\n  condition: sel",
		[]row{{"process_executable": "/bin/a"}, {"process_executable": "/bin/B"}, {"process_executable": "/bin/ü"}, {"process_executable": "/bin/c"}, {"process_executable": "/bin/a/"}}, []int{1, 2, 3}},
	{"list mixing plain values, places and wildcards",
		"  sel:\n    CommandLine:\n      - 'exact'\n      - 'pre*'\n      - '*SUF'\n      - '*mid*'\n      - 'w?ld'\n  condition: sel",
		[]row{cmd("EXACT"), cmd("prefix"), cmd("the suf"), cmd("a MID b"), cmd("WILD"), cmd("exactly"), cmd("none")}, []int{1, 2, 3, 4, 5}},
	{"not of a list keeps NULL fields",
		"  sel:\n    CommandLine|contains: x\n  filter:\n    ParentImage:\n      - '/bin/a'\n      - '/bin/b'\n  condition: sel and not filter",
		[]row{cmd("x1"), {"process_command_line": "x2", "process_parent_executable": "/BIN/A"}, {"process_command_line": "x3", "process_parent_executable": "/bin/c"}}, []int{1, 3}},
	{"neq of a list",
		"  sel:\n    CommandLine|contains: x\n    ParentImage|neq:\n      - '/bin/a'\n      - '/bin/b'\n  condition: sel",
		[]row{cmd("x1"), {"process_command_line": "x2", "process_parent_executable": "/BIN/b"}, {"process_command_line": "x3", "process_parent_executable": "/bin/c"}}, []int{1, 3}},
	{"empty contains matches every present value",
		"  sel:\n    ParentCommandLine|contains: ''\n  condition: sel",
		[]row{cmd("a"), {"process_parent_command_line": ""}, {"process_parent_command_line": "x"}}, []int{2, 3}},
	{"long contains list with regular expression metacharacters",
		"  sel:\n    CommandLine|contains:\n      - 'A.B'\n      - '(X)'\n      - 'Ä+'\n      - 'a|b'\n      - '[z]'\n      - '^q$'\n      - '\\d'\n  condition: sel",
		[]row{cmd("1 a.b 2"), cmd("1 aXb 2"), cmd("(x)"), cmd("x"), cmd("ää+"), cmd("ää"), cmd("A|B"), cmd("a"), cmd("[Z]"), cmd("z"), cmd("^Q$"), cmd("q"), cmd(`\D`), cmd("5")},
		[]int{1, 3, 5, 7, 9, 11, 13}},
	{"quotes survive lowering",
		"  sel:\n    CommandLine|contains: \"IT'S\"\n  condition: sel",
		[]row{cmd("it's"), cmd("its")}, []int{1}},
}

// duckOnlyFoldCases hold letters whose lowercase has another UTF-8
// length; ClickHouse's lowerUTF8 leaves those unchanged, DuckDB lowers
// them as Go does.
var duckOnlyFoldCases = []matchCase{
	{"dotted capital I lowers to i",
		"  sel:\n    CommandLine: 'İSTANBUL'\n  condition: sel",
		[]row{cmd("istanbul"), cmd("İstanbul"), cmd("ıstanbul"), cmd("ISTANBUL")}, []int{1, 2, 4}},
	{"Kelvin sign lowers to k",
		"  sel:\n    CommandLine|contains: 'K'\n  condition: sel",
		[]row{cmd("k"), cmd("K"), cmd("\u212a"), cmd("x")}, []int{1, 2, 3}},
	{"capital sharp s lowers to sharp s",
		"  sel:\n    CommandLine|endswith: 'ß'\n  condition: sel",
		[]row{cmd("STRAẞ"), cmd("straß"), cmd("strass")}, []int{1, 2}},
}

func TestFoldOnDuckDB(t *testing.T) {
	db := openProcessDB(t)
	for _, tc := range append(slices.Clone(foldCases), duckOnlyFoldCases...) {
		t.Run(tc.name, func(t *testing.T) {
			got := matchRows(t, db, ruleYAML(tc.detection), tc.rows)
			if !slices.Equal(got, tc.want) {
				t.Errorf("matched rows %v, want %v", got, tc.want)
			}
		})
	}
}
