package pki_test

import (
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/vigilhq/vigil/pki"
)

// A server keeps its CA and certificate in its data directory; clients
// (agents, the CLI) pin the CA.
func ExampleEnsure() {
	dir, _ := os.MkdirTemp("", "vigil-pki-example")
	defer os.RemoveAll(dir)
	bundle, err := pki.Ensure(dir, []string{"localhost", "127.0.0.1"})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello over TLS")
	}))
	srv.TLS = bundle.TLSConfig()
	srv.StartTLS()
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: bundle.CertPool()}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status, resp.TLS.Version >= tls.VersionTLS12)
	// Output: 200 OK true
}
