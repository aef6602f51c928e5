package platform

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/provision"
)

// Backoff between failed provisioning attempts while connected.
const (
	provisionMinBackoff = 250 * time.Millisecond
	provisionMaxBackoff = 5 * time.Second
	provisionTimeout    = 5 * time.Second
	disconnectPoll      = 100 * time.Millisecond
)

// provisioner provisions the streams each time the client connects, for a
// platform started with [AllowNATSDown].
type provisioner struct {
	streams config.Streams
	log     zerolog.Logger
	kick    chan struct{} // one pending "connected" signal
	nc      *nats.Conn
	js      jetstream.JetStream
	// skipFirst: Start provisioned synchronously, so the signal of the
	// initial connect (always the first one) has nothing left to do.
	skipFirst bool
}

// wake signals a (re)connect; it never blocks (it runs on the client's
// callback goroutine).
func (p *provisioner) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run provisions after every connect signal until ctx is done.
func (p *provisioner) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		if p.skipFirst {
			p.skipFirst = false
			continue
		}
		p.ensure(ctx)
	}
}

// ensure provisions the streams, retrying with backoff while connected. It
// logs the first failure of an episode as a warning and the rest at debug
// level, and the recovery; when the connection drops it gives up until the
// next connect signal.
func (p *provisioner) ensure(ctx context.Context) {
	delay := provisionMinBackoff
	for failed := 0; ; failed++ {
		if !p.nc.IsConnected() {
			return
		}
		err := p.attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil && !p.nc.IsConnected() {
			// Cut off by a disconnect: the next connect signal retries.
			p.log.Debug().Err(err).Msg("provision streams interrupted by a disconnect")
			return
		}
		if err == nil {
			ev := p.log.Debug()
			if failed > 0 {
				ev = p.log.Info().Int("failed_attempts", failed)
			}
			ev.Msg("streams provisioned")
			return
		}
		ev := p.log.Debug()
		if failed == 0 {
			ev = p.log.Warn()
		}
		ev.Err(err).Int("attempt", failed+1).Msg("provision streams failed: retrying with backoff")
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, provisionMaxBackoff)
	}
}

// attempt provisions once, bounded by provisionTimeout, and gives up as
// soon as the connection drops: a request in flight then gets no answer.
func (p *provisioner) attempt(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(disconnectPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if !p.nc.IsConnected() {
					cancel()
					return
				}
			}
		}
	}()
	return provision.Streams(ctx, p.js, p.streams)
}
