//go:build !linux

package event

import (
	"context"
	"log/slog"
	"os"
	"strconv"
)

func startFiles(ctx context.Context, log *slog.Logger, sink Sink, spec fimSpec, st starters) (source, error) {
	return nil, ErrUnsupported
}

func statInto(row map[string]string, fi os.FileInfo) {
	row["size"] = strconv.FormatInt(fi.Size(), 10)
	row["mtime"] = strconv.FormatInt(fi.ModTime().Unix(), 10)
}
