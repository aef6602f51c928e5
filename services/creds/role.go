package creds

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/forgebus/forgebus/schemas"
)

// Roles a user can have.
const (
	RoleOperator   = "operator"
	RoleIngest     = "ingest"
	RoleWorker     = "worker"
	RoleAudit      = "audit"
	RoleSubscriber = "subscriber"
)

// Roles lists every role, for help texts.
var Roles = []string{RoleOperator, RoleIngest, RoleWorker, RoleAudit, RoleSubscriber}

// Bucket names the workers use, as the workers module names them.
const (
	idemBucketPrefix = "forgebus_idem_"
	envBucket        = "forgebus_env"
	envsyncWorker    = "envsync"
	modelsWorker     = "models"
)

// workerBuckets are the KV buckets a worker needs beside its idempotency
// bucket: envsync's target, models' rule progress and last run commit.
var workerBuckets = map[string][]string{
	envsyncWorker: {envBucket},
	modelsWorker:  {"forgebus_models_progress", "forgebus_models_last"},
}

// auditSources are the audit worker's durable consumers, per stream.
var auditSources = [][2]string{
	{schemas.StreamEvents, "audit-events"},
	{schemas.StreamResults, "audit-results"},
	{schemas.StreamDLQ, "audit-dlq"},
}

// SubscriberPrefix starts the name of a subscriber's durable consumers, so
// that no subscriber can take a worker's consumer.
const SubscriberPrefix = "sub-"

// Spec is what a user may do.
type Spec struct {
	Role string `json:"role"`
	// Name is the user's name: unique, and for a subscriber the name of
	// its consumers (with [SubscriberPrefix]).
	Name string `json:"name"`
	// Worker is the worker a worker user runs.
	Worker string `json:"worker,omitempty"`
	// Subjects bound a subscriber: event subjects (forge.…) and result
	// subjects (forgebus.results.…).
	Subjects []string `json:"subjects,omitempty"`
	// Buckets are extra KV buckets a worker may use (envsync's targets).
	Buckets []string `json:"buckets,omitempty"`
	// Expires is how long the credentials are valid; zero never expires.
	Expires time.Duration `json:"-"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate checks s and fills defaults.
func (s *Spec) Validate() error {
	switch s.Role {
	case RoleWorker:
		if !nameRE.MatchString(s.Worker) {
			return fmt.Errorf("%w: --worker %q: lower-case letters, digits, - and _", ErrInvalid, s.Worker)
		}
		if s.Name == "" {
			s.Name = "worker-" + s.Worker
		}
		for _, b := range slices.Backward(workerBuckets[s.Worker]) {
			if !slices.Contains(s.Buckets, b) {
				s.Buckets = append([]string{b}, s.Buckets...)
			}
		}
		for _, b := range s.Buckets {
			if !nameRE.MatchString(b) {
				return fmt.Errorf("%w: bucket %q", ErrInvalid, b)
			}
		}
	case RoleOperator, RoleIngest, RoleAudit:
		if s.Name == "" {
			s.Name = s.Role
		}
	case RoleSubscriber:
		if len(s.Subjects) == 0 {
			return fmt.Errorf("%w: a subscriber needs --subjects", ErrInvalid)
		}
		for _, subj := range s.Subjects {
			if _, err := subscriberStream(subj); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: role %q; roles: %s", ErrInvalid, s.Role, strings.Join(Roles, ", "))
	}
	if s.Role != RoleWorker && (s.Worker != "" || len(s.Buckets) > 0) {
		return fmt.Errorf("%w: --worker and --buckets are for --role worker", ErrInvalid)
	}
	if s.Role != RoleSubscriber && len(s.Subjects) > 0 {
		return fmt.Errorf("%w: --subjects is for --role subscriber", ErrInvalid)
	}
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("%w: name %q: lower-case letters, digits, - and _", ErrInvalid, s.Name)
	}
	if s.Expires < 0 {
		return fmt.Errorf("%w: negative expiry", ErrInvalid)
	}
	return nil
}

// subscriberStream is the stream a subscriber's subject filter reads: it
// must lie inside the events or the results, with no wildcard before the
// event type (forge.<instance>.<event>.…) or the worker.
func subscriberStream(subj string) (string, error) {
	toks := strings.Split(subj, ".")
	for i, t := range toks {
		if t == "" || (t == ">" && i != len(toks)-1) || (strings.ContainsAny(t, "*>") && len(t) > 1) {
			return "", fmt.Errorf("%w: subject %q", ErrInvalid, subj)
		}
	}
	literal := func(n int) bool {
		if len(toks) < n {
			return false
		}
		for _, t := range toks[:n] {
			if t == "*" || t == ">" {
				return false
			}
		}
		return true
	}
	switch {
	case toks[0] == schemas.EventsRoot && literal(2) && len(toks) >= 3:
		return schemas.StreamEvents, nil
	case subj != schemas.ResultsRoot && strings.HasPrefix(subj, schemas.ResultsRoot+".") && literal(2) && len(toks) >= 3:
		return schemas.StreamResults, nil
	}
	return "", fmt.Errorf("%w: subject %q: a subscriber reads forge.<instance>.… or forgebus.results.… only", ErrInvalid, subj)
}

// SubscriberFilters groups s's subjects by the stream they read.
func (s Spec) SubscriberFilters() map[string][]string {
	out := map[string][]string{}
	for _, subj := range s.Subjects {
		st, err := subscriberStream(subj)
		if err == nil {
			out[st] = append(out[st], subj)
		}
	}
	return out
}

// ConsumerName is a subscriber's durable consumer on every stream it reads.
func (s Spec) ConsumerName() string { return SubscriberPrefix + s.Name }

// InboxPrefix is the reply-inbox prefix a user of name must set
// (nats.CustomInboxPrefix): its permissions let it receive there only, so
// no user reads the replies another one asked for.
func InboxPrefix(name string) string { return "_INBOX_" + name }

const api = "$JS.API."

// consumerUse lets a user bind to, pull from and ack the named durable.
func consumerUse(stream, durable string) []string {
	return []string{
		api + "CONSUMER.INFO." + stream + "." + durable,
		api + "CONSUMER.MSG.NEXT." + stream + "." + durable,
		"$JS.ACK." + stream + "." + durable + ".>",
	}
}

// consumerOwn also lets it create and update that durable.
func consumerOwn(stream, durable string) []string {
	return append(consumerUse(stream, durable),
		api+"CONSUMER.CREATE."+stream+"."+durable,
		api+"CONSUMER.CREATE."+stream+"."+durable+".>",
		api+"CONSUMER.DURABLE.CREATE."+stream+"."+durable,
	)
}

// bucketOwn is full use of one KV bucket: its stream, its consumers
// (watchers, key lists) and its subjects.
func bucketOwn(bucket string) []string {
	st := "KV_" + bucket
	return []string{
		api + "STREAM.*." + st,
		api + "STREAM.MSG.*." + st,
		api + "DIRECT.GET." + st,
		api + "DIRECT.GET." + st + ".>",
		api + "CONSUMER.*." + st,
		api + "CONSUMER.*." + st + ".>",
		api + "CONSUMER.*.*." + st + ".>",
		"$JS.ACK." + st + ".>",
		"$JS.FC." + st + ".>",
		"$KV." + bucket + ".>",
	}
}

// Permissions are the publish and subscribe rights of s. Anything not
// allowed is refused by the server.
func (s Spec) Permissions() jwt.Permissions {
	var pub, sub []string
	inbox := InboxPrefix(s.Name) + ".>"
	// Every service role reads FORGE_EVENTS's info: the health check.
	service := []string{api + "INFO", api + "STREAM.INFO." + schemas.StreamEvents}
	switch s.Role {
	case RoleOperator:
		pub, sub = []string{">"}, []string{">"}
	case RoleIngest:
		// MSG.GET: a duplicate's answer names the event already stored.
		pub = append(service, schemas.EventsRoot+".>", api+"STREAM.MSG.GET."+schemas.StreamEvents)
		sub = []string{inbox}
	case RoleWorker:
		pub = append(service, consumerOwn(schemas.StreamEvents, s.Worker)...)
		pub = append(pub,
			schemas.ResultsRoot+"."+s.Worker+".>",
			schemas.DLQRoot+"."+s.Worker+".>",
		)
		for _, b := range append([]string{idemBucketPrefix + s.Worker}, s.Buckets...) {
			pub = append(pub, bucketOwn(b)...)
		}
		sub = []string{inbox}
	case RoleAudit:
		pub = service
		for _, src := range auditSources {
			pub = append(pub, consumerOwn(src[0], src[1])...)
		}
		pub = append(pub,
			schemas.AuditSubject,
			api+"STREAM.INFO."+schemas.StreamAudit,
			api+"STREAM.MSG.GET."+schemas.StreamAudit,
			api+"DIRECT.GET."+schemas.StreamAudit,
			api+"DIRECT.GET."+schemas.StreamAudit+".>",
		)
		sub = []string{inbox}
	case RoleSubscriber:
		for st := range s.SubscriberFilters() {
			pub = append(pub, consumerUse(st, s.ConsumerName())...)
		}
		sub = append([]string{inbox}, s.Subjects...)
	}
	slices.Sort(pub)
	var p jwt.Permissions
	p.Pub.Allow.Add(pub...)
	p.Sub.Allow.Add(sub...)
	return p
}
