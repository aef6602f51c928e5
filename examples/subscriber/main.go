// Command subscriber is a minimal system that reacts to forgebus events:
// with a subscriber's credentials ("forgebus creds issue --role subscriber
// --name billing --subjects 'forge.gogs.push.acme.>'"), it binds to its own
// durable consumer on FORGE_EVENTS, prints each push event of the one
// organisation it may read, and acks it. It stops on Ctrl-C; a restart
// resumes after the last acked event.
//
//	go run . -creds billing.creds -name billing [-url nats://127.0.0.1:4222]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URLs")
	creds := flag.String("creds", "", "the subscriber's credentials file")
	name := flag.String("name", "", "the subscriber's name, as issued (--name)")
	flag.Parse()
	if *creds == "" || *name == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *creds, *name, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run consumes until ctx is done or the server closes the connection for
// good (the credentials were revoked or expired).
func run(ctx context.Context, url, creds, name string, out io.Writer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	nc, err := nats.Connect(url,
		nats.ClosedHandler(func(nc *nats.Conn) {
			cancel(fmt.Errorf("connection closed: %w", nc.LastError()))
		}),
		nats.UserCredentials(creds),
		// A subscriber may receive replies under its own prefix only.
		nats.CustomInboxPrefix("_INBOX_"+name),
		nats.Name("subscriber-"+name),
		nats.MaxReconnects(-1),
	)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// The operator created this consumer with the subscriber's filter; a
	// subscriber binds to it and cannot create or change one.
	cctx, cancelBind := context.WithTimeout(ctx, 10*time.Second)
	cons, err := js.Consumer(cctx, schemas.StreamEvents, "sub-"+name)
	cancelBind()
	if err != nil {
		return fmt.Errorf("bind consumer sub-%s: %w", name, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev schemas.Envelope
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			log.Printf("skip %s: %v", m.Subject(), err)
			_ = m.Term()
			return
		}
		fmt.Fprintf(out, "%s %s %s by %s: %s\n", ev.Time.Format(time.RFC3339), ev.Type, ev.Repo, ev.Sender, ev.Subject)
		if err := m.Ack(); err != nil {
			log.Printf("ack %s: %v", ev.ID, err)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			log.Printf("consume: %v", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
