package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
)

// ConsumerOptions configures NewConsumer.
type ConsumerOptions struct {
	Brokers []string
	Topic   string
	Group   string         // consumer group; one group per store
	Store   store.Appender // where rows go
	Logger  *slog.Logger
	// MaxBatch bounds the records appended to the store in one batch
	// (default 50,000).
	MaxBatch int
	Extra    []kgo.Opt
}

// Consumer moves records from a topic into a store.
type Consumer struct {
	cl       *kgo.Client
	app      store.Appender
	log      *slog.Logger
	maxBatch int

	appended, skipped, retries atomic.Int64
}

// ConsumerStats are the consumer's counters.
type ConsumerStats struct {
	Appended int64 // rows the store confirmed
	Skipped  int64 // records that were not Vigil records, or the store refused as invalid
	Retries  int64 // store appends retried
}

// NewConsumer returns a consumer; Run does the work.
func NewConsumer(opts ConsumerOptions) (*Consumer, error) {
	if len(opts.Brokers) == 0 || opts.Topic == "" || opts.Group == "" || opts.Store == nil {
		return nil, fmt.Errorf("kafka: consumer needs brokers, a topic, a group and a store: %w", vigil.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 50_000
	}
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.ConsumeTopics(opts.Topic),
		kgo.ConsumerGroup(opts.Group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Offsets are committed by Run, after the store has the rows, and a
		// rebalance waits for that so no partition is committed by an owner
		// that lost it.
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RequireStableFetchOffsets(),
	}, opts.Extra...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: consumer: %w", err)
	}
	return &Consumer{cl: cl, app: opts.Store, log: opts.Logger.With("component", "stream.kafka.consumer"), maxBatch: opts.MaxBatch}, nil
}

// commitTimeout bounds the offset commit after a stored batch.
const commitTimeout = 10 * time.Second

// Run consumes until ctx ends. Each poll becomes one store batch; its
// offsets are committed once the store confirmed it. Store failures are
// retried with backoff; records that are not Vigil records are logged and
// skipped.
func (c *Consumer) Run(ctx context.Context) error {
	for {
		fetches := c.cl.PollRecords(ctx, c.maxBatch)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			c.cl.AllowRebalance()
			return nil
		}
		for _, fe := range fetches.Errors() {
			c.log.Warn("fetch error", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			c.cl.AllowRebalance()
			continue
		}
		var b vigil.Batch
		for _, r := range recs {
			if err := Decode(r.Value, &b); err != nil {
				c.skipped.Add(1)
				c.log.Error("skipping a record", "partition", r.Partition, "offset", r.Offset, "err", err)
			}
		}
		if err := c.appendRetry(ctx, b, true); err != nil {
			c.cl.AllowRebalance()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// The rows are stored: commit even when ctx ended meanwhile (a
		// shutdown), or the next consumer reads them all again.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		err := c.cl.CommitRecords(cctx, recs...)
		cancel()
		if err != nil {
			// A failed commit means they are read again later and
			// dropped by id.
			c.log.Warn("committing offsets", "err", err)
		}
		c.cl.AllowRebalance()
	}
}

func (c *Consumer) appendRetry(ctx context.Context, b vigil.Batch, split bool) error {
	if b.Len() == 0 {
		return nil
	}
	backoff := 50 * time.Millisecond
	for {
		err := c.app.Append(ctx, b)
		if err == nil {
			c.appended.Add(int64(b.Len()))
			return nil
		}
		if errors.Is(err, vigil.ErrInvalid) {
			if !split {
				return err
			}
			// Cannot succeed on retry: keep what can be kept, row by row.
			c.log.Error("store refused a batch; appending it row by row", "rows", b.Len(), "err", err)
			return c.appendEach(ctx, b)
		}
		c.retries.Add(1)
		c.log.Warn("store append failed; retrying", "rows", b.Len(), "in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *Consumer) appendEach(ctx context.Context, b vigil.Batch) error {
	one := func(x vigil.Batch) error {
		err := c.appendRetry(ctx, x, false)
		if errors.Is(err, vigil.ErrInvalid) {
			c.skipped.Add(1)
			c.log.Error("store refused a row; skipping it", "err", err)
			return nil
		}
		return err
	}
	for _, e := range b.Events {
		if err := one(vigil.Batch{Events: []vigil.Event{e}}); err != nil {
			return err
		}
	}
	for _, r := range b.Results {
		if err := one(vigil.Batch{Results: []vigil.ResultRow{r}}); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{Appended: c.appended.Load(), Skipped: c.skipped.Load(), Retries: c.retries.Load()}
}

// Close leaves the group and closes the client.
func (c *Consumer) Close() error {
	c.cl.Close()
	return nil
}
