package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// schemaTwins maps every schema (file, and $defs entry of common.json) to
// the Go type it describes.
var schemaTwins = map[string]reflect.Type{
	"push.json":          reflect.TypeFor[Push](),
	"create.json":        reflect.TypeFor[Create](),
	"delete.json":        reflect.TypeFor[Delete](),
	"fork.json":          reflect.TypeFor[Fork](),
	"issues.json":        reflect.TypeFor[Issues](),
	"issue_comment.json": reflect.TypeFor[IssueComment](),
	"pull_request.json":  reflect.TypeFor[PullRequest](),
	"release.json":       reflect.TypeFor[Release](),
	"unknown.json":       reflect.TypeFor[Unknown](),
	"envelope.json":      reflect.TypeFor[Envelope](),
	"result.json":        reflect.TypeFor[Result](),
	"deadletter.json":    reflect.TypeFor[DeadLetter](),

	"common.json#user":               reflect.TypeFor[User](),
	"common.json#permissions":        reflect.TypeFor[Permissions](),
	"common.json#repository":         reflect.TypeFor[Repository](),
	"common.json#commit_user":        reflect.TypeFor[CommitUser](),
	"common.json#commit":             reflect.TypeFor[Commit](),
	"common.json#label":              reflect.TypeFor[Label](),
	"common.json#milestone":          reflect.TypeFor[Milestone](),
	"common.json#issue_pull_request": reflect.TypeFor[IssuePullRequest](),
	"common.json#issue":              reflect.TypeFor[Issue](),
	"common.json#pull_request_info":  reflect.TypeFor[PullRequestInfo](),
	"common.json#comment":            reflect.TypeFor[Comment](),
	"common.json#release_info":       reflect.TypeFor[ReleaseInfo](),
	"common.json#change_from":        reflect.TypeFor[ChangeFrom](),
	"common.json#changes":            reflect.TypeFor[Changes](),
}

type objectSchema struct {
	Type                 string                     `json:"type"`
	Properties           map[string]json.RawMessage `json:"properties"`
	Required             []string                   `json:"required"`
	AdditionalProperties *bool                      `json:"additionalProperties"`
}

func readSchema(t *testing.T, name string) map[string]json.RawMessage {
	t.Helper()
	b, err := fs.ReadFile(SchemaFS(), name)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func TestSchemaFiles(t *testing.T) {
	entries, err := fs.ReadDir(SchemaFS(), ".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	want := append(slices.Clone(KnownEvents), EventUnknown, SchemaEnvelope, SchemaResult, SchemaDeadLetter, SchemaCommon)
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Errorf("schema files %v, want %v", names, want)
	}
	for _, name := range names {
		m := readSchema(t, name+".json")
		var id, draft string
		json.Unmarshal(m["$id"], &id)
		json.Unmarshal(m["$schema"], &draft)
		if id != SchemaURI(name) {
			t.Errorf("%s.json: $id %q, want %q", name, id, SchemaURI(name))
		}
		if draft != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s.json: $schema %q, want draft 2020-12", name, draft)
		}
	}
	if _, err := loadSchemas(); err != nil {
		t.Fatalf("schemas do not compile: %v", err)
	}
}

// TestSchemaTwins proves the Go types and the schemas name the same
// properties, require exactly the fields Go always writes (no omitempty),
// forbid any other property, and agree on each property's JSON type.
func TestSchemaTwins(t *testing.T) {
	defs := map[string]json.RawMessage{}
	if err := json.Unmarshal(readSchema(t, "common.json")["$defs"], &defs); err != nil {
		t.Fatal(err)
	}
	for name := range defs {
		if _, ok := schemaTwins["common.json#"+name]; !ok && name != "datetime" {
			t.Errorf("common.json $defs/%s has no Go twin", name)
		}
	}
	for key, typ := range schemaTwins {
		t.Run(key, func(t *testing.T) {
			file, def, _ := strings.Cut(key, "#")
			var raw []byte
			if def == "" {
				raw, _ = json.Marshal(readSchema(t, file))
			} else if raw = defs[def]; raw == nil {
				t.Fatalf("no $defs/%s", def)
			}
			var s objectSchema
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			if s.Type != "object" || s.AdditionalProperties == nil || *s.AdditionalProperties {
				t.Errorf("want type object and additionalProperties false")
			}
			var goProps, goRequired []string
			for i := range typ.NumField() {
				f := typ.Field(i)
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "" || name == "-" {
					t.Fatalf("field %s has no JSON name", f.Name)
				}
				goProps = append(goProps, name)
				if !strings.Contains(opts, "omitempty") {
					goRequired = append(goRequired, name)
				}
				if p, ok := s.Properties[name]; ok {
					checkJSONType(t, name, f.Type, p)
				}
			}
			var props []string
			for p := range s.Properties {
				props = append(props, p)
			}
			sort.Strings(props)
			sort.Strings(goProps)
			sort.Strings(goRequired)
			req := slices.Sorted(slices.Values(s.Required))
			if !slices.Equal(props, goProps) {
				t.Errorf("properties:\n schema %v\n go     %v", props, goProps)
			}
			if !slices.Equal(req, goRequired) {
				t.Errorf("required:\n schema %v\n go     %v", req, goRequired)
			}
		})
	}
}

// checkJSONType compares a property's "type" (when it has one) with the Go
// field's kind.
func checkJSONType(t *testing.T, name string, typ reflect.Type, prop json.RawMessage) {
	t.Helper()
	var p struct {
		Type string `json:"type"`
	}
	json.Unmarshal(prop, &p)
	if p.Type == "" {
		return // a $ref, allOf, const, enum or any value
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	want := map[reflect.Kind]string{
		reflect.String: "string", reflect.Bool: "boolean",
		reflect.Int: "integer", reflect.Int64: "integer",
		reflect.Float64: "number", reflect.Slice: "array",
		reflect.Map: "object", reflect.Struct: "object",
	}[typ.Kind()]
	if typ == reflect.TypeFor[time.Time]() {
		want = "string"
	}
	if typ == reflect.TypeFor[json.RawMessage]() {
		want = "object"
	}
	if p.Type != want {
		t.Errorf("property %s: schema type %q, Go %s (%q)", name, p.Type, typ, want)
	}
}

// fill sets every field of v: strings, numbers, booleans, times, one element
// in every list, every optional object (nesting depth bounded).
func fill(v reflect.Value, depth int) {
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2026, 11, 22, 23, 54, 31, 169930909, time.UTC)))
		return
	case v.Type() == reflect.TypeFor[json.RawMessage]():
		v.SetBytes([]byte(`{"k":1}`))
		return
	case v.Type() == reflect.TypeFor[Outcome]():
		v.SetString(string(OutcomeDeadLettered))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(3)
	case reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		if depth < 3 {
			v.Set(reflect.New(v.Type().Elem()))
			fill(v.Elem(), depth+1)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), depth+1)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("v"))
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), depth)
		}
	}
}

// TestFullAndEmptyValuesValidate marshals every payload type filled to the
// brim, and empty, and validates both: what Go writes, the schema accepts.
func TestFullAndEmptyValuesValidate(t *testing.T) {
	for _, ev := range append(slices.Clone(KnownEvents), EventUnknown) {
		t.Run(ev, func(t *testing.T) {
			full := NewPayload(ev)
			fill(reflect.ValueOf(full).Elem(), 0)
			b, err := json.Marshal(full)
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidateData(ev, b); err != nil {
				t.Errorf("full %s: %v\n%s", ev, err, b)
			}
			// Through an envelope too.
			env := validEnvelope(t, ev, b)
			if err := Validate(env); err != nil {
				t.Errorf("full %s envelope: %v", ev, err)
			}
		})
	}
	t.Run("result", func(t *testing.T) {
		var r Result
		fill(reflect.ValueOf(&r).Elem(), 0)
		b, _ := json.Marshal(r)
		if err := ValidateResult(b); err != nil {
			t.Errorf("full result: %v\n%s", err, b)
		}
		b, _ = json.Marshal(Result{Worker: "docs", EventID: "e", Outcome: OutcomeSucceeded, Attempt: 1})
		if err := ValidateResult(b); err != nil {
			t.Errorf("minimal result: %v\n%s", err, b)
		}
	})
	t.Run("dead letter", func(t *testing.T) {
		var d DeadLetter
		fill(reflect.ValueOf(&d).Elem(), 0)
		b, _ := json.Marshal(d)
		if err := ValidateDeadLetter(b); err != nil {
			t.Errorf("full dead letter: %v\n%s", err, b)
		}
	})
}

func validEnvelope(t *testing.T, event string, data []byte) []byte {
	t.Helper()
	env := Envelope{
		SpecVersion: SpecVersion, ID: "27ab6c71-0969-4202-bace-ca66379f9866",
		Source: "https://git.example.com", Type: TypePrefix + event, Subject: "refs/heads/main",
		Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), DataContentType: "application/json",
		DataSchema: DataSchemaURI(event), ForgeInstance: "git", Repo: "o/r", Sender: "s",
		BodySHA256: strings.Repeat("ab", 32), Data: data,
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit decodes an envelope, lets mod change it, and encodes it again.
func edit(t *testing.T, b []byte, mod func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	mod(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestValidate(t *testing.T) {
	push, err := os.ReadFile("testdata/push.envelope.json")
	if err != nil {
		t.Fatal(err)
	}
	data := func(m map[string]any) map[string]any { return m["data"].(map[string]any) }
	tests := []struct {
		name    string
		doc     []byte
		wantErr error
	}{
		{"push envelope", push, nil},
		{"unknown event", validEnvelope(t, "wiki", []byte(`{"raw":{"anything":[1,2]}}`)), nil},
		{"not JSON", []byte(`{"specversion":`), ErrInvalid},
		{"not an object", []byte(`[1]`), ErrInvalid},
		{"two values", append(bytes.Clone(push), push...), ErrInvalid},
		{"no type", edit(t, push, func(m map[string]any) { delete(m, "type") }), ErrUnknownType},
		{"type without prefix", edit(t, push, func(m map[string]any) { m["type"] = "push" }), ErrUnknownType},
		{"type with a bad event", edit(t, push, func(m map[string]any) { m["type"] = "forge.Push!" }), ErrUnknownType},
		{"type not a string", edit(t, push, func(m map[string]any) { m["type"] = 1 }), ErrUnknownType},
		{"wrong specversion", edit(t, push, func(m map[string]any) { m["specversion"] = "0.3" }), ErrInvalid},
		{"missing id", edit(t, push, func(m map[string]any) { delete(m, "id") }), ErrInvalid},
		{"id with newline", edit(t, push, func(m map[string]any) { m["id"] = "a\nb" }), ErrInvalid},
		{"bad time", edit(t, push, func(m map[string]any) { m["time"] = "yesterday" }), ErrInvalid},
		{"bad bodysha256", edit(t, push, func(m map[string]any) { m["bodysha256"] = "ABC" }), ErrInvalid},
		{"extra attribute", edit(t, push, func(m map[string]any) { m["extra"] = "x" }), ErrInvalid},
		{"empty subject", edit(t, push, func(m map[string]any) { m["subject"] = "" }), ErrInvalid},
		{"dataschema of another event", edit(t, push, func(m map[string]any) { m["dataschema"] = SchemaURI("issues") }), ErrInvalid},
		{"push data as issues", edit(t, push, func(m map[string]any) {
			m["type"] = "forge.issues"
			m["dataschema"] = SchemaURI("issues")
		}), ErrInvalid},
		{"data missing", edit(t, push, func(m map[string]any) { delete(m, "data") }), ErrInvalid},
		{"data not an object", edit(t, push, func(m map[string]any) { m["data"] = "x" }), ErrInvalid},
		{"data with an extra field", edit(t, push, func(m map[string]any) { data(m)["extra"] = 1 }), ErrInvalid},
		{"data without sender", edit(t, push, func(m map[string]any) { delete(data(m), "sender") }), ErrInvalid},
		{"data with null commits", edit(t, push, func(m map[string]any) { data(m)["commits"] = nil }), ErrInvalid},
		{"data with empty repository name", edit(t, push, func(m map[string]any) {
			data(m)["repository"].(map[string]any)["name"] = ""
		}), ErrInvalid},
		{"data with bad commit timestamp", edit(t, push, func(m map[string]any) {
			data(m)["commits"].([]any)[0].(map[string]any)["timestamp"] = "SECRET-VALUE"
		}), ErrInvalid},
		{"unknown event without raw", validEnvelope(t, "wiki", []byte(`{}`)), ErrInvalid},
		{"unknown event, dataschema of its own name", edit(t, validEnvelope(t, "wiki", []byte(`{"raw":1}`)), func(m map[string]any) {
			m["dataschema"] = SchemaURI("wiki")
		}), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.doc)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET-VALUE") {
				t.Errorf("error %q shows a value from the document", err)
			}
		})
	}
}

func TestValidateResultAndDeadLetter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	res := Result{Worker: "docs", EventID: "e1", EventType: "forge.push", Repo: "o/r", Outcome: OutcomeSucceeded, Attempt: 1, Started: now, Finished: now}
	dl := DeadLetter{Worker: "docs", EventID: "e1", EventType: "forge.push", Repo: "o/r", EventSubject: "forge.g.push.o.r", Error: "boom", Permanent: true, Attempts: 3, FirstTried: now, DeadAt: now, Event: json.RawMessage(`{"id":"e1"}`)}
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }
	tests := []struct {
		name     string
		validate func([]byte) error
		doc      []byte
		wantErr  error
	}{
		{"result", ValidateResult, enc(res), nil},
		{"result with detail", ValidateResult, enc(func() Result { r := res; r.Detail = Detail{"status": "200"}; return r }()), nil},
		{"result, every outcome", ValidateResult, enc(func() Result { r := res; r.Outcome = OutcomeSuperseded; return r }()), nil},
		{"result, unknown outcome", ValidateResult, enc(func() Result { r := res; r.Outcome = "exploded"; return r }()), ErrInvalid},
		{"result, negative attempt", ValidateResult, enc(func() Result { r := res; r.Attempt = -1; return r }()), ErrInvalid},
		{"result, no worker", ValidateResult, enc(func() Result { r := res; r.Worker = ""; return r }()), ErrInvalid},
		{"result, detail not strings", ValidateResult, []byte(strings.Replace(string(enc(res)), `"outcome"`, `"detail":{"n":1},"outcome"`, 1)), ErrInvalid},
		{"result, not JSON", ValidateResult, []byte(`{`), ErrInvalid},
		{"dead letter", ValidateDeadLetter, enc(dl), nil},
		{"dead letter, result instead", ValidateDeadLetter, enc(res), ErrInvalid},
		{"dead letter, no event id", ValidateDeadLetter, enc(func() DeadLetter { d := dl; d.EventID = ""; return d }()), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.validate(tt.doc)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("got %v, want %v\n%s", err, tt.wantErr, tt.doc)
			}
		})
	}
}

func TestOutcomesMatchSchema(t *testing.T) {
	var s struct {
		Properties struct {
			Outcome struct {
				Enum []string `json:"enum"`
			} `json:"outcome"`
		} `json:"properties"`
	}
	b, _ := json.Marshal(readSchema(t, "result.json"))
	json.Unmarshal(b, &s)
	want := []string{"dead_lettered", "denied", "duplicate", "failed", "succeeded", "superseded"}
	if got := slices.Sorted(slices.Values(s.Properties.Outcome.Enum)); !slices.Equal(got, want) {
		t.Errorf("result.json outcomes %v, want %v", got, want)
	}
}

func TestNewPayload(t *testing.T) {
	tests := []struct {
		event string
		want  any
	}{
		{EventPush, &Push{}}, {EventCreate, &Create{}}, {EventDelete, &Delete{}}, {EventFork, &Fork{}},
		{EventIssues, &Issues{}}, {EventIssueComment, &IssueComment{}}, {EventPullRequest, &PullRequest{}},
		{EventRelease, &Release{}}, {"wiki", &Unknown{}}, {"", &Unknown{}},
	}
	for _, tt := range tests {
		if got := NewPayload(tt.event); reflect.TypeOf(got) != reflect.TypeOf(tt.want) {
			t.Errorf("NewPayload(%q) = %T, want %T", tt.event, got, tt.want)
		}
		if IsKnownEvent(tt.event) != (reflect.TypeOf(tt.want) != reflect.TypeFor[*Unknown]()) {
			t.Errorf("IsKnownEvent(%q) disagrees with NewPayload", tt.event)
		}
	}
	if got := DataSchemaURI("wiki"); got != "https://forgebus.dev/schemas/v1/unknown.json" {
		t.Errorf("DataSchemaURI(wiki) = %q", got)
	}
	if got := DataSchemaURI(EventPush); got != "https://forgebus.dev/schemas/v1/push.json" {
		t.Errorf("DataSchemaURI(push) = %q", got)
	}
}

func TestValidEventName(t *testing.T) {
	for name, want := range map[string]bool{
		"push": true, "issue_comment": true, "a": true, "a1_": true, strings.Repeat("a", 64): true,
		"": false, "1a": false, "_a": false, "Push": false, "a.b": false, "a-b": false, "a b": false,
		strings.Repeat("a", 65): false, "pu\x00sh": false, "pùsh": false,
	} {
		if got := ValidEventName(name); got != want {
			t.Errorf("ValidEventName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestValidateConcurrent: the compiled schemas are shared by every caller;
// run with -race.
func TestValidateConcurrent(t *testing.T) {
	push, err := os.ReadFile("testdata/push.envelope.json")
	if err != nil {
		t.Fatal(err)
	}
	comment, err := os.ReadFile("testdata/issue_comment.envelope.json")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			doc := push
			if i%2 == 1 {
				doc = comment
			}
			errs <- Validate(doc)
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
