package schemas

import "encoding/json"

// EventUnknown names the schema of every event forgebus has no type for: its
// payload is an [Unknown]. It is not an event name Gogs sends.
const EventUnknown = "unknown"

// Push is the payload of a push event: one or more commits pushed to a
// branch. Pushing a tag sends a [Create] instead.
type Push struct {
	// Ref is the full ref, "refs/heads/master".
	Ref    string `json:"ref"`
	Before string `json:"before"`
	After  string `json:"after"`
	// CompareURL is "" for a first push and for a test delivery.
	CompareURL string `json:"compare_url"`
	// Commits are at most five, newest first; never null.
	Commits    []Commit   `json:"commits"`
	Repository Repository `json:"repository"`
	Pusher     User       `json:"pusher"`
	Sender     User       `json:"sender"`

	// Derived by forgebus.

	// Branch is the short branch name when Ref is refs/heads/…, else "".
	Branch string `json:"branch"`
	// Tag is the short tag name when Ref is refs/tags/…, else "".
	Tag string `json:"tag"`
	// Created: Before is all zeros and After is not (a new branch).
	Created bool `json:"created"`
	// Deleted: After is all zeros and Before is not.
	Deleted bool `json:"deleted"`
	// TestDelivery: Before equals After, which only Gogs's "Test delivery"
	// button sends.
	TestDelivery bool `json:"test_delivery"`
}

// Create is the payload of a create event: a branch or tag was created.
type Create struct {
	// Ref is the short name: "feature/x", "v1.0.0".
	Ref string `json:"ref"`
	// RefType is "branch" or "tag".
	RefType string `json:"ref_type"`
	// SHA is "" for a branch, and the tag object (not the commit) for an
	// annotated tag.
	SHA           string     `json:"sha"`
	DefaultBranch string     `json:"default_branch"`
	Repository    Repository `json:"repository"`
	Sender        User       `json:"sender"`
}

// Delete is the payload of a delete event: a branch or tag was deleted.
type Delete struct {
	// Ref is the short name.
	Ref string `json:"ref"`
	// RefType is "branch" or "tag".
	RefType string `json:"ref_type"`
	// PusherType is "user".
	PusherType string     `json:"pusher_type"`
	Repository Repository `json:"repository"`
	Sender     User       `json:"sender"`
}

// Fork is the payload of a fork event: Forkee is the new fork of
// Repository.
type Fork struct {
	Forkee     Repository `json:"forkee"`
	Repository Repository `json:"repository"`
	Sender     User       `json:"sender"`
}

// Issues is the payload of an issues event. Action is one of opened,
// closed, reopened, edited, assigned, unassigned, label_updated,
// label_cleared, milestoned, demilestoned.
type Issues struct {
	Action     string     `json:"action"`
	Number     int64      `json:"number"`
	Issue      Issue      `json:"issue"`
	Changes    *Changes   `json:"changes,omitempty"`
	Repository Repository `json:"repository"`
	Sender     User       `json:"sender"`
}

// IssueComment is the payload of an issue_comment event. Action is created,
// edited or deleted. The issue is a pull request when Issue.PullRequest is
// set.
type IssueComment struct {
	Action     string     `json:"action"`
	Issue      Issue      `json:"issue"`
	Comment    Comment    `json:"comment"`
	Changes    *Changes   `json:"changes,omitempty"`
	Repository Repository `json:"repository"`
	Sender     User       `json:"sender"`
}

// PullRequest is the payload of a pull_request event. Action is one of the
// [Issues] actions or synchronized; a merge is "closed" with
// PullRequest.Merged true.
type PullRequest struct {
	Action      string          `json:"action"`
	Number      int64           `json:"number"`
	PullRequest PullRequestInfo `json:"pull_request"`
	Changes     *Changes        `json:"changes,omitempty"`
	Repository  Repository      `json:"repository"`
	Sender      User            `json:"sender"`
}

// Release is the payload of a release event. Action is "published".
type Release struct {
	Action     string      `json:"action"`
	Release    ReleaseInfo `json:"release"`
	Repository Repository  `json:"repository"`
	Sender     User        `json:"sender"`
}

// Unknown is the payload of an event forgebus has no type for: the
// repository and sender, when the payload has them, and the whole payload
// as Gogs sent it.
type Unknown struct {
	Repository *Repository     `json:"repository,omitempty"`
	Sender     *User           `json:"sender,omitempty"`
	Raw        json.RawMessage `json:"raw"`
}

// NewPayload returns a pointer to a new zero payload of the type that
// carries event's data (*Push for "push", ...), and an *[Unknown] for any
// other event name. Decode an envelope with it:
//
//	p := schemas.NewPayload(env.Event())
//	err := env.DecodeData(p)
func NewPayload(event string) any {
	switch event {
	case EventPush:
		return new(Push)
	case EventCreate:
		return new(Create)
	case EventDelete:
		return new(Delete)
	case EventFork:
		return new(Fork)
	case EventIssues:
		return new(Issues)
	case EventIssueComment:
		return new(IssueComment)
	case EventPullRequest:
		return new(PullRequest)
	case EventRelease:
		return new(Release)
	}
	return new(Unknown)
}

// IsKnownEvent reports whether event has a payload type of its own.
func IsKnownEvent(event string) bool {
	switch event {
	case EventPush, EventCreate, EventDelete, EventFork,
		EventIssues, EventIssueComment, EventPullRequest, EventRelease:
		return true
	}
	return false
}

// DataSchemaURI is the dataschema of an event's envelope: [SchemaURI] of the
// event when it is known, of [EventUnknown] otherwise.
func DataSchemaURI(event string) string {
	if IsKnownEvent(event) {
		return SchemaURI(event)
	}
	return SchemaURI(EventUnknown)
}
