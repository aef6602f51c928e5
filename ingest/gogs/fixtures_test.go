package gogs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/schemas"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

// fixtureDir holds the real Gogs deliveries, the repository's own copy.
var fixtureDir = filepath.Join("..", "..", "testdata", "gogs")

const (
	fixtureSecret   = "fixture-secret-1"
	fixtureInstance = "gogs-fixtures"
	fixtureSource   = "http://127.0.0.1:3000" // derived from repository.html_url
)

// fixtureReceived is the fixed acceptance time of every golden envelope.
var fixtureReceived = time.Date(2026, 11, 22, 23, 59, 0, 123456789, time.FixedZone("CET", 3600))

// fixture is one captured Gogs delivery (see the fixtures' README).
type fixture struct {
	Name       string            `json:"-"`
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Headers    map[string]string `json:"headers"`
	BodyBase64 string            `json:"body_base64"`
	Body       []byte            `json:"-"`
}

func (f *fixture) event() string       { return f.Headers["X-Gogs-Event"] }
func (f *fixture) delivery() string    { return f.Headers["X-Gogs-Delivery"] }
func (f *fixture) signature() string   { return f.Headers["X-Gogs-Signature"] }
func (f *fixture) contentType() string { return f.Headers["Content-Type"] }

func loadFixtures(tb testing.TB) []*fixture {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no Gogs fixtures in %s : %v", fixtureDir, err)
	}
	out := make([]*fixture, 0, len(paths))
	for _, p := range paths {
		out = append(out, loadFixture(tb, p))
	}
	return out
}

func loadFixture(tb testing.TB, path string) *fixture {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	if f.Body, err = base64.StdEncoding.DecodeString(f.BodyBase64); err != nil {
		tb.Fatalf("%s: body_base64: %v", path, err)
	}
	f.Name = strings.TrimSuffix(filepath.Base(path), ".json")
	if f.event() == "" || f.contentType() == "" {
		tb.Fatalf("%s: no X-Gogs-Event or Content-Type", path)
	}
	return &f
}

func fixtureInput(f *fixture, payload []byte) Input {
	return Input{
		Event:      f.event(),
		DeliveryID: f.delivery(),
		Instance:   fixtureInstance,
		Payload:    payload,
		Body:       f.Body,
		Received:   fixtureReceived,
	}
}

// TestFixtures runs every real delivery through ExtractPayload, Verify and
// Normalize, and checks the envelope against the schemas, against what the
// raw payload says, and against its golden file.
func TestFixtures(t *testing.T) {
	secrets := [][]byte{[]byte(fixtureSecret)}
	seen := map[string]int{}
	for _, f := range loadFixtures(t) {
		t.Run(f.Name, func(t *testing.T) {
			payload, err := ExtractPayload(f.contentType(), f.Body)
			if err != nil {
				t.Fatalf("ExtractPayload: %v", err)
			}
			sig := f.signature()
			if strings.HasPrefix(f.Name, "unsigned-") {
				if err := Verify(payload, sig, secrets); !errors.Is(err, ErrMissingSignature) {
					t.Errorf("Verify(unsigned) = %v, want ErrMissingSignature", err)
				}
			} else {
				if err := Verify(payload, sig, secrets); err != nil {
					t.Errorf("Verify = %v, want nil", err)
				}
				if err := Verify(payload, sig, [][]byte{[]byte("fixture-secret-2")}); !errors.Is(err, ErrBadSignature) {
					t.Errorf("Verify(other secret) = %v, want ErrBadSignature", err)
				}
				if strings.HasPrefix(f.Name, "form-") {
					if err := Verify(f.Body, sig, secrets); !errors.Is(err, ErrBadSignature) {
						t.Errorf("Verify(raw form body) = %v, want ErrBadSignature: the MAC covers the payload field", err)
					}
				}
			}

			n, err := Normalize(fixtureInput(f, payload))
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			seen[f.event()]++
			if err := schemas.Validate(n.JSON); err != nil {
				t.Fatalf("schemas.Validate: %v", err)
			}
			checkEnvelope(t, f, payload, n)
			checkData(t, f.event(), payload, n.Envelope)
			checkGolden(t, f.Name, n.JSON)
		})
	}
	for _, ev := range schemas.KnownEvents {
		if seen[ev] == 0 {
			t.Errorf("no fixture normalized for event %q", ev)
		}
	}
}

func checkEnvelope(t *testing.T, f *fixture, payload []byte, n Normalized) {
	t.Helper()
	raw := decodeMap(t, payload)
	owner := str(raw, "repository", "owner", "login")
	name := str(raw, "repository", "name")
	env := n.Envelope
	want := map[string][2]string{
		"specversion":     {env.SpecVersion, "1.0"},
		"id":              {env.ID, f.delivery()},
		"source":          {env.Source, fixtureSource},
		"type":            {env.Type, "forge." + f.event()},
		"datacontenttype": {env.DataContentType, "application/json"},
		"dataschema":      {env.DataSchema, "https://forgebus.dev/schemas/v1/" + f.event() + ".json"},
		"forgeinstance":   {env.ForgeInstance, fixtureInstance},
		"repo":            {env.Repo, owner + "/" + name},
		"sender":          {env.Sender, str(raw, "sender", "login")},
		"bodysha256":      {env.BodySHA256, sha256Hex(f.Body)},
		"subject":         {env.Subject, wantSubject(t, f.event(), raw)},
		"time":            {env.Time.Format(time.RFC3339Nano), "2026-11-22T22:59:00.123456789Z"},
	}
	for k, v := range want {
		if v[0] != v[1] {
			t.Errorf("envelope %s = %q, want %q", k, v[0], v[1])
		}
	}
	addr, err := schemas.ParseEventSubject(n.Subject)
	if err != nil {
		t.Fatalf("ParseEventSubject(%q): %v", n.Subject, err)
	}
	if wantAddr := (schemas.EventAddress{Instance: fixtureInstance, Event: f.event(), Owner: owner, Repo: name}); addr != wantAddr {
		t.Errorf("subject %q parses to %+v, want %+v", n.Subject, addr, wantAddr)
	}
	// JSON is exactly what json.Marshal makes of the envelope.
	again, err := json.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, n.JSON) {
		t.Errorf("JSON differs from json.Marshal(Envelope):\n%s\n%s", n.JSON, again)
	}
}

// wantSubject is the CloudEvents subject the raw payload calls for.
func wantSubject(t *testing.T, event string, raw map[string]any) string {
	switch event {
	case schemas.EventPush, schemas.EventCreate, schemas.EventDelete:
		return str(raw, "ref")
	case schemas.EventIssues:
		return "issues/" + num(t, raw, "issue", "number")
	case schemas.EventIssueComment:
		if m, _ := raw["issue"].(map[string]any); m["pull_request"] != nil {
			return "pulls/" + num(t, raw, "issue", "number")
		}
		return "issues/" + num(t, raw, "issue", "number")
	case schemas.EventPullRequest:
		return "pulls/" + num(t, raw, "pull_request", "number")
	case schemas.EventRelease:
		return str(raw, "release", "tag_name")
	}
	return ""
}

// checkData decodes the envelope's data into its Go type and compares it
// with a generic decode of the raw payload.
func checkData(t *testing.T, event string, payload []byte, env schemas.Envelope) {
	t.Helper()
	raw := decodeMap(t, payload)
	p := schemas.NewPayload(env.Event())
	if err := env.DecodeData(p); err != nil {
		t.Fatalf("DecodeData: %v", err)
	}
	// The types decode the contract without loss.
	again, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, env.Data) {
		t.Errorf("data does not survive a decode and encode:\n%s\n%s", env.Data, again)
	}
	if err := schemas.ValidateData(event, env.Data); err != nil {
		t.Errorf("ValidateData: %v", err)
	}
	eq := func(field string, got any, want any) {
		t.Helper()
		if got != want {
			t.Errorf("data %s = %v, want %v", field, got, want)
		}
	}
	switch d := p.(type) {
	case *schemas.Push:
		eq("ref", d.Ref, str(raw, "ref"))
		eq("before", d.Before, str(raw, "before"))
		eq("after", d.After, str(raw, "after"))
		eq("compare_url", d.CompareURL, str(raw, "compare_url"))
		eq("pusher.login", d.Pusher.Login, str(raw, "pusher", "login"))
		commits, _ := raw["commits"].([]any)
		eq("len(commits)", len(d.Commits), len(commits))
		for i, c := range d.Commits {
			rc := commits[i].(map[string]any)
			eq("commit.id", c.ID, rc["id"])
			eq("commit.message", c.Message, rc["message"])
			eq("commit.author.email", c.Author.Email, str(rc, "author", "email"))
			for name, got := range map[string][]string{"added": c.Added, "removed": c.Removed, "modified": c.Modified} {
				want, _ := rc[name].([]any)
				if got == nil {
					t.Errorf("commit %s %s is null, want a list", c.ID, name)
				}
				eq("len(commit."+name+")", len(got), len(want))
			}
		}
		eq("branch", d.Branch, strings.TrimPrefix(d.Ref, "refs/heads/"))
		eq("test_delivery", d.TestDelivery, d.Before == d.After)
	case *schemas.Create:
		eq("ref", d.Ref, str(raw, "ref"))
		eq("ref_type", d.RefType, str(raw, "ref_type"))
		eq("sha", d.SHA, str(raw, "sha"))
		eq("default_branch", d.DefaultBranch, str(raw, "default_branch"))
	case *schemas.Delete:
		eq("ref", d.Ref, str(raw, "ref"))
		eq("ref_type", d.RefType, str(raw, "ref_type"))
		eq("pusher_type", d.PusherType, str(raw, "pusher_type"))
	case *schemas.Fork:
		eq("forkee.full_name", d.Forkee.FullName, str(raw, "forkee", "full_name"))
		eq("forkee.fork", d.Forkee.Fork, raw["forkee"].(map[string]any)["fork"])
		eq("forkee.parent.full_name", d.Forkee.Parent.FullName, str(raw, "forkee", "parent", "full_name"))
	case *schemas.Issues:
		eq("action", d.Action, str(raw, "action"))
		eq("number", strconv.FormatInt(d.Number, 10), num(t, raw, "number"))
		eq("issue.title", d.Issue.Title, str(raw, "issue", "title"))
		eq("issue.state", d.Issue.State, str(raw, "issue", "state"))
		eq("len(issue.labels)", len(d.Issue.Labels), len(raw["issue"].(map[string]any)["labels"].([]any)))
		eq("issue.milestone set", d.Issue.Milestone != nil, raw["issue"].(map[string]any)["milestone"] != nil)
		eq("issue.assignee set", d.Issue.Assignee != nil, raw["issue"].(map[string]any)["assignee"] != nil)
		eq("changes set", d.Changes != nil, raw["changes"] != nil)
	case *schemas.IssueComment:
		eq("action", d.Action, str(raw, "action"))
		eq("comment.id", strconv.FormatInt(d.Comment.ID, 10), num(t, raw, "comment", "id"))
		eq("comment.body", d.Comment.Body, str(raw, "comment", "body"))
		eq("comment.user.login", d.Comment.User.Login, str(raw, "comment", "user", "login"))
		eq("issue.pull_request set", d.Issue.PullRequest != nil, raw["issue"].(map[string]any)["pull_request"] != nil)
	case *schemas.PullRequest:
		rp := raw["pull_request"].(map[string]any)
		eq("action", d.Action, str(raw, "action"))
		eq("number", strconv.FormatInt(d.Number, 10), num(t, raw, "number"))
		eq("merged", d.PullRequest.Merged, rp["merged"])
		eq("head_branch", d.PullRequest.HeadBranch, rp["head_branch"])
		eq("base_branch", d.PullRequest.BaseBranch, rp["base_branch"])
		eq("mergeable set", d.PullRequest.Mergeable != nil, rp["mergeable"] != nil)
		eq("merged_at set", d.PullRequest.MergedAt != nil, rp["merged_at"] != nil)
		eq("merge_commit_sha", d.PullRequest.MergeCommitSHA, str(raw, "pull_request", "merge_commit_sha"))
	case *schemas.Release:
		eq("action", d.Action, str(raw, "action"))
		eq("tag_name", d.Release.TagName, str(raw, "release", "tag_name"))
		eq("prerelease", d.Release.Prerelease, raw["release"].(map[string]any)["prerelease"])
		eq("author.login", d.Release.Author.Login, str(raw, "release", "author", "login"))
	default:
		t.Fatalf("fixture event %q decoded as %T", event, p)
	}
}

// TestFixtureQuirks pins what the README of the fixtures says about them.
func TestFixtureQuirks(t *testing.T) {
	norm := func(name string) (schemas.Envelope, any) {
		t.Helper()
		f := loadFixture(t, filepath.Join(fixtureDir, name+".json"))
		payload, err := ExtractPayload(f.contentType(), f.Body)
		if err != nil {
			t.Fatal(err)
		}
		n, err := Normalize(fixtureInput(f, payload))
		if err != nil {
			t.Fatal(err)
		}
		p := schemas.NewPayload(f.event())
		if err := n.Envelope.DecodeData(p); err != nil {
			t.Fatal(err)
		}
		return n.Envelope, p
	}
	type pushWant struct {
		branch, tag                    string
		created, deleted, testDelivery bool
		commits                        int
	}
	pushes := []struct {
		name string
		want pushWant
	}{
		{"push-multi-commit", pushWant{branch: "master", commits: 3}},
		{"push-first-push", pushWant{branch: "master", created: true, commits: 2}},
		{"push-test-delivery-empty-repo", pushWant{branch: "master", testDelivery: true, commits: 1}},
		{"push-test-delivery", pushWant{branch: "master", testDelivery: true, commits: 1}},
		{"push-new-branch", pushWant{branch: "feature/x", created: true, commits: 5}},
		{"push-force", pushWant{branch: "feature/x", commits: 3}},
	}
	for _, tt := range pushes {
		t.Run(tt.name, func(t *testing.T) {
			_, p := norm(tt.name)
			d := p.(*schemas.Push)
			got := pushWant{d.Branch, d.Tag, d.Created, d.Deleted, d.TestDelivery, len(d.Commits)}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}

	t.Run("zero times are left out", func(t *testing.T) {
		_, p := norm("push-test-delivery-empty-repo")
		if ts := p.(*schemas.Push).Commits[0].Timestamp; ts != nil {
			t.Errorf("test delivery commit timestamp = %v, want none", ts)
		}
		_, p = norm("issues-opened")
		if is := p.(*schemas.Issues).Issue; is.CreatedAt != nil || is.UpdatedAt != nil {
			t.Errorf("issues-opened times = %v, %v, want none", is.CreatedAt, is.UpdatedAt)
		}
		_, p = norm("fork")
		if fk := p.(*schemas.Fork).Forkee; fk.CreatedAt != nil || fk.Parent.CreatedAt == nil {
			t.Errorf("fork: forkee.created_at = %v (want none), parent.created_at = %v (want set)", fk.CreatedAt, fk.Parent.CreatedAt)
		}
	})
	t.Run("merged_at keeps nanoseconds", func(t *testing.T) {
		_, p := norm("pull-request-closed-merged")
		pr := p.(*schemas.PullRequest).PullRequest
		if !pr.Merged || pr.MergedAt == nil || pr.MergedAt.Nanosecond() != 169930909 {
			t.Errorf("merged = %v, merged_at = %v, want true and .169930909", pr.Merged, pr.MergedAt)
		}
		if pr.MergedBy == nil || pr.MergedBy.Login != "fixture-admin" {
			t.Errorf("merged_by = %+v", pr.MergedBy)
		}
	})
	t.Run("mergeable null stays absent", func(t *testing.T) {
		_, p := norm("pull-request-reopened")
		if m := p.(*schemas.PullRequest).PullRequest.Mergeable; m != nil {
			t.Errorf("mergeable = %v, want absent", *m)
		}
	})
	t.Run("comment on a pull request is pulls/N", func(t *testing.T) {
		env, _ := norm("issue-comment-created-on-pull-request")
		if env.Subject != "pulls/2" {
			t.Errorf("subject = %q, want pulls/2", env.Subject)
		}
	})
	t.Run("fork has no subject", func(t *testing.T) {
		env, _ := norm("fork")
		if env.Subject != "" {
			t.Errorf("subject = %q, want none", env.Subject)
		}
	})
	t.Run("redelivery is the same event", func(t *testing.T) {
		a, _ := norm("push-multi-commit")
		b, _ := norm("push-redelivery")
		if a.ID != b.ID || !bytes.Equal(a.Data, b.Data) || a.BodySHA256 != b.BodySHA256 {
			t.Errorf("redelivery differs: id %s/%s", a.ID, b.ID)
		}
	})
	t.Run("form and JSON hooks give the same data", func(t *testing.T) {
		for _, pair := range [][2]string{{"push-multi-commit", "form-push-multi-commit"}, {"issues-opened", "form-issues-opened"}} {
			a, _ := norm(pair[0])
			b, _ := norm(pair[1])
			if !bytes.Equal(a.Data, b.Data) {
				t.Errorf("%s and %s: data differs", pair[0], pair[1])
			}
			if a.BodySHA256 == b.BodySHA256 || a.ID == b.ID {
				t.Errorf("%s and %s: same body hash or id, want the hook's own", pair[0], pair[1])
			}
		}
	})
	t.Run("non-ASCII and HTML survive", func(t *testing.T) {
		_, p := norm("push-multi-commit")
		if msg := p.(*schemas.Push).Commits[1].Message; !strings.HasPrefix(msg, "fix: ünïcödé 🚀") {
			t.Errorf("commit message = %q", msg)
		}
		_, p = norm("issues-opened")
		if title := p.(*schemas.Issues).Issue.Title; !strings.ContainsAny(title, "<>&") {
			t.Errorf("issue title lost <, > or &: %q", title)
		}
	})
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestFixtures -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("envelope differs from %s (go test -run TestFixtures -update rewrites it):\n%s", path, lineDiff(string(want), pretty.String()))
	}
}

// lineDiff lists the lines of got that are not in want, and the reverse.
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var out []string
	for l := range w {
		if !g[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range g {
		if !w[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func decodeMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// str follows keys through nested objects to a string; "" if absent or null.
func str(m map[string]any, keys ...string) string {
	var v any = m
	for _, k := range keys {
		o, _ := v.(map[string]any)
		v = o[k]
	}
	s, _ := v.(string)
	return s
}

func num(t *testing.T, m map[string]any, keys ...string) string {
	t.Helper()
	var v any = m
	for _, k := range keys {
		o, _ := v.(map[string]any)
		v = o[k]
	}
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v is not a number: %v", keys, v)
	}
	return n.String()
}
