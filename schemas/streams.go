package schemas

// Stream names. Every stream forgebus uses is provisioned by the services
// module with these names; other systems may rely on them.
const (
	// StreamEvents holds one message per accepted webhook delivery.
	StreamEvents = "FORGE_EVENTS"
	// StreamResults holds one message per worker outcome.
	StreamResults = "FORGE_RESULTS"
	// StreamDLQ holds the events a worker gave up on, with the error.
	StreamDLQ = "FORGE_DLQ"
	// StreamAudit holds the hash-chained audit log. It denies delete and purge.
	StreamAudit = "FORGE_AUDIT"
)

// Subject roots. Tokens after the root are escaped with [EscapeToken].
const (
	// EventsRoot starts every event subject: forge.<instance>.<event>.<owner>.<repo>.
	EventsRoot = "forge"
	// ResultsRoot starts every result subject: forgebus.results.<worker>.<owner>.<repo>.
	ResultsRoot = "forgebus.results"
	// DLQRoot starts every dead-letter subject: forgebus.dlq.<worker>.<owner>.<repo>.
	DLQRoot = "forgebus.dlq"
	// AuditSubject is the one subject of [StreamAudit].
	AuditSubject = "forgebus.audit"
)

// Subjects each stream binds to.
var (
	EventsSubjects  = []string{EventsRoot + ".>"}
	ResultsSubjects = []string{ResultsRoot + ".>"}
	DLQSubjects     = []string{DLQRoot + ".>"}
	AuditSubjects   = []string{AuditSubject}
)
