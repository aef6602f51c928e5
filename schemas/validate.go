package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

//go:embed jsonschema/*.json
var schemaFiles embed.FS

// Names of the schemas that are not event payloads. Their ids are
// [SchemaURI] of these names, like the events'.
const (
	SchemaEnvelope   = "envelope"
	SchemaResult     = "result"
	SchemaDeadLetter = "deadletter"
	// SchemaCommon holds the definitions the payload schemas share.
	SchemaCommon = "common"
)

// SchemaFS returns the embedded JSON Schema files (draft 2020-12), one
// "<name>.json" per event, plus envelope.json, unknown.json, result.json,
// deadletter.json and common.json. Each file's $id is [SchemaURI] of its
// name.
func SchemaFS() fs.FS {
	sub, err := fs.Sub(schemaFiles, "jsonschema")
	if err != nil {
		panic(err) // the embedded directory exists: a build error otherwise
	}
	return sub
}

type compiled struct {
	envelope, result, deadLetter, unknown *jsonschema.Schema
	events                                map[string]*jsonschema.Schema
}

var (
	compileOnce sync.Once
	schemaSet   *compiled
	compileErr  error
)

func loadSchemas() (*compiled, error) {
	compileOnce.Do(func() { schemaSet, compileErr = compileAll() })
	return schemaSet, compileErr
}

func compileAll() (*compiled, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	entries, err := fs.ReadDir(schemaFiles, "jsonschema")
	if err != nil {
		return nil, fmt.Errorf("read embedded schemas: %w", err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(schemaFiles, "jsonschema/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read schema %s: %w", e.Name(), err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("parse schema %s: %w", e.Name(), err)
		}
		if err := c.AddResource(SchemaBase+e.Name(), doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", e.Name(), err)
		}
	}
	get := func(name string) (*jsonschema.Schema, error) {
		s, err := c.Compile(SchemaURI(name))
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		return s, nil
	}
	out := &compiled{events: make(map[string]*jsonschema.Schema, len(KnownEvents))}
	for _, p := range []struct {
		name string
		dst  **jsonschema.Schema
	}{
		{SchemaEnvelope, &out.envelope},
		{SchemaResult, &out.result},
		{SchemaDeadLetter, &out.deadLetter},
		{EventUnknown, &out.unknown},
	} {
		if *p.dst, err = get(p.name); err != nil {
			return nil, err
		}
	}
	for _, ev := range KnownEvents {
		if out.events[ev], err = get(ev); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Validate checks an envelope, as published on [StreamEvents], against
// envelope.json and its data against the schema of its type (unknown.json
// for an event without a type of its own). It returns nil, or an error
// wrapping [ErrUnknownType] when the type is not "forge.<event>" with a
// valid event name, or [ErrInvalid] for any other mismatch. Errors name
// where the document is wrong, never the values found there.
func Validate(envelopeJSON []byte) error {
	s, err := loadSchemas()
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(envelopeJSON))
	if err != nil {
		return fmt.Errorf("%w: envelope is not one JSON value", ErrInvalid)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: envelope is not a JSON object", ErrInvalid)
	}
	typ, _ := m["type"].(string)
	event, ok := strings.CutPrefix(typ, TypePrefix)
	if !ok || !ValidEventName(event) {
		return fmt.Errorf("%w: type must be %q and an event name", ErrUnknownType, TypePrefix+"<event>")
	}
	if err := s.envelope.Validate(doc); err != nil {
		return invalid(SchemaEnvelope, err)
	}
	if ds, _ := m["dataschema"].(string); ds != DataSchemaURI(event) {
		return fmt.Errorf("%w: envelope: dataschema of %s must be %s", ErrInvalid, typ, DataSchemaURI(event))
	}
	data := s.unknown
	if sch, ok := s.events[event]; ok {
		data = sch
	}
	if err := data.Validate(m["data"]); err != nil {
		return invalid(typ+" data", err)
	}
	return nil
}

// ValidateResult checks a [Result] document against result.json; errors wrap
// [ErrInvalid].
func ValidateResult(resultJSON []byte) error {
	return validateDoc(SchemaResult, resultJSON, func(c *compiled) *jsonschema.Schema { return c.result })
}

// ValidateDeadLetter checks a [DeadLetter] document against deadletter.json;
// errors wrap [ErrInvalid].
func ValidateDeadLetter(deadLetterJSON []byte) error {
	return validateDoc(SchemaDeadLetter, deadLetterJSON, func(c *compiled) *jsonschema.Schema { return c.deadLetter })
}

// ValidateData checks an event's payload (an envelope's data) against the
// schema of event ([EventUnknown]'s for an event without a type of its
// own); errors wrap [ErrInvalid].
func ValidateData(event string, dataJSON []byte) error {
	return validateDoc(event+" data", dataJSON, func(c *compiled) *jsonschema.Schema {
		if s, ok := c.events[event]; ok {
			return s
		}
		return c.unknown
	})
}

func validateDoc(what string, b []byte, pick func(*compiled) *jsonschema.Schema) error {
	s, err := loadSchemas()
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: %s is not one JSON value", ErrInvalid, what)
	}
	if err := pick(s).Validate(doc); err != nil {
		return invalid(what, err)
	}
	return nil
}

// ValidEventName reports whether name can be a Gogs event name:
// [a-z][a-z0-9_]{0,63}.
func ValidEventName(name string) bool {
	if name == "" || len(name) > 64 || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

const maxReported = 5

// invalid describes a schema violation by location and keyword only: the
// values found there may be payload text.
func invalid(what string, err error) error {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("%w: %s", ErrInvalid, what)
	}
	var msgs []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(msgs) == maxReported {
			return
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		msgs = append(msgs, describe(e))
	}
	walk(ve)
	return fmt.Errorf("%w: %s: %s", ErrInvalid, what, strings.Join(msgs, "; "))
}

func describe(e *jsonschema.ValidationError) string {
	loc := "/" + strings.Join(e.InstanceLocation, "/")
	if len(loc) > 200 {
		loc = loc[:200] + "…"
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		return fmt.Sprintf("at %q: missing %s", loc, strings.Join(k.Missing, ", "))
	case *kind.AdditionalProperties:
		return fmt.Sprintf("at %q: %d unexpected properties", loc, len(k.Properties))
	}
	kw := "invalid"
	if p := e.ErrorKind.KeywordPath(); len(p) > 0 {
		kw = "fails " + strings.Join(p, "/")
	}
	return fmt.Sprintf("at %q: %s", loc, kw)
}
