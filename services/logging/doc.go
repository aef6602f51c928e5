// Package logging builds the program's zerolog logger: JSON lines by
// default, a human console format on a terminal, UTC timestamps.
package logging
