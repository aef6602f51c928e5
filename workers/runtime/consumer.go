package runtime

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// ConsumerConfig is the durable pull consumer of w on FORGE_EVENTS: named
// after the worker, filtered to its subjects, explicit ack with
// Settings.AckWait. Every replica of w binds to it and shares its messages.
//
// The server's MaxDeliver is unlimited: the runtime counts deliveries
// itself and dead-letters an event at delivery Settings.MaxDeliver, or at
// once when a replica died during the last allowed one, so no event is ever
// dropped by the server without a dead letter.
func ConsumerConfig(w Worker) jetstream.ConsumerConfig {
	s := w.Settings
	c := jetstream.ConsumerConfig{
		Durable:       w.Name,
		Description:   "forgebus worker " + w.Name,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: max(1000, 4*s.MaxInFlight),
	}
	if len(w.Subjects) == 1 {
		c.FilterSubject = w.Subjects[0]
	} else {
		c.FilterSubjects = w.Subjects
	}
	return c
}

// consumerStream is the stream every worker consumer reads.
const consumerStream = schemas.StreamEvents
