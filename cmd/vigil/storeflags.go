package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
	"github.com/vigilhq/vigil/store/clickhouse"
	"github.com/vigilhq/vigil/store/duckdb"
	"github.com/vigilhq/vigil/stream/kafka"
)

// eventStore is what the server needs of an event store: ingest appends,
// detection and the people API query in the store's dialect.
type eventStore interface {
	store.Appender
	store.Querier
	Dialect() store.Dialect
	Close() error
}

var (
	_ eventStore = (*duckdb.Store)(nil)
	_ eventStore = (*clickhouse.Store)(nil)
)

// clickhousePasswordEnv holds the ClickHouse password when the --store URL
// has none, so that it need not appear in the process list.
const clickhousePasswordEnv = "VIGIL_CLICKHOUSE_PASSWORD"

// storeFlagHelp documents --store.
const storeFlagHelp = `event store: "duckdb" (DATA/events.duckdb), "duckdb:PATH", either with
?memory_limit=1GB to change DuckDB's memory cap (default 256MB), or
clickhouse://HOST:PORT/DATABASE?user=U&password=P&secure=1 (HTTP interface, default port 8123;
the password may come from ` + clickhousePasswordEnv + ` instead)`

// streamFlagHelp documents --stream.
const streamFlagHelp = `optional streaming layer between ingest and the store:
kafka://BROKER:9092[,BROKER2:9092]/TOPIC[?group=G] (consumer group default "vigil-store")`

// openStore opens the event store a --store value names.
func openStore(ctx context.Context, spec, dataDir string, log *slog.Logger) (eventStore, error) {
	switch {
	case spec == "" || spec == "duckdb" || strings.HasPrefix(spec, "duckdb:") || strings.HasPrefix(spec, "duckdb?"):
		o := duckdb.Options{Path: filepath.Join(dataDir, "events.duckdb"), Logger: log}
		rest := strings.TrimPrefix(spec, "duckdb")
		rest, query, _ := strings.Cut(rest, "?")
		if p := strings.TrimPrefix(strings.TrimPrefix(rest, ":"), "//"); p != "" {
			o.Path = p
		} else if rest != "" {
			return nil, fmt.Errorf("--store %q: no path after duckdb: %w", spec, vigil.ErrInvalid)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, fmt.Errorf("--store %q: %w: %w", spec, err, vigil.ErrInvalid)
		}
		o.MemoryLimit = q.Get("memory_limit")
		return orNil(duckdb.Open(ctx, o))
	case strings.HasPrefix(spec, "clickhouse://"):
		o, err := parseClickHouseURL(spec)
		if err != nil {
			return nil, err
		}
		o.Logger = log
		return orNil(clickhouse.Open(ctx, o))
	}
	return nil, fmt.Errorf("--store %q: want duckdb, duckdb:PATH or clickhouse://host:port/db: %w", redact(spec), vigil.ErrInvalid)
}

// orNil keeps a failed Open from becoming a non-nil interface holding a
// nil pointer.
func orNil[S eventStore](s S, err error) (eventStore, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// parseClickHouseURL turns clickhouse://user:pass@host:port/db?secure=1
// (or ?user=&password=) into store options.
func parseClickHouseURL(spec string) (clickhouse.Options, error) {
	var o clickhouse.Options
	u, err := url.Parse(spec)
	if err != nil {
		return o, fmt.Errorf("--store: %s is not a URL: %w", redact(spec), vigil.ErrInvalid)
	}
	if u.Host == "" {
		return o, fmt.Errorf("--store %s: no host: %w", redact(spec), vigil.ErrInvalid)
	}
	q := u.Query()
	scheme := "http"
	if q.Get("secure") == "1" || q.Get("secure") == "true" {
		scheme = "https"
	}
	host := u.Host
	if u.Port() == "" {
		host += ":8123"
	}
	o.URL = scheme + "://" + host
	o.Database = strings.Trim(u.Path, "/")
	o.User = q.Get("user")
	o.Password = q.Get("password")
	if u.User != nil {
		o.User = u.User.Username()
		if p, ok := u.User.Password(); ok {
			o.Password = p
		}
	}
	if o.Password == "" {
		o.Password = os.Getenv(clickhousePasswordEnv)
	}
	return o, nil
}

// streamConfig is a parsed --stream value.
type streamConfig struct {
	Brokers []string
	Topic   string
	Group   string
}

func parseStreamURL(spec string) (streamConfig, error) {
	var c streamConfig
	u, err := url.Parse(spec)
	if err != nil || u.Scheme != "kafka" {
		return c, fmt.Errorf("--stream %q: want kafka://broker:9092/topic: %w", spec, vigil.ErrInvalid)
	}
	for _, b := range strings.Split(u.Host, ",") {
		if b = strings.TrimSpace(b); b != "" {
			if !strings.Contains(b, ":") {
				b += ":9092"
			}
			c.Brokers = append(c.Brokers, b)
		}
	}
	c.Topic = strings.Trim(u.Path, "/")
	c.Group = u.Query().Get("group")
	if c.Group == "" {
		c.Group = "vigil-store"
	}
	if len(c.Brokers) == 0 || c.Topic == "" || strings.Contains(c.Topic, "/") {
		return c, fmt.Errorf("--stream %q: want kafka://broker:9092/topic: %w", spec, vigil.ErrInvalid)
	}
	return c, nil
}

// openStream starts the Kafka producer (ingest's appender) and, when
// consume is set, the consumer group that moves records into st.
func openStream(cfg streamConfig, st store.Appender, consume bool, log *slog.Logger) (*kafka.Producer, *kafka.Consumer, error) {
	p, err := kafka.NewProducer(kafka.ProducerOptions{Brokers: cfg.Brokers, Topic: cfg.Topic, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if !consume {
		return p, nil, nil
	}
	c, err := kafka.NewConsumer(kafka.ConsumerOptions{Brokers: cfg.Brokers, Topic: cfg.Topic, Group: cfg.Group, Store: st, Logger: log})
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	return p, c, nil
}

// redact hides a password in a store URL for messages.
func redact(spec string) string {
	u, err := url.Parse(spec)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
