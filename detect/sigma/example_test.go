package sigma_test

import (
	"fmt"

	"github.com/vigilhq/vigil/detect/sigma"
)

func Example() {
	src := `title: Netcat with exec
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: /nc
        CommandLine|contains: ' -e '
    filter:
        User: root
    condition: selection and not filter
`
	rule, err := sigma.ParseOne("nc.yml", []byte(src))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range []sigma.Dialect{sigma.DuckDB{}, sigma.ClickHouse{}} {
		q, err := sigma.Compile(rule, sigma.Options{Dialect: d})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(sigma.SelectSQL(d, q))
	}
	// Output:
	// SELECT * FROM process_creation WHERE ((ends_with(lower(process_executable), '/nc') AND contains(lower(process_command_line), ' -e ')) AND NOT coalesce(lower(user_name) = 'root', false))
	// SELECT * FROM process_creation WHERE ((endsWith(lowerUTF8(process_executable), lowerUTF8('/nc')) AND positionCaseInsensitiveUTF8(process_command_line, ' -e ') > 0) AND NOT coalesce(lowerUTF8(user_name) = 'root', 0))
}

func ExampleParse_errors() {
	_, errs := sigma.Parse("rules/x.yml", []byte(`title: Typo
logsource: {product: linux, category: process_creation}
detection:
  selection:
    CommandLine|contians: curl
  condition: selection
`))
	for _, err := range errs {
		fmt.Println(err)
	}
	// Output:
	// rules/x.yml:5:17: unknown modifier "contians" (did you mean "contains"?)
}
