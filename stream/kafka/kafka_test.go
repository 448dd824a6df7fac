package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store/duckdb"
	"github.com/vigilhq/vigil/stream/kafka"
)

const topic = "vigil-events"

func cluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 123000000, time.UTC)

func batch(host string, from, n int) vigil.Batch {
	var b vigil.Batch
	for i := from; i < from+n; i++ {
		b.Events = append(b.Events, vigil.Event{
			ID: fmt.Sprintf("%s-%d", host, i), Table: "process_creation", HostID: host, Time: t0.Add(time.Duration(i) * time.Second),
			Fields: map[string]any{"process_pid": int64(i), "process_command_line": "curl 'x' \\ y", "hostname": host},
		})
		b.Results = append(b.Results, vigil.ResultRow{ID: fmt.Sprintf("%s-%d", host, i), HostID: host, Query: "q", Action: "added",
			Time: t0, Columns: map[string]string{"pid": fmt.Sprint(i)}})
	}
	return b
}

func openStore(t *testing.T) *duckdb.Store {
	s, err := duckdb.Open(context.Background(), duckdb.Options{Path: filepath.Join(t.TempDir(), "e.duckdb")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func runConsumer(t *testing.T, c *kafka.Consumer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			c.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitCount(t *testing.T, s *duckdb.Store, table string, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := s.Query(context.Background(), "SELECT count(*) FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rows[0][0] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v rows, want %d", table, r.Rows[0][0], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProducerToStore: batches go through Kafka into DuckDB; a batch
// produced twice (a retry) is stored once; values keep their types.
func TestProducerToStore(t *testing.T) {
	brokers := cluster(t)
	p, err := kafka.NewProducer(kafka.ProducerOptions{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	for _, h := range []string{"a", "b", "c"} {
		if err := p.Append(ctx, batch(h, 0, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Append(ctx, batch("a", 0, 100)); err != nil { // retry
		t.Fatal(err)
	}
	s := openStore(t)
	c, err := kafka.NewConsumer(kafka.ConsumerOptions{Brokers: brokers, Topic: topic, Group: "store", Store: s})
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, c)
	waitCount(t, s, "process_creation", 300)
	waitCount(t, s, "query_results", 300)
	r, err := s.Query(ctx, "SELECT process_pid, process_command_line, event_time FROM process_creation WHERE event_id = 'b-7'")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 1 || r.Rows[0][0] != int64(7) || r.Rows[0][1] != "curl 'x' \\ y" || !r.Rows[0][2].(time.Time).Equal(t0.Add(7*time.Second)) {
		t.Errorf("row b-7: %v", r.Rows)
	}
}

// TestConsumerResumesFromCommit: a new consumer in the same group goes on
// where the last one committed, and sees rows produced meanwhile.
func TestConsumerResumesFromCommit(t *testing.T) {
	brokers := cluster(t)
	p, err := kafka.NewProducer(kafka.ProducerOptions{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	if err := p.Append(ctx, batch("a", 0, 50)); err != nil {
		t.Fatal(err)
	}
	var appends atomic.Int64
	s := openStore(t)
	counting := appenderFunc(func(ctx context.Context, b vigil.Batch) error {
		appends.Add(int64(b.Len()))
		return s.Append(ctx, b)
	})
	c1, _ := kafka.NewConsumer(kafka.ConsumerOptions{Brokers: brokers, Topic: topic, Group: "g", Store: counting})
	stop := runConsumer(t, c1)
	waitCount(t, s, "process_creation", 50)
	stop()
	if err := p.Append(ctx, batch("a", 50, 50)); err != nil {
		t.Fatal(err)
	}
	c2, _ := kafka.NewConsumer(kafka.ConsumerOptions{Brokers: brokers, Topic: topic, Group: "g", Store: counting})
	runConsumer(t, c2)
	waitCount(t, s, "process_creation", 100)
	if n := appends.Load(); n != 200 {
		t.Errorf("the store was handed %d rows, want 200 (nothing read twice after the commit)", n)
	}
}

type appenderFunc func(context.Context, vigil.Batch) error

func (f appenderFunc) Append(ctx context.Context, b vigil.Batch) error { return f(ctx, b) }

// TestConsumerRetriesAndSkips: a failing store is retried (no rows lost,
// nothing committed before success); an undecodable record is skipped.
func TestConsumerRetriesAndSkips(t *testing.T) {
	brokers := cluster(t)
	p, _ := kafka.NewProducer(kafka.ProducerOptions{Brokers: brokers, Topic: topic})
	defer p.Close()
	ctx := context.Background()
	if err := p.Append(ctx, batch("a", 0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := produceRaw(ctx, brokers, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	var fails atomic.Int32
	fails.Store(2)
	flaky := appenderFunc(func(ctx context.Context, b vigil.Batch) error {
		if fails.Add(-1) >= 0 {
			return fmt.Errorf("disk full: %w", vigil.ErrUnavailable)
		}
		return s.Append(ctx, b)
	})
	c, _ := kafka.NewConsumer(kafka.ConsumerOptions{Brokers: brokers, Topic: topic, Group: "g", Store: flaky})
	stop := runConsumer(t, c)
	waitCount(t, s, "process_creation", 10)
	waitCount(t, s, "query_results", 10)
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Skipped != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	st := c.Stats()
	if st.Retries < 2 || st.Skipped != 1 || st.Appended != 20 {
		t.Errorf("stats %+v", st)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, v := range []string{
		`not json`, `{"v":2,"kind":"event","id":"x"}`, `{"v":1,"kind":"event","id":""}`,
		`{"v":1,"kind":"nope","id":"x"}`, `{"v":1,"kind":"event","id":"x","table":"nope"}`,
		`{"v":1,"kind":"event","id":"x","table":"process_creation","fields":{"nope":1}}`,
		`{"v":1,"kind":"event","id":"x","table":"process_creation","fields":{"process_pid":"12"}}`,
	} {
		var b vigil.Batch
		if err := kafka.Decode([]byte(v), &b); !errors.Is(err, kafka.ErrRecord) {
			t.Errorf("Decode(%s): %v, want ErrRecord", v, err)
		}
	}
}

// FuzzDecode: no record value panics Decode, and encoded events decode
// back to the same values.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"event","id":"x","table":"process_creation","time":"2026-01-01T00:00:00Z","fields":{"process_pid":1}}`), "cmd", int64(5))
	f.Fuzz(func(t *testing.T, raw []byte, s string, n int64) {
		var b vigil.Batch
		_ = kafka.Decode(raw, &b)
		e := vigil.Event{ID: "id", Table: "process_creation", HostID: "h", Time: t0,
			Fields: map[string]any{"process_command_line": s, "process_pid": n, "process_name": nil}}
		v, err := kafka.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		var out vigil.Batch
		if err := kafka.Decode(v, &out); err != nil {
			t.Fatalf("decoding %s: %v", v, err)
		}
		got := out.Events[0]
		if got.ID != e.ID || !got.Time.Equal(t0) || got.Fields["process_pid"] != n || got.Fields["process_name"] != nil {
			t.Fatalf("round trip: %+v", got)
		}
		// JSON replaces each invalid UTF-8 byte with U+FFFD, as []rune does.
		if gs := got.Fields["process_command_line"].(string); gs != string([]rune(s)) {
			t.Fatalf("command line %q -> %q", s, gs)
		}
	})
}

// A result row keeps its host name, epoch and counter through a record.
func TestResultRecordMetadata(t *testing.T) {
	in := vigil.ResultRow{ID: "r", HostID: "h", Hostname: "web-1", Query: "q", Action: "added", Time: t0,
		Epoch: 4, Counter: 1 << 40, Columns: map[string]string{"pid": "1"}}
	v, err := kafka.EncodeResult(in)
	if err != nil {
		t.Fatal(err)
	}
	var b vigil.Batch
	if err := kafka.Decode(v, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != 1 {
		t.Fatalf("%d results", len(b.Results))
	}
	got := b.Results[0]
	if got.Hostname != in.Hostname || got.Epoch != in.Epoch || got.Counter != in.Counter || !got.Time.Equal(in.Time) || got.Columns["pid"] != "1" {
		t.Errorf("got %+v, want %+v", got, in)
	}
}
