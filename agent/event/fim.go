package event

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// File actions, as osquery's file_events reports them.
const (
	ActionCreated    = "CREATED"
	ActionUpdated    = "UPDATED"
	ActionDeleted    = "DELETED"
	ActionMovedFrom  = "MOVED_FROM"
	ActionMovedTo    = "MOVED_TO"
	ActionAttributes = "ATTRIBUTES_MODIFIED"
)

// hashMax is the largest file hashed for file_events (bigger files get
// hashed=0), so one large write cannot stall the event reader.
const hashMax = 16 << 20

// watchKind is how a file_paths entry matches.
type watchKind int

const (
	watchFile      watchKind = iota // exact path
	watchDir                        // "dir/%": entries directly in dir
	watchRecursive                  // "dir/%%": everything under dir
)

type watch struct {
	category string
	kind     watchKind
	path     string // file or directory, cleaned
}

// fimSpec is the parsed file_paths/exclude_paths of a config.
type fimSpec struct {
	watches []watch
	exclude map[string][]string // category -> patterns
}

// parseFilePaths expands osquery FIM paths: "%%" is recursive, "%" one
// level, "*" a glob (expanded now; paths created later under a glob are not
// watched, as in osquery until the next config refresh).
func parseFilePaths(paths, exclude map[string][]string) fimSpec {
	spec := fimSpec{exclude: exclude}
	cats := make([]string, 0, len(paths))
	for c := range paths {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, cat := range cats {
		for _, p := range paths[cat] {
			kind := watchFile
			switch {
			case strings.HasSuffix(p, "/%%"):
				kind, p = watchRecursive, strings.TrimSuffix(p, "/%%")
			case strings.HasSuffix(p, "%%"):
				kind, p = watchRecursive, strings.TrimSuffix(p, "%%")
			case strings.HasSuffix(p, "/%"):
				kind, p = watchDir, strings.TrimSuffix(p, "/%")
			case strings.HasSuffix(p, "%"):
				kind, p = watchDir, strings.TrimSuffix(p, "%")
			}
			if p == "" {
				p = "/"
			}
			expanded := []string{p}
			if strings.ContainsAny(p, "*?[") {
				expanded, _ = filepath.Glob(p)
			}
			for _, e := range expanded {
				spec.watches = append(spec.watches, watch{category: cat, kind: kind, path: filepath.Clean(e)})
			}
		}
	}
	return spec
}

// dirs returns the directories to watch: parents of file watches, the
// directory of "%" watches and every directory under "%%" watches.
func (s fimSpec) dirs() []string {
	set := map[string]bool{}
	for _, w := range s.watches {
		switch w.kind {
		case watchFile:
			set[filepath.Dir(w.path)] = true
		case watchDir:
			set[w.path] = true
		case watchRecursive:
			_ = filepath.WalkDir(w.path, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					set[p] = true
				}
				return nil
			})
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// match returns the category of path, or "" if no watch covers it or it is
// excluded.
func (s fimSpec) match(path string) string {
	for _, w := range s.watches {
		ok := false
		switch w.kind {
		case watchFile:
			ok = path == w.path
		case watchDir:
			ok = filepath.Dir(path) == w.path || path == w.path
		case watchRecursive:
			ok = path == w.path || strings.HasPrefix(path, strings.TrimSuffix(w.path, "/")+"/")
		}
		if ok && !s.excluded(w.category, path) {
			return w.category
		}
	}
	return ""
}

func (s fimSpec) excluded(cat, path string) bool {
	for _, pat := range s.exclude[cat] {
		pat = strings.TrimSuffix(strings.TrimSuffix(pat, "%"), "%")
		if path == pat || strings.HasPrefix(path, strings.TrimSuffix(pat, "/")+"/") {
			return true
		}
		if ok, _ := filepath.Match(pat, path); ok {
			return true
		}
	}
	return false
}

// recursiveUnder reports whether new directory dir must be watched because
// a "%%" watch covers it.
func (s fimSpec) recursiveUnder(dir string) bool {
	for _, w := range s.watches {
		if w.kind == watchRecursive && (dir == w.path || strings.HasPrefix(dir, strings.TrimSuffix(w.path, "/")+"/")) {
			return true
		}
	}
	return false
}

// fsEvent is one notification, normalised from fanotify or inotify.
type fsEvent struct {
	dir, name                                                          string
	created, deleted, movedFrom, movedTo, modified, closeWrite, attrib bool
	isDir                                                              bool
	pid                                                                int // 0 when unknown (inotify)
}

// fsBackend is a kernel notification interface (fanotify, inotify).
type fsBackend interface {
	name() string
	add(dir string) error
	// read waits up to a short timeout and returns the events read and how
	// many were lost to a queue overflow.
	read() ([]fsEvent, int, error)
	close() error
}

// fimRow builds a file_events row, with the file's metadata and hashes when
// it still exists.
func fimRow(path, category, action string, pid int, t time.Time) map[string]string {
	row := map[string]string{
		"target_path": path, "category": category, "action": action, "transaction_id": "0",
		"inode": "", "uid": "", "gid": "", "mode": "", "size": "", "atime": "", "mtime": "", "ctime": "",
		"md5": "", "sha1": "", "sha256": "", "hashed": "0",
		"time": strconv.FormatInt(t.Unix(), 10),
	}
	if pid > 0 {
		// Not an osquery column; kept for consumers that want the actor.
		row["pid"] = strconv.Itoa(pid)
	}
	if action == ActionDeleted || action == ActionMovedFrom {
		return row
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return row
	}
	statInto(row, fi)
	if fi.Mode().IsRegular() && fi.Size() <= hashMax {
		row["hashed"] = "-1"
		if f, err := os.Open(path); err == nil {
			hs := []hash.Hash{md5.New(), sha1.New(), sha256.New()}
			_, err := io.Copy(io.MultiWriter(hs[0], hs[1], hs[2]), f)
			f.Close()
			if err == nil {
				row["md5"] = hex.EncodeToString(hs[0].Sum(nil))
				row["sha1"] = hex.EncodeToString(hs[1].Sum(nil))
				row["sha256"] = hex.EncodeToString(hs[2].Sum(nil))
				row["hashed"] = "1"
			}
		}
	}
	return row
}

// pendingUpdates holds files modified but not yet closed: a write session
// ending in close gives one UPDATED row at close; a file kept open (a log)
// gives at most one row per window.
type pendingUpdates struct {
	mu     sync.Mutex
	window time.Duration
	m      map[string]pendingUpdate
}

type pendingUpdate struct {
	category string
	pid      int
	since    time.Time
}

func newPendingUpdates(window time.Duration) *pendingUpdates {
	return &pendingUpdates{window: window, m: map[string]pendingUpdate{}}
}

func (p *pendingUpdates) modified(path, category string, pid int, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[path]; !ok {
		p.m[path] = pendingUpdate{category: category, pid: pid, since: now}
	}
}

// closed forgets path (its close gives the row).
func (p *pendingUpdates) closed(path string) {
	p.mu.Lock()
	delete(p.m, path)
	p.mu.Unlock()
}

// due removes and returns the modifications older than the window.
func (p *pendingUpdates) due(now time.Time) map[string]pendingUpdate {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out map[string]pendingUpdate
	for path, u := range p.m {
		if now.Sub(u.since) >= p.window {
			if out == nil {
				out = map[string]pendingUpdate{}
			}
			out[path] = u
			delete(p.m, path)
		}
	}
	return out
}
