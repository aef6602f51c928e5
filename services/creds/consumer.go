package creds

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// SubscriberConsumer is a subscriber's durable pull consumer on stream,
// filtered to its subjects there. The operator creates it ("forgebus creds
// issue"): a subscriber may bind to it, pull and ack, but not create or
// change a consumer, whose body (deliver subject, policies, limits) no
// subject permission can check.
func SubscriberConsumer(s Spec, stream string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        s.ConsumerName(),
		Description:    "forgebus subscriber " + s.Name,
		FilterSubjects: s.SubscriberFilters()[stream],
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// EnsureSubscriberConsumers creates or updates s's consumers, over an
// operator's connection.
func EnsureSubscriberConsumers(ctx context.Context, js jetstream.JetStream, s Spec) ([]string, error) {
	var made []string
	for stream := range s.SubscriberFilters() {
		if _, err := js.CreateOrUpdateConsumer(ctx, stream, SubscriberConsumer(s, stream)); err != nil {
			return made, fmt.Errorf("consumer %s on %s: %w", s.ConsumerName(), stream, err)
		}
		made = append(made, stream+"/"+s.ConsumerName())
	}
	return made, nil
}
