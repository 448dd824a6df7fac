package kafka

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
)

// ProducerOptions configures NewProducer.
type ProducerOptions struct {
	Brokers []string // seed brokers, host:port
	Topic   string
	Logger  *slog.Logger
	// Extra client options (TLS, SASL, ...), appended to Vigil's.
	Extra []kgo.Opt
}

// Producer writes batches to a topic. It is a store.Appender: Append
// returns nil only once every record of the batch is acknowledged by all
// in-sync replicas.
type Producer struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger
}

var _ store.Appender = (*Producer)(nil)

// NewProducer returns a producer; it connects lazily.
func NewProducer(opts ProducerOptions) (*Producer, error) {
	if len(opts.Brokers) == 0 || opts.Topic == "" {
		return nil, fmt.Errorf("kafka: producer needs brokers and a topic: %w", vigil.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.DefaultProduceTopic(opts.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(1 << 20),
	}, opts.Extra...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: producer: %w", err)
	}
	return &Producer{cl: cl, topic: opts.Topic, log: opts.Logger.With("component", "stream.kafka.producer")}, nil
}

// Append produces one record per row of b, keyed by host id, and waits
// for all acknowledgements. A failure wraps vigil.ErrUnavailable (the
// caller retries; ids make the retry harmless).
func (p *Producer) Append(ctx context.Context, b vigil.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	recs := make([]*kgo.Record, 0, b.Len())
	for _, e := range b.Events {
		v, err := EncodeEvent(e)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Key: []byte(e.HostID), Value: v})
	}
	for _, r := range b.Results {
		v, err := EncodeResult(r)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Key: []byte(r.HostID), Value: v})
	}
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("kafka: producing %d records to %s: %w: %w", len(recs), p.topic, vigil.ErrUnavailable, err)
	}
	return nil
}

// Close flushes and closes the client.
func (p *Producer) Close() error {
	p.cl.Close()
	return nil
}
