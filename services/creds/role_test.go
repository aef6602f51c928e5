package creds

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/provision"
)

// authServer starts a JetStream server on 127.0.0.1 that trusts st's
// operator, with the streams provisioned by the operator.
func authServer(t *testing.T, st *Store) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	if err := st.Configure(opts); err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	url := srv.ClientURL()
	op := dial(t, url, st, Spec{Role: RoleOperator, Name: "op-" + strings.ToLower(t.Name()[len(t.Name())-3:])})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := provision.Streams(ctx, op.js, config.Default().Streams); err != nil {
		t.Fatalf("provision: %v", err)
	}
	return url
}

// client is a connection as one role, with the permission errors the server
// sent it.
type client struct {
	nc    *nats.Conn
	creds string
	js    jetstream.JetStream

	mu     sync.Mutex
	denied []string
}

func (c *client) violations() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.denied, "\n")
}

// dial issues spec in st and connects with it (and its inbox prefix).
func dial(t *testing.T, url string, st *Store, spec Spec) *client {
	t.Helper()
	creds, u, err := st.Issue(spec)
	if err != nil {
		t.Fatalf("issue %+v: %v", spec, err)
	}
	path := filepath.Join(t.TempDir(), u.Name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return connect(t, url, path, InboxPrefix(u.Name))
}

func connect(t *testing.T, url, path, inbox string) *client {
	t.Helper()
	c := &client{creds: path}
	nc, err := nats.Connect(url, nats.UserCredentials(path), nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.mu.Lock()
				c.denied = append(c.denied, err.Error())
				c.mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatalf("connect with %s: %v", path, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c.nc, c.js = nc, js
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// allow fails t when do fails.
func allow(t *testing.T, c *client, what string, do func(context.Context) error) {
	t.Helper()
	if err := do(ctxT(t, 5*time.Second)); err != nil {
		t.Errorf("%s: allowed, but failed: %v (violations: %s)", what, err, c.violations())
	}
}

// deny fails t unless do fails and the server reports a permissions
// violation naming subject.
func deny(t *testing.T, c *client, what, subject string, do func(context.Context) error) {
	t.Helper()
	err := do(ctxT(t, 1500*time.Millisecond))
	if err == nil {
		t.Errorf("%s: forbidden, but it worked", what)
		return
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(c.violations(), `"`+subject+`"`) {
		if time.Now().After(deadline) {
			t.Errorf("%s: failed with %v but no permissions violation for %q (got %q)", what, err, subject, c.violations())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func publish(c *client, subject string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.js.Publish(ctx, subject, []byte(`{}`))
		return err
	}
}

// corePublish publishes with no reply expected: the server answers a
// forbidden one with an asynchronous error only, which it waits for.
func corePublish(c *client, subject string) func(context.Context) error {
	return func(context.Context) error {
		if err := c.nc.Publish(subject, []byte(`{}`)); err != nil {
			return err
		}
		if err := c.nc.FlushTimeout(time.Second); err != nil {
			return err
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(c.violations(), `"`+subject+`"`) {
				return nats.ErrPermissionViolation
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
}

func streamInfo(c *client, name string) func(context.Context) error {
	return func(ctx context.Context) error { _, err := c.js.Stream(ctx, name); return err }
}

func fetchOne(c *client, stream, durable string) func(context.Context) error {
	return func(ctx context.Context) error {
		cons, err := c.js.Consumer(ctx, stream, durable)
		if err != nil {
			return err
		}
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		if m, ok := <-b.Messages(); ok {
			return m.DoubleAck(ctx)
		}
		if b.Error() != nil {
			return b.Error()
		}
		return errors.New("no message")
	}
}

const evAcme = "forge.gogs.push.acme.app"
const evOther = "forge.gogs.push.other.app"

// TestRoles proves each role's rights both ways against a real server:
// what its job needs works, and the rest is refused with a permissions
// violation.
func TestRoles(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "creds"))
	if err != nil {
		t.Fatal(err)
	}
	url := authServer(t, st)
	op := dial(t, url, st, Spec{Role: RoleOperator})

	t.Run("ingest", func(t *testing.T) {
		c := dial(t, url, st, Spec{Role: RoleIngest})
		allow(t, c, "publish an event", publish(c, evAcme))
		allow(t, c, "FORGE_EVENTS info", streamInfo(c, schemas.StreamEvents))
		deny(t, c, "publish a result", "forgebus.results.docs.acme.app", corePublish(c, "forgebus.results.docs.acme.app"))
		deny(t, c, "FORGE_AUDIT info", "$JS.API.STREAM.INFO.FORGE_AUDIT", streamInfo(c, schemas.StreamAudit))
		deny(t, c, "delete FORGE_EVENTS", "$JS.API.STREAM.DELETE.FORGE_EVENTS", func(ctx context.Context) error {
			return c.js.DeleteStream(ctx, schemas.StreamEvents)
		})
		deny(t, c, "read the env bucket", "$JS.API.STREAM.INFO.KV_forgebus_env", func(ctx context.Context) error {
			_, err := c.js.KeyValue(ctx, envBucket)
			return err
		})
	})

	// The env bucket exists, with a value, as envsync leaves it.
	env := dial(t, url, st, Spec{Role: RoleWorker, Worker: envsyncWorker})
	allow(t, env, "envsync: create and write the env bucket", func(ctx context.Context) error {
		kv, err := env.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: envBucket})
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, "acme.app.TOKEN", []byte("s3cret"))
		return err
	})

	t.Run("worker", func(t *testing.T) {
		c := dial(t, url, st, Spec{Role: RoleWorker, Worker: "docs"})
		allow(t, c, "create its consumer", func(ctx context.Context) error {
			_, err := c.js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, jetstream.ConsumerConfig{
				Durable: "docs", FilterSubject: "forge.*.push.>", AckPolicy: jetstream.AckExplicitPolicy,
			})
			return err
		})
		allow(t, op, "operator: publish an event", publish(op, evAcme))
		allow(t, c, "pull and ack", fetchOne(c, schemas.StreamEvents, "docs"))
		allow(t, c, "publish its result", publish(c, "forgebus.results.docs.acme.app"))
		allow(t, c, "publish its dead letter", publish(c, "forgebus.dlq.docs.acme.app"))
		allow(t, c, "its idempotency bucket", func(ctx context.Context) error {
			kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: idemBucketPrefix + "docs"})
			if err != nil {
				return err
			}
			if _, err := kv.Create(ctx, "ev1", nil); err != nil {
				return err
			}
			_, err = kv.Get(ctx, "ev1")
			return err
		})
		deny(t, c, "publish an event", evOther, corePublish(c, evOther))
		deny(t, c, "publish another worker's result", "forgebus.results.models.acme.app", corePublish(c, "forgebus.results.models.acme.app"))
		deny(t, c, "read the env bucket", "$JS.API.STREAM.INFO.KV_forgebus_env", func(ctx context.Context) error {
			_, err := c.js.KeyValue(ctx, envBucket)
			return err
		})
		deny(t, c, "get an env value directly", "$JS.API.DIRECT.GET.KV_forgebus_env.$KV.forgebus_env.acme.app.TOKEN", corePublish(c, "$JS.API.DIRECT.GET.KV_forgebus_env.$KV.forgebus_env.acme.app.TOKEN"))
		deny(t, c, "another worker's bucket", "$JS.API.STREAM.INFO.KV_forgebus_idem_models", func(ctx context.Context) error {
			_, err := c.js.KeyValue(ctx, idemBucketPrefix+"models")
			return err
		})
		deny(t, c, "bind another worker's consumer", "$JS.API.CONSUMER.INFO.FORGE_EVENTS.audit-events", func(ctx context.Context) error {
			_, err := c.js.Consumer(ctx, schemas.StreamEvents, "audit-events")
			return err
		})
		deny(t, c, "update FORGE_AUDIT", "$JS.API.STREAM.UPDATE.FORGE_AUDIT", func(ctx context.Context) error {
			_, err := c.js.UpdateStream(ctx, provision.AuditStream(config.Default().Streams))
			return err
		})
	})

	t.Run("audit", func(t *testing.T) {
		c := dial(t, url, st, Spec{Role: RoleAudit})
		allow(t, c, "create its consumer on FORGE_RESULTS", func(ctx context.Context) error {
			_, err := c.js.CreateOrUpdateConsumer(ctx, schemas.StreamResults, jetstream.ConsumerConfig{
				Durable: "audit-results", AckPolicy: jetstream.AckExplicitPolicy,
			})
			return err
		})
		allow(t, c, "pull and ack a result", fetchOne(c, schemas.StreamResults, "audit-results"))
		allow(t, c, "append to FORGE_AUDIT", publish(c, schemas.AuditSubject))
		allow(t, c, "read the chain's head", func(ctx context.Context) error {
			s, err := c.js.Stream(ctx, schemas.StreamAudit)
			if err != nil {
				return err
			}
			_, err = s.GetLastMsgForSubject(ctx, schemas.AuditSubject)
			return err
		})
		deny(t, c, "update FORGE_AUDIT", "$JS.API.STREAM.UPDATE.FORGE_AUDIT", func(ctx context.Context) error {
			cfg := provision.AuditStream(config.Default().Streams)
			cfg.DenyDelete, cfg.DenyPurge = false, false
			_, err := c.js.UpdateStream(ctx, cfg)
			return err
		})
		deny(t, c, "delete FORGE_AUDIT", "$JS.API.STREAM.DELETE.FORGE_AUDIT", func(ctx context.Context) error {
			return c.js.DeleteStream(ctx, schemas.StreamAudit)
		})
		deny(t, c, "purge FORGE_AUDIT", "$JS.API.STREAM.PURGE.FORGE_AUDIT", corePublish(c, "$JS.API.STREAM.PURGE.FORGE_AUDIT"))
		deny(t, c, "delete an audit record", "$JS.API.STREAM.MSG.DELETE.FORGE_AUDIT", corePublish(c, "$JS.API.STREAM.MSG.DELETE.FORGE_AUDIT"))
		deny(t, c, "publish an event", evAcme, corePublish(c, evAcme))
	})

	t.Run("operator", func(t *testing.T) {
		allow(t, op, "create a stream", func(ctx context.Context) error {
			_, err := op.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SCRATCH", Subjects: []string{"scratch.>"}})
			return err
		})
		allow(t, op, "delete it", func(ctx context.Context) error { return op.js.DeleteStream(ctx, "SCRATCH") })
		allow(t, op, "read FORGE_AUDIT", streamInfo(op, schemas.StreamAudit))
	})

	t.Run("subscriber", func(t *testing.T) {
		spec := Spec{Role: RoleSubscriber, Name: "billing", Subjects: []string{"forge.gogs.*.acme.>"}}
		c := dial(t, url, st, spec)
		allow(t, op, "operator: create the subscriber's consumer", func(ctx context.Context) error {
			_, err := EnsureSubscriberConsumers(ctx, op.js, spec)
			return err
		})
		allow(t, op, "operator: another org's event", publish(op, evOther))
		allow(t, op, "operator: an acme event", publish(op, evAcme))
		allow(t, c, "pull its own org's events, and no other's", func(ctx context.Context) error {
			cons, err := c.js.Consumer(ctx, schemas.StreamEvents, "sub-billing")
			if err != nil {
				return err
			}
			b, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return err
			}
			n := 0
			for m := range b.Messages() {
				if m.Subject() != evAcme {
					t.Errorf("subscriber received %s", m.Subject())
				}
				n++
				if err := m.Ack(); err != nil {
					return err
				}
			}
			if n == 0 {
				return errors.New("no acme event")
			}
			return nil
		})
		deny(t, c, "publish an event", evAcme, corePublish(c, evAcme))
		deny(t, c, "publish a result", "forgebus.results.docs.acme.app", corePublish(c, "forgebus.results.docs.acme.app"))
		deny(t, c, "create a consumer of everything", "$JS.API.CONSUMER.CREATE.FORGE_EVENTS.sub-billing.forge.>", func(ctx context.Context) error {
			_, err := c.js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, jetstream.ConsumerConfig{
				Durable: "sub-billing", FilterSubject: "forge.>", AckPolicy: jetstream.AckExplicitPolicy,
			})
			return err
		})
		deny(t, c, "create a consumer on another org", "$JS.API.CONSUMER.CREATE.FORGE_EVENTS.x.forge.gogs.push.other.>", func(ctx context.Context) error {
			_, err := c.js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, jetstream.ConsumerConfig{
				Name: "x", FilterSubject: "forge.gogs.push.other.>", AckPolicy: jetstream.AckExplicitPolicy,
			})
			return err
		})
		deny(t, c, "pull from the audit worker's consumer", "$JS.API.CONSUMER.INFO.FORGE_EVENTS.audit-events", fetchOne(c, schemas.StreamEvents, "audit-events"))
		deny(t, c, "pull from it without binding", "$JS.API.CONSUMER.MSG.NEXT.FORGE_EVENTS.audit-events", func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.FORGE_EVENTS.audit-events", []byte(`{"batch":1}`))
			return err
		})
		deny(t, c, "direct get by sequence", "$JS.API.DIRECT.GET.FORGE_EVENTS", func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.FORGE_EVENTS", []byte(`{"seq":1}`))
			return err
		})
		deny(t, c, "direct get of another org's last event", "$JS.API.DIRECT.GET.FORGE_EVENTS."+evOther, func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.FORGE_EVENTS."+evOther, nil)
			return err
		})
		deny(t, c, "get a message", "$JS.API.STREAM.MSG.GET.FORGE_EVENTS", func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.FORGE_EVENTS", []byte(`{"seq":1}`))
			return err
		})
		deny(t, c, "stream view (subjects in the info)", "$JS.API.STREAM.INFO.FORGE_EVENTS", func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO.FORGE_EVENTS", []byte(`{"subjects_filter":">"}`))
			return err
		})
		deny(t, c, "snoop other roles' reply inboxes", "_INBOX.>", func(ctx context.Context) error {
			sub, err := c.nc.SubscribeSync("_INBOX.>")
			if err != nil {
				return err
			}
			if err := c.nc.FlushTimeout(time.Second); err != nil {
				return err
			}
			_, err = sub.NextMsgWithContext(ctx)
			return err
		})
		deny(t, c, "subscribe to another org's events", "forge.gogs.push.other.>", func(ctx context.Context) error {
			sub, err := c.nc.SubscribeSync("forge.gogs.push.other.>")
			if err != nil {
				return err
			}
			if err := c.nc.FlushTimeout(time.Second); err != nil {
				return err
			}
			_, err = sub.NextMsgWithContext(ctx)
			return err
		})
	})
}
