package schemas

import (
	"encoding/json"
	"fmt"
	"time"
)

// SpecVersion is the CloudEvents version of every [Envelope].
const SpecVersion = "1.0"

// TypePrefix starts every envelope type: "forge.push", "forge.issues", ...
const TypePrefix = "forge."

// SchemaBase is the prefix of every dataschema URI; the event name and
// ".json" follow it ("https://forgebus.dev/schemas/v1/push.json").
const SchemaBase = "https://forgebus.dev/schemas/v1/"

// The Gogs events forgebus knows by name. Any other event name is published
// as-is with an [Unknown] payload, so nothing Gogs adds later is lost.
const (
	EventPush         = "push"
	EventCreate       = "create"
	EventDelete       = "delete"
	EventFork         = "fork"
	EventIssues       = "issues"
	EventIssueComment = "issue_comment"
	EventPullRequest  = "pull_request"
	EventRelease      = "release"
)

// KnownEvents lists the events with a payload type of their own.
var KnownEvents = []string{
	EventPush, EventCreate, EventDelete, EventFork,
	EventIssues, EventIssueComment, EventPullRequest, EventRelease,
}

// Envelope is a CloudEvents 1.0 event in JSON structured mode: what forgebus
// publishes on [StreamEvents] for every accepted delivery.
type Envelope struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	DataSchema      string    `json:"dataschema"`

	// Extension attributes.
	ForgeInstance string `json:"forgeinstance"`
	Repo          string `json:"repo"`
	Sender        string `json:"sender"`
	BodySHA256    string `json:"bodysha256"`

	// Data is the normalized payload; decode it with [Envelope.DecodeData]
	// into the type named by [Envelope.Event].
	Data json.RawMessage `json:"data"`
}

// Event is the Gogs event name: Type without its "forge." prefix.
func (e *Envelope) Event() string {
	if len(e.Type) > len(TypePrefix) && e.Type[:len(TypePrefix)] == TypePrefix {
		return e.Type[len(TypePrefix):]
	}
	return ""
}

// DecodeData decodes the payload into v (a *Push for a push event, ...).
func (e *Envelope) DecodeData(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s data: %w", e.Type, err)
	}
	return nil
}

// SchemaURI is the dataschema of an event's payload.
func SchemaURI(event string) string { return SchemaBase + event + ".json" }
