package state_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/vigilhq/vigil/state"
)

// vigil up creates the first admin token; only its hash is stored.
func ExampleDB_CreateToken() {
	dir, _ := os.MkdirTemp("", "vigil-state-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := state.Open(ctx, filepath.Join(dir, "state.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	token, err := db.CreateToken(ctx, "admin", "admin")
	if err != nil {
		log.Fatal(err)
	}
	p, err := db.Authenticate(ctx, token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Name, p.Role, p.Role.Allows(state.RoleOperator))
	// Output: admin admin true
}
