package output_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vigilhq/vigil/detect/output"
)

// A receiver of Vigil's webhook checks the signature before trusting the
// body.
func ExampleVerify() {
	secret := []byte("shared secret from the outputs file")
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			http.Error(w, "reading body", http.StatusBadRequest)
			return
		}
		if err := output.Verify(secret, r.Header.Get(output.SignatureTimestampHeader),
			r.Header.Get(output.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		// body is a WebhookPayload.
	}
	_ = handler

	// The signature of a body at a time, as Python computes it:
	// hmac.new(b"k", b"1795000000." + body, hashlib.sha256).hexdigest()
	at := time.Unix(1795000000, 0)
	fmt.Println(output.Sign([]byte("k"), at, []byte(`{"version":1}`)))
	// Output: sha256=c4b690e66e9fd9be3e867ae9e4f69ef9369ed6f45bd752cfb315274685985706
}
