// Command vigil-agent is Vigil's endpoint agent: osquery-compatible tables,
// real-time events, the query schedule and the uplink to a Vigil (or any
// osquery TLS) server. It also answers one-off queries and lists tables.
//
//	vigil-agent [run] --tls_hostname=host:port --tls_server_certs=ca.pem --enroll_secret_path=secret
//	vigil-agent query [--json|--csv] "SELECT * FROM processes"
//	vigil-agent tables [--json]
//	vigil-agent shell
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "vigil-agent:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := m.Run(ctx)
	stop()
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vigil-agent:", err)
		os.Exit(1)
	}
}
