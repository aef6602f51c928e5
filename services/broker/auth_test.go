package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/workers/runtime"
)

// pki is a test CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files in a temporary directory.
type pki struct {
	dir                            string
	ca, serverCert, serverKey      string
	clientCert, clientKey, otherCA string
	pool                           *x509.CertPool
}

func newPKI(t *testing.T) pki {
	t.Helper()
	p := pki{dir: t.TempDir(), pool: x509.NewCertPool()}
	caKey, caCert, caDER := selfSigned(t, "forgebus test CA")
	p.pool.AddCert(caCert)
	p.ca = writePEM(t, p.dir, "ca.pem", "CERTIFICATE", caDER)
	_, _, otherDER := selfSigned(t, "some other CA")
	p.otherCA = writePEM(t, p.dir, "other-ca.pem", "CERTIFICATE", otherDER)
	p.serverCert, p.serverKey = issue(t, p.dir, "server", caKey, caCert, &x509.Certificate{
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.clientCert, p.clientKey = issue(t, p.dir, "client", caKey, caCert, &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return p
}

func selfSigned(t *testing.T, cn string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func issue(t *testing.T, dir, name string, caKey *ecdsa.PrivateKey, ca *x509.Certificate, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.Subject = pkix.Name{CommonName: name}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runServer starts a JetStream server on 127.0.0.1 with opts filled in.
func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// mustValidate fails t unless c passes the checks a process makes of its
// configuration before it connects.
func mustValidate(t *testing.T, c config.Config) {
	t.Helper()
	c.Gogs.AllowUnsigned = true // Validate wants a webhook secret or this
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}

// useJetStream checks that b can provision and use a stream.
func useJetStream(ctx context.Context, t *testing.T, b *Broker) {
	t.Helper()
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := b.JS.Publish(ctx, "t.x", []byte("hi")); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// TestConnectTLSAndPassword connects to a server that requires TLS with a
// client certificate and a user and password, as FORGEBUS_NATS_TLS_* and
// FORGEBUS_NATS_USER/PASSWORD configure it; and each thing missing or
// wrong fails the connect with an error that says what, and never shows the
// password.
func TestConnectTLSAndPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPKI(t)
	cert, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	const password = "correct-horse-battery"
	srv := runServer(t, &server.Options{
		TLS: true, TLSVerify: true, TLSTimeout: 2,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert}, ClientCAs: p.pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		},
		Users: []*server.User{{Username: "forgebus", Password: password}},
	})
	good := externalConfig(t, "tls://"+srv.Addr().String())
	good.NATS.TLS = config.TLS{CA: p.ca, Cert: p.clientCert, Key: p.clientKey}
	good.NATS.User, good.NATS.Password = "forgebus", config.NewSecret(password)
	mustValidate(t, good)

	b, err := Connect(ctx, good, zerolog.Nop())
	if err != nil {
		t.Fatalf("Connect() with TLS, client certificate and password = %v", err)
	}
	defer b.Close()
	if b.Embedded() {
		t.Error("started an embedded server with FORGEBUS_NATS_URL set")
	}
	if !b.Conn.TLSRequired() {
		t.Error("connection is not TLS")
	}
	useJetStream(ctx, t, b)
	runsAWorker(ctx, t, b, srv)

	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   string // in the error
	}{
		{"wrong password", func(c *config.Config) { c.NATS.Password = config.NewSecret("hunter2-wrong") }, "authorization"},
		{"no password", func(c *config.Config) { c.NATS.User, c.NATS.Password = "", config.Secret{} }, "authorization"},
		{"server not signed by the CA", func(c *config.Config) { c.NATS.TLS.CA = p.otherCA }, "certificate"},
		// TLS 1.3 refuses the missing certificate after the handshake:
		// the client reads either the server's alert (certificate
		// required) or a closed connection, by timing. Both are TLS errors.
		{"no client certificate", func(c *config.Config) { c.NATS.TLS.Cert, c.NATS.TLS.Key = "", "" }, "tls"},
		{"CA file missing", func(c *config.Config) { c.NATS.TLS.CA = filepath.Join(p.dir, "nope.pem") }, "nope.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			b, err := Connect(ctx, c, zerolog.Nop())
			if err == nil {
				b.Close()
				t.Fatal("Connect() succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, "connect to nats") || !strings.Contains(strings.ToLower(msg), tc.want) {
				t.Errorf("Connect() = %q, want it to say connect to nats and %q", msg, tc.want)
			}
			for _, secret := range []string{password, "hunter2-wrong"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error shows the password: %q", msg)
				}
			}
		})
	}
}

// TestConnectCreds connects to a server in operator mode with a
// credentials file (FORGEBUS_NATS_CREDS): a user JWT and seed of an account
// with JetStream.
func TestConnectCreds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opKey, _ := nkeys.CreateOperator()
	opPub, _ := opKey.PublicKey()
	op := jwt.NewOperatorClaims(opPub)
	opJWT, err := op.Encode(opKey)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		tok, err := ac.Encode(opKey)
		if err != nil {
			t.Fatal(err)
		}
		return kp, pub, tok
	}
	_, sysPub, sysJWT := account("SYS", false)
	accKey, accPub, accJWT := account("FORGE", true)
	resolver := &server.MemAccResolver{}
	for pub, tok := range map[string]string{sysPub: sysJWT, accPub: accJWT} {
		if err := resolver.Store(pub, tok); err != nil {
			t.Fatal(err)
		}
	}
	srv := runServer(t, &server.Options{
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		AccountResolver:  resolver,
		SystemAccount:    sysPub,
	})

	userKey, _ := nkeys.CreateUser()
	userPub, _ := userKey.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.IssuerAccount = accPub
	userJWT, err := uc.Encode(accKey)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := userKey.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "forgebus.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}

	c := externalConfig(t, "nats://"+srv.Addr().String())
	c.NATS.Creds = credsFile
	mustValidate(t, c)
	b, err := Connect(ctx, c, zerolog.Nop())
	if err != nil {
		t.Fatalf("Connect() with a credentials file = %v", err)
	}
	defer b.Close()
	useJetStream(ctx, t, b)
	runsAWorker(ctx, t, b, srv)

	t.Run("without the creds", func(t *testing.T) {
		c := c
		c.NATS.Creds = ""
		b, err := Connect(ctx, c, zerolog.Nop())
		if err == nil {
			b.Close()
			t.Fatal("Connect() without credentials succeeded on an operator-mode server")
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("Connect() = %v, want an authorization error", err)
		}
	})
	t.Run("creds file missing", func(t *testing.T) {
		c := c
		c.NATS.Creds = filepath.Join(t.TempDir(), "gone.creds")
		_, err := Connect(ctx, c, zerolog.Nop())
		if err == nil || !strings.Contains(err.Error(), "gone.creds") {
			t.Errorf("Connect() = %v, want an error naming the file", err)
		}
	})
}

// runsAWorker runs a worker runtime on b until it has handled one event,
// on b's connection alone: the runtime opens none of its own.
func runsAWorker(ctx context.Context, t *testing.T, b *Broker, srv *server.Server) {
	t.Helper()
	natstest.Streams(t, b.JS)
	const worker = "authcheck"
	rt, err := runtime.New(b.JS, runtime.Worker{Name: worker, Subjects: []string{schemas.EventsRoot + ".>"}, Settings: runtime.DefaultSettings(),
		Handler: runtime.HandlerFunc(func(context.Context, *schemas.Envelope) (runtime.Report, error) { return runtime.Report{}, nil })},
		zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	ev := schemas.Envelope{
		SpecVersion: schemas.SpecVersion, ID: "auth-1", Source: "https://git.example.com",
		Type: schemas.TypePrefix + schemas.EventPush, Subject: "refs/heads/main", Time: time.Now().UTC(),
		DataContentType: "application/json", DataSchema: schemas.SchemaURI(schemas.EventPush),
		ForgeInstance: "test", Repo: "o/r", Sender: "alice", BodySHA256: "00",
		Data: json.RawMessage(`{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"1111111111111111111111111111111111111111","repository":{"full_name":"o/r"}}`),
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, schemas.EventSubject("test", schemas.EventPush, "o", "r"), data, jetstream.WithMsgID(ev.ID)); err != nil {
		t.Fatalf("publish event: %v", err)
	}
	results, err := b.JS.Stream(ctx, schemas.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	var res schemas.Result
	natstest.Eventually(t, 10*time.Second, "the event's result", func() bool {
		m, err := results.GetLastMsgForSubject(ctx, schemas.ResultSubject(worker, "o", "r"))
		return err == nil && json.Unmarshal(m.Data, &res) == nil
	})
	if res.Outcome != schemas.OutcomeSucceeded {
		t.Fatalf("result %+v, want succeeded", res)
	}

	cz, err := srv.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cz.Conns {
		if c.Name != b.Conn.Opts.Name {
			t.Errorf("connection %q from the worker runtime, want only %q", c.Name, b.Conn.Opts.Name)
		}
	}
}
