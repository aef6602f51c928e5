package gogs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/goccy/go-json/jsontext"
	jsonv2 "github.com/goccy/go-json/v2"
	"github.com/google/uuid"

	"github.com/forgebus/forgebus/schemas"
)

// MaxDeliveryIDLen bounds the length of a delivery id, in bytes.
const MaxDeliveryIDLen = 128

// MaxNameLen bounds the length of an owner login and of a repository name,
// in bytes, so that the subject stays far below the NATS control line limit
// (Gogs allows 35 and 100 characters).
const MaxNameLen = 255

// Input is one delivery, as the HTTP handler received it.
type Input struct {
	// Event is X-Gogs-Event.
	Event string
	// DeliveryID is X-Gogs-Delivery: 1 to [MaxDeliveryIDLen] printable
	// ASCII characters, no space. Empty means none: Normalize makes a UUIDv7.
	DeliveryID string
	// Instance names the forge instance: the second token of the subject
	// and the envelope's forgeinstance. Required.
	Instance string
	// Source is the envelope's source, the forge's base URL. Empty means
	// derive it from the payload's repository.html_url.
	Source string
	// Payload is the JSON payload, as returned by [ExtractPayload] (and
	// checked by [Verify]).
	Payload []byte
	// Body is the raw request body; its SHA-256 is the envelope's
	// bodysha256. Empty means Payload is the body.
	Body []byte
	// Received is when the delivery was accepted; zero means now.
	Received time.Time
}

// Normalized is a delivery ready to publish.
type Normalized struct {
	// Envelope is the event. Its Data shares memory with JSON.
	Envelope schemas.Envelope
	// Subject is the NATS subject to publish on:
	// [schemas.EventSubject](instance, event, owner, repo).
	Subject string
	// JSON is the marshaled Envelope, the message body to publish.
	JSON []byte
}

// Normalize decodes a delivery's payload once into the payload type of its
// event (a [schemas.Unknown] for an event name forgebus has no type for) and
// builds its envelope, subject and JSON. The result is valid against the
// contract's schemas by construction.
//
// Errors: [ErrMissingEvent] and [ErrBadEventName] for the event name,
// [ErrNoInstance], and [ErrMalformed] for a bad delivery id or a payload
// that is not a JSON object of the event's shape or lacks the repository's
// owner login or name, or the sender's login.
func Normalize(in Input) (Normalized, error) {
	switch {
	case in.Event == "":
		return Normalized{}, ErrMissingEvent
	case !schemas.ValidEventName(in.Event):
		return Normalized{}, fmt.Errorf("%w: want [a-z][a-z0-9_]{0,63}", ErrBadEventName)
	case in.Instance == "":
		return Normalized{}, ErrNoInstance
	}
	id := in.DeliveryID
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return Normalized{}, fmt.Errorf("new event id: %w", err)
		}
		id = u.String()
	} else if !validDeliveryID(id) {
		return Normalized{}, fmt.Errorf("%w: delivery id must be 1 to %d printable ASCII characters without spaces", ErrMalformed, MaxDeliveryIDLen)
	}

	p, err := decode(in.Event, in.Payload)
	if err != nil {
		return Normalized{}, err
	}
	repo, sender := p.repository, p.sender
	if repo == nil {
		return Normalized{}, fmt.Errorf("%w: %s payload has no repository", ErrMalformed, in.Event)
	}
	owner, name := repo.Owner.Login, repo.Name
	switch {
	case owner == "":
		return Normalized{}, fmt.Errorf("%w: %s payload has no repository.owner.login", ErrMalformed, in.Event)
	case name == "":
		return Normalized{}, fmt.Errorf("%w: %s payload has no repository.name", ErrMalformed, in.Event)
	case len(owner) > MaxNameLen || len(name) > MaxNameLen:
		return Normalized{}, fmt.Errorf("%w: %s payload: repository.owner.login or repository.name is longer than %d bytes", ErrMalformed, in.Event, MaxNameLen)
	case strings.Contains(owner, "/") || strings.Contains(name, "/"):
		return Normalized{}, fmt.Errorf("%w: %s payload: repository.owner.login or repository.name has a slash", ErrMalformed, in.Event)
	}
	source := in.Source
	if source == "" {
		if source, err = deriveSource(repo); err != nil {
			return Normalized{}, err
		}
	}
	data, err := json.Marshal(p.data)
	if err != nil {
		return Normalized{}, fmt.Errorf("%w: %s payload does not re-encode", ErrMalformed, in.Event)
	}

	body := in.Body
	if len(body) == 0 {
		body = in.Payload
	}
	sum := sha256.Sum256(body)
	received := in.Received
	if received.IsZero() {
		received = time.Now()
	}
	env := schemas.Envelope{
		SpecVersion:     schemas.SpecVersion,
		ID:              id,
		Source:          source,
		Type:            schemas.TypePrefix + in.Event,
		Subject:         p.subject,
		Time:            received.UTC(),
		DataContentType: MediaJSON,
		DataSchema:      schemas.DataSchemaURI(in.Event),
		ForgeInstance:   in.Instance,
		Repo:            owner + "/" + name,
		BodySHA256:      hex.EncodeToString(sum[:]),
	}
	if sender != nil {
		env.Sender = sender.Login
	}
	out, err := spliceData(&env, data)
	if err != nil {
		return Normalized{}, err
	}
	return Normalized{
		Envelope: env,
		Subject:  schemas.EventSubject(in.Instance, in.Event, owner, name),
		JSON:     out,
	}, nil
}

// spliceData marshals env with data as its data member without encoding
// data a second time: Data is the last member of the envelope, so the
// marshaled envelope ends in `"data":null}`.
func spliceData(env *schemas.Envelope, data []byte) ([]byte, error) {
	const tail = `null}`
	env.Data = nil
	head, err := json.Marshal(env)
	if err != nil || !bytes.HasSuffix(head, []byte(`"data":`+tail)) {
		return nil, fmt.Errorf("%w: envelope does not encode", ErrMalformed)
	}
	head = head[:len(head)-len(tail)]
	out := make([]byte, 0, len(head)+len(data)+1)
	out = append(out, head...)
	out = append(out, data...)
	out = append(out, '}')
	env.Data = out[len(head) : len(out)-1 : len(out)-1]
	return out, nil
}

func validDeliveryID(id string) bool {
	if len(id) > MaxDeliveryIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '!' || id[i] > '~' {
			return false
		}
	}
	return true
}

// deriveSource is the forge's base URL: repository.html_url without its
// trailing /owner/name, and without any user info, query or fragment.
func deriveSource(repo *schemas.Repository) (string, error) {
	u, err := url.Parse(repo.HTMLURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: repository.html_url is not an http(s) URL", ErrMalformed)
	}
	path := strings.TrimSuffix(u.Path, "/")
	suffix := "/" + repo.Owner.Login + "/" + repo.Name
	if len(path) >= len(suffix) && strings.EqualFold(path[len(path)-len(suffix):], suffix) {
		path = path[:len(path)-len(suffix)]
	}
	base := url.URL{Scheme: u.Scheme, Host: u.Host, Path: path}
	return base.String(), nil
}

// payload is a decoded delivery: the typed data and what the envelope needs
// from it.
type payload struct {
	data       any
	repository *schemas.Repository
	sender     *schemas.User
	subject    string
}

func decode(event string, raw []byte) (payload, error) {
	switch event {
	case schemas.EventPush:
		var d schemas.Push
		if err := unmarshal(event, raw, &d); err != nil {
			return payload{}, err
		}
		if d.Ref == "" {
			return payload{}, fmt.Errorf("%w: push payload has no ref", ErrMalformed)
		}
		fixPush(&d)
		return known(&d, &d.Repository, &d.Sender, d.Ref)
	case schemas.EventCreate:
		var d schemas.Create
		if err := unmarshal(event, raw, &d); err != nil {
			return payload{}, err
		}
		if d.Ref == "" {
			return payload{}, fmt.Errorf("%w: create payload has no ref", ErrMalformed)
		}
		fixRepo(&d.Repository)
		return known(&d, &d.Repository, &d.Sender, d.Ref)
	case schemas.EventDelete:
		var d schemas.Delete
		if err := unmarshal(event, raw, &d); err != nil {
			return payload{}, err
		}
		if d.Ref == "" {
			return payload{}, fmt.Errorf("%w: delete payload has no ref", ErrMalformed)
		}
		fixRepo(&d.Repository)
		return known(&d, &d.Repository, &d.Sender, d.Ref)
	case schemas.EventFork:
		var d schemas.Fork
		if err := unmarshal(event, raw, &d); err != nil {
			return payload{}, err
		}
		fixRepo(&d.Forkee)
		fixRepo(&d.Repository)
		return known(&d, &d.Repository, &d.Sender, "")
	case schemas.EventIssues:
		var d schemas.Issues
		if err := unmarshal(event, raw, &d); err != nil {
			return payload{}, err
		}
		fixIssue(&d.Issue)
		fixRepo(&d.Repository)
		return known(&d, &d.Repository, &d.Sender, issueSubject(&d.Issue, d.Number))
	case schemas.EventIssueComment:
		var d schemas.IssueComment
		if err := unmarshal(event, raw, &d); err != nil {
			return payload{}, err
		}
		fixIssue(&d.Issue)
		zeroTime(&d.Comment.CreatedAt)
		zeroTime(&d.Comment.UpdatedAt)
		fixRepo(&d.Repository)
		return known(&d, &d.Repository, &d.Sender, issueSubject(&d.Issue, 0))
	case schemas.EventPullRequest:
		var d schemas.PullRequest
		if err := unmarshal(event, raw, &d); err != nil {
			return payload{}, err
		}
		fixPullRequest(&d.PullRequest)
		fixRepo(&d.Repository)
		n := d.PullRequest.Number
		if n == 0 {
			n = d.Number
		}
		return known(&d, &d.Repository, &d.Sender, "pulls/"+strconv.FormatInt(n, 10))
	case schemas.EventRelease:
		var d schemas.Release
		if err := unmarshal(event, raw, &d); err != nil {
			return payload{}, err
		}
		zeroTime(&d.Release.CreatedAt)
		fixRepo(&d.Repository)
		return known(&d, &d.Repository, &d.Sender, d.Release.TagName)
	}
	// An event forgebus has no type for: keep the payload whole.
	var d struct {
		Repository *schemas.Repository `json:"repository"`
		Sender     *schemas.User       `json:"sender"`
	}
	if err := unmarshal(event, raw, &d); err != nil {
		return payload{}, err
	}
	if !utf8.Valid(raw) {
		return payload{}, fmt.Errorf("%w: %s payload is not UTF-8", ErrMalformed, event)
	}
	if d.Repository != nil {
		fixRepo(d.Repository)
	}
	u := &schemas.Unknown{Repository: d.Repository, Sender: d.Sender, Raw: raw}
	return payload{data: u, repository: d.Repository, sender: d.Sender}, nil
}

func known(data any, repo *schemas.Repository, sender *schemas.User, subject string) (payload, error) {
	if sender.Login == "" {
		return payload{}, fmt.Errorf("%w: payload has no sender.login", ErrMalformed)
	}
	return payload{data: data, repository: repo, sender: sender, subject: subject}, nil
}

// eventMembers are the top-level members each known event's payload has and
// no other event's payload has all of, as real Gogs deliveries show. The
// signature does not cover X-Gogs-Event, so a payload without them is not
// that event, whatever the header says.
var eventMembers = map[string][]string{
	schemas.EventPush:         {"ref", "before", "after", "commits"},
	schemas.EventCreate:       {"ref", "ref_type", "default_branch"},
	schemas.EventDelete:       {"ref", "ref_type", "pusher_type"},
	schemas.EventFork:         {"forkee"},
	schemas.EventIssues:       {"action", "number", "issue"},
	schemas.EventIssueComment: {"action", "issue", "comment"},
	schemas.EventPullRequest:  {"action", "number", "pull_request"},
	schemas.EventRelease:      {"action", "release"},
}

// unmarshal decodes a JSON object into v with exact, case-sensitive member
// names, refusing a name given twice in any object and, for a known event,
// a payload that lacks one of its [eventMembers]. Its errors say where the
// payload is wrong, never what it holds there.
func unmarshal(event string, raw []byte, v any) error {
	if i := bytes.IndexFunc(raw, notSpace); i < 0 || raw[i] != '{' {
		return fmt.Errorf("%w: %s payload is not a JSON object", ErrMalformed, event)
	}
	if err := jsonv2.Unmarshal(raw, v); err != nil {
		return decodeError(event, err)
	}
	if want, ok := eventMembers[event]; ok {
		if m := missingMember(raw, want); m != "" {
			return fmt.Errorf("%w: payload has no %q member: not a %s payload", ErrMalformed, m, event)
		}
	}
	return nil
}

// missingMember returns the first name in want that is not a member of the
// top-level object raw, or "". raw must be valid JSON (the decoder has
// checked it); names are compared as written, so an escaped one does not
// count.
func missingMember(raw []byte, want []string) string {
	var seen uint64 // bit i: want[i] is present
	depth, nameNext := 0, false
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			j := i + 1
			for ; j < len(raw) && raw[j] != '"'; j++ {
				if raw[j] == '\\' {
					j++
				}
			}
			if depth == 1 && nameNext {
				for k, w := range want {
					if string(raw[i+1:min(j, len(raw))]) == w {
						seen |= 1 << k
					}
				}
				nameNext = false
			}
			i = j
		case '{':
			depth++
			nameNext = depth == 1
		case '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			nameNext = depth == 1
		}
	}
	for k, w := range want {
		if seen&(1<<k) == 0 {
			return w
		}
	}
	return ""
}

// decodeError turns a decoder's error into an ErrMalformed naming the place
// (a JSON pointer to member names, never to a value) and not the content.
func decodeError(event string, err error) error {
	var se *jsontext.SyntacticError
	var te *jsonv2.SemanticError
	switch {
	case errors.As(err, &se) && errors.Is(se.Err, jsontext.ErrDuplicateName):
		return fmt.Errorf("%w: %s payload has a member name twice at %.100q", ErrMalformed, event, se.JSONPointer)
	case errors.As(err, &se):
		return fmt.Errorf("%w: %s payload is not valid JSON (offset %d)", ErrMalformed, event, se.ByteOffset)
	case errors.As(err, &te):
		return fmt.Errorf("%w: %s payload: %.100q has the wrong JSON type or is out of range", ErrMalformed, event, te.JSONPointer)
	}
	return fmt.Errorf("%w: %s payload does not decode", ErrMalformed, event)
}

func notSpace(r rune) bool { return r != ' ' && r != '\t' && r != '\n' && r != '\r' }

func issueSubject(is *schemas.Issue, number int64) string {
	n := is.Number
	if n == 0 {
		n = number
	}
	if is.PullRequest != nil {
		return "pulls/" + strconv.FormatInt(n, 10)
	}
	return "issues/" + strconv.FormatInt(n, 10)
}

const (
	refHeads = "refs/heads/"
	refTags  = "refs/tags/"
)

func fixPush(p *schemas.Push) {
	if p.Commits == nil {
		p.Commits = []schemas.Commit{}
	}
	for i := range p.Commits {
		c := &p.Commits[i]
		c.Added = nonNil(c.Added)
		c.Removed = nonNil(c.Removed)
		c.Modified = nonNil(c.Modified)
		zeroTime(&c.Timestamp)
	}
	fixRepo(&p.Repository)
	p.Branch, p.Tag = "", ""
	if b, ok := strings.CutPrefix(p.Ref, refHeads); ok {
		p.Branch = b
	} else if t, ok := strings.CutPrefix(p.Ref, refTags); ok {
		p.Tag = t
	}
	p.TestDelivery = p.Before == p.After
	before0, after0 := allZeros(p.Before), allZeros(p.After)
	p.Created = before0 && !after0
	p.Deleted = after0 && !before0
}

func allZeros(sha string) bool {
	if sha == "" {
		return false
	}
	for i := 0; i < len(sha); i++ {
		if sha[i] != '0' {
			return false
		}
	}
	return true
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// maxParents bounds a repository's chain of parents. Gogs sends one level
// (a fork's parent, whose own parent is null); a deeper chain is cut there
// rather than re-encoded, since each level grows the event by hundreds of
// bytes of defaults.
const maxParents = 3

func fixRepo(r *schemas.Repository) {
	for depth := 0; r != nil; r, depth = r.Parent, depth+1 {
		zeroTime(&r.CreatedAt)
		zeroTime(&r.UpdatedAt)
		if depth == maxParents {
			r.Parent = nil
		}
	}
}

func fixIssue(is *schemas.Issue) {
	if is.Labels == nil {
		is.Labels = []schemas.Label{}
	}
	fixMilestone(is.Milestone)
	zeroTime(&is.CreatedAt)
	zeroTime(&is.UpdatedAt)
	if is.PullRequest != nil {
		zeroTime(&is.PullRequest.MergedAt)
	}
}

func fixPullRequest(pr *schemas.PullRequestInfo) {
	if pr.Labels == nil {
		pr.Labels = []schemas.Label{}
	}
	fixMilestone(pr.Milestone)
	fixRepo(pr.HeadRepo)
	fixRepo(pr.BaseRepo)
	zeroTime(&pr.MergedAt)
}

func fixMilestone(m *schemas.Milestone) {
	if m != nil {
		zeroTime(&m.ClosedAt)
		zeroTime(&m.DueOn)
	}
}

// zeroTime drops a zero time: Gogs sends 0001-01-01T00:00:00Z for a time it
// did not load.
func zeroTime(t **time.Time) {
	if *t != nil && (*t).IsZero() {
		*t = nil
	}
}
