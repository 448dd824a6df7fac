package spool_test

import (
	"fmt"
	"os"

	"github.com/vigilhq/vigil/agent/spool"
)

func Example() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	s.Append([]byte(`{"line":1}`), []byte(`{"line":2}`))
	s.Sync() // durable from here

	recs, _ := s.Peek(10, 1<<20) // send these...
	for _, r := range recs {
		fmt.Println(r.Seq, string(r.Data))
	}
	s.Ack(recs[len(recs)-1].Seq) // ...and drop them once acknowledged
	fmt.Println("pending:", s.Len())
	// Output:
	// 1 {"line":1}
	// 2 {"line":2}
	// pending: 0
}
