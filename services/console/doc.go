// Package console is forgebus's web console: the deliveries (live over
// server-sent events), a delivery's timeline, the workers, the dead letters
// (replay, operators only) and the audit chain (verify, operators only).
// People sign in with their Gogs account; Gogs organisations map to the
// operator and viewer roles, and a viewer sees only the repositories Gogs
// lets them read. The session is a short-lived HS256 JWT in an HttpOnly,
// SameSite=Strict cookie; every route checks the role on the server.
package console
