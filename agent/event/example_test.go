package event_test

import (
	"fmt"

	"github.com/vigilhq/vigil/agent/event"
)

func ExampleBuffer() {
	b := event.NewBuffer(event.BufferOptions{Max: 1000})
	b.Add("process_events", map[string]string{"pid": "42", "cmdline": "/bin/true"})

	rows, cursor := b.Rows("process_events", 0) // a consumer's first read
	fmt.Println(len(rows), rows[0]["cmdline"], rows[0]["eid"])

	b.Add("process_events", map[string]string{"pid": "43", "cmdline": "/bin/false"})
	rows, _ = b.Rows("process_events", cursor) // only what is new to it
	fmt.Println(len(rows), rows[0]["cmdline"])
	// Output:
	// 1 /bin/true 0000000001
	// 1 /bin/false
}
