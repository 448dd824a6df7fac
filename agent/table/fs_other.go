//go:build !linux

package table

import "os"

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
