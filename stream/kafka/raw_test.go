package kafka_test

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produceRaw writes a record that is not a Vigil record.
func produceRaw(ctx context.Context, brokers []string, v []byte) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr()
}
